"""The FastAPI app: ``create_app(model, deployment, settings)``.

Routes (OpenAPI at ``/openapi.json``; the interactive docs pages are off because they load
scripts from a CDN).  Every ``/v1/`` call needs an API key (``Authorization: Bearer <key>``,
:mod:`valle2.server.access`), and a key uses, lists and revokes only its own voices: those
enrolled or registered with it, or granted to it (``valle2 keys grant``), and the voices shipped
in the package (``"demo"``), which every key lists and uses.  Another key's voice answers 404, as
a voice that does not exist.

- ``POST /v1/audio/speech``: OpenAI's speech request (the official ``openai`` client works
  unchanged): every ``response_format``, streamed sentence by sentence.
- ``POST /v1/voices/phrases``, ``POST /v1/voices``, ``POST /v1/voices/{id}/revoke``,
  ``POST /v1/voices/research``, ``GET /v1/voices``: the consent protocol and the key's voices.
- ``POST /v1/detect``: the watermark and synthesized-speech classifier report on an uploaded file.
- ``GET /v1/keys``, ``POST /v1/keys``, ``POST /v1/keys/{id}/revoke``: key management (admin keys).
- ``GET /health``; ``GET /`` the web page (``static/``): no key.

CPU-heavy work (synthesis, enrolment, detection) runs in the bounded :class:`WorkQueue`.
"""
from __future__ import annotations

import hashlib
import logging
from contextlib import asynccontextmanager
from pathlib import Path

import numpy as np
from fastapi import Depends, FastAPI, File, Form, Request, UploadFile
from fastapi.responses import FileResponse, StreamingResponse
from fastapi.security import HTTPBearer
from fastapi.staticfiles import StaticFiles
from starlette.background import BackgroundTask

from ..audio import AudioFile, load_audio
from ..errors import BadRequest, ConsentError, KeyStoreError, NotFound, PermissionDenied
from ..names import shipped_voice
from ..safety import detect, validate_name
from ..safety.report import classifier_report, verdict, watermark_report
from ..safety.deployment import Deployment
from ..synthesis import MAX_PROMPT_SECONDS, VallE2
from ..text import split_sentences
from .access import KeyAuth, Principal, principal_of
from .encoding import MEDIA_TYPES, StreamEncoder
from .errors import UnknownModel, install_error_handlers
from .keys import ApiKey, KeyStore
from .limits import BodySizeLimit
from .queue import Slot, WorkQueue
from .schemas import (ApiKeyCreate, ApiKeyCreated, ApiKeyInfo, ApiKeyList, ClassifierReport, DetectResponse,
                      ErrorResponse, Health, PhraseRequest, PhraseResponse, RevokeRequest, RevokeResponse,
                      SpeechRequest, Voice, VoiceList, WatermarkReport)
from .settings import ServerSettings
from .voices import StoredVoice, VoiceStore

STATIC = Path(__file__).resolve().parent / "static"
log = logging.getLogger("valle2.server")


def _errors(*codes: int) -> dict:
    return {c: {"model": ErrorResponse} for c in codes}


COMMON_ERRORS = _errors(400, 401, 413, 422, 429, 500, 503)


