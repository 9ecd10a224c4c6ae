"""Evaluation the paper's way (LibriSpeech test-clean 4-10 s, WER / SIM / DNSMOS, best-of-N),
the RAS and group-size ablations, and Markdown reports with figures.

>>> items = load_test_utterances("LibriSpeech/test-clean")
>>> result = Evaluation(model, "eval/prefix3", EvalOptions(setting="prefix3"), scorer, gate).run(items)
"""
from .ablate import ablate_group, ablate_ras
from .backends import ASR_BACKENDS, SIM_BACKENDS, load_asr, load_speaker_encoder
from .runner import EvalOptions, EvalResult, Evaluation, select_trials
from .safeguards import open_research_gate
from .scoring import Scorer, Scores, best_of, rerank_key, summarize
from .testset import SETTINGS, EvalUtterance, Trial, build_trials, load_test_utterances, select_test_set

__all__ = ["ASR_BACKENDS", "SETTINGS", "SIM_BACKENDS", "EvalOptions", "EvalResult", "Evaluation",
           "Scorer", "Scores", "EvalUtterance", "Trial", "ablate_group", "ablate_ras",
           "best_of", "build_trials", "load_asr", "load_speaker_encoder", "load_test_utterances",
           "open_research_gate", "rerank_key", "select_test_set", "select_trials", "summarize"]
