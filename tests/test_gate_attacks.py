"""Attacks on the safeguards with recordings valle2 never saw (issue 30), each refused or closed.

Real speech: the packaged CMU ARCTIC clips (CMU ARCTIC licence, valle2/assets/demo/clips), real
Resemblyzer embeddings, real watermark."""
import builtins
import io
import os

import numpy as np
import pytest
import soundfile as sf

from valle2.audio import OUTPUT_PEAK_DBFS, AudioFile, limit_peak, load_audio
from valle2.commands import main
from valle2.errors import ConsentError
from valle2.metrics import speaker_embedding, speaker_window_embeddings
from valle2.safety import (AuditLog, ConsentGate, ConsentRegistry, RegistryDB, detect,
                           generate_operator_key, generate_watermark_key, watermark_liveness)
from valle2.safety.gate import SPEAKER_THRESHOLD, SPEAKER_WINDOW_THRESHOLD, mark_output

from conftest import CLIPS, Said

CEILING = 10 ** (OUTPUT_PEAK_DBFS / 20)


@pytest.fixture(scope="module")
def speech():
    a, sr = load_audio(CLIPS / "arctic_bdl_a0005.flac")
    b, _ = load_audio(CLIPS / "arctic_bdl_a0008.flac")
    c, _ = load_audio(CLIPS / "arctic_slt_a0015.flac")
    return {"bdl_a": a, "bdl_b": b, "slt": c, "sr": sr}


def splice(first, second, sr):
    """1.3 s of ``first`` then 1.9 s of ``second``: the issue's spliced prompt."""
    return np.concatenate([first[: int(1.3 * sr)], second[: int(1.9 * sr)]])


@pytest.fixture
def env(tmp_path):
    wm_key = generate_watermark_key(tmp_path / "wm.key")
    audit = AuditLog(tmp_path / "audit.jsonl")
    said = Said()
    reg = ConsentRegistry(RegistryDB(tmp_path / "registry.db"), generate_operator_key(tmp_path / "op.pem"), audit,
                          liveness_checks=[watermark_liveness(wm_key)], transcriber=said, embedder=speaker_embedding)
    return {"reg": reg, "gate": ConsentGate(reg, audit, wm_key), "audit": audit, "said": said, "key": wm_key}


def enrol_bdl(env, speech):
    phrase = env["reg"].issue_phrase("John Smith")
    env["said"].text = phrase.text
    return env["reg"].enroll("John Smith", np.concatenate([speech["bdl_a"], speech["bdl_b"]]), speech["sr"], phrase.id)


# ------------------------------------------------------------------ 1. spliced prompts
def test_a_prompt_spliced_from_the_consenting_speaker_and_another_is_refused_on_a_voice(env, speech):
    sr = speech["sr"]
    rec = enrol_bdl(env, speech)
    prompt = splice(speech["bdl_b"], speech["slt"], sr)
    whole = float(np.dot(speaker_embedding(prompt, sr), rec.embedding))
    assert whole >= SPEAKER_THRESHOLD          # the attack: as a whole it matches the consenting voice
    with pytest.raises(ConsentError, match=r"part of the prompt does not match.*stretch (\d\.\d)-(\d\.\d) s") as err:
        env["gate"].authorize(rec.voice_id, prompt, sr)
    msg = str(err.value)
    assert "only the consenting speaker" in msg and f"{SPEAKER_WINDOW_THRESHOLD:.3f}" in msg
    first = float(msg.split("stretch ")[1].split("-")[0])
    assert first >= 1.0                        # the stretch named is where the other speaker talks (from 1.3 s)
    refused = env["audit"].entries()[-1]
    assert refused["event"] == "authorize_refused" and refused["stretches"][0][0] == first
    assert refused["window_similarity"] < SPEAKER_WINDOW_THRESHOLD
    auth = env["gate"].authorize(rec.voice_id, speech["bdl_b"], sr)   # the same speaker alone still passes
    assert env["audit"].entries()[-1]["window_similarity"] >= SPEAKER_WINDOW_THRESHOLD and auth.kind == "consent"