class Service:
    """What the routes share: model, deployment, voice store, key store, queue and limits."""

    def __init__(self, model: VallE2, deployment: Deployment, settings: ServerSettings, keys: KeyStore):
        self.model, self.deployment, self.settings, self.keys = model, deployment, settings, keys
        self.store = VoiceStore(deployment.home)
        self.queue = WorkQueue(settings.max_workers, settings.max_queue, settings.retry_after_s)
        self.shipped = {name: self._shipped(name) for name in settings.shipped_voices}

    def _shipped(self, name: str) -> StoredVoice:
        """A voice shipped in the package, its attestation imported (signature checked) so the
        gate passes its clip as any attested corpus file."""
        voice = shipped_voice(name)
        attestation = self.deployment.registry.import_attestation_file(voice.attestation)
        return StoredVoice(name, f"{name}: {attestation.name}, speaker {voice.speaker}", "shipped",
                           attestation.created, str(voice.clip), voice.text)

    def voice_for(self, who: Principal, voice_id: str) -> StoredVoice:
        """``voice_id`` if ``who`` may use it; another key's voice is :class:`NotFound`, as one
        that does not exist, so a key cannot learn which voices others have."""
        if voice_id in self.shipped:
            return self.shipped[voice_id]
        if not who.local and not self.keys.owns(who.key_id, voice_id):
            raise NotFound(f"voice {voice_id!r} does not exist on this server")
        return self.store.get(voice_id)

    def voices_of(self, who: Principal) -> list[StoredVoice]:
        """The shipped voices, then those of the key (every stored voice with auth off)."""
        voices = self.store.all()
        if not who.local:
            mine = self.keys.voices_of(who.key_id)
            voices = [v for v in voices if v.voice_id in mine]
        return list(self.shipped.values()) + voices

    def audio_path(self, voice: StoredVoice) -> Path:
        """The prompt recording of ``voice``: a shipped voice's clip in the package, or the store's copy."""
        return Path(voice.audio) if voice.kind == "shipped" else self.store.audio_path(voice)

    def audit_key(self, event: str, key: ApiKey, by: Principal | None, **fields) -> None:
        """Log a key-management event (never the key, only its id and prefix)."""
        self.deployment.audit.append(event, key_id=key.id, key_prefix=key.prefix, key_name=key.name,
                                     admin=key.admin, by=(by.key_id if by else "http"), **fields)

    def voice_info(self, v: StoredVoice) -> Voice:
        """The public description of a stored voice, with its revocation read from the registry now."""
        row = self.deployment.registry.db.voice(v.voice_id) if v.kind == "consent" else None
        return Voice(voice_id=v.voice_id, name=v.name, kind=v.kind, created=v.created, revoked=row[2] if row else None)

    def load_upload(self, data: bytes, allow_silent: bool = False, max_seconds: float | None = None):
        """Decode uploaded file bytes to mono float, within the audio length limit."""
        limit = self.settings.max_audio_seconds if max_seconds is None else max_seconds
        return load_audio(data, max_seconds=limit, allow_silent=allow_silent)

    def synthesize(self, text: str, voice: StoredVoice, speed: float = 1.0) -> np.ndarray:
        """One sentence in ``voice`` (its stored recording as the cross-mode prompt; an adapted voice,
        ``valle2 voice adapt``, its adapter's), watermarked."""
        if voice.kind == "consent":   # a revoked voice is refused as such, though its recording is gone
            registry = self.deployment.registry
            registry.verify_record(registry.get_record(voice.voice_id))
            if registry.adapter(voice.voice_id) is not None:
                return self.model.synthesize(text, voice_id=voice.voice_id, mode="cross", speed=speed)[0]
        path = self.audio_path(voice)
        if not path.is_file():
            raise NotFound(f"voice {voice.voice_id!r} has no prompt recording on this server")
        prompt = AudioFile.read(path)          # read once: the gate hashes and decodes these same bytes
        wav, sr = prompt.load()
        consent = {"voice_id": voice.voice_id} if voice.kind == "consent" else {"corpus_file": prompt}
        out, _ = self.model.synthesize(text, wav, sr, prompt_text=voice.prompt_text, mode="cross", speed=speed,
                                       **consent)
        return out


def _check_speech(svc: Service, req: SpeechRequest) -> list[str]:
    if req.model not in svc.settings.model_names:
        raise UnknownModel(f"model {req.model!r} is not served here; use one of {', '.join(svc.settings.model_names)} "
                           "(all name the one model this server runs)")
    if len(req.input) > svc.settings.max_text_chars:
        raise BadRequest(f"input is {len(req.input)} characters, more than the {svc.settings.max_text_chars} limit")
    sentences = [s for s in split_sentences(req.input) if s.strip()]
    if not sentences:
        raise BadRequest("input has no text to speak")
    return sentences


def _audio_stream(svc: Service, slot: Slot, first: np.ndarray, rest: list[str], voice: StoredVoice, fmt: str,
                  speed: float):
    """The response body: ``first`` (the first sentence, synthesized before the response began, so
    that a refusal is still a JSON error) and then each sentence of ``rest`` as soon as it is
    synthesized, watermarked and encoded."""
    encoder = StreamEncoder(fmt, svc.model.sample_rate)

    async def chunks():
        yield await slot.run(encoder.feed, first)
        for sentence in rest:
            yield await slot.run(encoder.feed, await slot.run(svc.synthesize, sentence, voice, speed))
        yield await slot.run(encoder.close)

    async def body():
        try:
            async for chunk in chunks():
                if chunk:          # an encoder may hold a short sentence back; an empty write sends nothing
                    yield chunk
        except Exception:
            log.exception("speech stream for voice %s failed after it started", voice.voice_id)
            raise
        finally:
            slot.release()
    return body()


