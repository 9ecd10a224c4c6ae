"""The server's voice store: the prompt recording and transcript behind each voice it can speak.

``<home>/voices/<voice_id>.json`` describes a voice; its audio sits beside it:

- consent voices (``v_...``): the consent recording as ``<voice_id>.flac``, transcript = the
  consent phrase; it is the prompt of every synthesis (cross mode).  Revoking deletes the audio.
- research voices: a file of an attested research corpus, stored byte for byte under its own name
  in ``research/`` (the gate matches it to the attestation by SHA-256), with its transcript.

Files are written atomically, audio before description, so a crash never leaves a description
without its audio.
"""
from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..audio import atomic_write_bytes, encode_audio
from ..errors import BadRequest, NotFound
from ..safety import ConsentRegistry, VoiceRecord

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")


@dataclass(frozen=True)
class StoredVoice:
    """One voice: ``audio`` is the prompt file's name inside the store, ``prompt_text`` its transcript."""

    voice_id: str
    name: str
    kind: str
    created: float
    audio: str
    prompt_text: str


class VoiceStore:
    """The store under ``home/voices``."""

    def __init__(self, home):
        self.root = Path(home) / "voices"
        (self.root / "research").mkdir(parents=True, exist_ok=True)

    def _meta(self, voice_id: str) -> Path:
        if not NAME_RE.fullmatch(voice_id):
            raise NotFound(f"voice {voice_id!r} does not exist on this server")
        return self.root / f"{voice_id}.json"

    def _write(self, voice: StoredVoice) -> StoredVoice:
        atomic_write_bytes(self._meta(voice.voice_id), json.dumps(asdict(voice), indent=1).encode())
        return voice

    def audio_path(self, voice: StoredVoice) -> Path:
        """Where ``voice``'s prompt recording is."""
        return self.root / voice.audio

    def add_consent(self, record: VoiceRecord, wav: np.ndarray, sr: int) -> StoredVoice:
        """Keep the consent recording of a just-enrolled voice as its prompt."""
        atomic_write_bytes(self.root / f"{record.voice_id}.flac", encode_audio(wav, sr, "flac"))
        return self._write(StoredVoice(record.voice_id, record.name, "consent", record.created,
                                       f"{record.voice_id}.flac", record.phrase))

    def add_research(self, file_name: str, data: bytes, transcript: str, registry: ConsentRegistry) -> StoredVoice:
        """Register the attested corpus file ``file_name`` (its bytes ``data``) as a voice of that
        name; refuses (ConsentError) a file no attestation lists."""
        name = Path(file_name).name
        if not NAME_RE.fullmatch(name):
            raise BadRequest(f"research voice file name {file_name!r} must be letters, digits, '_', '.', '-' (1-64)")
        if not transcript.strip():
            raise BadRequest("a research voice needs the transcript of its recording")
        if self._meta(name).exists():
            raise BadRequest(f"voice {name!r} already exists")
        path = atomic_write_bytes(self.root / "research" / name, data)
        try:
            registry.corpus_for_file(path)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return self._write(StoredVoice(name, name, "research", time.time(), f"research/{name}", transcript.strip()))

    def get(self, voice_id: str) -> StoredVoice:
        """The voice ``voice_id``, or :class:`NotFound`."""
        meta = self._meta(voice_id)
        if not meta.is_file():
            raise NotFound(f"voice {voice_id!r} does not exist on this server")
        return StoredVoice(**json.loads(meta.read_text()))

    def all(self) -> list[StoredVoice]:
        """Every voice, oldest first."""
        voices = [StoredVoice(**json.loads(p.read_text())) for p in self.root.glob("*.json")]
        return sorted(voices, key=lambda v: (v.created, v.voice_id))

    def remove_audio(self, voice: StoredVoice) -> None:
        """Delete a voice's prompt recording; a research voice is unregistered altogether."""
        self.audio_path(voice).unlink(missing_ok=True)
        if voice.kind == "research":
            self._meta(voice.voice_id).unlink(missing_ok=True)
