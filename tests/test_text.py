"""Tests for valle2.text: normalisation, espeak phonemes, phoneme BPE tokenizer, splitting."""
from __future__ import annotations

import json
import random

import pytest

from valle2.errors import ModelError, TextError
from valle2.text import (
    ENGLISH_IPA,
    TextTokenizer,
    clean_text,
    is_pronounceable,
    normalize_text,
    phonemize,
    split_sentences,
)

CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "She sells sea shells by the sea shore.",
    "How much wood would a woodchuck chuck if a woodchuck could chuck wood?",
    "Peter Piper picked a peck of pickled peppers.",
    "It was the best of times, it was the worst of times.",
    "Call me Ishmael.",
    "All happy families are alike; each unhappy family is unhappy in its own way.",
    "In the beginning there was nothing but the sea and the sky.",
    "Dr. Smith paid $3.50 for a coffee on May 21st, 1984.",
    "Mr. and Mrs. Jones live at 221 Baker St. with their three cats.",
    "We will meet at 3:30 p.m. on the 2nd floor.",
    "Prices rose by 12.5% in 2023, and nobody was happy about it.",
    "Would you like some tea, or would you rather have coffee?",
    "The weather today is sunny with a light breeze from the west.",
    "Please remember to bring your passport and your ticket.",
    "Reading books is one of the best ways to learn new things.",
    "The children played in the garden until the sun went down.",
    "Measure twice, cut once, and never rush the pleasure of work.",
    "Thank you very much for your help yesterday afternoon!",
    "Where did you put the keys to the red car?",
    "Music can change the way we feel in a single moment.",
    "He whispered something that nobody else could hear.",
    "The train to Boston leaves every hour on the hour.",
    "A journey of a thousand miles begins with a single step.",
    "Our neighbours painted their fence bright yellow last summer.",
    "Think about the question carefully before you answer it.",
    "The museum opens at nine o'clock and closes at five.",
    "They finally found the treasure buried under the old oak tree.",
    "Good morning everyone, and welcome to the show!",
    "Is this the real life, or is this just fantasy?",
]


@pytest.fixture(scope="module")
def tokenizer() -> TextTokenizer:
    return TextTokenizer.train(CORPUS, vocab_size=160)


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("I have 3 apples and 21 pears.", "I have three apples and twenty one pears."),
        ("1,234,567 people", "one million two hundred thirty four thousand five hundred sixty seven people"),
        ("1st, 22nd and 103rd.", "first, twenty second and one hundred third."),
        ("In 1984, 1905, 2000, 2024.", "In nineteen eighty four, nineteen oh five, two thousand, twenty twenty four."),
        ("Pi is 3.14 and it is -7 outside.", "Pi is three point one four and it is minus seven outside."),
        ("It costs $3.50, $1, or €0.99.", "It costs three dollars and fifty cents, one dollar, or ninety nine cents."),
        ("£2.50 fee, $1.5 million loan", "two pounds and fifty pence fee, one point five million dollars loan"),
        ("Sales grew 50% then 12.5%.", "Sales grew fifty percent then twelve point five percent."),
        ("Dr. Smith met Mr. and Mrs. Jones.", "doctor Smith met mister and missus Jones."),
        ("St. Louis is far from Main St.", "saint Louis is far from Main street."),
        ("Fruit, e.g. apples, etc.", "Fruit, for example apples, et cetera."),
        ("Tom & Jerry @ home, 2 + 2 = 4", "Tom and Jerry at home, two plus two equals four"),
        ("We meet at 3:30 p.m. or 10:00.", "We meet at three thirty p m or ten o'clock."),
        ("The 1990s, pages 10-20, No. 5.", "The nineteen nineties, pages ten to twenty, number five."),
        ("\u201cSmart\u201d quotes \u2014 and dashes\u2026 it\u2019s", "Smart quotes, and dashes... it's"),
        ("  lots   of\n\twhite\x00space  here ", "lots of whitespace here"),
        ("Café in Zürich \U0001F600 \u65e5\u672c", "Café in Zürich"),
    ],
)
def test_normalize_text(raw: str, expected: str) -> None:
    assert normalize_text(raw) == expected


