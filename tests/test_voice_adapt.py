"""``valle2 voice adapt``: a voice adapted on its own recordings speaks with no prompt; each
recording passes the gate (another speaker's is named and skipped, none passing is an error);
the adapter is signed (altered bytes are refused) and revoking the voice deletes it.

Real ARCTIC clips (valle2/assets/demo/clips, CMU ARCTIC licence): bdl is the voice, slt the other
speaker; the shipped demo model; real Resemblyzer embeddings and liveness checks."""
import sqlite3

import numpy as np
import pytest

import valle2
from valle2.adapt import AdaptConfig, adapt_voice, read_texts
from valle2.audio import encode_audio, load_audio
from valle2.code0.adapter import VoiceAdapter
from valle2.commands import main
from valle2.errors import ConsentError, DataError
from valle2.safety.deployment import Deployment
from valle2.safety.watermark import detect
from valle2.synthesis import VallE2

from conftest import CLIPS, Said

BDL = [CLIPS / "arctic_bdl_a0005.flac", CLIPS / "arctic_bdl_a0008.flac"]
SLT = [CLIPS / "arctic_slt_a0015.flac", CLIPS / "arctic_slt_a0018.flac"]
TEXTS = CLIPS / "transcripts.tsv"


@pytest.fixture(scope="module")
def demo():
    return valle2.load_model("demo")


@pytest.fixture
def enrolled(tmp_path, demo):
    """A deployment in which bdl is enrolled (from his two clips joined), and the demo model on its gate."""
    dep = Deployment.open(tmp_path / "home")
    said = Said()
    dep.registry.transcriber = said
    phrase = dep.registry.issue_phrase("John Smith")
    said.text = phrase.text
    wav = np.concatenate([load_audio(p)[0] for p in BDL])
    record = dep.registry.enroll("John Smith", wav, load_audio(BDL[0])[1], phrase.id)
    return dep, record.voice_id, VallE2(demo.bundle, demo.codec, dep.gate())


def texts():
    return {row["file"]: row["text"] for row in (dict(zip(("id", "file", "speaker", "text"), line.split("\t")))
                                                   for line in TEXTS.read_text().splitlines()[1:])}


def test_adapt_enrolled_voice_skips_another_speaker_and_speaks_without_prompt(enrolled):
    dep, vid, model = enrolled
    said = []
    result = adapt_voice(model, BDL + SLT[:1], vid, texts=texts(), log=said.append)
    assert result.voice_id == vid and result.used == [str(p) for p in BDL]
    assert [f for f, _ in result.skipped] == [str(SLT[0])] and "does not match" in result.skipped[0][1]
    assert said and str(SLT[0]) in said[0]
    assert result.adapter_bytes < 2e6 and result.adapter.prompt_name in {p.name for p in BDL}
    assert result.table == "model" and result.adapter.reference.shape[0] == 8
    wav, sr = model.synthesize("Will we ever forget it.", voice_id=vid)
    assert wav.size > 0.5 * sr and detect(wav, sr, dep.watermark_key).present


def test_adapt_with_no_passing_recording_is_an_error(enrolled):
    _, vid, model = enrolled
    with pytest.raises(ConsentError, match="none of the 2 recordings") as e:
        adapt_voice(model, SLT, vid, texts=texts(), log=lambda _: None)
    assert all(str(p) in str(e.value) for p in SLT)
    assert model.gate.registry.adapter(vid) is None


def test_revoking_the_voice_deletes_its_adapter(enrolled):
    dep, vid, model = enrolled
    adapt_voice(model, BDL, vid, texts=texts())
    assert dep.registry.adapter(vid) is not None
    dep.registry.revoke(vid, "test")
    assert dep.registry.db.adapter(vid) is None
    with pytest.raises(ConsentError, match="revoked"):
        model.synthesize("Will we ever forget it.", *load_audio(BDL[0]), "Will we ever forget it.", voice_id=vid)


