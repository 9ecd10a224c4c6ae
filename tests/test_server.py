"""The HTTP API: API keys on every call and their scope, consent protocol, speech streaming,
limits, JSON errors, OpenAPI fuzzing, and a kill -9 during enrolment.

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
from types import SimpleNamespace

import av
import httpx
import numpy as np
import pytest
import soundfile as sf
from fastapi.testclient import TestClient

import valle2
from valle2.audio import encode_audio, load_audio
from valle2.safety import detect
from valle2.safety.deployment import Deployment
from valle2.server import KeyStore, ServerSettings, create_app, hash_key, verify_key
from valle2.server.auth import read_key_file
from valle2.server.limits import RateLimiter
from valle2.errors import Busy
from valle2.server.queue import WorkQueue
from valle2.names import shipped_voice
from valle2.server.encoding import MEDIA_TYPES, PCM_RATE, StreamEncoder

TEXT = "Will we ever forget it. There was a change now."


def decode(data: bytes, fmt: str) -> tuple[np.ndarray, int]:
    """A speech response body as mono float ``[samples]`` and its rate: ``pcm`` as OpenAI documents
    it (16-bit little-endian at 24 kHz), any other format with FFmpeg's decoders (PyAV)."""
    if fmt == "pcm":
        return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32767, PCM_RATE
    with av.open(io.BytesIO(data)) as container:
        rate = container.streams.audio[0].rate
        frames = [f.to_ndarray().astype(np.float32).reshape(-1) for f in container.decode(audio=0)]
    return np.concatenate(frames), rate