def test_normalize_removes_every_digit_and_never_crashes() -> None:
    rng = random.Random(0)
    alphabet = "ab Z09.,;:!?$£€%&@+=#/-'\"()~°\t\n\x00\u200b\u202e\u0301é日😀ﬁ½…—\ud800"
    for _ in range(500):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        out = normalize_text(text)
        assert not any(ch.isdigit() for ch in out)
        assert out == out.strip() and "  " not in out


def test_normalize_and_clean_reject_non_str() -> None:
    with pytest.raises(TextError, match="must be a str"):
        normalize_text(b"bytes")  # type: ignore[arg-type]
    assert clean_text("Привет,\u00a0мир\u200b!") == "Привет, мир!"


def test_phonemize_hello_is_ipa_with_stress() -> None:
    (hello,) = phonemize(["hello"])
    assert "h" in hello and "l" in hello and "ˈ" in hello
    out = phonemize(["Hello, world!", "", "hello"])
    assert out[0].endswith("!") and ", " in out[0]
    assert out[1] == "" and out[2] == hello
    assert set(out[0]) <= set(ENGLISH_IPA + ",! ")


def test_phonemize_rejects_bad_input() -> None:
    with pytest.raises(TextError, match="list of str"):
        phonemize("hello")  # type: ignore[arg-type]
    with pytest.raises(TextError, match="not supported"):
        phonemize(["hello"], language="xx-nowhere")


def test_round_trip_and_bpe_merges(tokenizer: TextTokenizer) -> None:
    text = "Thank you, the weather is sunny today!"
    phones = tokenizer.phonemes(text)
    ids = tokenizer.encode(text)
    assert tokenizer.decode(ids) == phones
    assert len(ids) < len(phones)
    assert all(0 < i < tokenizer.vocab_size for i in ids)
    assert tokenizer.pad_id == 0 and tokenizer.unk_id not in ids
    assert tokenizer.vocab_size <= 160


def test_vocab_size_zero_gives_one_token_per_phoneme_symbol(tokenizer: TextTokenizer) -> None:
    symbols = TextTokenizer.train(CORPUS, vocab_size=0)
    text = "Thank you, the weather is sunny today!"
    phones = symbols.phonemes(text)
    ids = symbols.encode(text)
    assert symbols.decode(ids) == phones
    assert len(ids) == len(phones)  # every IPA character, mark, punctuation and word boundary is a token
    assert len(ids) > len(tokenizer.encode(text)) and symbols.vocab_size < tokenizer.vocab_size
    with pytest.raises(TextError, match="vocab_size must be 0"):
        TextTokenizer.train(CORPUS, vocab_size=2)


def test_encode_batch_matches_encode(tokenizer: TextTokenizer) -> None:
    texts = ["Good morning!", "Where is the train?", "Good morning!"]
    assert tokenizer.encode_batch(texts) == [tokenizer.encode(t) for t in texts]


def test_state_dict_json_round_trip(tokenizer: TextTokenizer) -> None:
    state = json.loads(json.dumps(tokenizer.state_dict()))
    restored = TextTokenizer.from_state_dict(state)
    text = "A journey of 1,000 miles begins with one step."
    assert restored.encode(text) == tokenizer.encode(text)
    assert restored.vocab_size == tokenizer.vocab_size and restored.language == "en-us"


def test_from_state_dict_rejects_bad_state(tokenizer: TextTokenizer) -> None:
    with pytest.raises(ModelError, match="version"):
        TextTokenizer.from_state_dict({**tokenizer.state_dict(), "version": 99})
    with pytest.raises(ModelError, match="corrupt"):
        TextTokenizer.from_state_dict({**tokenizer.state_dict(), "tokenizer": "{not json"})


