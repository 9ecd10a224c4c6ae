"""How long ``valle2 voice adapt`` takes on about 10 minutes of one speaker: ARCTIC bdl's first
utterances up to 595 s, as a research voice, transcripts from the recogniser (the slow case).

Last line: ``adapt_seconds=<> speech=<> used=<> skipped=<> adapter_mb=<>`` (budget: <= 300 s on 2 cores).
"""
from __future__ import annotations

import argparse
import csv
import tempfile
import time
from pathlib import Path

import torch

import valle2
from tools import DEFAULT_DATA, run_main, speech_data
from valle2.adapt import adapt_voice
from valle2.evaluation.safeguards import open_research_gate


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the speech data folder")
    p.add_argument("--seconds", type=float, default=595.0, help="how much of bdl's speech")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    speech_data(args.data)
    torch.set_num_threads(args.threads)
    with open(args.data / "transcribed.tsv", newline="") as f:
        rows = [r for r in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE) if r["speaker"] == "bdl"]
    files, total = [], 0.0
    for r in rows:
        if total + float(r["seconds"]) > args.seconds:
            break
        files.append(args.data / r["path"])
        total += float(r["seconds"])
    gate = open_research_gate(tempfile.mkdtemp(prefix="adapt_speed_"), files, "CMU ARCTIC bdl", "CMU ARCTIC licence")
    model = valle2.load_model("demo", gate=gate)
    start = time.perf_counter()
    result = adapt_voice(model, files, name="bdl", progress=True)
    print(f"adapt_seconds={time.perf_counter() - start:.1f} speech={result.speech_seconds:.1f} used={len(result.used)} "
          f"skipped={len(result.skipped)} adapter_mb={result.adapter_bytes / 1e6:.3f}")


if __name__ == "__main__":
    run_main(main)
