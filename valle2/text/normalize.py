"""Text clean-up and English normalisation for TTS, and sentence splitting for long input.

:func:`clean_text` is language-neutral (unicode forms, quotes, dashes, control characters,
whitespace). :func:`normalize_text` builds on it for English: it spells out numbers, money,
percentages, times, ordinals and years, expands common abbreviations and symbols, and drops
characters espeak cannot read as English (emoji, non-Latin scripts). Sentence punctuation
(``, . ; : ? !``) is kept because the phonemizer carries it through as prosody cues.
"""
from __future__ import annotations

import re
import unicodedata

from ..errors import TextError
from .numbers import cardinal, decimal, digits, is_year, ordinal, year

_TRANSLATE = str.maketrans({
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'", "\u00b4": "'",
    "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"', "\u2033": '"',
    "\u00ab": '"', "\u00bb": '"',
    "\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2013": "-", "\u2212": "-",
    "\u2014": " -- ", "\u2015": " -- ",
    "\u2044": "/", "\u2026": "...",
})
_ASCII_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1b\x7f]")  # control characters that are not whitespace
_SPOKEN_SYMBOLS = "$£€¥¢°×÷±"  # non-ASCII symbols that normalisation spells out

# Abbreviations read before a name (never sentence-final), abbreviations that may end a
# sentence (their period is kept there), and ones only used mid-sentence.
_TITLES = {
    "mr": "mister", "mrs": "missus", "ms": "miz", "dr": "doctor", "prof": "professor",
    "capt": "captain", "lt": "lieutenant", "col": "colonel", "sgt": "sergeant",
    "rev": "reverend", "hon": "honorable", "mt": "mount",
}
_TRAILING = {
    "st": "street", "jr": "junior", "sr": "senior", "etc": "et cetera", "inc": "incorporated",
    "ltd": "limited", "co": "company", "corp": "corporation", "dept": "department",
    "ave": "avenue", "rd": "road", "blvd": "boulevard",
}
_INLINE = {
    "vs": "versus", "approx": "approximately", "e.g": "for example", "i.e": "that is",
    "cf": "compare",
}
_ABBREVIATIONS = {**_TITLES, **_TRAILING, **_INLINE}
_ABBREVIATION = re.compile(
    r"\b(?P<abbr>"
    + "|".join(sorted((re.escape(a) for a in _ABBREVIATIONS), key=len, reverse=True))
    + r")\.(?!\w)"
    + r"|\b(?P<bare>mrs|mr|ms|dr|st)\b(?=\s+(?-i:[A-Z]))",
    re.IGNORECASE,
)
_NUMBER_ABBREVIATION = re.compile(r"\bno\.\s*(?=\d)", re.IGNORECASE)
_STARTS_SENTENCE = re.compile(r"\s+[A-Z]")

_INT = r"\d{1,3}(?:,\d{3})+|\d+"
_TIME_AMPM = re.compile(
    r"\b(?P<h>\d{1,2})(?::(?P<m>[0-5]\d))?\s*(?P<ap>[ap])\.?\s?m\b(?P<dot>\.)?", re.IGNORECASE
)
_TIME = re.compile(r"\b(?P<h>[01]?\d|2[0-3]):(?P<m>[0-5]\d)\b")
_CURRENCY = re.compile(
    rf"(?P<sym>[$£€¥])\s?(?P<int>{_INT})(?:\.(?P<frac>\d+))?"
    r"(?:\s?(?P<word>thousand|million|billion|trillion)\b|(?P<letter>[kmb]|bn)\b)?",
    re.IGNORECASE,
)
_CURRENCY_UNITS = {  # symbol: (singular, plural, sub-unit singular, sub-unit plural)
    "$": ("dollar", "dollars", "cent", "cents"),
    "£": ("pound", "pounds", "penny", "pence"),
    "€": ("euro", "euros", "cent", "cents"),
    "¥": ("yen", "yen", "", ""),
}
_SCALE_LETTERS = {"k": "thousand", "m": "million", "b": "billion", "bn": "billion"}
_NUMBER = re.compile(rf"(?P<neg>(?<![\w.])-)?(?P<int>{_INT})(?:\.(?P<frac>\d+))?")
_PERCENT = re.compile(_NUMBER.pattern + r"\s?%")
_ORDINAL = re.compile(rf"\b(?P<int>{_INT})(?:st|nd|rd|th)\b", re.IGNORECASE)
_DECADE = re.compile(r"(?<![\w'])'?(?P<int>\d{1,3}0)s\b")
_PHONE = re.compile(r"(?<![\w-])(?:\(?(?P<area>\d{3})\)?[ .-])?(?P<mid>\d{3})-(?P<last>\d{4})\b")
_RANGE = re.compile(r"(?<=\d)\s?-\s?(?=\d)")
_BARE_DECIMAL = re.compile(r"(?<![\w.])\.(?=\d)")

