"""``valle2 evaluate`` and ``valle2 ablate {ras,group}``: register with :func:`add_evaluate_parsers`."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..audio import atomic_write_bytes
from .report import image_links, results_table, trial_figures, write_report
from ..safety.consent import file_sha256
from .runner import EvalOptions, Evaluation, select_trials
from .testset import SETTINGS, Trial, load_test_utterances


def _data_args(p: argparse.ArgumentParser, flag: str = "--data", cuts_flag: str = "--cuts") -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument(flag, type=Path, help="LibriSpeech-format folder (SPK/CHAPTER/*.flac + *.trans.txt) "
                                           "or a folder with transcribed.tsv")
    src.add_argument(cuts_flag, type=Path, help="a lhotse CutSet (.jsonl.gz)")


def _common_args(p: argparse.ArgumentParser, many_settings: bool = False) -> None:
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--setting", choices=SETTINGS, default=["prefix3"] if many_settings else "prefix3",
                   nargs="+" if many_settings else None,
                   help="prefix3: own first 3 s, continuation; reference: previous utterance of the speaker, cross; "
                        "promptN: its first N s, cross")
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N test utterances")
    p.add_argument("--min-seconds", type=float, default=4.0, help="test-set rule: shortest utterance (paper: 4)")
    p.add_argument("--max-seconds", type=float, default=10.0, help="test-set rule: longest utterance (paper: 10)")
    p.add_argument("--asr", default="pocketsphinx", choices=("pocketsphinx", "whisper", "nemo", "hubert"))
    p.add_argument("--sim", default="resemblyzer", choices=("resemblyzer", "wavlm"))
    s = p.add_argument_group("safeguards")
    s.add_argument("--safety-home", type=Path, default=None, help="registry, keys and audit log (default: $VALLE2_HOME or ~/.valle2)")
    s.add_argument("--corpus-name", default="evaluation corpus", help="name of the research-corpus attestation")
    s.add_argument("--corpus-licence", default=None,
                   help="licence of the test corpus (e.g. 'CC BY 4.0' for LibriSpeech): attests files not yet attested")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _scorer(args, dnsmos: bool):
    from ..metrics import dnsmos as dnsmos_fn
    from .backends import load_asr, load_speaker_encoder
    from .scoring import Scorer

    return Scorer(load_asr(args.asr), load_speaker_encoder(args.sim), dnsmos_fn if dnsmos else None)


def _gate(args, trials: list[Trial]):
    from .safeguards import open_research_gate

    files = [t.prompt.path for t in trials] + [t.target.path for t in trials]
    return open_research_gate(args.safety_home, files, args.corpus_name, args.corpus_licence)


def _options(args, setting: str, decoding, n_samples: int = 1, references: bool = True, dnsmos: bool = True) -> EvalOptions:
    return EvalOptions(setting=setting, n_samples=n_samples, min_seconds=args.min_seconds, max_seconds=args.max_seconds,
                       limit=args.limit, references=references, dnsmos=dnsmos, decoding=decoding)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from ..cli import decoding_options
    from ..synthesis import load_model

    items = load_test_utterances(args.data, args.cuts)
    decoding = decoding_options(args)
    options = {s: _options(args, s, decoding, args.n_samples, not args.no_references, not args.no_dnsmos)
               for s in args.setting}
    trials = {s: select_trials(items, o) for s, o in options.items()}
    gate = _gate(args, [t for ts in trials.values() for t in ts])
    model = load_model(args.model, gate=gate)
    scorer = _scorer(args, not args.no_dnsmos)
    model_id = file_sha256(args.model)
    summaries, sections, figures = {}, [], []
    for s, o in options.items():
        e = Evaluation(model, args.out / s, o, scorer, gate, model_id)
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
        ("How it was measured", f"ASR {scorer.asr.name}, SIM {scorer.encoder.name}, DNSMOS P.808 "
                                f"{'on' if not args.no_dnsmos else 'off'}; {args.n_samples} sample(s) per utterance, "
                                "best by (min(SIM to prompt, 0.3), -WER); outputs watermarked before scoring."),
        ("Figures: spectrograms and AR attention", image_links(figures, args.out) or "none")])
    print(f"wrote {args.out / 'report.md'}")
    return 0


def cmd_ablate_ras(args: argparse.Namespace) -> int:
    from ..decoding import DecodingOptions
    from ..synthesis import load_model
    from .ablate import ablate_ras
    from .report import ras_table

    items = load_test_utterances(args.data, args.cuts)
    options = _options(args, args.setting, DecodingOptions(temperature=args.temperature, ras_window=args.ras_window,
                                                           ras_threshold=args.ras_threshold, seed=args.seed))
    gate = _gate(args, select_trials(items, options))
    rows = ablate_ras(load_model(args.model, gate=gate), items, args.out, args.top_p, options, _scorer(args, False), gate,
                      file_sha256(args.model), progress=not args.quiet)
    print(ras_table(rows))
    print(f"wrote {args.out / 'report.md'}")
    return 0


def cmd_ablate_group(args: argparse.Namespace) -> int:
    from ..cli import decoding_options
    from .ablate import ablate_group
    from .report import group_table

    items = load_test_utterances(args.eval_data, args.eval_cuts)
    options = _options(args, args.setting, decoding_options(args), dnsmos=not args.no_dnsmos)
    rows = ablate_group(args.data, args.config, args.out, args.groups, args.steps, items, options,
                        _scorer(args, not args.no_dnsmos), _gate(args, select_trials(items, options)), args.set,
                        progress=not args.quiet)
    print(group_table(rows))
    print(f"wrote {args.out / 'report.md'}")
    return 0


def add_evaluate_parsers(subparsers) -> None:
    """Register ``evaluate`` and ``ablate {ras,group}`` on a ``valle2`` subparsers object."""
    from ..cli import add_decoding_args

    p = subparsers.add_parser("evaluate", help="WER, SIM and DNSMOS the paper's way, with reference rows and a report")
    p.add_argument("--model", required=True, type=Path)
    _data_args(p)
    _common_args(p, many_settings=True)
    p.add_argument("--n-samples", type=int, default=1, help="samples per utterance; the best is kept (paper: 1 and 5)")
    p.add_argument("--no-references", action="store_true", help="skip the ground-truth and codec-resynthesis rows")
    p.add_argument("--no-dnsmos", action="store_true", help="skip DNSMOS (several seconds a clip on a CPU)")
    p.add_argument("--figures", type=int, default=2, help="utterances per setting that get spectrogram and attention PNGs")
    add_decoding_args(p)
    p.set_defaults(func=cmd_evaluate)

    a = subparsers.add_parser("ablate", help="the paper's ablations: RAS against top-p, group size G")
    sub = a.add_subparsers(dest="ablation", required=True)
    r = sub.add_parser("ras", help="WER and SIM against top-p with and without Repetition Aware Sampling")
    r.add_argument("--model", required=True, type=Path)
    _data_args(r)
    _common_args(r)
    r.add_argument("--top-p", type=float, nargs="+", default=[0.0, 0.2, 0.4, 0.6, 0.8])
    r.add_argument("--temperature", type=float, default=1.0)
    r.add_argument("--ras-window", type=int, default=10)
    r.add_argument("--ras-threshold", type=float, default=0.1)
    r.add_argument("--seed", type=int, default=None)
    r.set_defaults(func=cmd_ablate_ras)

    g = sub.add_parser("group", help="train one model per group size G and compare them")
    g.add_argument("--data", required=True, type=Path, help="prepared data (valle2 prepare), or a folder with train/ valid/")
    g.add_argument("--config", required=True, type=Path, help="training config, e.g. configs/demo.yaml")
    g.add_argument("--groups", type=int, nargs="+", default=[1, 2, 4, 8])
    g.add_argument("--steps", type=int, default=None, help="training steps per model (default: the config's)")
    g.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="more config overrides")
    _data_args(g, "--eval-data", "--eval-cuts")
    _common_args(g)
    g.add_argument("--no-dnsmos", action="store_true")
    add_decoding_args(g)
    g.set_defaults(func=cmd_ablate_group)
