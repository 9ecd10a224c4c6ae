"""valle2: VALL-E 2 zero-shot text-to-speech with consent, watermark and detection safeguards.

Data flows one way: text and audio -> tokens -> AR -> NAR -> codec -> watermark -> file.

    >>> import valle2
    >>> model = valle2.load_model("demo")                       # the shipped model, or a model file's path
    >>> wav, sr = model.synthesize("Hello there.", voice_id="demo")   # the shipped, attested demo voice
    >>> wav, sr = model.synthesize("Hello there.", prompt_wav, prompt_sr, prompt_text="...", voice_id="v_...")
"""
from __future__ import annotations

__version__ = "0.1.0"

from .codec import load_codec
from .decoding import DecodingOptions
from .errors import AudioError, CodecError, ConfigError, ConsentError, DataError, DecodingError, ModelError, TextError, Valle2Error
from .names import available_models, available_voices


def load_model(path, codec=None, gate=None, device: str = "cpu", int8: bool | None = None):
    """Load a valle2 model by name (:func:`available_models`: ``"demo"``) or from a model file's
    path: see :func:`valle2.synthesis.load_model`."""
    from .synthesis import load_model as _load

    return _load(path, codec, gate, device, int8)


__all__ = ["load_model", "available_models", "available_voices", "load_codec", "DecodingOptions", "Valle2Error",
           "AudioError", "TextError", "CodecError", "ModelError", "DecodingError", "ConfigError", "DataError",
           "ConsentError", "__version__"]
