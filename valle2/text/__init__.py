"""Text front end: normalisation, espeak phonemes, phoneme BPE tokenizer, sentence splitting.

>>> tok = TextTokenizer.train(transcripts, vocab_size=256)
>>> ids = tok.encode("Dr. Smith paid $3.50.")
>>> tok.decode(ids)  # the phoneme string
"""
from .normalize import clean_text, normalize_text, split_sentences
from .phonemes import ENGLISH_IPA, is_pronounceable, phonemize
from .tokenizer import DEFAULT_MAX_CHARS, TextTokenizer

__all__ = [
    "DEFAULT_MAX_CHARS",
    "ENGLISH_IPA",
    "TextTokenizer",
    "clean_text",
    "is_pronounceable",
    "normalize_text",
    "phonemize",
    "split_sentences",
]