def create_app(model: VallE2, deployment: Deployment, settings: ServerSettings | None = None,
               keys: KeyStore | None = None):
    """The FastAPI app serving ``model`` under ``deployment``'s safeguards; ``app.state.service``
    holds the shared :class:`Service`.  ``keys``: the API key store (default
    ``<home>/api_keys.db``).

    ``deployment.registry.transcriber`` is what enrolment uses to hear the consent phrase; tests
    replace it because their fixture recordings cannot say a freshly issued phrase."""
    settings = settings or ServerSettings()
    svc = Service(model, deployment, settings, keys or KeyStore(deployment.home / "api_keys.db"))
    # KeyAuth checks the key; this only declares the scheme in the OpenAPI document
    bearer = HTTPBearer(auto_error=False, description="an API key of this server (`valle2 keys create`)")

    def caller(request: Request, _=Depends(bearer)) -> Principal:
        return principal_of(request)

    def admin(who: Principal = Depends(caller)) -> Principal:
        if not who.admin:
            raise PermissionDenied("managing API keys needs an admin key")
        return who

    @asynccontextmanager
    async def lifespan(_app):
        yield
        svc.queue.close()

    app = FastAPI(title="valle2", version="0.1.0", lifespan=lifespan, docs_url=None, redoc_url=None,
                  responses=COMMON_ERRORS,
                  description="VALL-E 2 zero-shot TTS with consent, watermark and audit on every request.")
    app.state.service = svc
    install_error_handlers(app)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/health", response_model=Health)
    def health() -> Health:
        """Liveness, the model's sample rate, and how many requests hold a worker slot."""
        return Health(status="ok", model=settings.model_names[0], sample_rate=model.sample_rate,
                      busy=svc.queue.admitted, capacity=svc.queue.capacity)

    @app.post("/v1/audio/speech", response_class=StreamingResponse, responses={
        200: {"content": {t: {} for t in MEDIA_TYPES.values()}, "description": "the audio"}, **_errors(403, 404)})
    async def speech(req: SpeechRequest, who: Principal = Depends(caller)) -> StreamingResponse:
        """Speak ``input`` in ``voice`` (``"demo"``: the shipped demo voice).  ``model``: any of the
        server's model names (``valle2``, ``tts-1``, ``tts-1-hd``, ``gpt-4o-mini-tts``), all meaning
        the model it runs.  The text is split into sentences, each synthesized in turn, checked by
        the consent gate, watermarked, encoded and sent as soon as it is ready, in one stream of
        ``response_format`` (default mp3; ``pcm``: raw 16-bit little-endian mono at 24 kHz).
        ``speed`` (0.25-4) changes the tempo with the pitch kept, before the watermark.
        429 + Retry-After when the worker queue is full or the key is over its rate."""
        sentences = _check_speech(svc, req)
        voice = svc.voice_for(who, req.voice)
        slot = svc.queue.acquire()
        try:
            first = await slot.run(svc.synthesize, sentences[0], voice, req.speed)
        except BaseException:
            slot.release()
            raise
        return StreamingResponse(_audio_stream(svc, slot, first, sentences[1:], voice, req.response_format, req.speed),
                                 media_type=MEDIA_TYPES[req.response_format], background=BackgroundTask(slot.release),
                                 headers={"X-Sentences": str(len(sentences))})

    @app.post("/v1/voices/phrases", response_model=PhraseResponse, status_code=201)
    def issue_phrase(req: PhraseRequest, _who: Principal = Depends(caller)) -> PhraseResponse:
        """Issue a one-time consent phrase for ``name``: the speaker reads it aloud, then enrols."""
        try:
            name = validate_name(req.name)
        except ConsentError as e:
            raise BadRequest(str(e)) from None
        p = deployment.registry.issue_phrase(name)
        return PhraseResponse(phrase_id=p.id, name=p.name, text=p.text, expires=p.expires)

    @app.post("/v1/voices", response_model=Voice, status_code=201, responses=_errors(403))
    async def enroll(name: str = Form(max_length=100), phrase_id: str = Form(max_length=64),
                     file: UploadFile = File(description="recording of the speaker reading the phrase"),
                     who: Principal = Depends(caller)) -> Voice:
        """Enrol a voice from a recording of its consent phrase; the recording becomes the voice's
        prompt, and the voice belongs to the calling key."""
        try:
            clean = validate_name(name)
        except ConsentError as e:
            raise BadRequest(str(e)) from None
        data = await file.read()

        def work() -> Voice:
            wav, sr = svc.load_upload(data, max_seconds=min(settings.max_audio_seconds, MAX_PROMPT_SECONDS))
            record = deployment.registry.enroll(clean, wav, sr, phrase_id)
            voice = svc.store.add_consent(record, wav, sr)
            if not who.local:
                svc.keys.grant(who.key_id, voice.voice_id)
            return svc.voice_info(voice)
        async with svc.queue.acquire() as slot:
            return await slot.run(work)

    @app.post("/v1/voices/research", response_model=Voice, status_code=201, responses=_errors(403))
    async def add_research_voice(transcript: str = Form(max_length=1000),
                                 file: UploadFile = File(description="a file of an attested research corpus"),
                                 who: Principal = Depends(caller)) -> Voice:
        """Register an attested research-corpus file (by its own file name) as a voice of the
        calling key.  A file another key registered already, sent byte for byte, is shared."""
        data = await file.read()
        svc.load_upload(data)
        name = Path(file.filename or "").name
        if name in svc.shipped:
            raise BadRequest(f"voice {name!r} already exists: it is shipped with valle2; rename the file")
        try:
            existing = svc.store.get(name)
        except NotFound:
            existing = None
        if existing is not None and existing.kind == "research" and not who.local \
                and not svc.keys.owns(who.key_id, name) and svc.store.audio_path(existing).is_file() \
                and hashlib.sha256(svc.store.audio_path(existing).read_bytes()).digest() == hashlib.sha256(data).digest():
            svc.keys.grant(who.key_id, name)
            return svc.voice_info(existing)
        voice = svc.store.add_research(file.filename or "", data, transcript, deployment.registry)
        if not who.local:
            svc.keys.grant(who.key_id, voice.voice_id)
        return svc.voice_info(voice)

    @app.get("/v1/voices", response_model=VoiceList)
    def list_voices(who: Principal = Depends(caller)) -> VoiceList:
        """The calling key's voices, revoked ones marked."""
        return VoiceList(voices=[svc.voice_info(v) for v in svc.voices_of(who)])

    @app.post("/v1/voices/{voice_id}/revoke", response_model=RevokeResponse, responses=_errors(404))
    def revoke(voice_id: str, req: RevokeRequest, who: Principal = Depends(caller)) -> RevokeResponse:
        """Revoke one of the key's voices at once and delete its stored recording (a research
        voice is unregistered)."""
        voice = svc.voice_for(who, voice_id)
        if voice.kind == "shipped":
            raise PermissionDenied(f"voice {voice_id!r} is shipped with valle2 and shared by every key, so no key may "
                                   "revoke it; the operator serves without it with `valle2 serve --no-demo-voice`")
        if voice.kind == "consent":
            deployment.registry.revoke(voice_id, req.reason)
        svc.store.remove_audio(voice)
        return RevokeResponse(voice_id=voice_id, revoked=True)

    @app.post("/v1/detect", response_model=DetectResponse)
    async def detect_file(file: UploadFile = File(description="an audio file to check"),
                          _who: Principal = Depends(caller)) -> DetectResponse:
        """Report whether an uploaded file carries this deployment's watermark and whether the
        synthesized-speech classifier calls it synthesized."""
        data = await file.read()

        def work() -> DetectResponse:
            wav, sr = svc.load_upload(data, allow_silent=True)
            found = detect(wav, sr, deployment.watermark_key)
            classifier = classifier_report(wav, sr)
            return DetectResponse(seconds=round(wav.size / sr, 3), sample_rate=sr,
                                  watermark=WatermarkReport(**watermark_report(found, wav.size / sr)),
                                  classifier=ClassifierReport(**classifier), verdict=verdict(found.present, classifier))
        async with svc.queue.acquire() as slot:
            return await slot.run(work)

    @app.get("/v1/keys", response_model=ApiKeyList, responses=_errors(403))
    def list_keys(_who: Principal = Depends(admin)) -> ApiKeyList:
        """Every API key (its prefix, never the key), revoked ones marked.  Admin keys only."""
        return ApiKeyList(keys=[ApiKeyInfo(**k.public()) for k in svc.keys.list()])

    @app.post("/v1/keys", response_model=ApiKeyCreated, status_code=201, responses=_errors(403))
    def create_key(req: ApiKeyCreate, who: Principal = Depends(admin)) -> ApiKeyCreated:
        """Create a key; the response holds the key, shown this once.  Admin keys only."""
        try:
            row, key = svc.keys.create(req.name, admin=req.admin, rate_limit=req.rate_limit)
        except KeyStoreError as e:
            raise BadRequest(str(e)) from None
        svc.audit_key("api_key_create", row, who)
        return ApiKeyCreated(**row.public(), key=key)

    @app.post("/v1/keys/{key_id}/revoke", response_model=ApiKeyInfo, responses=_errors(403, 404))
    def revoke_key(key_id: str, who: Principal = Depends(admin)) -> ApiKeyInfo:
        """Revoke a key at once: its next request gets 401.  Admin keys only."""
        try:
            svc.keys.get(key_id)
        except KeyStoreError:
            raise NotFound(f"no API key {key_id!r}") from None
        try:
            row = svc.keys.revoke(key_id)
        except KeyStoreError as e:
            raise BadRequest(str(e)) from None
        svc.audit_key("api_key_revoke", row, who)
        return ApiKeyInfo(**row.public())

    app.add_middleware(BodySizeLimit, max_bytes=settings.max_request_bytes)
    app.add_middleware(KeyAuth, keys=svc.keys, auth=settings.auth, default_rate=settings.rate_limit)
    return app
