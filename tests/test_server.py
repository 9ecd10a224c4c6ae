"""The HTTP API: consent protocol, speech streaming, limits, JSON errors, OpenAPI fuzzing, and a
kill -9 during enrolment.

Stand-in transcriber: the fixture recordings cannot say a freshly issued consent phrase, so these
tests set ``deployment.registry.transcriber`` to return the text of the most recently issued
phrase.  Everything else in enrolment (phrase issue, one-time use, name check, wording rule,
watermark liveness check, speaker embedding, signing, audit) runs for real.
"""
from __future__ import annotations

import io
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf
from fastapi.testclient import TestClient

import valle2
from valle2.audio import encode_audio, load_audio
from valle2.safety import detect
from valle2.safety.deployment import Deployment
from valle2.server import ServerSettings, create_app, hash_key, verify_key
from valle2.server.auth import create_key_file, read_key_file
from valle2.server.queue import Busy, WorkQueue

KEY = "test-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}
TEXT = "Will we ever forget it. There was a change now."


def stand_in_transcriber(registry):
    """A transcriber that 'hears' the most recently issued phrase (see the module docstring)."""
    def transcribe(wav, sr):
        return registry.db.query("SELECT text FROM phrases ORDER BY created DESC LIMIT 1")[0][0]
    return transcribe


@pytest.fixture(scope="module")
def server_deployment(tmp_path_factory, clips):
    """A deployment of its own (so the session one keeps its real transcriber) in which the fixture
    clips are an attested research corpus."""
    dep = Deployment.open(tmp_path_factory.mktemp("server_home"))
    dep.registry.attest_corpus("CMU ARCTIC fixtures", [c.path for c in clips], "CMU ARCTIC licence")
    dep.registry.transcriber = stand_in_transcriber(dep.registry)
    return dep


@pytest.fixture(scope="module")
def served_model(tiny_model, server_deployment):
    return valle2.load_model(tiny_model[0], gate=server_deployment.gate())


def make_client(model, dep, **limits) -> TestClient:
    settings = ServerSettings(api_key_hashes=(hash_key(KEY),), **limits)
    return TestClient(create_app(model, dep, settings), raise_server_exceptions=False)


@pytest.fixture(scope="module")
def client(served_model, server_deployment):
    with make_client(served_model, server_deployment) as c:
        yield c


def enroll(client, clip, name="Ada Lovelace"):
    phrase = client.post("/v1/voices/phrases", json={"name": name}, headers=AUTH)
    assert phrase.status_code == 201, phrase.text
    pid = phrase.json()["phrase_id"]
    resp = client.post("/v1/voices", data={"name": name, "phrase_id": pid}, headers=AUTH,
                       files={"file": ("consent.flac", clip.path.read_bytes(), "audio/flac")})
    assert resp.status_code == 201, resp.text
    return resp.json()


def assert_json_error(resp, status):
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"} and body["error"]["message"] and body["error"]["type"]
    assert "Traceback" not in resp.text and 'File "' not in resp.text
    return body["error"]


# ------------------------------------------------------------------------------------------ units
def test_api_keys_are_stored_as_salted_hashes(tmp_path):
    stored = hash_key(KEY)
    assert KEY not in stored and stored.startswith("scrypt$") and stored != hash_key(KEY)
    assert verify_key(KEY, [stored]) and not verify_key(KEY + "x", [stored])
    assert not verify_key(KEY, ["garbage", "scrypt$zz$zz"])
    key = create_key_file(tmp_path / "keys")
    assert (tmp_path / "keys").stat().st_mode & 0o777 == 0o600
    assert key not in (tmp_path / "keys").read_text() and verify_key(key, read_key_file(tmp_path / "keys"))


def test_work_queue_admits_a_bounded_number():
    pool = WorkQueue(workers=1, queue=1, retry_after=7)
    a, b = pool.acquire(), pool.acquire()
    with pytest.raises(Busy) as full:
        pool.acquire()
    assert full.value.retry_after == 7 and not full.value.closed
    a.release()
    a.release()  # idempotent
    c = pool.acquire()
    assert pool.admitted == 2
    b.release(), c.release()
    pool.close()
    with pytest.raises(Busy) as closed:
        pool.acquire()
    assert closed.value.closed


# -------------------------------------------------------------------------------------- endpoints
def test_health_openapi_and_page(client):
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["sample_rate"] == 24000 and health["busy"] == 0
    spec = client.get("/openapi.json").json()
    assert {"/v1/audio/speech", "/v1/voices", "/v1/voices/phrases", "/v1/detect", "/health"} <= set(spec["paths"])
    page = client.get("/")
    assert page.status_code == 200 and "MediaRecorder" in client.get("/static/app.js").text