_SYMBOL_WORDS = {
    "&": " and ", "@": " at ", "+": " plus ", "=": " equals ", "%": " percent ",
    "#": " hash ", "~": " about ", "°": " degrees ", "×": " times ", "÷": " divided by ",
    "±": " plus or minus ", "$": " dollars ", "£": " pounds ", "€": " euros ", "¥": " yen ",
    "¢": " cents ", "/": " slash ", "(": ", ", ")": ", ", "[": ", ", "]": ", ", "{": ", ", "}": ", ",
    '"': " ", "*": " ", "_": " ", "|": " ", "\\": " ", "^": " ", "<": " ", ">": " ", "`": " ",
}
_SYMBOL = re.compile("|".join(re.escape(s) for s in _SYMBOL_WORDS))
_LETTER = r"[^\W\d_]"
_WORD_SLASH = re.compile(rf"(?<={_LETTER})/(?={_LETTER})")  # "and/or" -> "and or"
_PAUSE_DASH = re.compile(r"\s*-{2,}\s*|\s+-\s+")
_LOOSE_HYPHEN = re.compile(rf"(?<!{_LETTER})-|-(?!{_LETTER})")
_LOOSE_APOSTROPHE = re.compile(rf"(?<!{_LETTER})'|'(?!{_LETTER})")

_SENTENCE_END = re.compile(r"[.!?]+[\"')\]]*(?=\s|$)")
_CLAUSE_BREAK = re.compile(r"(?<=[,;:])\s+")


def _check_str(text: object) -> str:
    if not isinstance(text, str):
        raise TextError(f"text must be a str, got {type(text).__name__}")
    return text


def clean_text(text: str) -> str:
    """Language-neutral clean-up: NFKC, curly quotes and dashes to ASCII, control and format
    characters removed, whitespace (including newlines and tabs) collapsed to single spaces."""
    text = unicodedata.normalize("NFKC", _check_str(text).translate(_TRANSLATE))
    if text.isascii():
        text = _ASCII_CONTROL.sub("", text)
    else:
        text = "".join(
            " " if ch.isspace() else "" if unicodedata.category(ch)[0] == "C" else ch for ch in text
        )
    return " ".join(text.split())


def _is_english_char(ch: str) -> bool:
    if ch.isascii() or ch in _SPOKEN_SYMBOLS:
        return True
    return unicodedata.category(ch)[0] == "L" and "LATIN" in unicodedata.name(ch, "")


def _ends_sentence(text: str, end: int) -> bool:
    rest = text[end:]
    return not rest.strip() or _STARTS_SENTENCE.match(rest) is not None


