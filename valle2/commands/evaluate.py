"""``valle2 evaluate``: WER, SIM and DNSMOS the paper's way, with reference rows and a report.

The test-set, metric and safeguard arguments here are shared with ``valle2 ablate``."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from .options import add_decoding_args, add_model_arg, decoding_options


def add_test_data_args(p: argparse.ArgumentParser, flag: str = "--data", cuts_flag: str = "--cuts") -> None:
    """The test corpus: a folder or a lhotse CutSet."""
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument(flag, type=Path, help="LibriSpeech-format folder (SPK/CHAPTER/*.flac + *.trans.txt) "
                                           "or a folder with transcribed.tsv")
    src.add_argument(cuts_flag, type=Path, help="a lhotse CutSet (.jsonl.gz)")


def add_test_set_args(p: argparse.ArgumentParser, many_settings: bool = False) -> None:
    """Output folder, the trial setting(s), the test-set rule, the metric backends, the safeguards."""
    from ..evaluation.backends import ASR_BACKENDS, SIM_BACKENDS
    from ..evaluation.testset import SETTINGS

    p.add_argument("--out", required=True, type=Path, help="output folder: results.json, table.md, report.md, audio")
    p.add_argument("--setting", choices=SETTINGS, default=["prefix3"] if many_settings else "prefix3",
                   nargs="+" if many_settings else None,
                   help="prefix3: own first 3 s, continuation; reference: previous utterance of the speaker, cross; "
                        "promptN: its first N s, cross")
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N test utterances")
    p.add_argument("--min-test-seconds", type=float, default=4.0, help="test-set rule: shortest utterance (paper: 4)")
    p.add_argument("--max-test-seconds", type=float, default=10.0, help="test-set rule: longest utterance (paper: 10)")
    p.add_argument("--asr", default="pocketsphinx", choices=tuple(ASR_BACKENDS), help="the recogniser that gives WER")
    p.add_argument("--sim", default="resemblyzer", choices=tuple(SIM_BACKENDS), help="the speaker encoder that gives SIM")
    s = p.add_argument_group("safeguards")
    s.add_argument("--safety-home", type=Path, default=None, help="registry, keys and audit log (default: $VALLE2_HOME or ~/.valle2)")
    s.add_argument("--corpus-name", default="evaluation corpus", help="name of the research-corpus attestation")
    s.add_argument("--corpus-licence", default=None,
                   help="licence of the test corpus (e.g. 'CC BY 4.0' for LibriSpeech): attests files not yet attested")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def scorer(args: argparse.Namespace, dnsmos: bool):
    """The :class:`Scorer` of ``--asr`` and ``--sim``, with DNSMOS or without."""
    from ..evaluation.backends import load_asr, load_speaker_encoder
    from ..evaluation.scoring import Scorer
    from ..metrics import dnsmos as dnsmos_fn

    return Scorer(load_asr(args.asr), load_speaker_encoder(args.sim), dnsmos_fn if dnsmos else None)


def research_gate(args: argparse.Namespace, trials: list):
    """The consent gate of ``--safety-home``, with the trials' prompt and target files attested."""
    from ..evaluation.safeguards import open_research_gate

    files = [t.prompt.path for t in trials] + [t.target.path for t in trials]
    return open_research_gate(args.safety_home, files, args.corpus_name, args.corpus_licence)


def eval_options(args: argparse.Namespace, setting: str, decoding, n_samples: int = 1, references: bool = True,
                 dnsmos: bool = True):
    """The :class:`EvalOptions` of the parsed arguments for ``setting``."""
    from ..evaluation.runner import EvalOptions

    return EvalOptions(setting=setting, n_samples=n_samples, min_seconds=args.min_test_seconds,
                       max_seconds=args.max_test_seconds, limit=args.limit, references=references, dnsmos=dnsmos,
                       decoding=decoding)


def register(sub) -> None:
    p = sub.add_parser("evaluate", help="WER, SIM and DNSMOS the paper's way, with reference rows and a report")
    add_model_arg(p)
    add_test_data_args(p)
    add_test_set_args(p, many_settings=True)
    p.add_argument("--n-samples", type=int, default=1, help="samples per utterance; the best is kept (paper: 1 and 5)")
    p.add_argument("--no-references", action="store_true", help="skip the ground-truth and codec-resynthesis rows")
    p.add_argument("--no-dnsmos", action="store_true", help="skip DNSMOS (several seconds a clip on a CPU)")
    p.add_argument("--figures", type=int, default=2, help="utterances per setting that get spectrogram and attention PNGs")
    add_decoding_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..audio import atomic_write_bytes
    from ..evaluation.report import image_links, results_table, trial_figures, write_report
    from ..evaluation.runner import Evaluation, select_trials
    from ..evaluation.testset import load_test_utterances
    from ..safety.consent import file_sha256
    from ..synthesis import load_model

    items = load_test_utterances(args.data, args.cuts)
    decoding = decoding_options(args)
    options = {s: eval_options(args, s, decoding, args.n_samples, not args.no_references, not args.no_dnsmos)
               for s in args.setting}
    trials = {s: select_trials(items, o) for s, o in options.items()}
    gate = research_gate(args, [t for ts in trials.values() for t in ts])
    model = load_model(args.model, gate=gate)
    score = scorer(args, not args.no_dnsmos)
    model_id = file_sha256(args.model)
    summaries, sections, figures = {}, [], []
    for s, o in options.items():
        e = Evaluation(model, args.out / s, o, score, gate, model_id)
        result = e.run(items, progress=not args.quiet)
        summaries[s] = result.summary
        sources = {}
        for r in result.records:
            if "rows" in r:
                sources[r["prompt_text_source"]] = sources.get(r["prompt_text_source"], 0) + 1
        sections.append((f"Setting {s}", f"{len(result.records)} trials: {result.refused} refused by the consent gate, "
                                         f"{result.failed} failed; prompt transcripts from: {sources or 'n/a'}."))
        done = {r["id"] for r in result.records if "rows" in r}
        for t in [t for t in trials[s] if t.id in done][: args.figures]:
            figures += trial_figures(model, t, e.out, args.out / "figures")
    table = results_table(summaries)
    print(table)
    atomic_write_bytes(args.out / "results.json", json.dumps({"summary": summaries}, indent=2).encode())
    atomic_write_bytes(args.out / "table.md", (table + "\n").encode())
    write_report(args.out / "report.md", f"Evaluation of {args.model.name}", [
        ("Results (paper's Table 1 columns: n/a where not filled in)", table), *sections,
        ("How it was measured", f"ASR {score.asr.name}, SIM {score.encoder.name}, DNSMOS P.808 "
                                f"{'on' if not args.no_dnsmos else 'off'}; {args.n_samples} sample(s) per utterance, "
                                "best by (min(SIM to prompt, 0.3), -WER); outputs watermarked before scoring."),
        ("Figures: spectrograms and AR attention", image_links(figures, args.out) or "none")])
    print(f"wrote {args.out / 'report.md'}")
    return 0