def bearer(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


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


@pytest.fixture(scope="module")
def keys(server_deployment):
    """The deployment's key store with two user keys (a, b) and an admin key, in clear."""
    store = KeyStore(server_deployment.home / "api_keys.db")
    return SimpleNamespace(store=store, a=store.create("tests A")[1], b=store.create("tests B")[1],
                           admin=store.create("tests admin", admin=True)[1])


def make_client(model, dep, key: str | None = None, **limits) -> TestClient:
    """A client of a new app on ``dep``; ``key`` goes on every request; no rate limit unless given."""
    settings = ServerSettings(**{"rate_limit": 0, **limits})
    return TestClient(create_app(model, dep, settings), raise_server_exceptions=False,
                      headers=bearer(key) if key else None)


@pytest.fixture(scope="module")
def client(served_model, server_deployment, keys):
    """A client sending key a on every request."""
    with make_client(served_model, server_deployment, keys.a) as c:
        yield c


def keyless(client) -> TestClient:
    """A client of the same app that sends no key unless told."""
    return TestClient(client.app, raise_server_exceptions=False)


def enroll(client, clip, name="Ada Lovelace"):
    phrase = client.post("/v1/voices/phrases", json={"name": name})
    assert phrase.status_code == 201, phrase.text
    pid = phrase.json()["phrase_id"]
    resp = client.post("/v1/voices", data={"name": name, "phrase_id": pid},
                       files={"file": ("consent.flac", clip.path.read_bytes(), "audio/flac")})
    assert resp.status_code == 201, resp.text
    return resp.json()


def assert_json_error(resp, status):
    """An error in OpenAI's shape, with no traceback and no file-system path of the server."""
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == "application/json"
    body = resp.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["message"] and body["error"]["type"]
    assert "Traceback" not in resp.text and 'File "' not in resp.text
    assert "/tmp/" not in resp.text and str(Path.home()) + "/" not in resp.text and "/work/" not in resp.text
    return body["error"]


def deployment_state(dep) -> tuple:
    """Everything a refused call must leave as it was: registry rows, audit log, stored voices, keys."""
    db = dep.registry.db
    return (db.query("SELECT * FROM voices ORDER BY id"), db.query("SELECT * FROM phrases ORDER BY id"),
            len(dep.audit.entries()), sorted(str(p.relative_to(dep.home)) for p in (dep.home / "voices").rglob("*")),
            KeyStore(dep.home / "api_keys.db").list(),
            sorted(KeyStore(dep.home / "api_keys.db")._query("SELECT * FROM voice_owners")))


# ------------------------------------------------------------------------------------------ units
def test_api_keys_are_stored_as_salted_hashes(tmp_path):
    key = "test-key-0123456789"
    stored = hash_key(key)
    assert key not in stored and stored.startswith("scrypt$") and stored != hash_key(key)
    assert verify_key(key, [stored]) and not verify_key(key + "x", [stored])
    assert not verify_key(key, ["garbage", "scrypt$zz$zz"])


def test_key_store_hashes_at_rest_shows_keys_once_and_revokes_at_once(tmp_path):
    store = KeyStore(tmp_path / "api_keys.db")
    assert (tmp_path / "api_keys.db").stat().st_mode & 0o777 == 0o600
    row, key = store.create("app one", rate_limit=30, voices=("v_1",))
    secret = key.split("-", 2)[2]
    assert key.startswith(row.prefix + "-") and row.id == "k_" + row.prefix[4:] and len(secret) >= 40
    for path in tmp_path.iterdir():   # only the hash is stored (the database and any WAL file)
        assert secret.encode() not in path.read_bytes()
    assert "key" not in row.public() and row.public()["prefix"] == row.prefix
    assert store.authenticate(key) == row and store.authenticate(key) == row   # the second from the cache
    assert store.authenticate(key[:-1] + ("A" if key[-1] != "A" else "B")) is None   # wrong secret
    assert store.authenticate(row.prefix + "-" + "x" * 43) is None and store.authenticate("") is None
    assert store.owns(row.id, "v_1") and not store.owns(row.id, "v_2") and store.voices_of(row.id) == {"v_1"}
    other, other_key = store.create("app two")
    assert not store.owns(other.id, "v_1")
    assert store.revoke(row.prefix).revoked is not None         # by prefix or id
    assert store.authenticate(key) is None                      # at once, though it was cached
    assert KeyStore(tmp_path / "api_keys.db").authenticate(other_key).id == other.id
    with pytest.raises(valle2.errors.Valle2Error, match="already revoked"):
        store.revoke(row.id)
    with pytest.raises(valle2.errors.Valle2Error, match="no API key"):
        store.get("k_nothing")
    with pytest.raises(valle2.errors.Valle2Error, match="rate limit"):
        store.create("x", rate_limit=-1)
    # hashes of the older key file are imported once, as admin keys
    (tmp_path / "old_keys").write_text("# old\n" + hash_key("v2k_oldstyle-key") + "\n")
    [imported] = store.import_hashes(read_key_file(tmp_path / "old_keys"))
    assert store.import_hashes(read_key_file(tmp_path / "old_keys")) == []
    assert imported.admin and store.authenticate("v2k_oldstyle-key").id == imported.id
    assert store.authenticate("v2k_oldstyle-kez") is None
    assert [k.id for k in store.list(include_revoked=False)] == [other.id, imported.id]


def test_rate_limiter_is_a_token_bucket_per_key():
    now = [0.0]
    limiter = RateLimiter(clock=lambda: now[0])
    assert [limiter.take("a", 3) for _ in range(3)] == [0, 0, 0]    # a minute's worth at once
    wait = limiter.take("a", 3)
    assert wait == pytest.approx(20.0)                                # one token in 60 / 3 s
    assert limiter.take("b", 3) == 0                                  # another key has its own bucket
    now[0] += 20.0
    assert limiter.take("a", 3) == 0 and limiter.take("a", 3) > 0
    assert all(limiter.take("c", 0) == 0 for _ in range(100))         # 0: unlimited
    assert limiter.take("d", 0.5) == 0 and limiter.take("d", 0.5) == pytest.approx(120.0)   # a bucket holds one at least


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


def every_v1_call(voice: str, clip) -> list:
    """One call of each ``/v1/`` operation (and an unknown path), as (method, path, request kwargs)."""
    audio = {"file": (clip.path.name, clip.path.read_bytes(), "audio/flac")}
    return [("POST", "/v1/audio/speech", {"json": {"model": "valle2", "input": TEXT, "voice": voice}}),
            ("GET", "/v1/voices", {}),
            ("POST", "/v1/voices/phrases", {"json": {"name": "Ada Lovelace"}}),
            ("POST", "/v1/voices", {"data": {"name": "Ada Lovelace", "phrase_id": "p_x"}, "files": audio}),
            ("POST", "/v1/voices/research", {"data": {"transcript": clip.text}, "files": audio}),
            ("POST", f"/v1/voices/{voice}/revoke", {"json": {"reason": "x"}}),
            ("POST", "/v1/detect", {"files": audio}),
            ("GET", "/v1/keys", {}), ("POST", "/v1/keys", {"json": {"name": "mine", "admin": True}}),
            ("GET", "/v1/nothing", {})]


def test_every_call_without_a_valid_key_is_401_and_changes_nothing(client, keys, clips, server_deployment):
    """No key, a malformed header, a wrong key, a revoked key: 401 in OpenAI's error shape, no
    audio, and the registry, audit log, voices and keys as they were.  (The report: speech
    answered 200 with audio given no key, and again with a wrong key.)"""
    research = client.post("/v1/voices/research", data={"transcript": clips[3].text},
                           files={"file": (clips[3].path.name, clips[3].path.read_bytes())})
    assert research.status_code == 201, research.text
    voice = research.json()["voice_id"]
    row, revoked = keys.store.create("soon revoked", voices=(voice,))
    assert keyless(client).get("/v1/voices", headers=bearer(revoked)).status_code == 200
    keys.store.revoke(row.id)
    kid, secret = keys.a.split("-")[1], keys.a.split("-", 2)[2]
    bad = {"no key": {}, "basic": {"Authorization": "Basic " + keys.a}, "empty bearer": {"Authorization": "Bearer "},
           "wrong key": bearer("sk-proj-" + "x" * 40), "wrong secret": bearer(f"v2k-{kid}-{secret[::-1]}"),
           "revoked key": bearer(revoked)}
    before = deployment_state(server_deployment)
    anonymous = keyless(client)
    for name, headers in bad.items():
        for method, path, kwargs in every_v1_call(voice, clips[3]):
            resp = anonymous.request(method, path, headers=headers, **kwargs)
            err = assert_json_error(resp, 401)
            assert err["code"] == ("missing_api_key" if name in ("no key", "basic", "empty bearer") else "invalid_api_key")
            assert resp.headers["www-authenticate"].startswith("Bearer"), (name, path)
            assert not resp.content.startswith(b"RIFF") and "audio" not in resp.headers["content-type"]
            assert keys.a not in resp.text and revoked not in resp.text
    assert deployment_state(server_deployment) == before
    speech = anonymous.post("/v1/audio/speech", headers=bearer(keys.a), json={"model": "valle2", "input": "Hi.",
                                                                              "voice": voice, "response_format": "wav"})
    assert speech.status_code == 200 and speech.content[:4] == b"RIFF"   # the same call with the owner's key


def test_a_key_uses_lists_and_revokes_only_its_own_voices(client, keys, clips, server_deployment):
    """Key b asking for key a's voice gets 404, as for a voice that does not exist; nothing changes."""
    vid = enroll(client, clips[2], name="Mary Somerville")["voice_id"]
    other = keyless(client)
    b = bearer(keys.b)
    assert vid not in {v["voice_id"] for v in other.get("/v1/voices", headers=b).json()["voices"]}
    assert vid in {v["voice_id"] for v in client.get("/v1/voices").json()["voices"]}
    before = deployment_state(server_deployment)
    missing = assert_json_error(other.post("/v1/audio/speech", headers=b, json={"model": "valle2", "input": "Hi.",
                                                                                 "voice": "v_0000000000000000"}), 404)
    for resp in (other.post("/v1/audio/speech", headers=b, json={"model": "valle2", "input": TEXT, "voice": vid}),
                 other.post(f"/v1/voices/{vid}/revoke", headers=b, json={"reason": "not mine"})):
        err = assert_json_error(resp, 404)
        assert err["message"] == missing["message"].replace("v_0000000000000000", vid)   # indistinguishable
        assert not resp.content.startswith(b"RIFF")
    admin = assert_json_error(other.post("/v1/audio/speech", headers=bearer(keys.admin),
                                         json={"model": "valle2", "input": "Hi.", "voice": vid}), 404)
    assert admin["type"] == "not_found"      # an admin key manages keys; it does not get others' voices
    assert deployment_state(server_deployment) == before
    assert server_deployment.registry.db.voice(vid)[2] is None      # still not revoked
    assert (server_deployment.home / "voices" / f"{vid}.flac").exists()
    # the operator grants the voice to key b (`valle2 keys grant`): now b may use it
    keys.store.grant(keys.store.authenticate(keys.b).id, vid)
    assert vid in {v["voice_id"] for v in other.get("/v1/voices", headers=b).json()["voices"]}
    resp = other.post("/v1/audio/speech", headers=b, json={"model": "valle2", "input": "Hi.", "voice": vid,
                                                           "response_format": "wav"})
    assert resp.status_code == 200 and resp.content[:4] == b"RIFF"


def test_a_research_file_sent_byte_for_byte_is_shared_not_leaked(client, keys, clips):
    clip = clips[0]
    mine = client.post("/v1/voices/research", data={"transcript": clip.text},
                       files={"file": (clip.path.name, clip.path.read_bytes())})
    assert mine.status_code == 201, mine.text
    other = keyless(client)
    b = bearer(keys.b)
    wav, sr = load_audio(clip.path)
    changed = encode_audio(wav * 0.5, sr, "flac")   # the same name, other audio
    err = assert_json_error(other.post("/v1/voices/research", headers=b, data={"transcript": clip.text},
                                       files={"file": (clip.path.name, changed)}), 400)
    assert "already exists" in err["message"]
    assert clip.path.name not in {v["voice_id"] for v in other.get("/v1/voices", headers=b).json()["voices"]}
    same = other.post("/v1/voices/research", headers=b, data={"transcript": clip.text},
                      files={"file": (clip.path.name, clip.path.read_bytes())})
    assert same.status_code == 201 and same.json()["voice_id"] == clip.path.name
    assert clip.path.name in {v["voice_id"] for v in other.get("/v1/voices", headers=b).json()["voices"]}


def test_key_over_its_rate_limit_gets_429_with_retry_after(served_model, server_deployment, keys):
    row, slow = keys.store.create("slow key", rate_limit=1)
    with make_client(served_model, server_deployment, keys.a, rate_limit=3) as c:
        assert [c.get("/v1/voices").status_code for _ in range(3)] == [200] * 3
        resp = c.get("/v1/voices")
        err = assert_json_error(resp, 429)
        assert err["code"] == "rate_limit_exceeded" and 1 <= int(resp.headers["retry-after"]) <= 20
        assert c.get("/health").status_code == 200                          # public calls are not counted
        assert c.get("/v1/voices", headers=bearer(keys.b)).status_code == 200  # each key has its own
        s = [c.get("/v1/voices", headers=bearer(slow)) for _ in range(2)]   # a key's own limit wins
        assert s[0].status_code == 200 and s[1].status_code == 429 and int(s[1].headers["retry-after"]) >= 30


def test_admin_key_manages_keys_over_http(client, keys, server_deployment):
    other = keyless(client)
    err = assert_json_error(client.get("/v1/keys"), 403)       # key a is no admin key
    assert err["type"] == "permission_denied"
    assert_json_error(client.post("/v1/keys", json={"name": "x"}), 403)
    admin = bearer(keys.admin)
    made = other.post("/v1/keys", headers=admin, json={"name": "partner app", "rate_limit": 120})
    assert made.status_code == 201, made.text
    new = made.json()
    assert new["key"].startswith(new["prefix"] + "-") and not new["admin"] and new["rate_limit"] == 120
    listed = other.get("/v1/keys", headers=admin)
    assert new["id"] in {k["id"] for k in listed.json()["keys"]} and new["key"] not in listed.text
    assert "key" not in listed.json()["keys"][0] and keys.a not in listed.text
    assert [v["voice_id"] for v in other.get("/v1/voices", headers=bearer(new["key"])).json()["voices"]] == ["demo"]
    revoked = other.post(f"/v1/keys/{new['id']}/revoke", headers=admin)
    assert revoked.status_code == 200 and revoked.json()["revoked"] is not None
    assert_json_error(other.get("/v1/voices", headers=bearer(new["key"])), 401)   # at once
    assert_json_error(other.post(f"/v1/keys/{new['id']}/revoke", headers=admin), 400)
    assert_json_error(other.post("/v1/keys/k_000000000000/revoke", headers=admin), 404)
    events = [(e["event"], e.get("key_id")) for e in server_deployment.audit.entries()]
    assert ("api_key_create", new["id"]) in events and ("api_key_revoke", new["id"]) in events
    assert new["key"] not in server_deployment.audit.path.read_text()


def test_no_auth_serves_one_local_user(served_model, server_deployment, clips):
    with make_client(served_model, server_deployment, auth=False) as c:
        voices = c.get("/v1/voices")
        assert voices.status_code == 200
        assert [v["voice_id"] for v in voices.json()["voices"]] == ["demo"] + [v.voice_id for v in c.app.state.service.store.all()]
        assert c.post("/v1/detect", files={"file": ("a.flac", clips[0].path.read_bytes())}).status_code == 200
        assert_json_error(c.get("/v1/keys"), 403)


def test_enroll_speak_stream_and_revoke(client, clips, server_deployment):
    voice = enroll(client, clips[0])
    vid = voice["voice_id"]
    assert vid.startswith("v_") and voice["kind"] == "consent" and voice["revoked"] is None
    assert any(v["voice_id"] == vid for v in client.get("/v1/voices").json()["voices"])

    with client.stream("POST", "/v1/audio/speech", json={"model": "valle2", "input": TEXT, "voice": vid,
                                                         "response_format": "wav"}) as resp:
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

    resp = client.post(f"/v1/voices/{vid}/revoke", json={"reason": "test"})
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
    resp = client.post("/v1/voices/research", data={"transcript": clip.text},
                       files={"file": (clip.path.name, clip.path.read_bytes(), "audio/flac")})
    assert resp.status_code == 201, resp.text
    assert resp.json()["voice_id"] == clip.path.name and resp.json()["kind"] == "research"
    for fmt, magic, speed in (("flac", b"fLaC", 1.0), ("mp3", b"\xff", 0.8), ("opus", b"OggS", 1.5),
                              ("aac", b"\xff", 1.0), ("wav", b"RIFF", 1.0), ("pcm", b"", 1.0)):
        resp = client.post("/v1/audio/speech", json={"model": "tts-1", "input": "It's the aurora borealis. Is it?",
                                                     "voice": clip.path.name, "response_format": fmt, "speed": speed})
        assert resp.status_code == 200, resp.text
        assert resp.headers["content-type"] == MEDIA_TYPES[fmt] and resp.content.startswith(magic)
        wav, sr = decode(resp.content, fmt)
        assert wav.size / sr > 0.1 and np.abs(wav).max() > 0.01, fmt
    noise = encode_audio(np.random.default_rng(0).normal(0, 0.1, 24000), 24000, "wav")
    err = assert_json_error(client.post("/v1/voices/research", data={"transcript": "noise"},
                                        files={"file": ("noise.wav", noise, "audio/wav")}), 403)
    assert "no attested research corpus" in err["message"]
    assert not (Path(client.app.state.service.store.root) / "research" / "noise.wav").exists()


def test_detect_reports_watermark(client, clips, server_deployment):
    plain = client.post("/v1/detect", files={"file": ("clip.flac", clips[0].path.read_bytes())})
    assert plain.status_code == 200 and plain.json()["watermark"]["present"] is False
    assert plain.json()["watermark"]["note"] is None
    wav, sr = load_audio(clips[0].path)
    short = client.post("/v1/detect", files={"file": ("short.wav", encode_audio(wav[: sr // 2], sr, "wav"))}).json()
    assert not short["watermark"]["present"] and "under 1.25 s" in short["watermark"]["note"]
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
    (lambda c: c.post("/v1/audio/speech", json={"model": "valle2", "input": "Hi.", "voice": "x", "speed": 5.0}),
     422, "invalid_request"),
    (lambda c: c.post("/v1/audio/speech", json={"model": "valle2", "input": "x" * 5000, "voice": "x"}),
     422, "invalid_request"),
    (lambda c: c.post("/v1/detect", files={"file": ("a.wav", b"RIFF not audio at all")}), 400, "invalid_audio"),
    (lambda c: c.post("/v1/detect", files={"file": ("a.wav", b"")}), 400, "invalid_audio"),
    (lambda c: c.post("/v1/detect", files={"file": ("a.wav", encode_audio(np.ones(24000 * 31) * 0.1, 24000))}),
     400, "invalid_audio"),
    (lambda c: c.post("/v1/voices/phrases", json={"name": "R2-D2 <script>"}), 400, "invalid_request"),
    (lambda c: c.post("/v1/voices", data={"name": "Ada", "phrase_id": "p_unknown"},
                      files={"file": ("a.flac", b"junk")}), 400, "invalid_audio"),
    (lambda c: c.get("/v1/nothing"), 404, "not_found"),
    (lambda c: c.delete("/health"), 405, "method_not_allowed"),
])
def test_bad_input_gets_a_clear_json_error(client, call, status, kind):
    assert assert_json_error(call(client), status)["type"] == kind


def test_openai_model_names_are_the_served_model_and_others_are_named(client):
    for name in ("tts-1", "tts-1-hd", "gpt-4o-mini-tts", "valle2"):
        resp = client.post("/v1/audio/speech", json={"model": name, "input": "Hi.", "voice": "demo", "response_format": "pcm"})
        assert resp.status_code == 200 and len(resp.content) > 2400, (name, resp.text)
    err = assert_json_error(client.post("/v1/audio/speech", json={"model": "gpt-9", "input": "Hi.", "voice": "demo"}), 404)
    assert err["code"] == "model_not_found" and "'gpt-9'" in err["message"]
    assert all(name in err["message"] for name in ("tts-1", "tts-1-hd", "gpt-4o-mini-tts", "valle2"))


def test_demo_voice_is_listed_and_usable_by_every_key_and_revocable_by_none(client, keys, server_deployment):
    for key in (keys.a, keys.b):
        listed = client.get("/v1/voices", headers=bearer(key)).json()["voices"]
        assert listed[0]["voice_id"] == "demo" and listed[0]["kind"] == "shipped" and listed[0]["revoked"] is None
        resp = client.post("/v1/audio/speech", headers=bearer(key),
                           json={"model": "tts-1", "input": "Gad, your letter came.", "voice": "demo", "response_format": "wav"})
        assert resp.status_code == 200 and resp.content[:4] == b"RIFF"
    before = deployment_state(server_deployment)
    err = assert_json_error(client.post("/v1/voices/demo/revoke", json={"reason": "mine"}), 403)
    assert "no key may revoke" in err["message"] and "--no-demo-voice" in err["message"]
    clip = shipped_voice("demo").clip
    err = assert_json_error(client.post("/v1/voices/research", data={"transcript": "x"},
                                        files={"file": ("demo", clip.read_bytes(), "audio/flac")}), 400)
    assert "already exists" in err["message"]
    assert deployment_state(server_deployment) == before
    with make_client(client.app.state.service.model, server_deployment, keys.a, shipped_voices=()) as c:
        assert all(v["voice_id"] != "demo" for v in c.get("/v1/voices").json()["voices"])
        assert_json_error(c.post("/v1/audio/speech", json={"model": "tts-1", "input": "Hi.", "voice": "demo"}), 404)


def test_the_watermark_survives_every_format_streamed_sentence_by_sentence(clips):
    """A marked 4.4 s clip (as long as test_detect_reports_watermark needs for a right payload),
    fed as two 'sentences' to one StreamEncoder per format: the decoded stream holds the whole
    utterance and its mark, for the lossy formats (mp3, aac and opus at 64 kbit/s: documented to
    survive in docs/watermark.md) too; at 16 kHz (the demo model's rate) pcm is resampled to 24 kHz."""
    key = os.urandom(32)
    for rate in (24000, 16000):
        wav = np.concatenate([load_audio(c.path, sr=rate)[0] for c in clips[1:3]])
        parts = np.array_split(valle2.safety.embed(wav, rate, 0x0123, key), 2)
        for fmt in MEDIA_TYPES:
            encoder = StreamEncoder(fmt, rate)
            chunks = [encoder.feed(parts[0]), encoder.feed(parts[1]), encoder.close()]
            assert all(chunks[:2]), (fmt, rate)     # each sentence yields bytes as soon as it is fed
            out, sr = decode(b"".join(chunks), fmt)
            assert sr == {"pcm": PCM_RATE, "opus": 48000}.get(fmt, rate), (fmt, sr)   # Opus decoders run at 48 kHz
            assert abs(out.size / sr - wav.size / rate) < 0.15, (fmt, rate)   # + the encoder delay, padding
            found = detect(out, sr, key)
            assert found.present and found.payload == 0x0123, (fmt, rate)


def test_limits_on_text_and_request_size(served_model, server_deployment, clips, keys):
    with make_client(served_model, server_deployment, keys.a, max_text_chars=20, max_request_bytes=50_000) as c:
        err = assert_json_error(c.post("/v1/audio/speech", json={"model": "valle2", "input": "a" * 21, "voice": "x"}), 400)
        assert "20 limit" in err["message"]
        assert_json_error(c.post("/v1/detect", files={"file": ("a.flac", b"\0" * 60_000)}), 413)

        def chunked():
            for _ in range(10):
                yield b"\0" * 10_000
        assert_json_error(c.post("/v1/audio/speech", content=chunked(), headers={"content-type": "application/json"}), 413)


def test_full_queue_answers_429_with_retry_after(served_model, server_deployment, clips, keys):
    with make_client(served_model, server_deployment, keys.a, max_workers=1, max_queue=0, retry_after_s=3) as c:
        held = c.app.state.service.queue.acquire()
        resp = c.post("/v1/detect", files={"file": ("a.flac", clips[0].path.read_bytes())})
        assert_json_error(resp, 429)
        assert resp.headers["retry-after"] == "3"
        held.release()
        assert c.post("/v1/detect", files={"file": ("a.flac", clips[0].path.read_bytes())}).status_code == 200


def test_unexpected_failure_is_a_generic_500(served_model, server_deployment, clips, monkeypatch, caplog, keys):
    with make_client(served_model, server_deployment, keys.b) as c:
        c.post("/v1/voices/research", data={"transcript": clips[3].text},
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
def test_openapi_fuzz_finds_no_server_errors(client, keys):
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
            resp = case.call(headers=bearer(keys.a))
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
from valle2.server import ServerSettings, create_app
home, model, port = sys.argv[1:4]
dep = Deployment.open(home)
dep.registry.transcriber = lambda wav, sr: dep.registry.db.query(
    "SELECT text FROM phrases ORDER BY created DESC LIMIT 1")[0][0]   # stand-in, see test module docstring
app = create_app(valle2.load_model(model, gate=dep.gate()), dep, ServerSettings())   # keys of <home>/api_keys.db
uvicorn.run(app, host="127.0.0.1", port=int(port), log_level="warning")
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(home, model, tmp_path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    return launch([sys.executable, "-c", LAUNCHER, str(home), str(model), str(port)], port, tmp_path / "server.log")


def launch(argv: list[str], port: int, log_path: Path, env: dict | None = None) -> tuple[subprocess.Popen, str]:
    """Run the server command ``argv`` (listening on ``port``, output to ``log_path``) until
    ``/health`` answers; the process and the server's URL."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    with open(log_path, "ab") as log:   # the server has its own copy of the descriptor
        proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.5)
        assert proc.poll() is None, log_path.read_text()
    proc.kill()
    raise AssertionError("server did not start in 180 s")


def http_enroll(url, clip, name, key):
    pid = httpx.post(url + "/v1/voices/phrases", json={"name": name}, headers=bearer(key), timeout=30).json()["phrase_id"]
    return httpx.post(url + "/v1/voices", data={"name": name, "phrase_id": pid}, headers=bearer(key), timeout=120,
                      files={"file": ("c.flac", clip.path.read_bytes())})


def test_kill_9_during_enrolment_leaves_registry_and_audit_intact(tiny_model, clips, tmp_path):
    home = tmp_path / "home"
    Deployment.open(home)
    key = KeyStore(home / "api_keys.db").create("kill test")[1]
    proc, url = start_server(home, tiny_model[0], tmp_path)
    try:
        tick = time.monotonic()
        assert http_enroll(url, clips[0], "Ada Lovelace", key).status_code == 201
        took = time.monotonic() - tick
        threading.Thread(target=lambda: _ignore_errors(http_enroll, url, clips[1], "Alan Turing", key),
                         daemon=True).start()
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
    from valle2.commands import main

    rc = main(["serve", "--model", str(tmp_path / "nope.pt"), "--home", str(tmp_path / "home")])
    assert rc == 2 and "nope.pt" in capsys.readouterr().err
    assert not (tmp_path / "home" / "api_keys.db").exists()


def test_serve_refuses_no_auth_off_loopback_and_warns_on_it(tiny_model, tmp_path, capsys, monkeypatch):
    import uvicorn

    from valle2.commands import main

    served = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: served.append((app, kw)))
    home = str(tmp_path / "home")
    for host in ("0.0.0.0", "::", "192.0.2.7"):
        assert main(["serve", "--model", str(tiny_model[0]), "--home", home, "--no-auth", "--host", host]) == 2
        err = capsys.readouterr().err
        assert "--no-auth" in err and "loopback" in err and "Traceback" not in err
    assert not served and not (tmp_path / "home" / "api_keys.db").exists()
    assert main(["serve", "--model", str(tiny_model[0]), "--home", home, "--no-auth", "--host", "localhost"]) == 0
    assert "WARNING: --no-auth" in capsys.readouterr().err
    assert served[-1][1]["host"] == "localhost" and KeyStore(tmp_path / "home" / "api_keys.db").list() == []
    anonymous = TestClient(served[-1][0])
    assert anonymous.get("/v1/voices").status_code == 200


def test_serve_makes_a_first_admin_key_once_and_imports_the_old_key_file(tiny_model, tmp_path, capsys, monkeypatch):
    import uvicorn

    from valle2.commands import main

    served = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: served.append(app))
    home = tmp_path / "home"
    args = ["serve", "--model", str(tiny_model[0]), "--home", str(home), "--rate-limit", "60/h"]
    assert main(args) == 0
    err = capsys.readouterr().err
    key = err.split("keep it secret): ")[1].split()[0]
    assert KeyStore(home / "api_keys.db").authenticate(key).admin
    assert main(args) == 0 and "created admin API key" not in capsys.readouterr().err   # only on the first start
    c = TestClient(served[-1])
    assert c.get("/v1/keys", headers=bearer(key)).status_code == 200
    limited = c.get("/v1/voices", headers=bearer(key))         # 60/h: one request a minute
    assert limited.status_code == 429 and 30 <= int(limited.headers["retry-after"]) <= 60
    (home / "api_keys").write_text(hash_key("v2k_old-style-key-0123") + "\n")
    assert main(args) == 0 and "imported an admin key" in capsys.readouterr().err
    assert TestClient(served[-1]).get("/v1/keys", headers=bearer("v2k_old-style-key-0123")).status_code == 200
    with pytest.raises(SystemExit):
        main(args[:-2] + ["--rate-limit", "fast"])
    assert "--rate-limit" in capsys.readouterr().err


def test_serve_with_no_model_serves_the_demo_model_and_demo_voice(tmp_path, monkeypatch):
    import uvicorn

    from valle2.commands import main

    served = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: served.append(app))
    home = str(tmp_path / "home")
    assert main(["serve", "--home", home]) == 0
    svc = served[-1].state.service
    assert svc.settings.model_names == ("demo", "valle2", "tts-1", "tts-1-hd", "gpt-4o-mini-tts")
    assert list(svc.shipped) == ["demo"] and svc.audio_path(svc.shipped["demo"]) == shipped_voice("demo").clip
    assert TestClient(served[-1]).get("/health").json()["model"] == "demo"
    assert main(["serve", "--home", home, "--no-demo-voice"]) == 0 and served[-1].state.service.shipped == {}


def test_keys_cli_creates_lists_grants_and_revokes(tmp_path, capsys, monkeypatch, clips):
    from valle2.commands import main

    monkeypatch.setenv("VALLE2_HOME", str(tmp_path / "home"))
    assert main(["keys", "create", "--name", "partner app", "--rate-limit", "30/min"]) == 0
    out = capsys.readouterr().out
    key = out.strip().splitlines()[1]
    store = KeyStore(tmp_path / "home" / "api_keys.db")
    row = store.authenticate(key)
    assert row.name == "partner app" and row.rate_limit == 30 and not row.admin
    assert main(["keys", "list"]) == 0
    listing = capsys.readouterr().out
    assert row.id in listing and row.prefix in listing and key not in listing and key.split("-", 2)[2] not in listing
    assert main(["keys", "grant", row.id, "v_nobody"]) == 2
    assert "no voice 'v_nobody'" in capsys.readouterr().err
    dep = Deployment.open(tmp_path / "home")
    dep.registry.transcriber = stand_in_transcriber(dep.registry)
    phrase = dep.registry.issue_phrase("Ada Lovelace")
    wav, sr = load_audio(clips[0].path)
    vid = dep.registry.enroll("Ada Lovelace", wav, sr, phrase.id).voice_id   # enrolled with the CLI's code path
    assert main(["keys", "grant", row.prefix, vid]) == 0
    assert "no prompt recording" in capsys.readouterr().out and store.owns(row.id, vid)
    assert main(["keys", "revoke", row.id]) == 0 and store.authenticate(key) is None
    capsys.readouterr()
    assert main(["keys", "revoke", row.id]) == 2 and "already revoked" in capsys.readouterr().err
    assert main(["keys", "list", "--json", "--all"]) == 0
    [listed] = __import__("json").loads(capsys.readouterr().out)
    assert listed["revoked"] is not None and listed["voices"] == [vid] and "key" not in listed
    events = [e["event"] for e in dep.audit.entries()]
    assert {"api_key_create", "api_key_grant", "api_key_revoke"} <= set(events)
    assert key not in dep.audit.path.read_text()
    for bad in (["keys", "create", "--name", "<script>"], ["keys", "revoke", "nonsense"]):
        assert main(bad) == 2 and "Traceback" not in capsys.readouterr().err
