"""English number words: cardinals, ordinals, years, decimals and digit strings.

Words are joined with single spaces and no hyphens or "and" (American style), e.g.
``cardinal(121) == "one hundred twenty one"`` and ``year(1984) == "nineteen eighty four"``.
"""
from __future__ import annotations

_ONES = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
    "nineteen",
)
_TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
_SCALES = (
    (10**15, "quadrillion"),
    (10**12, "trillion"),
    (10**9, "billion"),
    (10**6, "million"),
    (10**3, "thousand"),
)
_IRREGULAR_ORDINALS = {
    "one": "first", "two": "second", "three": "third", "five": "fifth",
    "eight": "eighth", "nine": "ninth", "twelve": "twelfth",
}

MAX_CARDINAL = 10**18 - 1
"""Largest number read as a cardinal; longer numbers are read digit by digit."""


def digits(number: str) -> str:
    """Read a string of ASCII digits one by one: ``"2048"`` -> ``"two zero four eight"``."""
    return " ".join(_ONES[int(d)] for d in number)


def _cardinal_words(n: int) -> list[str]:
    if n < 20:
        return [_ONES[n]]
    if n < 100:
        tens, ones = divmod(n, 10)
        return [_TENS[tens]] + ([_ONES[ones]] if ones else [])
    if n < 1000:
        hundreds, rest = divmod(n, 100)
        return [_ONES[hundreds], "hundred"] + (_cardinal_words(rest) if rest else [])
    for value, name in _SCALES:
        if n >= value:
            high, rest = divmod(n, value)
            return _cardinal_words(high) + [name] + (_cardinal_words(rest) if rest else [])
    raise AssertionError("unreachable: every n >= 1000 has a scale")


def cardinal(n: int) -> str:
    """Spell an integer: ``-42`` -> ``"minus forty two"``; beyond 10**18 it reads digits."""
    if n < 0:
        return "minus " + cardinal(-n)
    if n > MAX_CARDINAL:
        return digits(str(n))
    return " ".join(_cardinal_words(n))


def ordinal(n: int) -> str:
    """Spell an ordinal: ``21`` -> ``"twenty first"``, ``100`` -> ``"one hundredth"``."""
    words = cardinal(n).split(" ")
    last = words[-1]
    if last in _IRREGULAR_ORDINALS:
        words[-1] = _IRREGULAR_ORDINALS[last]
    elif last.endswith("y"):
        words[-1] = last[:-1] + "ieth"
    else:
        words[-1] = last + "th"
    return " ".join(words)


def is_year(n: int) -> bool:
    """Whether a bare four-digit number is read as a year (1000 to 2099)."""
    return 1000 <= n <= 2099


def year(n: int) -> str:
    """Read a year in pairs: 1984 -> "nineteen eighty four", 1905 -> "nineteen oh five",
    1900 -> "nineteen hundred", 2000-2009 -> "two thousand (n)", 2024 -> "twenty twenty four"."""
    high, low = divmod(n, 100)
    if n % 1000 < 10:
        return cardinal(n)
    if low == 0:
        return cardinal(high) + " hundred"
    if low < 10:
        return f"{cardinal(high)} oh {_ONES[low]}"
    return f"{cardinal(high)} {cardinal(low)}"


def decimal(integer: str, fraction: str) -> str:
    """Read a decimal from its digit strings: ("3", "14") -> "three point one four"."""
    head = cardinal(int(integer)) if integer else ""
    return f"{head} point {digits(fraction)}".strip()
