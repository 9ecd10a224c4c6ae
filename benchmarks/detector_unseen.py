"""The synthesized-speech classifier on kinds of synthesis it never trained on: leave-one-generator-out EER.

    python -m benchmarks.detector_unseen                            # the shipped recipe
    python -m benchmarks.detector_unseen --set n_filters=60 --set n_lfcc=40   # a front-end variant

For each training generator (:data:`tools.detector_data.TRAIN_GENERATORS`: codec resyntheses, espeak-ng,
festival, valle2, pulse/noise and Griffin-Lim vocoders) one network is trained the shipped way without it
and scores that generator's test clips against the real test clips (speakers never trained on), clean.
Its EER is what a new generator of that kind meets, so the mean over generators is the figure to choose
detector variants by.  The generators the shipped detector is never trained on
(:data:`tools.detector_data.UNSEEN_GENERATORS`: flite, LPC) are deliberately not scored here: they stay
untouched by the choice, and ``benchmarks/detector_eval.py`` reports them once for the shipped weights.

Each run is one network (seed 0) of ``--steps`` steps, cached under ``CACHE/logo/<variant>/``; the data
set is ``tools/detector_data.py``'s (built when missing).  About 2-3 min a generator on one thread.

Last line: ``eer_logo_mean=<%> eer_logo_max=<%>``.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from benchmarks.detector_eval import scores
from tools import run_main
from tools.detector_data import DEFAULT_CACHE, DEFAULT_DATA, DEFAULT_MODELS, TRAIN_GENERATORS, build, eer, read_manifest
from tools.train_detector import detector_config, load_clip, train_to


def variant_name(overrides: list[str], steps: int) -> str:
    """Folder name of a variant's runs: the overrides and steps, hashed when long."""
    text = "+".join(sorted(overrides)) or "shipped"
    text = f"{text}-{steps}steps"
    return text if len(text) <= 60 and "/" not in text else hashlib.sha256(text.encode()).hexdigest()[:12]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the shared speech data, to build the data set")
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="where the data set and the runs are kept")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="a DetectorConfig field other than the shipped one (repeatable), as tools/train_detector.py")
    p.add_argument("--steps", type=int, default=1000, help="training steps of each run")
    p.add_argument("--generator", action="append", default=None, choices=TRAIN_GENERATORS,
                   help="leave out only these generators (repeatable; default: each training generator)")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = detector_config(args.set)
    if not (args.cache / "manifest.tsv").is_file():
        print(f"building the data set in {args.cache} (about 40 min the first time)", file=sys.stderr)
        build(args.data, args.cache, DEFAULT_MODELS)
    items = read_manifest(args.cache)
    test = [it for it in items if it.split == "test"]
    real = [it for it in test if it.label == 0]
    generators = args.generator or [g for g in TRAIN_GENERATORS if any(it.generator == g for it in test)]
    runs = args.cache / "logo" / variant_name(args.set, args.steps)
    print(f"variant: {', '.join(args.set) or 'the shipped front end and network'}, {args.steps} steps ({runs})")

    from valle2.safety.detector import load_detector

    real_clips = [load_clip(it.path) for it in tqdm(real, desc="loading real test clips", unit="clip")]
    figures = {}
    for gen in generators:
        path = runs / f"without-{gen}.pt"
        if not path.is_file():
            train_to(path, args.cache, (gen,), args.steps, seed=0, ensemble=1, cfg=cfg)
        det = load_detector(path)
        fake = [load_clip(it.path) for it in test if it.generator == gen]
        r, f = scores(det, real_clips), scores(det, fake)
        r, f = r[np.isfinite(r)], f[np.isfinite(f)]
        figures[gen] = {"clips": int(f.size), "eer": eer(r, f)[0], "highest_real": float(r.max())}
    print(f"\n{'left out':<12} {'test clips':>10} {'EER %':>7} {'highest real score':>19}")
    for gen, fig in figures.items():
        print(f"{gen:<12} {fig['clips']:>10} {fig['eer']:>7.2f} {fig['highest_real']:>19.3f}")
    e = np.array([fig["eer"] for fig in figures.values()])
    if args.json:
        args.json.write_text(json.dumps({"variant": args.set, "steps": args.steps, "runs": figures}, indent=1))
    print(f"\neach row: a network trained without that generator, its test clips against {len(real_clips)} real test clips, clean")
    print(f"eer_logo_mean={e.mean():.2f} eer_logo_max={e.max():.2f}")
    return 0


if __name__ == "__main__":
    run_main(main)
