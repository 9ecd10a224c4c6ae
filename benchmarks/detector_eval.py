"""The synthesized-speech detector on held-out speakers: EER per generator.

    python tools/train_detector.py --data ../shared/data --build-only   # the data set (cached in /tmp)
    python benchmarks/detector_eval.py                                  # scores the shipped detector

Real test speech: the 50 LibriSpeech speakers and 60 ARCTIC sentences (bdl, slt) held out of training
(and of the demo model's training).  Each generator's test clips are of those speakers / sentences:
``codec`` (offline-codec resyntheses), ``espeak`` and ``festival`` (their voices, held-out sentences),
``valle2`` (unwatermarked outputs of the valle2 model for held-out speakers) and ``flite``, which the
detector never saw in training (the unseen generator, ``eer_unseen``).  Each clip is scored as deployed
(``Detector.analyze``: 3 s windows, the largest window probability); the table also gives the EER of
the mean window probability, and the false-alarm / miss rates at ``DETECTOR_THRESHOLD``.

Last line: ``eer_valle2=<percent> eer_unseen=<percent>``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

from train_detector import DEFAULT_CACHE, PLAIN_TAG, UNSEEN_GENERATORS, eer, read_manifest  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="where tools/train_detector.py built the data")
    p.add_argument("--weights", type=Path, default=None, help="detector weights (default: the shipped ones)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", type=Path, default=None, help="also write every score here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    from valle2.audio import load_audio
    from valle2.errors import AudioError
    from valle2.safety.detector import DETECTOR_THRESHOLD, load_detector

    if not (args.cache / "manifest.tsv").is_file():
        print(f"no data set at {args.cache}: run `python tools/train_detector.py --build-only` first", file=sys.stderr)
        return 2
    det = load_detector(args.weights)
    test = [it for it in read_manifest(args.cache) if it.split == "test"]
    scores: dict[str, list[tuple[float, float]]] = {}
    voices: dict[str, list[str]] = {}          # generator -> the voice (folder) of each scored clip
    decoded: dict[str, list[str]] = {}         # generator -> how the offline codec decoded each clip
    tick = time.time()
    seconds = 0.0
    unscorable: dict[str, int] = {}
    for it in tqdm(test, desc="scoring held-out clips", unit="clip"):
        wav, sr = load_audio(it.path, allow_silent=True)
        seconds += wav.size / sr
        try:
            r = det.analyze(wav, sr)
        except AudioError:       # too little sound to score: counted, and left out of the EER
            unscorable[it.generator] = unscorable.get(it.generator, 0) + 1
            continue
        scores.setdefault(it.generator, []).append((r.score, r.mean))
        voices.setdefault(it.generator, []).append(Path(it.path).parent.name)
        decoded.setdefault(it.generator, []).append("plain WORLD" if f"_{PLAIN_TAG}" in it.id else "shipped decoder")
    elapsed = time.time() - tick
    real = np.array(scores.pop("real"))
    print(f"\ndetector: {len(det.net.members)} networks (seeds {det.meta.get('seeds')}), trained on {det.meta.get('trained_on')} "
          f"({det.meta.get('steps')} steps each); unseen generators: {', '.join(UNSEEN_GENERATORS)}; threshold {DETECTOR_THRESHOLD}")
    print(f"real held-out clips: {len(real)}; false alarms at the threshold: {(real[:, 0] >= DETECTOR_THRESHOLD).mean() * 100:.2f} %")
    print(f"{'generator':<10} {'clips':>6} {'EER max %':>10} {'thr@EER':>8} {'EER mean %':>11} {'miss@thr %':>11}")
    figures = {}
    order = sorted(scores, key=lambda g: (g in UNSEEN_GENERATORS, g))
    for gen in order:
        fake = np.array(scores[gen])
        e, t = eer(real[:, 0], fake[:, 0])
        e_mean, _ = eer(real[:, 1], fake[:, 1])
        miss = (fake[:, 0] < DETECTOR_THRESHOLD).mean() * 100
        figures[gen] = e
        label = gen + (" (unseen)" if gen in UNSEEN_GENERATORS else "")
        print(f"{label:<10} {len(fake):>6} {e:>10.2f} {t:>8.3f} {e_mean:>11.2f} {miss:>11.2f}")
    for gen in (g for g in UNSEEN_GENERATORS if g in scores):
        fake, names = np.array(scores[gen])[:, 0], np.array(voices[gen])
        print(f"{gen} by voice: " + ", ".join(
            f"{v} EER {eer(real[:, 0], fake[names == v])[0]:.2f} % (n={int(np.sum(names == v))})" for v in sorted(set(names))))
    for gen in sorted(g for g, how in decoded.items() if len(set(how)) > 1):   # the codec with and without its post-net
        fake, how = np.array(scores[gen])[:, 0], np.array(decoded[gen])
        print(f"{gen} by decoder: " + ", ".join(
            f"{d} EER {eer(real[:, 0], fake[how == d])[0]:.2f} %, miss@thr {(fake[how == d] < DETECTOR_THRESHOLD).mean() * 100:.2f} % "
            f"(n={int(np.sum(how == d))})" for d in sorted(set(how))))
    print("\noperating points (score = largest window probability): false alarms on real, misses per generator")
    print(f"{'threshold':>9} {'real FA %':>9} " + " ".join(f"{g[:10]:>10}" for g in order))
    for t in sorted({0.1, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.98, DETECTOR_THRESHOLD}):
        misses = " ".join(f"{(np.array(scores[g])[:, 0] < t).mean() * 100:>10.2f}" for g in order)
        print(f"{t:>9.3f} {(real[:, 0] >= t).mean() * 100:>9.2f} {misses}")
    print(f"largest real score: {real[:, 0].max():.4f}")
    seen = np.concatenate([np.array(scores[g])[:, 0] for g in scores if g not in UNSEEN_GENERATORS])
    print(f"{'all seen':<10} {seen.size:>6} {eer(real[:, 0], seen)[0]:>10.2f}")
    if unscorable:
        print(f"left out as too short or silent to score: {unscorable}")
    print(f"scored {seconds:.0f} s of audio in {elapsed:.0f} s ({elapsed / max(seconds, 1e-9):.3f}x real time, 1 thread)")
    if args.json:
        args.json.write_text(json.dumps({"real": real.tolist(), **{g: v for g, v in scores.items()}}))
    if "valle2" not in figures:
        print("no valle2 outputs in the data set: build it with --model pointing at a valle2 model", file=sys.stderr)
    print(f"eer_valle2={figures.get('valle2', float('nan')):.2f} eer_unseen={figures.get(UNSEEN_GENERATORS[0], float('nan')):.2f}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    raise SystemExit(main())