def test_a_spliced_prompt_is_refused_on_an_attested_corpus_file(env, speech, tmp_path):
    sr = speech["sr"]
    src = CLIPS / "arctic_bdl_a0005.flac"
    env["reg"].attest_corpus("ARCTIC", [src], "CMU ARCTIC licence")
    prompt = splice(speech["bdl_a"], speech["slt"], sr)
    assert float(np.dot(speaker_embedding(prompt, sr), speaker_embedding(speech["bdl_a"], sr))) >= SPEAKER_THRESHOLD
    with pytest.raises(ConsentError, match="part of the prompt does not match"):
        env["gate"].authorize(None, prompt, sr, corpus_file=src)
    with pytest.raises(ConsentError, match="part of the prompt does not match"):   # file already read: same check
        env["gate"].authorize(None, prompt, sr, corpus_file=AudioFile.read(src))
    assert env["gate"].authorize(None, speech["bdl_a"], sr, corpus_file=src).similarity == 1.0   # the file itself


def test_window_embeddings_cover_the_prompt_in_its_own_seconds(speech):
    sr = speech["sr"]
    quiet = np.zeros(sr // 2, np.float32)
    prompt = np.concatenate([quiet, speech["bdl_b"], quiet])          # 0.5 s of silence each side
    embs, spans = speaker_window_embeddings(prompt, sr)
    assert embs.shape == (len(spans), 256) and np.allclose(np.linalg.norm(embs, axis=1), 1, atol=1e-4)
    assert spans[0][0] >= 0.2 and spans[-1][1] <= prompt.size / sr and np.all(np.diff(spans[:, 0]) > 0)
    assert np.all(spans[:, 1] - spans[:, 0] >= 1.5)                 # 1.6 s of speech each
    short, short_spans = speaker_window_embeddings(speech["bdl_a"][: sr], sr)     # under one window: one, padded
    assert short.shape == (1, 256) and short_spans[0][1] <= 1.0


def test_the_gate_embeds_a_prompts_windows_once(env, speech):
    calls = []
    gate = env["gate"]
    real = gate.window_embedder
    gate._window_embedder = lambda wav, sr: calls.append(wav.size) or real(wav, sr)
    rec = enrol_bdl(env, speech)
    gate.authorize(rec.voice_id, speech["bdl_b"], speech["sr"])
    gate.authorize(rec.voice_id, speech["bdl_b"].copy(), speech["sr"])
    assert calls == [speech["bdl_b"].size]


# ------------------------------------------------------- 2. a file swapped between hash and read
class SwapOnSecondOpen:
    """Replaces ``path``'s content with ``other`` just before it is opened a second time: what an
    attacker racing the gate does between its hash and its read."""

    def __init__(self, monkeypatch, path, other: bytes):
        self.path, self.other, self.opens = os.fspath(path), other, 0
        real = builtins.open

        def opener(file, *args, **kwargs):
            if isinstance(file, (str, os.PathLike)) and os.fspath(file) == self.path:
                self.opens += 1
                if self.opens == 2:
                    with real(self.path, "wb") as f:
                        f.write(self.other)
            return real(file, *args, **kwargs)
        monkeypatch.setattr(builtins, "open", opener)
        monkeypatch.setattr(io, "open", opener)


def test_a_file_swapped_between_hash_and_read_does_not_pass_as_attested(env, speech, tmp_path, monkeypatch):
    sr = speech["sr"]
    attested = tmp_path / "prompt.flac"
    attested.write_bytes((CLIPS / "arctic_bdl_a0005.flac").read_bytes())
    env["reg"].attest_corpus("ARCTIC", [attested], "CMU ARCTIC licence")
    other = (CLIPS / "arctic_slt_a0015.flac").read_bytes()
    # the caller's prompt is the other speaker's recording; the file holds the attested one when
    # the gate hashes it, and the other recording if anything reads it again
    swap = SwapOnSecondOpen(monkeypatch, attested, other)
    with pytest.raises(ConsentError, match="does not match the consenting voice"):
        env["gate"].authorize(None, speech["slt"], sr, corpus_file=attested)
    assert swap.opens == 1                                        # hashed and decoded from one read
    assert not any(e.get("match") == "excerpt" for e in env["audit"].entries())


def test_audio_file_hashes_the_bytes_it_decodes(tmp_path):
    path = tmp_path / "a.flac"
    path.write_bytes((CLIPS / "arctic_bdl_a0008.flac").read_bytes())
    f = AudioFile.read(path)
    path.write_bytes((CLIPS / "arctic_slt_a0015.flac").read_bytes())   # swapped after the read: no effect
    wav, sr = f.load()
    ref, _ = load_audio(CLIPS / "arctic_bdl_a0008.flac")
    import hashlib

    assert np.array_equal(wav, ref) and f.sha256 == hashlib.sha256((CLIPS / "arctic_bdl_a0008.flac").read_bytes()).hexdigest()
    with pytest.raises(Exception, match="not found"):
        AudioFile.read(tmp_path / "missing.flac")
    with pytest.raises(Exception, match="not found"):
        AudioFile.read(tmp_path)


# ------------------------------------------- 3. read-only commands never create a deployment
@pytest.mark.parametrize("argv", [["detect", str(CLIPS / "arctic_bdl_a0008.flac")], ["voice", "list"],
                                  ["audit", "verify"], ["voice", "revoke", "v_0123"],
                                  ["voice", "enroll", "--name", "Ann Lee", "--phrase-id", "p_1", "--consent",
                                   str(CLIPS / "arctic_bdl_a0008.flac")]])
def test_a_mistyped_home_is_an_error_not_a_new_deployment(tmp_path, capsys, argv):
    home = tmp_path / "typo"
    assert main([*argv, "--home", str(home)]) == 2
    err = capsys.readouterr().err
    assert f"no valle2 deployment at '{home}'" in err and "--home" in err and "does not exist" in err
    assert not home.exists()
    home.mkdir()                                                  # a folder, but not a deployment
    assert main([*argv, "--home", str(home)]) == 2
    assert "lacks operator.pem, watermark.key, registry.db" in capsys.readouterr().err
    assert list(home.iterdir()) == []


def test_commands_that_start_a_deployment_still_do(tmp_path, capsys):
    home = tmp_path / "new"
    assert main(["voice", "phrase", "--name", "Ann Lee", "--home", str(home)]) == 0
    assert (home / "watermark.key").is_file()
    capsys.readouterr()
    assert main(["voice", "list", "--home", str(home)]) == 0 and "no voices enrolled" in capsys.readouterr().out


# ----------------------------------------------------------------- 4. detect's exit status
def test_detect_exit_status_tells_synthesized_clean_unknown_and_error(tmp_path, capsys, deployment):
    wav, sr = sf.read(CLIPS / "arctic_bdl_a0008.flac", dtype="float32")
    sf.write(tmp_path / "marked.wav", mark_output(np.tile(wav, 3), sr, 0x1234, deployment.watermark_key), sr)
    sf.write(tmp_path / "silent.wav", np.zeros(sr, np.float32), sr)
    (tmp_path / "junk.wav").write_bytes(b"not audio at all")
    assert main(["detect", str(tmp_path / "marked.wav")]) == 1
    assert main(["detect", str(CLIPS / "arctic_bdl_a0008.flac")]) == 0
    assert main(["detect", str(tmp_path / "silent.wav")]) == 3
    capsys.readouterr()
    assert main(["detect", str(tmp_path / "junk.wav")]) == 2
    assert main(["detect", str(tmp_path / "missing.wav")]) == 2
    assert "not found" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["detect", "--help"])
    helptext = capsys.readouterr().out
    assert all(f"  {n}  " in helptext for n in "0123") and "exit status" in helptext


