"""The helpers of ``benchmarks/demo_quality.py`` that need no speech data: the Harvard text set,
its length buckets, the last-word and babble check, the pause floor and the prompt rotation."""
import numpy as np
import pytest

from benchmarks.demo_quality import (BUCKETS, FUNCTION_WORDS, HARVARD, Prompt, end_check, harvard_sentences,
                                     join_clauses, length_buckets, pause_floor_db, prefix_phrase, speak_in_turn)
from valle2.errors import ConsentError
from valle2.text import split_sentences


def test_the_harvard_file_says_where_it_comes_from_and_holds_ten_lists():
    header = HARVARD.read_text().splitlines()[0]
    assert header.startswith("#") and "IEEE" in header and "1969" in header and "public domain" in header.lower()
    sentences = harvard_sentences()
    assert len(sentences) == 100 and sentences[0] == "The birch canoe slid on the smooth planks."
    assert all(s.endswith(".") and len(split_sentences(s)) == 1 for s in sentences)


def test_prefix_phrases_end_on_a_content_word_with_a_period():
    s = "It's easy to tell the depth of a well."
    assert prefix_phrase(s, 2, 1, 3) == "It's easy."
    assert prefix_phrase(s, 3, 1, 3) == "It's easy."            # "to" is a function word; 3 is the most
    assert prefix_phrase("The birch canoe slid on the smooth planks.", 1, 1, 3) == "The birch."
    assert prefix_phrase("Mesh wire keeps chicks inside.", 8, 4, 8) == "Mesh wire keeps chicks inside."
    assert prefix_phrase("It snowed, rained, and hailed the same morning.", 2, 1, 3) == "It snowed."
    assert prefix_phrase("The soft cushion broke the man's fall.", 6, 4, 8) == "The soft cushion broke the man's fall."


def test_length_buckets_hold_their_word_counts_and_use_each_sentence_once():
    sentences = harvard_sentences()
    buckets = length_buckets(sentences, 10)
    assert list(buckets) == list(BUCKETS) and all(len(b) == 10 for b in buckets.values())
    words = {name: [len(t.split()) for t in texts] for name, texts in buckets.items()}
    assert set(words["1-3 words"]) == {1, 2, 3}
    assert all(4 <= n <= 8 for n in words["4-8 words"])
    assert all(n >= 12 for n in words["1 sentence, 12+ words"])
    assert all(len(split_sentences(t)) == 1 for t in buckets["1 sentence, 12+ words"] + buckets["1-3 words"])
    assert all(len(split_sentences(t)) == 3 for t in buckets["3 sentences"])
    for text in buckets["1-3 words"] + buckets["4-8 words"]:
        assert text.endswith(".") and text.split()[-1].rstrip(".").lower() not in FUNCTION_WORDS
    starts = [t.split()[0].rstrip(".") for name in BUCKETS[:2] for t in buckets[name]]
    assert starts == [s.split()[0] for s in sentences[:20]]      # the short buckets cut sentences 1-20, in order
    assert buckets["3 sentences"][-1].endswith(sentences[69])    # 10 + 10 + 20 + 30 sentences, none twice
    assert len(length_buckets(sentences, 14)["3 sentences"]) == 14     # 98 of the 100 sentences
    with pytest.raises(ValueError, match="need 77 sentences, got 76"):
        length_buckets(sentences[:76], 11)


def test_join_clauses_makes_one_sentence():
    assert join_clauses("Rice is often served in round bowls.", "The juice of lemons makes fine punch.") == \
        "Rice is often served in round bowls, and the juice of lemons makes fine punch."


def test_end_check_finds_the_last_word_and_the_babble_after_it():
    ref = "The birch canoe slid on the smooth planks."
    assert end_check(ref, "the birch canoe slid on the smooth planks") == (True, 0)
    assert end_check(ref, "a birch canoe slid on a smooth planks and the") == (True, 2)
    assert end_check(ref, "the birch canoe slid on the smooth") == (False, 0)
    assert end_check(ref, "the birch canoe slid on the smooth planks of the river") == (True, 3)
    assert end_check(ref, "the birch canoe slid on the smooth banks") == (False, 0)
    assert end_check("Good morning, everyone.", "i'm are eating everyone") == (True, 0)
    assert end_check(ref, "") == (False, 0)
    with pytest.raises(ValueError, match="no words"):
        end_check("...", "hello")


def test_pause_floor_tells_silent_pauses_from_a_noise_floor():
    sr = 16_000
    t = np.arange(sr) / sr
    speech = 0.3 * np.sin(2 * np.pi * 200 * t)
    gaps = np.zeros(sr)
    noise = np.random.default_rng(0).normal(0, 0.3 / np.sqrt(2) * 10 ** (-30 / 20), sr)   # 30 dB below the tone
    silent = np.concatenate([speech, gaps, speech])
    noisy = np.concatenate([speech, noise, speech])
    assert pause_floor_db(silent, sr) < -80
    assert pause_floor_db(noisy, sr) == pytest.approx(-30, abs=1.5)


def _prompt(name):
    return Prompt(name, None, np.zeros(10, np.float32), 16_000, "hello")


def test_speak_in_turn_rotates_prompts_and_drops_a_refused_one():
    prompts = [_prompt(n) for n in "abc"]

    def speak(prompt, text):
        if prompt.speaker == "b":
            raise ConsentError("looks synthesized")
        return np.ones(3, np.float32), 16_000, 0.5

    refused = []
    out = speak_in_turn(speak, prompts, ["one", "two", "three", "four"], refused)
    assert [(o.text, o.prompt.speaker) for o in out] == [("one", "a"), ("two", "c"), ("three", "a"), ("four", "c")]
    assert refused == ["b: looks synthesized"] and (out[0].sr, out[0].seconds) == (16_000, 0.5)
    with pytest.raises(SystemExit, match="refused every prompt"):
        speak_in_turn(speak, [_prompt("b")], ["one"], [])


def test_extra_prompts_take_each_speakers_first_clip_with_its_transcript(tmp_path):
    from benchmarks.demo_quality import extra_prompts
    from valle2.audio import save_audio

    folder = tmp_path / "real-extra"
    (folder / "cv").mkdir(parents=True)
    lines = ["path\tsource\tspeaker\tseconds\ttext\tlicence"]
    for name, speaker, text in [("b2", "s_b", "Second take."), ("a1", "s_a", "How do I know?"), ("b1", "s_b", "First take."),
                                ("c1", "s_c", "What did he look like?"), ("x1", "s_x", "Other source.")]:
        save_audio(folder / "cv" / f"{name}.flac", np.zeros(1600, np.float32) + 0.01, 16_000)
        lines.append(f"cv/{name}.flac\t{'other' if speaker == 's_x' else 'cv'}\t{speaker}\t0.1\t{text}\tCC0-1.0")
    (folder / "clips.tsv").write_text("\n".join(lines) + "\n")
    prompts, files = extra_prompts(tmp_path, "cv", 2)
    assert [(p.speaker, p.file.name, p.text, p.sr) for p in prompts] == [("s_a", "a1.flac", "How do I know?", 16_000),
                                                                          ("s_b", "b1.flac", "First take.", 16_000)]
    assert sorted(f.name for f in files) == ["a1.flac", "b1.flac", "c1.flac"]


def test_different_speaker_mean_averages_every_pair():
    from benchmarks import demo_quality

    vectors = [np.array([1.0, 0.0]), np.array([0.0, 1.0]), np.array([0.6, 0.8])]
    assert demo_quality.different_speaker_mean(vectors) == pytest.approx((0.0 + 0.6 + 0.8) / 3)
