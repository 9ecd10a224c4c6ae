"""Sentence sources of the synthetic recipe (valle2.data.texts)."""
import pytest

from valle2.data.texts import fortune_sentences, plain_sentences
from valle2.errors import DataError


def test_plain_sentences_keep_only_what_has_one_reading():
    text = ("A stitch in time saves nine.  Call 555-1234 now! Don't panic, it's only a test?\n"
            "Too short. See http://example.com for more details today. ok then this has no capital letter.")
    assert plain_sentences(text) == ["A stitch in time saves nine.", "Don't panic, it's only a test?"]


def test_fortune_files_are_split_and_attributions_dropped(tmp_path):
    (tmp_path / "wisdom").write_text("Never put off till tomorrow what you can do today.\n\t\t-- Somebody\n%\n"
                                     "Look before you leap into the water.  Measure twice, cut once.\n%\n")
    (tmp_path / "wisdom.dat").write_bytes(b"\x00\x01")   # fortune's index files are skipped
    assert fortune_sentences(tmp_path) == ["Look before you leap into the water.", "Measure twice, cut once.",
                                           "Never put off till tomorrow what you can do today."]


def test_no_fortunes_names_the_package(tmp_path):
    with pytest.raises(DataError, match="install Debian's 'fortunes' package"):
        fortune_sentences(tmp_path / "missing")