# ------------------------------------------------------------------------ 5. output range
def test_no_output_sample_leaves_minus_one_to_one(env, speech):
    sr = speech["sr"]
    rec = enrol_bdl(env, speech)
    loud = np.tile(speech["bdl_b"], 2)
    loud = np.clip(loud / np.abs(loud).max() * 1.6, -1.3, 1.3)            # a model output beyond full scale
    auth = env["gate"].authorize(rec.voice_id, speech["bdl_b"], sr)
    out = env["gate"].finalize(loud, sr, auth, "loud")
    assert np.abs(out).max() <= CEILING + 1e-6 and detect(out, sr, env["key"]).present
    quiet = speech["bdl_b"] * 0.1
    assert np.array_equal(limit_peak(quiet), quiet.astype(np.float32))     # quieter clips keep their level
    written, _ = sf.read(io.BytesIO(_wav16(out, sr)), dtype="int16")
    assert np.abs(written.astype(np.int32)).max() < 32767                  # nothing clips at 16 bits


def _wav16(wav, sr) -> bytes:
    from valle2.audio import encode_audio

    return encode_audio(wav, sr, "wav")


def test_synthesis_from_a_loud_prompt_stays_in_range(tiny_model, deployment, tmp_path):
    from valle2.synthesis import load_model

    model = load_model(tiny_model[0], gate=deployment.gate())
    src = CLIPS / "arctic_bdl_a0008.flac"
    wav, sr = load_audio(src)
    loud = wav / np.abs(wav).max()                                         # peaks at full scale
    out, out_sr = model.synthesize("Will we ever forget it.", loud, sr, prompt_text="Will we ever forget it.",
                                   corpus_file=src, include_prompt=True)
    assert np.abs(out).max() <= CEILING + 1e-6 and detect(out, out_sr, deployment.watermark_key).present
