"""Names that stand for files shipped in the package, as whisper's ``load_model("base")``:

- models: ``"demo"``, the zero-shot demo model (``valle2/assets/demo/model.pt``);
- voices: ``"demo"``, the demo voice: a CMU ARCTIC clip (``voice.json`` names it, with its
  transcript) of a research corpus attested in ``attestation.json``, signed with a key shipped in
  ``valle2/assets/keys/`` that every deployment trusts.

:func:`model_file` turns a name or a path into a model file; :func:`shipped_voice` a voice name
into a :class:`ShippedVoice`.  A shipped voice passes the consent gate as any attested corpus
file does: ``VallE2.synthesize(text, voice_id="demo")`` imports its attestation into the
deployment (signature checked) and gives the clip as ``corpus_file``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .errors import ConsentError, ModelError

DEMO = Path(__file__).resolve().parent / "assets" / "demo"
MODELS = {"demo": "model.pt"}      # name -> file in DEMO
VOICES = {"demo": "voice.json"}    # name -> voice description in DEMO


def available_models() -> list[str]:
    """The model names :func:`model_file` (and ``valle2.load_model``, ``--model``) accept."""
    return sorted(MODELS)


def available_voices() -> list[str]:
    """The shipped voice names ``voice_id=`` (and ``--voice``) accept."""
    return sorted(VOICES)


def model_file(name_or_path) -> Path:
    """The model file of a shipped model's name (``"demo"``) or of a path; ModelError naming the
    known names for anything else.  A name wins over a file of the same name in the current folder."""
    if isinstance(name_or_path, str) and name_or_path in MODELS:
        path = DEMO / MODELS[name_or_path]
        if not path.is_file():
            raise ModelError(f"the shipped model '{name_or_path}' is missing from this install ({path}): train one "
                             "with `valle2 recipe tiny` (minutes) or `valle2 recipe demo --data ../shared/data --ship` "
                             "(about 2 hours)")
        return path
    path = Path(name_or_path)
    if not path.is_file():
        raise ModelError(f"model file not found: '{path}' (give a valle2 model file, or a shipped model's name: "
                         f"{', '.join(available_models())})")
    return path


@dataclass(frozen=True)
class ShippedVoice:
    """A voice shipped in the package: ``clip`` (a file of the attested corpus), its transcript
    ``text``, the signed ``attestation`` file that covers it, and the corpus' ``licence``."""

    name: str
    id: str
    speaker: str
    text: str
    clip: Path
    attestation: Path
    licence: str


def is_shipped_voice(voice_id) -> bool:
    """Whether ``voice_id`` names a shipped voice (enrolled voices' ids start with ``v_``)."""
    return isinstance(voice_id, str) and voice_id in VOICES


def shipped_voice(name: str) -> ShippedVoice:
    """The shipped voice called ``name``; ConsentError naming the known names for any other."""
    if not is_shipped_voice(name):
        raise ConsentError(f"no shipped voice '{name}' (shipped voices: {', '.join(available_voices())})")
    d = json.loads((DEMO / VOICES[name]).read_text())
    return ShippedVoice(name, d["id"], d["speaker"], d["text"], DEMO / d["file"], DEMO / "attestation.json", d["licence"])