def test_protected_calls_need_a_valid_key(client):
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic abc"}):
        assert_json_error(client.post("/v1/voices/phrases", json={"name": "Ada"}, headers=headers), 401)
        assert_json_error(client.post("/v1/voices/v_00/revoke", json={}, headers=headers), 401)
        assert_json_error(client.post("/v1/voices", data={"name": "Ada", "phrase_id": "p"}, headers=headers,
                                      files={"file": ("a.wav", b"x")}), 401)


def test_enroll_speak_stream_and_revoke(client, clips, server_deployment):
    voice = enroll(client, clips[0])
    vid = voice["voice_id"]
    assert vid.startswith("v_") and voice["kind"] == "consent" and voice["revoked"] is None
    assert any(v["voice_id"] == vid for v in client.get("/v1/voices").json()["voices"])

    with client.stream("POST", "/v1/audio/speech", json={"model": "valle2", "input": TEXT, "voice": vid}) as resp:
        assert resp.status_code == 200 and resp.headers["content-type"] == "audio/wav"
        assert resp.headers["x-sentences"] == "2"
        chunks = list(resp.iter_bytes())
    body = b"".join(chunks)
    assert body[:4] == b"RIFF" and body[4:8] == b"\xff\xff\xff\xff" and body[40:44] == b"\xff\xff\xff\xff"
    pcm = np.frombuffer(body[44:], dtype="<i2").astype(np.float32) / 32767
    assert pcm.size > 2400 and np.abs(pcm).max() > 0.01
    wav, sr = sf.read(io.BytesIO(body), dtype="float32")   # readers accept the unknown-length header
    assert sr == 24000 and wav.size == pcm.size
    assert detect(pcm, 24000, server_deployment.watermark_key).present

    resp = client.post(f"/v1/voices/{vid}/revoke", json={"reason": "test"}, headers=AUTH)
    assert resp.status_code == 200 and resp.json() == {"voice_id": vid, "revoked": True}
    assert not (server_deployment.home / "voices" / f"{vid}.flac").exists()
    listed = {v["voice_id"]: v for v in client.get("/v1/voices").json()["voices"]}
    assert listed[vid]["revoked"] is not None
    err = assert_json_error(client.post("/v1/audio/speech", json={"model": "valle2", "input": TEXT, "voice": vid}), 403)
    assert "revoked" in err["message"]
    ok, _ = server_deployment.audit.verify()
    assert ok and any(e["event"] == "revoke" and e["voice_id"] == vid for e in server_deployment.audit.entries())


def test_consent_is_checked_on_every_sentence(client, clips, server_deployment):
    """Revoking in the registry (e.g. with the CLI) stops a voice even though its recording is still stored."""
    vid = enroll(client, clips[1], name="Grace Hopper")["voice_id"]
    server_deployment.registry.revoke(vid, "from the CLI")
    err = assert_json_error(client.post("/v1/audio/speech", json={"model": "valle2", "input": TEXT, "voice": vid}), 403)
    assert "revoked" in err["message"]


def test_research_voice_in_every_format(client, clips):
    clip = clips[2]
    resp = client.post("/v1/voices/research", data={"transcript": clip.text}, headers=AUTH,
                       files={"file": (clip.path.name, clip.path.read_bytes(), "audio/flac")})
    assert resp.status_code == 201, resp.text
    assert resp.json()["voice_id"] == clip.path.name and resp.json()["kind"] == "research"
    for fmt, magic, speed in (("flac", b"fLaC", 1.0), ("mp3", None, 0.8), ("opus", b"OggS", 1.5)):
        resp = client.post("/v1/audio/speech", json={"model": "valle2", "input": "It's the aurora borealis.",
                                                     "voice": clip.path.name, "response_format": fmt, "speed": speed})
        assert resp.status_code == 200, resp.text
        if magic:
            assert resp.content.startswith(magic)
        wav, sr = load_audio(resp.content)
        assert wav.size / sr > 0.1, fmt
    noise = encode_audio(np.random.default_rng(0).normal(0, 0.1, 24000), 24000, "wav")
    err = assert_json_error(client.post("/v1/voices/research", data={"transcript": "noise"}, headers=AUTH,
                                        files={"file": ("noise.wav", noise, "audio/wav")}), 403)
    assert "no attested research corpus" in err["message"]
    assert not (Path(client.app.state.service.store.root) / "research" / "noise.wav").exists()


