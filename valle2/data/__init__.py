"""Data preparation: lhotse manifests, speaker-disjoint splits, resumable tokenized shards, and
optional synthetic speakers.

>>> cuts = manifests_from_tsv("../shared/data")
>>> train, valid = split_by_speaker(cuts, valid_speakers=1, seed=0)
>>> prepare(train, load_codec("offline"), None, "prepared/train")
>>> data = load_shards("prepared/train")  # list[Utterance]
"""
from .manifests import (
    RECIPES,
    TRAIN_PARTS,
    cut_speaker,
    cut_text,
    manifests_from_recipe,
    manifests_from_tsv,
    split_by_speaker,
)
from .prepare import Prepared, PrepareReport, load_prepared, load_shards, load_tokenizer, prepare
from .synthetic import (
    ESPEAK_VOICES,
    SyntheticVoice,
    attest_synthetic_corpus,
    default_voices,
    festival_voices,
    flite_voices,
    synthesize_corpus,
)
from .utterance import Utterance

__all__ = [
    "ESPEAK_VOICES",
    "RECIPES",
    "TRAIN_PARTS",
    "Utterance",
    "attest_synthetic_corpus",
    "PrepareReport",
    "Prepared",
    "SyntheticVoice",
    "cut_speaker",
    "cut_text",
    "default_voices",
    "festival_voices",
    "flite_voices",
    "load_prepared",
    "load_shards",
    "load_tokenizer",
    "manifests_from_recipe",
    "manifests_from_tsv",
    "prepare",
    "split_by_speaker",
    "synthesize_corpus",
]
