"""``valle2 recipe tiny|demo``: end-to-end recipes (:mod:`valle2.recipe`): prepare, train, export."""
from __future__ import annotations

import argparse
from pathlib import Path

from .options import output_file


def register(sub) -> None:
    from ..recipe import DemoRecipe

    p = sub.add_parser("recipe", help="end-to-end recipes (prepare, train, export)")
    rsub = p.add_subparsers(dest="recipe", required=True)
    t = rsub.add_parser("tiny", help="a tiny model that memorises the packaged clips (minutes; a pipeline check)")
    t.add_argument("--out", type=output_file, default=Path("demo_out/tiny.pt"), help="the model file to write")
    t.add_argument("--steps", type=int, default=250, help="training steps")
    t.set_defaults(func=run_tiny)
    d = rsub.add_parser("demo", help="train the CPU demo model on ../shared/data (<= 2 h on 2 cores)")
    d.add_argument("--data", type=Path, required=True, help="folder with transcribed.tsv and untranscribed.tsv")
    d.add_argument("--out", type=Path, default=DemoRecipe.out, help="output folder of every step")
    d.add_argument("--config", type=Path, default=DemoRecipe.config, help="training config")
    d.add_argument("--steps", type=int, default=None, help="override optim.steps")
    d.add_argument("--code0-steps", type=int, default=DemoRecipe.code0_steps,
                   help="steps of the NAR-only fine-tune that adds the NAR's codebook-0 stage (0 = none)")
    d.add_argument("--synthetic-texts", type=int, default=0, help="sentences each espeak-ng/flite voice reads (0 = none)")
    d.add_argument("--no-asr-speakers", action="store_true", help="leave out the ASR-transcribed LibriSpeech speakers")
    d.add_argument("--workers", type=int, default=2, help="processes for the ASR transcripts and the codec encoding")
    d.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a config value, e.g. --set run.threads=1 (repeatable)")
    d.add_argument("--ship", action="store_true", help="copy the model into the package (assets/demo, beside the demo voice)")
    d.set_defaults(func=run_demo)


def run_tiny(args: argparse.Namespace) -> int:
    from ..recipe import train_tiny

    print(f"wrote {train_tiny(args.out, steps=args.steps).path}")
    return 0


def run_demo(args: argparse.Namespace) -> int:
    from ..recipe import DemoRecipe, run_demo as run

    recipe = DemoRecipe(data=args.data, out=args.out, config=args.config, steps=args.steps,
                        asr_speakers=not args.no_asr_speakers, synthetic_texts=args.synthetic_texts,
                        workers=args.workers, overrides=tuple(args.set), code0_steps=args.code0_steps)
    print(run(recipe, ship=args.ship))
    return 0