def test_detect_reports_watermark(client, clips, server_deployment):
    plain = client.post("/v1/detect", files={"file": ("clip.flac", clips[0].path.read_bytes())})
    assert plain.status_code == 200 and plain.json()["watermark"]["present"] is False
    # 4 s: with a random deployment key, a 2.2 s clip decoded a wrong payload for 3 keys in 150
    # after the wav round trip, 4 s for none in 150
    wav, sr = load_audio(clips[1].path)
    wav = np.concatenate([wav, load_audio(clips[2].path, sr=sr)[0]])
    marked = valle2.safety.embed(wav, sr, 0x0123, server_deployment.watermark_key)
    report = client.post("/v1/detect", files={"file": ("m.wav", encode_audio(marked, sr, "wav"))}).json()
    assert report["watermark"]["present"] and report["watermark"]["payload"] == 0x0123


@pytest.mark.parametrize("call, status, kind", [
    (lambda c: c.post("/v1/audio/speech", json={"model": "valle2", "voice": "x"}), 422, "invalid_request"),
    (lambda c: c.post("/v1/audio/speech", content=b"{not json", headers={"content-type": "application/json"}),
     422, "invalid_request"),
    (lambda c: c.post("/v1/audio/speech", json={"model": "valle2", "input": "Hi.", "voice": "x",
                                                "response_format": "aiff"}), 422, "invalid_request"),
    (lambda c: c.post("/v1/audio/speech", json={"model": "valle2", "input": "Hi.", "voice": "nobody"}), 404, "not_found"),
    (lambda c: c.post("/v1/audio/speech", json={"model": "gpt-9", "input": "Hi.", "voice": "x"}), 404, "not_found"),
    (lambda c: c.post("/v1/audio/speech", json={"model": "valle2", "input": "Hi.", "voice": "x", "speed": 5.0}),
     422, "invalid_request"),
    (lambda c: c.post("/v1/audio/speech", json={"model": "valle2", "input": "x" * 5000, "voice": "x"}),
     422, "invalid_request"),
    (lambda c: c.post("/v1/detect", files={"file": ("a.wav", b"RIFF not audio at all")}), 400, "invalid_audio"),
    (lambda c: c.post("/v1/detect", files={"file": ("a.wav", b"")}), 400, "invalid_audio"),
    (lambda c: c.post("/v1/detect", files={"file": ("a.wav", encode_audio(np.ones(24000 * 31) * 0.1, 24000))}),
     400, "invalid_audio"),
    (lambda c: c.post("/v1/voices/phrases", json={"name": "R2-D2 <script>"}, headers=AUTH), 400, "invalid_request"),
    (lambda c: c.post("/v1/voices", data={"name": "Ada", "phrase_id": "p_unknown"}, headers=AUTH,
                      files={"file": ("a.flac", b"junk")}), 400, "invalid_audio"),
    (lambda c: c.get("/v1/nothing"), 404, "not_found"),
    (lambda c: c.delete("/health"), 405, "method_not_allowed"),
])
def test_bad_input_gets_a_clear_json_error(client, call, status, kind):
    assert assert_json_error(call(client), status)["type"] == kind


def test_limits_on_text_and_request_size(served_model, server_deployment, clips):
    with make_client(served_model, server_deployment, max_text_chars=20, max_request_bytes=50_000) as c:
        err = assert_json_error(c.post("/v1/audio/speech", json={"model": "valle2", "input": "a" * 21, "voice": "x"}), 400)
        assert "20 limit" in err["message"]
        assert_json_error(c.post("/v1/detect", files={"file": ("a.flac", b"\0" * 60_000)}), 413)

        def chunked():
            for _ in range(10):
                yield b"\0" * 10_000
        assert_json_error(c.post("/v1/audio/speech", content=chunked(), headers={"content-type": "application/json"}), 413)


def test_full_queue_answers_429_with_retry_after(served_model, server_deployment, clips):
    with make_client(served_model, server_deployment, max_workers=1, max_queue=0, retry_after_s=3) as c:
        held = c.app.state.service.queue.acquire()
        resp = c.post("/v1/detect", files={"file": ("a.flac", clips[0].path.read_bytes())})
        assert_json_error(resp, 429)
        assert resp.headers["retry-after"] == "3"
        held.release()
        assert c.post("/v1/detect", files={"file": ("a.flac", clips[0].path.read_bytes())}).status_code == 200