def _abbreviation(m: re.Match) -> str:
    if m["bare"]:
        key = m["bare"].lower()
        return "saint" if key == "st" else _TITLES[key]
    key = m["abbr"].lower()
    if key == "st":  # "St. Louis" vs "Main St." / "42nd St. Then": look at the word before
        before = m.string[: m.start()].split()
        after_street_name = bool(before) and (before[-1][:1].isupper() or before[-1][:1].isdigit())
        if _STARTS_SENTENCE.match(m.string[m.end():]) and not after_street_name:
            return "saint"
    word = _ABBREVIATIONS[key]
    if key in _TRAILING and _ends_sentence(m.string, m.end()):
        return word + "."
    return word


def _minutes(mm: str) -> str:
    return f"oh {digits(mm[1])}" if mm.startswith("0") else cardinal(int(mm))


def _time_ampm(m: re.Match) -> str:
    hour = int(m["h"])
    if not 1 <= hour <= 12:
        return m[0]
    words = [cardinal(hour)]
    if m["m"] and m["m"] != "00":
        words.append(_minutes(m["m"]))
    words.append(f"{m['ap'].lower()} m")
    dot = "." if m["dot"] and _ends_sentence(m.string, m.end()) else ""
    return " ".join(words) + dot


def _time(m: re.Match) -> str:
    hour = int(m["h"])
    if m["m"] == "00":
        return f"{cardinal(hour)} o'clock" if 1 <= hour <= 12 else f"{cardinal(hour)} hundred"
    return f"{cardinal(hour)} {_minutes(m['m'])}"


def _currency(m: re.Match) -> str:
    unit, units, sub, subs = _CURRENCY_UNITS[m["sym"]]
    integer, frac = m["int"].replace(",", ""), m["frac"]
    scale = (m["word"] or _SCALE_LETTERS.get((m["letter"] or "").lower(), "")).lower()
    if scale:
        amount = decimal(integer, frac) if frac else cardinal(int(integer))
        return f" {amount} {scale} {units} "
    if frac and (len(frac) > 2 or not sub):
        return f" {decimal(integer, frac)} {units} "
    whole, cents = int(integer), int(frac.ljust(2, "0")) if frac else 0
    parts = []
    if whole or not cents:
        parts.append(f"{cardinal(whole)} {unit if whole == 1 else units}")
    if cents:
        parts.append(f"{cardinal(cents)} {sub if cents == 1 else subs}")
    return " " + " and ".join(parts) + " "


def _read_number(m: re.Match) -> str:
    integer, frac = m["int"].replace(",", ""), m["frac"]
    sign = "minus " if m["neg"] else ""
    if frac:
        words = decimal(integer, frac)
    elif len(integer) > 1 and integer.startswith("0"):
        words = digits(integer)
    elif not sign and "," not in m["int"] and len(integer) == 4 and is_year(int(integer)):
        words = year(int(integer))
    else:
        words = cardinal(int(integer))
    return f" {sign}{words} "


def _plural(words: str) -> str:
    return words[:-1] + "ies" if words.endswith("y") else words + "s"


def _decade(m: re.Match) -> str:
    n = int(m["int"])
    return " " + _plural(year(n) if is_year(n) else cardinal(n)) + " "


def _phone(m: re.Match) -> str:
    groups = [g for g in (m["area"], m["mid"], m["last"]) if g]
    return " " + ", ".join(digits(g) for g in groups) + " "


def _tidy(text: str) -> str:
    text = " ".join(text.split())
    text = re.sub(r"\s+([,.;:!?])", r"\1", text)
    text = re.sub(r"([,;:])(?:\s*[,;:])+", r"\1", text)
    text = re.sub(r"[,;:]+(?=[.!?])", "", text)
    text = re.sub(r"^[\s,;:.!?]+", "", text)
    return re.sub(r"[\s,;:]+$", "", text)


