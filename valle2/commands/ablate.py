"""``valle2 ablate ras|group``: the paper's ablations, Repetition Aware Sampling against top-p and
the group size G (:mod:`valle2.evaluation.ablate`)."""
from __future__ import annotations

import argparse
from pathlib import Path

from .evaluate import add_test_data_args, add_test_set_args, eval_options, research_gate, scorer
from .options import add_decoding_args, add_model_arg, decoding_options

RAS_SETS = ("top_p", "ras", "code_choice", "code0")   # the decoding options ablate_ras sets on each run


def register(sub) -> None:
    a = sub.add_parser("ablate", help="the paper's ablations: RAS against top-p, group size G")
    asub = a.add_subparsers(dest="ablation", required=True)
    r = asub.add_parser("ras", help="WER and SIM against top-p with and without Repetition Aware Sampling (codebook 0 "
                                    "sampled by the AR, as the paper)")
    add_model_arg(r)
    add_test_data_args(r)
    add_test_set_args(r)
    r.add_argument("--top-p", type=float, nargs="+", default=[0.0, 0.2, 0.4, 0.6, 0.8],
                   help="the nucleus masses to run, each with and without RAS")
    add_decoding_args(r, exclude=RAS_SETS)
    r.set_defaults(func=run_ras)

    g = asub.add_parser("group", help="train one model per group size G and compare them")
    g.add_argument("--data", required=True, type=Path, help="prepared data (valle2 prepare), or a folder with train/ valid/")
    g.add_argument("--config", required=True, type=Path, help="training config, e.g. configs/demo.yaml")
    g.add_argument("--groups", type=int, nargs="+", default=[1, 2, 4, 8], help="the group sizes G to train")
    g.add_argument("--steps", type=int, default=None, help="training steps per model (default: the config's)")
    g.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="more config overrides")
    add_test_data_args(g, "--eval-data", "--eval-cuts")
    add_test_set_args(g)
    g.add_argument("--no-dnsmos", action="store_true", help="skip DNSMOS (several seconds a clip on a CPU)")
    add_decoding_args(g)
    g.set_defaults(func=run_group)


def run_ras(args: argparse.Namespace) -> int:
    from ..evaluation.ablate import ablate_ras
    from ..evaluation.report import ras_table
    from ..evaluation.runner import select_trials
    from ..evaluation.testset import load_test_utterances
    from ..safety.consent import file_sha256
    from ..synthesis import load_model

    items = load_test_utterances(args.data, args.cuts)
    options = eval_options(args, args.setting, decoding_options(args))
    gate = research_gate(args, select_trials(items, options))
    rows = ablate_ras(load_model(args.model, gate=gate), items, args.out, args.top_p, options, scorer(args, False), gate,
                      file_sha256(args.model), progress=not args.quiet)
    print(ras_table(rows))
    print(f"wrote {args.out / 'report.md'}")
    return 0


def run_group(args: argparse.Namespace) -> int:
    from ..evaluation.ablate import ablate_group
    from ..evaluation.report import group_table
    from ..evaluation.runner import select_trials
    from ..evaluation.testset import load_test_utterances

    items = load_test_utterances(args.eval_data, args.eval_cuts)
    options = eval_options(args, args.setting, decoding_options(args), dnsmos=not args.no_dnsmos)
    rows = ablate_group(args.data, args.config, args.out, args.groups, args.steps, items, options,
                        scorer(args, not args.no_dnsmos), research_gate(args, select_trials(items, options)), args.set,
                        progress=not args.quiet)
    print(group_table(rows))
    print(f"wrote {args.out / 'report.md'}")
    return 0
