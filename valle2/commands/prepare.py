"""``valle2 prepare``: manifests -> speaker-disjoint split -> tokenized, encoded shards."""
from __future__ import annotations

import argparse
import random
from pathlib import Path


def _speakers_arg(value: str) -> int | list[str]:
    """``--valid-speakers``: a count (``2``) or comma-separated labels (``bdl,slt``)."""
    return int(value) if value.isdigit() else [s for s in value.split(",") if s]


def register(sub) -> argparse.ArgumentParser:
    from ..data.manifests import RECIPES

    p = sub.add_parser("prepare", help="turn a corpus into tokenized, codec-encoded training shards")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", type=Path, help="folder with transcribed.tsv (e.g. ../shared/data)")
    src.add_argument("--recipe", choices=RECIPES, help="a public corpus, prepared by lhotse's recipe")
    p.add_argument("--corpus-dir", type=Path, default=None, help="where the --recipe corpus lies (or is downloaded to)")
    p.add_argument("--download", action="store_true", help="download the --recipe corpus first (needs internet)")
    p.add_argument("--parts", nargs="+", default=None, help="corpus parts (default: its training parts present)")
    p.add_argument("--codec", default="offline", help="codec name for load_codec (default: offline)")
    p.add_argument("--out", required=True, type=Path, help="output folder: manifests/, train/, valid/")
    p.add_argument("--workers", type=int, default=2, help="encoding processes (1 = in this process)")
    p.add_argument("--shard-size", type=int, default=500, help="utterances per shard file")
    p.add_argument("--vocab-size", type=int, default=256, help="phoneme BPE vocabulary size (0 = phoneme symbols, no merges)")
    p.add_argument("--valid-speakers", type=_speakers_arg, default=1,
                   help="speakers held out for validation: a count, or comma-separated labels")
    p.add_argument("--seed", type=int, default=0, help="seed of the speaker split and synthetic text choice")
    p.add_argument("--synthetic", action="store_true", help="add espeak-ng / flite speakers (if installed)")
    p.add_argument("--synthetic-texts", type=int, default=100, help="texts each synthetic voice reads")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Write ``OUT/manifests``, ``OUT/train`` and ``OUT/valid``."""
    from lhotse import CutSet

    from ..codec import load_codec
    from ..data.manifests import cut_text, manifests_from_recipe, manifests_from_tsv, split_by_speaker
    from ..data.prepare import load_tokenizer, prepare
    from ..data.synthetic import synthesize_corpus
    from ..errors import DataError

    out = Path(args.out)
    if args.data is not None:
        cuts = manifests_from_tsv(args.data, transcribed=True)
    else:
        if args.corpus_dir is None:
            raise DataError("--recipe needs --corpus-dir")
        cuts = manifests_from_recipe(args.recipe, args.corpus_dir, out / "manifests", download=args.download,
                                     parts=args.parts, num_jobs=args.workers)
    if args.synthetic:
        texts = sorted({t for t in (cut_text(c) for c in cuts) if t})
        texts = random.Random(args.seed).sample(texts, min(args.synthetic_texts, len(texts)))
        synthetic = synthesize_corpus(texts, out / "synthetic")
        print(f"synthetic speakers: {len(synthetic)} utterances")
        cuts = CutSet.from_cuts(list(cuts) + list(synthetic))
    train, valid = split_by_speaker(cuts, args.valid_speakers, seed=args.seed)
    (out / "manifests").mkdir(parents=True, exist_ok=True)
    train.to_file(out / "manifests" / "cuts_train.jsonl.gz")
    valid.to_file(out / "manifests" / "cuts_valid.jsonl.gz")
    codec = load_codec(args.codec)
    report = prepare(train, codec, None, out / "train", num_workers=args.workers, shard_size=args.shard_size,
                     vocab_size=args.vocab_size)
    print(report.summary())
    report = prepare(valid, codec, load_tokenizer(out / "train"), out / "valid", num_workers=args.workers,
                     shard_size=args.shard_size)
    print(report.summary())
    return 0
