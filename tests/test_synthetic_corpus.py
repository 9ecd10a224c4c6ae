"""Synthetic-voice research corpora: attested only when every file is proved the named
synthesizer's rendering of its transcript; their excerpts pass the gate without the
synthesized-speech classifier (they are nobody's voice), and nothing else does."""
import shutil

import numpy as np
import pytest

from valle2.audio import load_audio, save_audio
from valle2.data import SyntheticVoice, attest_synthetic_corpus, synthesize_corpus
from valle2.errors import ConsentError
from valle2.safety import AuditLog, ConsentGate, ConsentRegistry, RegistryDB
from valle2.safety.gate import watermark_liveness
from valle2.safety.keys import generate_operator_key, generate_watermark_key

VOICE = SyntheticVoice("flite", "kal16")
LICENCE = "test sentences, synthesized"


def refuse_everything(wav, sr):
    return "the classifier calls it synthesized"


@pytest.fixture
def env(tmp_path):
    if shutil.which("flite") is None:
        pytest.fail("flite is missing: `make test` installs it (scripts/install_synthetic_voices.sh)")
    wm_key = generate_watermark_key(tmp_path / "wm.key")
    op = generate_operator_key(tmp_path / "operator.pem")
    audit = AuditLog(tmp_path / "audit.jsonl", key=op)
    reg = ConsentRegistry(RegistryDB(tmp_path / "registry.db"), op, audit, liveness_checks=[])
    gate = ConsentGate(reg, audit, wm_key, liveness_checks=[watermark_liveness(wm_key), refuse_everything])
    cuts = synthesize_corpus(["The cat sat on the mat.", "Open the red door now."], tmp_path / "audio", [VOICE])
    return {"reg": reg, "gate": gate, "cuts": cuts, "tmp": tmp_path}


def path_of(cut):
    return cut.recording.sources[0].source


def test_a_proved_synthetic_corpus_prompts_without_the_classifier(env):
    att = attest_synthetic_corpus(env["reg"], "kal16 tests", env["cuts"], VOICE, LICENCE)
    assert att.synthetic_voice == "flite:kal16" and len(att.files) == 2
    assert env["reg"].corpus_for_file(path_of(env["cuts"][0])).synthetic_voice == "flite:kal16"   # signed and stored
    wav, sr = load_audio(path_of(env["cuts"][0]))
    auth = env["gate"].authorize(None, wav[: sr], sr, corpus_file=path_of(env["cuts"][0]))   # an excerpt
    assert auth.kind == "research" and auth.corpus_id == att.corpus_id
    # anything that is not an excerpt of the proved file (here: louder) is asked of every check
    with pytest.raises(ConsentError, match="liveness check: the classifier calls it synthesized"):
        env["gate"].authorize(None, 0.5 * wav, sr, corpus_file=path_of(env["cuts"][0]))


def test_an_ordinary_attestation_of_the_same_files_still_asks_the_classifier(env):
    env["reg"].attest_corpus("kal16 as ordinary", [path_of(c) for c in env["cuts"]], LICENCE)
    wav, sr = load_audio(path_of(env["cuts"][0]))
    with pytest.raises(ConsentError, match="the classifier calls it synthesized"):
        env["gate"].authorize(None, wav, sr, corpus_file=path_of(env["cuts"][0]))


def test_a_file_that_is_not_the_voice_reading_its_transcript_is_refused_and_nothing_is_attested(env):
    path = path_of(env["cuts"][1])
    wav, sr = load_audio(path)
    save_audio(path, np.concatenate([wav, wav]), sr)   # e.g. someone's recording put in its place
    with pytest.raises(ConsentError, match=r"is not flite:kal16's rendering of its transcript"):
        attest_synthetic_corpus(env["reg"], "kal16 tests", env["cuts"], VOICE, LICENCE)
    with pytest.raises(ConsentError):
        env["reg"].corpus_for_file(path_of(env["cuts"][0]))