def test_english_alphabet_covers_phones_missing_from_training(tokenizer: TextTokenizer) -> None:
    # CORPUS never produces "x"; ENGLISH_IPA still gives it an id, so "Bach" has no <unk>.
    assert "x" in tokenizer.phonemes("Bach")
    assert tokenizer.unk_id not in tokenizer.encode("Bach")


def test_unknown_phoneme_characters_map_to_unk(tokenizer: TextTokenizer) -> None:
    # French phones such as ʁ and the nasal vowels are outside an English table.
    french = TextTokenizer.from_state_dict({**tokenizer.state_dict(), "language": "fr-fr"})
    phones = french.phonemes("Un bon vin rouge")
    assert "ʁ" in phones
    ids = french.encode("Un bon vin rouge")
    assert french.unk_id in ids
    decoded = french.decode(ids)
    assert "ʁ" not in decoded and "b" in decoded


def test_decode_rejects_out_of_range_ids(tokenizer: TextTokenizer) -> None:
    with pytest.raises(TextError, match="not an integer in"):
        tokenizer.decode([1, tokenizer.vocab_size])


@pytest.mark.parametrize(
    "bad, fragment",
    [
        ("", "text is empty"),
        ("   \n\t", "text is empty"),
        ("\x00\x07", "text is empty"),
        ("a" * 2001, "2001 characters long"),
        ("?!... ---", "nothing pronounceable"),
        ("\U0001F600\U0001F389", "nothing pronounceable"),
        (42, "must be a str"),
        (None, "must be a str"),
    ],
)
def test_bad_text_raises(tokenizer: TextTokenizer, bad: object, fragment: str) -> None:
    with pytest.raises(TextError, match=fragment):
        tokenizer.encode(bad)  # type: ignore[arg-type]


def test_batch_errors_name_the_index(tokenizer: TextTokenizer) -> None:
    with pytest.raises(TextError, match="text 1: text has nothing pronounceable"):
        tokenizer.encode_batch(["fine", "..."])


def test_max_chars_is_configurable(tokenizer: TextTokenizer) -> None:
    short = TextTokenizer.from_state_dict({**tokenizer.state_dict(), "max_chars": 10})
    with pytest.raises(TextError, match="10-character limit"):
        short.encode("this is longer than ten")
    assert short.encode("short") == tokenizer.encode("short")


def test_train_rejects_unusable_corpus() -> None:
    with pytest.raises(TextError, match="nothing pronounceable|anything pronounceable"):
        TextTokenizer.train(["...", "\U0001F600"])
    with pytest.raises(TextError, match="training text 0 must be a str"):
        TextTokenizer.train([3])  # type: ignore[list-item]


def test_is_pronounceable() -> None:
    assert is_pronounceable("həlˈoʊ!") and not is_pronounceable(", . ?")


def test_split_sentences() -> None:
    text = "Mr. Smith went to Washington. He said \"Hi!\" Then he left? Yes, e.g. this stays.\n\nNew paragraph"
    assert split_sentences(text) == [
        "Mr. Smith went to Washington.",
        'He said "Hi!"',
        "Then he left?",
        "Yes, e.g. this stays.",
        "New paragraph",
    ]
    assert split_sentences("It cost $3.50. J. R. Tolkien wrote.") == ["It cost $3.50.", "J. R. Tolkien wrote."]
    assert split_sentences("   ") == []


def test_split_long_sentences_at_commas_then_spaces() -> None:
    sentence = "This sentence is long, with several clauses, and it keeps going on and on without a stop"
    chunks = split_sentences(sentence, max_chars=40)
    assert all(len(c) <= 40 for c in chunks)
    assert chunks[0] == "This sentence is long,"
    assert " ".join(chunks) == sentence
    assert split_sentences("x" * 25, max_chars=10) == ["x" * 10, "x" * 10, "x" * 5]
    with pytest.raises(TextError, match="max_chars"):
        split_sentences("hi", max_chars=0)
