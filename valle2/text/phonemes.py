"""Grapheme-to-phoneme conversion with phonemizer's espeak backend.

espeak-ng comes from the ``espeakng-loader`` wheel (library and data), so no system package
is needed. Backends are created lazily, once per language, and reused; results for single
sentences are kept in a bounded LRU cache. All calls into espeak are serialised by a lock
because the espeak-ng library keeps global state.
"""
from __future__ import annotations

import logging
import os
import threading
import unicodedata
from collections import OrderedDict
from typing import TYPE_CHECKING

from ..errors import TextError

if TYPE_CHECKING:
    from phonemizer.backend import EspeakBackend

CACHE_SIZE = 8192
"""How many (language, sentence) phonemizations the LRU cache keeps."""

ENGLISH_IPA = "abdefhijklmnoprstuvwxzæçðŋɐɑɒɔəɚɛɜɡɪɬɹɾʃʊʌʒʔˈˌː̩θᵻ"
"""Every symbol espeak-ng emits for en-us and en-gb (measured over a 39k-word vocabulary,
letter names and loanwords), stress marks and length mark included."""

PUNCTUATION = ",.;:!?"
"""Punctuation that :func:`valle2.text.normalize_text` keeps and the phonemizer preserves."""

# espeak often joins or splits words ("twelve dollars"), so phonemizer's word-count mismatch
# warnings are expected noise here; lower this logger's level to see them.
_espeak_logger = logging.getLogger(__name__ + ".espeak")
_espeak_logger.setLevel(logging.ERROR)
_lock = threading.Lock()
_backends: dict[str, EspeakBackend] = {}
_cache: OrderedDict[tuple[str, str], str] = OrderedDict()
_espeak_ready = False


def _configure_espeak() -> None:
    """Point phonemizer at the espeak-ng library and data shipped in ``espeakng-loader``."""
    global _espeak_ready
    if _espeak_ready:
        return
    import espeakng_loader
    from phonemizer.backend.espeak.wrapper import EspeakWrapper

    os.environ["ESPEAK_DATA_PATH"] = espeakng_loader.get_data_path()
    EspeakWrapper.set_library(espeakng_loader.get_library_path())
    _espeak_ready = True


def _backend(language: str) -> EspeakBackend:
    """The cached espeak backend for ``language``; call with ``_lock`` held."""
    backend = _backends.get(language)
    if backend is None:
        _configure_espeak()
        from phonemizer.backend import EspeakBackend

        try:
            backend = EspeakBackend(
                language,
                preserve_punctuation=True,
                with_stress=True,
                language_switch="remove-flags",
                words_mismatch="ignore",
                logger=_espeak_logger,
            )
        except RuntimeError as exc:
            raise TextError(f"language {language!r} is not supported by espeak-ng: {exc}") from exc
        _backends[language] = backend
    return backend


def is_pronounceable(phonemes: str) -> bool:
    """Whether a phoneme string holds at least one phone (not only punctuation and spaces)."""
    return any(unicodedata.category(ch)[0] == "L" for ch in phonemes)


def phonemize(texts: list[str], language: str = "en-us") -> list[str]:
    """Convert normalised sentences to IPA phoneme strings, one per input, in order.

    Words are separated by a single space; stress marks (ˈ ˌ) and punctuation are kept, e.g.
    ``phonemize(["Hello, world!"]) == ["həlˈoʊ, wˈɜːld!"]``. Empty or whitespace-only items
    give ``""``. Items missing from the cache are phonemized in one batch.
    Raises :class:`TextError` when ``texts`` is not a list of str or the language is unknown.
    """
    if not isinstance(texts, (list, tuple)):
        raise TextError(f"texts must be a list of str, got {type(texts).__name__}")
    if not isinstance(language, str) or not language:
        raise TextError(f"language must be a non-empty str such as 'en-us', got {language!r}")
    keys = []
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TextError(f"text {i} must be a str, got {type(text).__name__}")
        keys.append((language, " ".join(text.split())))
    with _lock:
        missing = list(dict.fromkeys(k for k in keys if k[1] and k not in _cache))
        fresh: dict[tuple[str, str], str] = {}
        if missing:
            from phonemizer.separator import Separator

            separator = Separator(phone="", syllable="", word=" ")
            output = _backend(language).phonemize(
                [text for _, text in missing], separator=separator, strip=True, njobs=1
            )
            if len(output) != len(missing):
                raise RuntimeError(f"espeak returned {len(output)} results for {len(missing)} texts")
            fresh = {key: " ".join(phones.split()) for key, phones in zip(missing, output, strict=True)}
        results = []
        for key in keys:
            if not key[1]:
                results.append("")
            elif key in fresh:
                results.append(fresh[key])
            else:
                _cache.move_to_end(key)
                results.append(_cache[key])
        for key in missing[-CACHE_SIZE:]:
            _cache[key] = fresh[key]
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return results