def normalize_text(text: str) -> str:
    """Normalise English text for the phonemizer.

    ``"Dr. Smith paid $3.50 on May 21st, 1984."`` becomes
    ``"doctor Smith paid three dollars and fifty cents on May twenty first, nineteen eighty four."``.
    The result has no digits; it may be empty when nothing in ``text`` can be spoken
    (only emoji, symbols or punctuation). Raises :class:`TextError` for non-str input.
    """
    text = "".join(ch if _is_english_char(ch) else " " for ch in clean_text(text))
    text = _NUMBER_ABBREVIATION.sub("number ", text)
    text = _ABBREVIATION.sub(_abbreviation, text)
    text = _TIME_AMPM.sub(_time_ampm, text)
    text = _TIME.sub(_time, text)
    text = _CURRENCY.sub(_currency, text)
    text = _PERCENT.sub(lambda m: _read_number(m) + "percent ", text)
    text = _ORDINAL.sub(lambda m: f" {ordinal(int(m['int'].replace(',', '')))} ", text)
    text = _DECADE.sub(_decade, text)
    text = _PHONE.sub(_phone, text)
    text = _RANGE.sub(" to ", text)
    text = _BARE_DECIMAL.sub("0.", text)
    text = re.sub(r"#(?=\d)", " number ", text)
    text = _NUMBER.sub(_read_number, text)
    text = _WORD_SLASH.sub(" ", text)
    text = _SYMBOL.sub(lambda m: _SYMBOL_WORDS[m[0]], text)
    text = _PAUSE_DASH.sub(", ", text)
    text = _LOOSE_HYPHEN.sub(" ", text)
    text = _LOOSE_APOSTROPHE.sub("", text)
    return _tidy(text)


def _is_sentence_boundary(paragraph: str, m: re.Match) -> bool:
    after = paragraph[m.end():].lstrip()
    if not after:
        return True
    if after[0].islower():
        return False
    if m[0].rstrip("\"')]") != ".":
        return True
    before = paragraph[: m.start()].split()
    word = before[-1].lstrip("\"'([").lower() if before else ""
    is_initial = len(word) == 1 and word.isalpha()
    return not (is_initial or word in _TITLES or word in _INLINE or word == "no")


def _pack(pieces: list[str], max_chars: int) -> list[str]:
    chunks: list[str] = []
    for piece in pieces:
        if chunks and len(chunks[-1]) + 1 + len(piece) <= max_chars:
            chunks[-1] += " " + piece
        else:
            chunks.append(piece)
    return chunks


def _split_long(sentence: str, max_chars: int) -> list[str]:
    if len(sentence) <= max_chars:
        return [sentence]
    pieces: list[str] = []
    for clause in _CLAUSE_BREAK.split(sentence):
        if len(clause) <= max_chars:
            pieces.append(clause)
            continue
        for word in clause.split(" "):
            pieces.extend(word[i : i + max_chars] for i in range(0, len(word), max_chars))
    return _pack(pieces, max_chars)


def split_sentences(text: str, max_chars: int = 300) -> list[str]:
    """Split raw text into sentences of at most ``max_chars`` characters, in order.

    Sentences end at ``. ! ?`` (plus closing quotes or brackets) followed by a space and a
    word that does not start in lower case, and at blank lines; a period after a title
    (``Mr.``, ``Dr.``), ``e.g.``/``i.e.`` or a single initial does not end a sentence.
    Sentences longer than ``max_chars`` are broken after commas, semicolons or colons, then
    between words, and a single word longer than ``max_chars`` is cut. Whitespace is
    collapsed; whitespace-only text gives ``[]``.
    """
    _check_str(text)
    if not isinstance(max_chars, int) or isinstance(max_chars, bool) or max_chars < 1:
        raise TextError(f"max_chars must be a positive integer, got {max_chars!r}")
    sentences: list[str] = []
    for paragraph in re.split(r"\n\s*\n", text):
        paragraph = " ".join(paragraph.split())
        start = 0
        for m in _SENTENCE_END.finditer(paragraph):
            if _is_sentence_boundary(paragraph, m):
                sentences.append(paragraph[start : m.end()].strip())
                start = m.end()
        sentences.append(paragraph[start:].strip())
    return [chunk for s in sentences if s for chunk in _split_long(s, max_chars)]
