"""How well ``valle2.synthesis.CONTINUATION_MAX_SHARE`` tells a continuation prompt that leaves no
room for the rest of its text (the whole utterance given as its own prompt) from one that does (the
utterance's first 3 s, the paper's continuation setting).

For each transcribed utterance: its length over its text's expected length (tokens times the
model's mean frames per token).  Reports, at each share, the part of whole utterances refused and
the part of 3 s prefixes (of the utterances of 4 s or more) refused.  Dev: CMU ARCTIC
(``transcribed.tsv``); held out: cathy and Common Voice (``real-extra/clips.tsv``).

Reproduce with: python -m benchmarks.continuation_room
"""
from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

from tools import DEFAULT_DATA, run_main, speech_data

PREFIX_SECONDS = 3.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the speech data folder (../shared/data)")
    ap.add_argument("--model", default="demo", help="a valle2 model file or a shipped model's name")
    ap.add_argument("--shares", type=float, nargs="+", default=[0.8, 0.85, 0.9, 1.0], help="shares to report")
    args = ap.parse_args()
    data = speech_data(args.data)

    from valle2.checkpoint import load_model_bundle
    from valle2.codec import load_codec
    from valle2.names import model_file

    bundle = load_model_bundle(model_file(args.model), "cpu")
    frame_rate = load_codec(bundle.codec["name"], **bundle.codec.get("options", {})).frame_rate
    with open(data / "transcribed.tsv") as f:
        sets = {"arctic (dev)": [(float(r["seconds"]), r["text"]) for r in csv.DictReader(f, delimiter="\t")]}
    with open(data / "real-extra" / "clips.tsv") as f:
        extra = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    for source in ("cathy", "commonvoice"):
        sets[f"{source} (held out)"] = [(float(r["seconds"]), r["text"]) for r in extra if r["source"] == source]
    print(f"| set | share | whole utterances refused | {PREFIX_SECONDS:g} s prefixes refused |")
    print("| --- | --- | --- | --- |")
    for name, rows in sets.items():
        rows = [(s, t) for s, t in rows if t.strip()]
        expected = np.array([len(bundle.tokenizer.encode(t)) * bundle.frames_per_token / frame_rate for _, t in rows])
        seconds = np.array([s for s, _ in rows])
        long = seconds >= PREFIX_SECONDS + 1
        for share in args.shares:
            prefixes = f"{np.mean(PREFIX_SECONDS / expected[long] >= share):.1%} of {long.sum()}" if long.any() else "-"
            print(f"| {name} | {share} | {np.mean(seconds / expected >= share):.1%} of {len(rows)} | {prefixes} |")


if __name__ == "__main__":
    run_main(main)
