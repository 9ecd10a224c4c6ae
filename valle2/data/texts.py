"""Offline sentence sources for synthetic-speech corpora (``valle2 recipe synthetic``).

:func:`fortune_sentences` reads Debian's ``fortunes`` package (``fortune-mod``'s data, BSD
licence; ``scripts/install_synthetic_voices.sh`` installs it): every fortune is split into
sentences, and plain ones are kept (letters, spaces, commas and apostrophes, one final ``.``,
``!`` or ``?``; 4 to 16 words), so that every word has one reading and a recogniser's output
can be scored against it.  About 10,700 sentences.
"""
from __future__ import annotations

import re
from pathlib import Path

from ..errors import DataError

FORTUNES = Path("/usr/share/games/fortunes")
"""Where Debian's ``fortunes`` package puts its files (one per topic, fortunes separated by ``%``)."""
PLAIN = re.compile(r"[A-Z][A-Za-z ,']+[.!?]")
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def plain_sentences(text: str, min_words: int = 4, max_words: int = 16) -> list[str]:
    """The plain sentences of ``text`` (whitespace collapsed), in order."""
    sentences = SENTENCE_END.split(" ".join(text.split()))
    return [s for s in sentences if PLAIN.fullmatch(s) and min_words <= len(s.split()) <= max_words]


def fortune_sentences(root: Path = FORTUNES, min_words: int = 4, max_words: int = 16) -> list[str]:
    """Sorted, de-duplicated plain sentences of every fortune file under ``root`` (attributions
    after ``--`` dropped).  DataError naming the package when there are none."""
    files = sorted(p for p in root.glob("*") if p.is_file() and "." not in p.name) if root.is_dir() else []
    found: set[str] = set()
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        for fortune in text.split("\n%\n"):
            found.update(plain_sentences(fortune.split("--")[0], min_words, max_words))
    if not found:
        raise DataError(f"no fortune files under '{root}': install Debian's 'fortunes' package "
                        "(scripts/install_synthetic_voices.sh does)")
    return sorted(found)
