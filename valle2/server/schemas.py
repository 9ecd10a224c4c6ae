"""Typed request and response bodies of the HTTP API (pydantic v2)."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from .encoding import AudioFormat
VOICE_ID = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"


class SpeechRequest(BaseModel):
    """OpenAI's ``POST /v1/audio/speech`` body.  ``model``: one of the server's model names (OpenAI's
    ``tts-1``, ``tts-1-hd``, ``gpt-4o-mini-tts`` among them); ``voice``: ``"demo"``, an enrolled
    voice id (``v_...``) or a registered research voice; ``response_format``: OpenAI's formats
    (``pcm``: raw 16-bit little-endian mono at 24 kHz); ``speed``: the tempo, 0.25-4, pitch kept."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, max_length=64, examples=["tts-1", "valle2"])
    input: str = Field(min_length=1, max_length=4096, description="the text to speak")
    voice: str = Field(pattern=VOICE_ID, description="'demo', an enrolled voice id or a research voice name")
    response_format: AudioFormat = "mp3"
    speed: float = Field(1.0, ge=0.25, le=4.0)


class PhraseRequest(BaseModel):
    """Who will read the consent phrase."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100, description="the speaker's full name")


class PhraseResponse(BaseModel):
    """A one-time consent phrase: the speaker reads ``text`` aloud before ``expires`` (Unix seconds)."""

    phrase_id: str
    name: str
    text: str
    expires: float


class Voice(BaseModel):
    """A voice the server can speak with.  ``kind``: "consent" (enrolled), "research" (an attested
    corpus file) or "shipped" (shipped with valle2, e.g. "demo": every key may use it);
    ``revoked``: Unix time of revocation, or null."""

    voice_id: str
    name: str
    kind: Literal["consent", "research", "shipped"]
    created: float
    revoked: float | None = None


class VoiceList(BaseModel):
    """The shipped voices, then the calling key's voices, oldest first."""

    voices: list[Voice]


class RevokeRequest(BaseModel):
    """Why a voice is withdrawn (kept in the audit log)."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field("", max_length=500)


class RevokeResponse(BaseModel):
    """The voice that was revoked; its stored prompt recording is deleted."""

    voice_id: str
    revoked: bool


class WatermarkReport(BaseModel):
    """What the watermark detector found: ``payload`` is model id << 8 | consent id hash; ``note``
    says when an absent mark means little (a clip too short to read surely)."""

    present: bool
    score: float
    payload: int | None
    marked_seconds: list[tuple[float, float]]
    note: str | None = None


class ClassifierReport(BaseModel):
    """What the synthesized-speech classifier found: ``score`` is the largest probability over
    3 s windows (the decision statistic), ``mean`` their mean, ``windows`` (start s, end s,
    probability).  ``error`` (and nothing else) when the audio cannot be scored."""

    synthesized: bool | None = None
    score: float | None = None
    mean: float | None = None
    threshold: float | None = None
    windows: list[tuple[float, float, float]] = []
    error: str | None = None


class DetectResponse(BaseModel):
    """The report on an uploaded file: the watermark, the classifier and a one-line verdict."""

    seconds: float
    sample_rate: int
    watermark: WatermarkReport
    classifier: ClassifierReport
    verdict: str


class Health(BaseModel):
    """Liveness and load."""

    status: Literal["ok"]
    model: str
    sample_rate: int
    busy: int
    capacity: int


class ErrorDetail(BaseModel):
    """OpenAI's error shape: ``message`` says what is wrong, for people; ``type`` is a stable
    machine-readable kind; ``code`` a finer one where there is one (``missing_api_key``,
    ``invalid_api_key``, ``rate_limit_exceeded``, ...); ``param`` is always null here."""

    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    """The body of every error response."""

    error: ErrorDetail


class ApiKeyInfo(BaseModel):
    """An API key as lists show it: never the key, only its ``prefix`` (``v2k-<12 hex>``).
    ``rate_limit``: requests a minute (null: the server's default; 0: unlimited)."""

    id: str
    name: str
    prefix: str
    admin: bool
    created: float
    revoked: float | None = None
    rate_limit: float | None = None


class ApiKeyList(BaseModel):
    """Every key of this server, oldest first, revoked ones marked."""

    keys: list[ApiKeyInfo]


class ApiKeyCreate(BaseModel):
    """A new key: who or what it is for, whether it manages keys, its request rate."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    admin: bool = False
    rate_limit: float | None = Field(None, ge=0, le=1e6, description="requests a minute; null: the server's default")


class ApiKeyCreated(ApiKeyInfo):
    """A just-created key: ``key`` is shown this once and stored nowhere in clear."""

    key: str