def test_an_altered_adapter_is_refused(enrolled):
    dep, vid, model = enrolled
    result = adapt_voice(model, BDL, vid, texts=texts(), config=AdaptConfig(tables=("own",)))
    adapter = VoiceAdapter.from_bytes(dep.registry.adapter(vid)[1])
    assert result.table == "own" and adapter.table["voice_codes"].numel() == 1      # the speaker's one-voice table
    adapter.table["voice_codes"][0] = (adapter.table["voice_codes"][0] + 1) % 1024
    con = sqlite3.connect(dep.registry.db.path)
    con.execute("UPDATE adapters SET data = ? WHERE voice_id = ?", (adapter.to_bytes(), vid))
    con.commit()
    con.close()
    with pytest.raises(ConsentError, match="altered"):
        model.synthesize("Will we ever forget it.", voice_id=vid)


def test_cli_research_voice_then_synthesize_with_no_prompt(tmp_path, capsys):
    tsv = tmp_path / "texts.tsv"
    tsv.write_text("".join(f"{f}\t{t}\n" for f, t in texts().items()))
    assert main(["voice", "adapt", "--research", *map(str, SLT + BDL[:1]), "--name", "slt", "--texts", str(tsv)]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1].startswith("voice_id=r_") and "1 skipped" in out[-2] and str(BDL[0]) in out[0]
    vid = out[-1].split("=", 1)[1]
    wav_path = tmp_path / "out.wav"
    assert main(["synthesize", "--voice", vid, "--text", "There was a change now.", "--out", str(wav_path)]) == 0
    wav, sr = load_audio(wav_path)
    assert wav.size > 0.5 * sr


def test_cli_refuses_a_research_name_for_an_enrolled_voice_and_bad_transcripts(tmp_path, capsys):
    assert main(["voice", "adapt", "v_abc", str(BDL[0]), "--name", "x"]) == 2
    assert "--name names a new research voice" in capsys.readouterr().err
    assert main(["voice", "adapt", str(BDL[0]), str(BDL[1])]) == 2
    assert "enrolled voice's id (v_...) first" in capsys.readouterr().err
    bad = tmp_path / "bad.tsv"
    bad.write_text("only-a-file\n")
    with pytest.raises(DataError, match="line 1"):
        read_texts(bad)


def test_http_api_speaks_an_adapted_voice_with_its_adapter(tmp_path, demo):
    """Enrolled through the API, adapted with the CLI's function, spoken through the API: the
    adapter's prompt (a bdl clip, not the consent recording) is what the gate authorizes."""
    from fastapi.testclient import TestClient

    from valle2.server import KeyStore, ServerSettings, create_app

    dep = Deployment.open(tmp_path / "server")
    said = Said()
    dep.registry.transcriber = said
    key = KeyStore(dep.home / "api_keys.db").create("adapt test")[1]
    model = VallE2(demo.bundle, demo.codec, dep.gate())
    with TestClient(create_app(model, dep, ServerSettings(rate_limit=0)), raise_server_exceptions=False,
                    headers={"Authorization": f"Bearer {key}"}) as client:
        pid = client.post("/v1/voices/phrases", json={"name": "John Smith"}).json()["phrase_id"]
        said.text = dep.registry.db.phrase(pid)[1]
        consent = np.concatenate([load_audio(p)[0] for p in BDL])
        resp = client.post("/v1/voices", data={"name": "John Smith", "phrase_id": pid},
                           files={"file": ("consent.flac", encode_audio(consent, 16000, "flac"), "audio/flac")})
        assert resp.status_code == 201, resp.text
        vid = resp.json()["voice_id"]
        adapter = adapt_voice(model, BDL, vid, texts=texts()).adapter
        resp = client.post("/v1/audio/speech", json={"model": "valle2", "input": "There was a change now.",
                                                       "voice": vid, "response_format": "wav"})
        assert resp.status_code == 200, resp.text
    prompt_wav, _ = load_audio(CLIPS / adapter.prompt_name)
    last = [e for e in dep.audit.entries() if e["event"] == "authorize"][-1]
    assert last["voice_id"] == vid
    assert abs(last["similarity"] - dep.gate().authorize(vid, prompt_wav, 16000).similarity) < 1e-3
