"""``valle2 recipe tiny|demo|synthetic``: end-to-end recipes (:mod:`valle2.recipe`,
:mod:`valle2.recipe_synthetic`): prepare, train, export."""
from __future__ import annotations

import argparse
from pathlib import Path

from .options import output_file


def register(sub) -> None:
    from ..recipe import DemoRecipe
    from ..recipe_synthetic import SyntheticRecipe

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
    s = rsub.add_parser("synthetic", help="the paper's AR and NAR on synthetic speech (Debian voices reading fortunes); "
                                          "resumable, so training can be spread over sessions")
    s.add_argument("--out", type=Path, default=SyntheticRecipe.out, help="output folder of every step")
    s.add_argument("--config", type=Path, default=SyntheticRecipe.config, help="training config")
    s.add_argument("--voice", action="append", default=None, metavar="ENGINE:NAME", dest="voices",
                   help=f"a training voice, e.g. flite:kal16 or festival:ked_diphone (repeatable; default "
                        f"{' '.join(SyntheticRecipe.voices)})")
    s.add_argument("--heldout-voice", default=None, metavar="ENGINE:NAME",
                   help="a voice never trained on that reads the test sentences (for a multi-voice model)")
    s.add_argument("--texts", type=int, default=0, help="training sentences (0 = every one not held out)")
    s.add_argument("--test-sentences", type=int, default=SyntheticRecipe.test_sentences, help="sentences held out for tests")
    s.add_argument("--steps", type=int, default=None, help="override optim.steps (a rerun with more steps trains on)")
    s.add_argument("--workers", type=int, default=2, help="processes for the codec encoding")
    s.add_argument("--home", type=Path, default=None,
                   help="the deployment the test files are attested in, as prompts (default $VALLE2_HOME or ~/.valle2)")
    s.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a config value, e.g. --set run.threads=2 (repeatable)")
    s.set_defaults(func=run_synthetic)


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


def run_synthetic(args: argparse.Namespace) -> int:
    from ..recipe_synthetic import SyntheticRecipe, run_synthetic as run

    recipe = SyntheticRecipe(out=args.out, config=args.config, voices=tuple(args.voices or SyntheticRecipe.voices),
                             heldout_voice=args.heldout_voice, texts=args.texts, test_sentences=args.test_sentences,
                             steps=args.steps, workers=args.workers, overrides=tuple(args.set), home=args.home)
    print(run(recipe))
    return 0
