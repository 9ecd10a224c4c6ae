"""C2PA provenance manifests on outputs: signed by the deployment, tied to the audit log, tamper-evident."""
import json

import numpy as np
import pytest
import soundfile as sf

from valle2.audio import encode_audio, load_audio
from valle2.commands import main
from valle2.safety import detect
from valle2.errors import ProvenanceError
from valle2.safety.provenance import ProvenanceSigner, read_provenance, synthesis_assertion


def test_cli_output_carries_a_valid_manifest_tied_to_the_audit_log(tiny_model, clips, deployment, tmp_path, capsys):
    path, _, _, _ = tiny_model
    out = tmp_path / "signed.wav"
    rc = main(["synthesize", "--model", str(path), "--prompt", str(clips[1].path), "--text", clips[1].text,
               "--mode", "continuation", "--prompt-seconds", "1", "--include-prompt", "--out", str(out), "--seed", "0",
               "--c2pa"])
    assert rc == 0 and "C2PA" in capsys.readouterr().out
    report = read_provenance(out.read_bytes(), "wav")
    assert report["state"] == "Valid" and report["problems"] == [] and report["ai_generated"]
    entry = next(e for e in deployment.audit.entries() if e.get("seq") == report["synthesis"]["audit_seq"])
    assert entry["event"] == "synthesis" and entry["output_sha256"] == report["synthesis"]["output_sha256"]
    assert report["synthesis"]["payload"] == entry["payload"] and report["synthesis"]["corpus_id"] == entry["corpus_id"]
    assert len(report["synthesis"]["model_sha256"]) == 64
    wav, sr = load_audio(out)                       # the manifest chunk does not disturb reading or the mark
    assert detect(wav, sr, deployment.watermark_key).payload == entry["payload"]

    rc = main(["detect", str(out), "--json"])
    shown = json.loads(capsys.readouterr().out)
    assert rc == 1                                  # exit 1: synthesized (this deployment's watermark)
    assert shown["provenance"]["state"] == "Valid" and shown["provenance"]["synthesis"] == report["synthesis"]


@pytest.mark.parametrize("fmt", ["wav", "flac", "mp3"])
def test_manifest_round_trip_and_tampering(tmp_path, fmt):
    signer = ProvenanceSigner.open(tmp_path)
    assert oct((tmp_path / "c2pa" / "signer.key").stat().st_mode & 0o777) == "0o600"
    data = encode_audio(np.sin(np.arange(16000) * 0.05).astype(np.float32) * 0.3, 16000, fmt)
    assert read_provenance(data, fmt) is None
    signed = signer.sign(data, fmt, {"voice_id": "v_1", "payload": 7})
    ok = read_provenance(signed, fmt)
    assert ok["state"] == "Valid" and ok["synthesis"] == {"voice_id": "v_1", "payload": 7}
    assert ok["signer"] == "valle2 synthesis signer"
    tampered = bytearray(signed)
    tampered[signed.index(data[-300:-200]) + 50] ^= 0xFF   # one byte of the audio itself
    bad = read_provenance(bytes(tampered), fmt)
    assert bad["state"] == "Invalid" and bad["problems"]
    assert ProvenanceSigner.open(tmp_path).cert_chain == signer.cert_chain   # the chain is made once


def test_refusals(tiny_model, clips, deployment, tmp_path, capsys):
    with pytest.raises(ProvenanceError, match="not 'ogg'"):
        ProvenanceSigner.open(tmp_path).sign(b"OggS", "ogg", {})
    with pytest.raises(ProvenanceError, match="manifests go only on valle2 outputs"):
        synthesis_assertion(deployment.audit, sf.read(clips[0].path, dtype="float32")[0])
    path, _, _, _ = tiny_model
    rc = main(["synthesize", "--model", str(path), "--prompt", str(clips[1].path), "--text", "Hi.", "--out",
               str(tmp_path / "x.ogg"), "--c2pa"])
    assert rc == 2 and "not 'ogg'" in capsys.readouterr().err and not (tmp_path / "x.ogg").exists()
