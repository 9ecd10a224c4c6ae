"""Text to token ids: normalise, phonemize, then byte-pair-encode the phoneme string.

As in VALL-E 2, the model reads BPE units over phonemes (``vocab_size=0``: no merges, one token
per phoneme symbol, which small models trained on little data align more easily). The BPE model (HuggingFace
``tokenizers``) is trained on the phonemized training text; each IPA character is a base
symbol, a word boundary is the ``▁`` prefix of the next word (so decoding gives back the
phoneme string with its spaces), and merges never cross words or punctuation. The base
alphabet is every character seen in training plus, for English, all of ``ENGLISH_IPA``;
any other character maps to ``<unk>``. The whole table travels in :meth:`state_dict` so
that it is saved with each model checkpoint.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from ..errors import ModelError, TextError
from .normalize import clean_text, normalize_text
from .phonemes import ENGLISH_IPA, PUNCTUATION, is_pronounceable, phonemize

PAD, UNK = "<pad>", "<unk>"
WORD_BOUNDARY = "▁"
DEFAULT_MAX_CHARS = 2000
STATE_VERSION = 1


def _bpe_skeleton() -> Tokenizer:
    tokenizer = Tokenizer(models.BPE(unk_token=UNK, fuse_unk=True))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Metaspace(replacement=WORD_BOUNDARY, prepend_scheme="never", split=True),
        pre_tokenizers.Punctuation(),
    ])
    tokenizer.decoder = decoders.Metaspace(replacement=WORD_BOUNDARY, prepend_scheme="never")
    return tokenizer


def _check_language(language: object) -> str:
    if not isinstance(language, str) or not language:
        raise TextError(f"language must be a non-empty str such as 'en-us', got {language!r}")
    return language


def _unpronounceable(text: str) -> TextError:
    return TextError(f"text has nothing pronounceable: {text[:50]!r}")


def _normalizer(language: str) -> Callable[[str], str]:
    return normalize_text if language.lower().startswith("en") else clean_text


def _check_max_chars(max_chars: object) -> int:
    if not isinstance(max_chars, int) or isinstance(max_chars, bool) or max_chars < 1:
        raise TextError(f"max_chars must be a positive integer, got {max_chars!r}")
    return max_chars


class TextTokenizer:
    """Phoneme BPE tokenizer: ``encode("Hello!")`` -> ids, ``decode(ids)`` -> ``"həlˈoʊ!"``.

    Build one with :meth:`train` or :meth:`from_state_dict`. Id 0 is ``<pad>``; ``unk_id`` is
    ``<unk>``. English languages (``en-*``) get full :func:`normalize_text`; others only the
    language-neutral :func:`clean_text`. Texts longer than ``max_chars`` characters are
    refused with :class:`TextError`; split them with :func:`split_sentences` first.
    """

    def __init__(self, tokenizer: Tokenizer, language: str = "en-us", max_chars: int = DEFAULT_MAX_CHARS):
        if tokenizer.token_to_id(PAD) != 0 or tokenizer.token_to_id(UNK) is None:
            raise ModelError(f"phoneme tokenizer must have {PAD} at id 0 and an {UNK} token")
        _check_language(language)
        self._tokenizer = tokenizer
        self.language = language
        self.max_chars = _check_max_chars(max_chars)
        self._normalize = _normalizer(language)

    @classmethod
    def train(
        cls,
        texts: list[str],
        vocab_size: int = 256,
        language: str = "en-us",
        max_chars: int = DEFAULT_MAX_CHARS,
    ) -> TextTokenizer:
        """Train the BPE table on raw training transcripts (normalised and phonemized here).

        ``vocab_size=0`` learns no merges: every token is one phoneme symbol (IPA character,
        stress or length mark, word boundary or punctuation).  Texts with nothing pronounceable are skipped; at least one must remain. The vocabulary
        always holds the special tokens, every symbol seen in training and, for English, all of
        :data:`ENGLISH_IPA`; merges are added until ``vocab_size`` is reached (so the result
        can be larger than ``vocab_size`` when the alphabet alone exceeds it).
        """
        if not isinstance(texts, (list, tuple)):
            raise TextError(f"training texts must be a list of str, got {type(texts).__name__}")
        if not isinstance(vocab_size, int) or isinstance(vocab_size, bool) or not (vocab_size == 0 or vocab_size >= 3):
            raise TextError(f"vocab_size must be 0 (phoneme symbols, no merges) or an integer of at least 3, got {vocab_size!r}")
        _check_language(language)
        normalize = _normalizer(language)
        normalized = []
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TextError(f"training text {i} must be a str, got {type(text).__name__}")
            normalized.append(normalize(text))
        corpus = [p for p in phonemize(normalized, language) if is_pronounceable(p)]
        if not corpus:
            raise TextError(f"none of the {len(texts)} training texts has anything pronounceable")
        alphabet = PUNCTUATION + WORD_BOUNDARY + (ENGLISH_IPA if language.lower().startswith("en") else "")
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=2,
            special_tokens=[PAD, UNK],
            initial_alphabet=sorted(set(alphabet)),
            show_progress=False,
        )
        tokenizer = _bpe_skeleton()
        tokenizer.train_from_iterator(corpus, trainer=trainer, length=len(corpus))
        return cls(tokenizer, language, max_chars)

    @property
    def vocab_size(self) -> int:
        """Number of token ids, special tokens included (ids are ``0 .. vocab_size - 1``)."""
        return self._tokenizer.get_vocab_size(with_added_tokens=True)

    @property
    def pad_id(self) -> int:
        """Id of ``<pad>``; always 0."""
        return 0

    @property
    def unk_id(self) -> int:
        """Id of ``<unk>``, given to phoneme characters not in the vocabulary."""
        return self._tokenizer.token_to_id(UNK)

    def _normalized(self, text: object) -> str:
        if not isinstance(text, str):
            raise TextError(f"text must be a str, got {type(text).__name__}")
        if not clean_text(text):
            raise TextError("text is empty")
        if len(text) > self.max_chars:
            raise TextError(
                f"text is {len(text)} characters long, more than the {self.max_chars}-character "
                "limit; split it with split_sentences()"
            )
        normalized = self._normalize(text)
        if not normalized:
            raise _unpronounceable(text)
        return normalized

    def _phonemes_batch(self, texts: list[str]) -> list[str]:
        if not isinstance(texts, (list, tuple)):
            raise TextError(f"texts must be a list of str, got {type(texts).__name__}")
        normalized = []
        for i, text in enumerate(texts):
            try:
                normalized.append(self._normalized(text))
            except TextError as exc:
                raise TextError(f"text {i}: {exc}") from None
        phonemes = phonemize(normalized, self.language)
        for i, (text, phones) in enumerate(zip(texts, phonemes, strict=True)):
            if not is_pronounceable(phones):
                raise TextError(f"text {i}: {_unpronounceable(text)}")
        return phonemes

    def phonemes(self, text: str) -> str:
        """The phoneme string for ``text`` (normalised, phonemized) as the tokenizer sees it."""
        normalized = self._normalized(text)
        (phones,) = phonemize([normalized], self.language)
        if not is_pronounceable(phones):
            raise _unpronounceable(text)
        return phones

    def encode(self, text: str) -> list[int]:
        """Token ids for one text. Raises :class:`TextError` for empty, too long, non-str or
        unpronounceable text."""
        return self._tokenizer.encode(self.phonemes(text)).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """Token ids for many texts, phonemized in one batch; errors name the text's index."""
        return [e.ids for e in self._tokenizer.encode_batch(self._phonemes_batch(texts))]

    def decode(self, ids: Iterable[int]) -> str:
        """The phoneme string for token ids (a list, tuple, 1-D tensor or array); ``<pad>`` and
        ``<unk>`` are dropped. Raises :class:`TextError` for ids outside the vocabulary."""
        if hasattr(ids, "tolist"):
            ids = ids.tolist()
        ids = list(ids)
        size = self.vocab_size
        for i in ids:
            if not isinstance(i, int) or isinstance(i, bool) or not 0 <= i < size:
                raise TextError(f"token id {i!r} is not an integer in 0..{size - 1}")
        return self._tokenizer.decode(ids, skip_special_tokens=True)

    def state_dict(self) -> dict:
        """JSON-serialisable description of this tokenizer, for model checkpoints."""
        return {
            "version": STATE_VERSION,
            "language": self.language,
            "max_chars": self.max_chars,
            "tokenizer": self._tokenizer.to_str(),
        }

    @classmethod
    def from_state_dict(cls, state: dict) -> TextTokenizer:
        """Rebuild a tokenizer saved by :meth:`state_dict`; raises :class:`ModelError` when the
        state is not one."""
        if not isinstance(state, dict):
            raise ModelError(f"tokenizer state must be a dict, got {type(state).__name__}")
        if state.get("version") != STATE_VERSION:
            raise ModelError(
                f"tokenizer state version {state.get('version')!r} is not supported (expected {STATE_VERSION})"
            )
        table, language = state.get("tokenizer"), state.get("language")
        if not isinstance(table, str) or not isinstance(language, str):
            raise ModelError("tokenizer state needs a 'tokenizer' JSON string and a 'language' string")
        try:
            tokenizer = Tokenizer.from_str(table)
        except Exception as exc:  # tokenizers raises a bare Exception for bad JSON
            raise ModelError(f"tokenizer state holds a corrupt BPE table: {exc}") from exc
        return cls(tokenizer, language, state.get("max_chars", DEFAULT_MAX_CHARS))

    def __repr__(self) -> str:
        return f"TextTokenizer(language={self.language!r}, vocab_size={self.vocab_size})"