def test_unexpected_failure_is_a_generic_500(served_model, server_deployment, clips, monkeypatch, caplog):
    with make_client(served_model, server_deployment) as c:
        c.post("/v1/voices/research", data={"transcript": clips[3].text}, headers=AUTH,
               files={"file": (clips[3].path.name, clips[3].path.read_bytes())})

        def broken(*args, **kwargs):
            raise RuntimeError("secret internal detail")
        monkeypatch.setattr(c.app.state.service.model, "synthesize", broken)
        resp = c.post("/v1/audio/speech", json={"model": "valle2", "input": "Hi.", "voice": clips[3].path.name})
        err = assert_json_error(resp, 500)
        assert "secret" not in resp.text and err["type"] == "internal_error"
        assert "secret internal detail" in caplog.text   # logged server-side
        assert c.app.state.service.queue.admitted == 0     # the slot was given back


# ------------------------------------------------------------------------------------------ fuzzing
def test_openapi_fuzz_finds_no_server_errors(client):
    """Schemathesis fuzzes every operation in the spec (with a valid key, so protected paths run
    too); no response may be a 5xx or break the spec."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from schemathesis.checks import (content_type_conformance, not_a_server_error, response_schema_conformance,
                                     status_code_conformance)

    schema = schemathesis.openapi.from_asgi("/openapi.json", client.app)
    failures = []
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(max_examples=6, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def check(case):
            resp = case.call(headers=AUTH)
            if resp.status_code >= 500:
                failures.append(f"{case.method} {case.path}: {resp.status_code} {resp.text[:200]}")
            case.validate_response(resp, checks=[not_a_server_error, status_code_conformance,
                                                 content_type_conformance, response_schema_conformance])
        check()
    assert not failures


# ------------------------------------------------------------------------------------- crash safety
LAUNCHER = """
import sys, uvicorn, valle2
from valle2.safety.deployment import Deployment
from valle2.server import ServerSettings, create_app, hash_key
home, model, port, key = sys.argv[1:5]
dep = Deployment.open(home)
dep.registry.transcriber = lambda wav, sr: dep.registry.db.query(
    "SELECT text FROM phrases ORDER BY created DESC LIMIT 1")[0][0]   # stand-in, see test module docstring
app = create_app(valle2.load_model(model, gate=dep.gate()), dep, ServerSettings(api_key_hashes=(hash_key(key),)))
uvicorn.run(app, host="127.0.0.1", port=int(port), log_level="warning")
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(home, model, tmp_path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", LAUNCHER, str(home), str(model), str(port), KEY], env=env,
                            stdout=open(tmp_path / "server.log", "ab"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.5)
        assert proc.poll() is None, (tmp_path / "server.log").read_text()
    proc.kill()
    raise AssertionError("server did not start in 180 s")


def http_enroll(url, clip, name):
    pid = httpx.post(url + "/v1/voices/phrases", json={"name": name}, headers=AUTH, timeout=30).json()["phrase_id"]
    return httpx.post(url + "/v1/voices", data={"name": name, "phrase_id": pid}, headers=AUTH, timeout=120,
                      files={"file": ("c.flac", clip.path.read_bytes())})


def test_kill_9_during_enrolment_leaves_registry_and_audit_intact(tiny_model, clips, tmp_path):
    home = tmp_path / "home"
    Deployment.open(home)
    proc, url = start_server(home, tiny_model[0], tmp_path)
    try:
        tick = time.monotonic()
        assert http_enroll(url, clips[0], "Ada Lovelace").status_code == 201
        took = time.monotonic() - tick
        threading.Thread(target=lambda: _ignore_errors(http_enroll, url, clips[1], "Alan Turing"), daemon=True).start()
        time.sleep(took * 0.8)      # late in the enrolment: signing, the database commit, the audit append
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
    dep = Deployment.open(home)
    ok, bad = dep.audit.verify()
    assert ok, f"audit log broken at line {bad}"
    with sqlite3.connect(home / "registry.db") as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    for meta in (home / "voices").glob("*.json"):     # no voice described without its recording
        assert meta.with_suffix(".flac").exists()
    dep.registry.transcriber = stand_in_transcriber(dep.registry)
    phrase = dep.registry.issue_phrase("Alan Turing")
    wav, sr = load_audio(clips[1].path)
    record = dep.registry.enroll("Alan Turing", wav, sr, phrase.id)
    assert dep.registry.get_record(record.voice_id).signature == record.signature
    assert dep.audit.verify() == (True, None)


def _ignore_errors(fn, *args):
    try:
        fn(*args)
    except httpx.TransportError:
        pass   # the server was killed mid-request, as intended


def test_serve_with_a_missing_model_fails_cleanly_and_creates_no_key(tmp_path, capsys):
    from valle2.cli import main

    rc = main(["serve", "--model", str(tmp_path / "nope.pt"), "--home", str(tmp_path / "home")])
    assert rc == 2 and "nope.pt" in capsys.readouterr().err
    assert not (tmp_path / "home" / "api_keys").exists()
