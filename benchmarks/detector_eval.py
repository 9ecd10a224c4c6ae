"""The synthesized-speech detector on real speech it never heard: false refusals per held-out source
and per channel, valle2 outputs flagged, EER on a generator left out of training.

    python -m benchmarks.detector_eval --data ../shared/data       # builds what is missing, then scores

One command does everything; what it builds is cached under ``--cache`` (default /tmp/valle2_detector):
the data set (``tools/detector_data.py``, about 40 min the first time), the training bank and the
leave-one-out detectors (``tools/train_detector.py``, three networks each, about 8-15 min each on 2 cores).

**Leave-one-out.**  Each of :data:`RUNS` trains the shipped recipe without one real source (and the
resyntheses of its clips) and without one channel, at once.  A source's false-refusal rate is measured
on every clip of it (it was never trained on) by the run that left it out; a channel's on the real
test clips of every other source passed through it, by the run that left the channel out.  Both at
the shipped threshold (:data:`valle2.safety.detector.DETECTOR_THRESHOLD`).  Leaving two things out
at once is harder than leaving out one, so these rates are if anything pessimistic.  The shipped
threshold is calibrated on these same rates (:func:`calibrate`), so at it they are met by
construction: they say how high the threshold must be for sources nobody has tried.

**The shipped detector** is scored on the test split (speakers it never heard, of sources it did):
real clips clean and through every channel, each generator's test clips, and flite, the generator
left out of training.  valle2's own outputs (held-out speakers) are watermarked as the gate does,
passed through every channel, and counted as flagged when the watermark or the classifier finds them.

Last line: ``frr_real_max=<%> frr_channel_max=<%> tpr_valle2=<%> eer_unseen=<%>``
(targets <= 1, <= 2, >= 99, <= 15).
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

from tools import run_main
from tools.detector_data import (DEFAULT_CACHE, DEFAULT_DATA, DEFAULT_MODELS, PLAIN_TAG, REAL_SOURCES, SR, UNSEEN_GENERATORS, build,
                                eer, read_manifest)
from tools.train_detector import CHANNEL_ORDER, load_clip, train_to

# (source, channel) left out together by each leave-one-out run; the last two leave out a channel only
RUNS = (("arctic", "telephone"), ("librispeech", "mp3"), ("commonvoice", "opus"), ("cathy", "noise"),
        ("vcc2016", "reverb"), ("fsdd", "eq"), (None, "gain"), (None, "resample"))


# DETECTOR_THRESHOLD is set by this rule, real people first: the lowest grid value at which every
# leave-one-out run refuses at most CALIBRATION_FRR[0] % of the real source it never saw and at most
# CALIBRATION_FRR[1] % of real speech through the channel it never saw (the targets).  Those
# rates are the best estimate here of a source or microphone nobody has tried yet; it also makes the
# leave-one-out figures at the shipped threshold calibration figures, not an independent check.
CALIBRATION_GRID = tuple(float(t) for t in np.round(np.concatenate([np.arange(0.5, 0.95, 0.05), np.arange(0.95, 0.985, 0.01),
                                                                     np.arange(0.99, 0.9995, 0.001)]), 3))
CALIBRATION_FRR = (1.0, 2.0)


def calibrate(held_out_sources: dict[str, np.ndarray], held_out_channels: dict[str, np.ndarray]) -> float | None:
    """The threshold :data:`CALIBRATION_GRID` and :data:`CALIBRATION_FRR` give for the leave-one-out
    runs' scores of the real sources and channels they never saw (None: no grid value does)."""
    for t in CALIBRATION_GRID:
        if (max(frr(v, t) for v in held_out_sources.values()) <= CALIBRATION_FRR[0]
                and max(frr(v, t) for v in held_out_channels.values()) <= CALIBRATION_FRR[1]):
            return t
    return None


def channelled(name: str, clips: list[np.ndarray], ids: list[str]) -> list[np.ndarray]:
    """Each clip through channel ``name`` ("clean": as it is), with settings drawn per clip id."""
    from valle2.data.channels import CODEC_CHANNELS, apply, apply_batched

    if name == "clean":
        return clips
    if name in CODEC_CHANNELS:
        return apply_batched(name, clips, np.random.default_rng(int(hashlib.sha256(name.encode()).hexdigest()[:8], 16)))
    return [apply(name, c, np.random.default_rng(int(hashlib.sha256(f"{i}/{name}".encode()).hexdigest()[:8], 16)))
            for c, i in zip(clips, ids)]


def scores(det, clips: list[np.ndarray]) -> np.ndarray:
    """The detector's score of each clip as deployed (``Detector.analyze``); NaN where too short to score."""
    from valle2.errors import AudioError

    out = []
    for c in clips:
        try:
            out.append(det.analyze(c, SR).score)
        except AudioError:
            out.append(np.nan)
    return np.array(out)


def frr(s: np.ndarray, t: float) -> float:
    s = s[np.isfinite(s)]
    return float((s >= t).mean() * 100) if s.size else float("nan")


def run_name(source: str | None, channel: str) -> str:
    return f"{source or 'none'}-{channel}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the shared speech data, to build the data set")
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="where the data set and leave-one-out runs are kept")
    p.add_argument("--model", action="append", default=None,
                   help="valle2 model whose outputs join the 'valle2' generator, a file or 'tiny' (repeatable; "
                        "default: the shipped demo model and the tiny model)")
    p.add_argument("--weights", type=Path, default=None, help="detector weights to score (default: the shipped ones)")
    p.add_argument("--steps", type=int, default=1000, help="training steps of each leave-one-out run")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--json", type=Path, default=None, help="also write every figure here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    from valle2.safety.detector import DETECTOR_THRESHOLD, load_detector
    from valle2.safety.watermark import detect, embed

    if not (args.cache / "manifest.tsv").is_file():
        print(f"building the data set in {args.cache} (about 40 min the first time)", file=sys.stderr)
        build(args.data, args.cache, tuple(args.model or DEFAULT_MODELS))
    items = read_manifest(args.cache)
    for source, channel in RUNS:
        path = args.cache / "loso" / f"{run_name(source, channel)}.pt"
        if not path.is_file():
            train_to(path, args.cache, tuple(x for x in (source, channel) if x), args.steps)
    thr = DETECTOR_THRESHOLD
    det = load_detector(args.weights)
    test = [it for it in items if it.split == "test"]
    real_test = [it for it in test if it.label == 0]
    load = lambda its, desc: [load_clip(it.path) for it in tqdm(its, desc=desc, unit="clip")]  # noqa: E731
    real_clips = load(real_test, "loading real test clips")
    src = np.array([it.source for it in real_test])
    figures: dict = {"threshold": thr}

    # ---- the shipped detector: real test speech by source and by channel
    print(f"\nshipped detector ({args.weights or 'valle2/assets/detector/detector.pt'}), threshold {thr}")
    by_channel = {}
    for ch in ("clean",) + CHANNEL_ORDER:
        by_channel[ch] = scores(det, channelled(ch, real_clips, [it.id for it in real_test]))
    print("\nreal test clips (speakers never trained on): false refusals % per source and channel")
    print(f"{'source':<12} {'clips':>5} " + " ".join(f"{c:>9}" for c in by_channel))
    for s in REAL_SOURCES:
        m = src == s
        print(f"{s:<12} {int(m.sum()):>5} " + " ".join(f"{frr(v[m], thr):>9.2f}" for v in by_channel.values()))
    print(f"{'all':<12} {len(src):>5} " + " ".join(f"{frr(v, thr):>9.2f}" for v in by_channel.values()))
    figures["shipped_real_frr"] = {c: {s: frr(v[src == s], thr) for s in REAL_SOURCES} for c, v in by_channel.items()}
    print("highest real score per channel: " + ", ".join(f"{c} {np.nanmax(v):.3f}" for c, v in by_channel.items()))

    # ---- the shipped detector: synthesized test speech per generator (clean)
    clean_real = by_channel["clean"][np.isfinite(by_channel["clean"])]
    print(f"\n{'generator':<22} {'clips':>6} {'EER %':>7} {'missed at thr %':>16}")
    fake_scores = {}
    for gen in sorted({it.generator for it in test if it.label == 1}, key=lambda g: (g in UNSEEN_GENERATORS, g)):
        its = [it for it in test if it.generator == gen]
        s = scores(det, load(its, f"loading {gen}"))
        s = s[np.isfinite(s)]
        fake_scores[gen] = s
        e = eer(clean_real, s)[0]
        print(f"{gen + (' (unseen)' if gen in UNSEEN_GENERATORS else ''):<22} {s.size:>6} {e:>7.2f} {(s < thr).mean() * 100:>16.2f}")
        figures.setdefault("eer", {})[gen] = e
    unseen = UNSEEN_GENERATORS[0]
    eer_unseen = figures.get("eer", {}).get(unseen, float("nan"))

    # ---- valle2's own outputs, watermarked as the gate does, through every channel
    key = hashlib.sha256(b"detector_eval watermark key").digest()
    v_items = [it for it in test if it.generator == "valle2" and PLAIN_TAG not in it.id]
    flagged = {}
    if v_items:
        from valle2.audio import load_audio

        marked = [embed(load_audio(it.path, sr=SR)[0], SR, 0x1234, key) for it in tqdm(v_items, desc="watermarking valle2 outputs")]
        print(f"\nvalle2 outputs of held-out speakers ({len(marked)}), watermarked: flagged % (watermark or classifier)")
        print(f"{'channel':<10} {'watermark':>9} {'classifier':>10} {'either':>7}")
        for ch in ("clean",) + CHANNEL_ORDER:
            wavs = channelled(ch, marked, [it.id for it in v_items])
            wm = np.array([detect(w, SR, key).present for w in wavs])
            cl = np.nan_to_num(scores(det, wavs), nan=0.0) >= thr
            flagged[ch] = float((wm | cl).mean() * 100)
            print(f"{ch:<10} {wm.mean() * 100:>9.2f} {cl.mean() * 100:>10.2f} {flagged[ch]:>7.2f}")
    figures["valle2_flagged"] = flagged

    # ---- leave-one-out: each source and channel scored by the run that never saw it
    print(f"\nleave-one-out at threshold {thr}: each run trained without one source and one channel")
    print(f"{'run (left out)':<24} {'held-out source':>15} {'clips':>6} {'FRR %':>6}   {'held-out channel':>16} {'clips':>6} {'FRR %':>6}")
    frr_src, frr_ch, held_src, held_ch = {}, {}, {}, {}
    for source, channel in RUNS:
        run = load_detector(args.cache / "loso" / f"{run_name(source, channel)}.pt", threshold=thr)
        line = f"{source or '-'} + {channel}"
        if source:
            its = [it for it in items if it.label == 0 and it.source == source]
            s = scores(run, load(its, f"loading {source}"))
            held_src[source] = s
            frr_src[source] = frr(s, thr)
            line = f"{line:<24} {source:>15} {len(its):>6} {frr_src[source]:>6.2f}"
        else:
            line = f"{line:<24} {'-':>15} {'':>6} {'':>6}"
        keep = src != source
        others = [c for c, k in zip(real_clips, keep) if k]
        s = scores(run, channelled(channel, others, [it.id for it, k in zip(real_test, keep) if k]))
        held_ch[channel] = s
        frr_ch[channel] = frr(s, thr)
        print(f"{line}   {channel:>16} {len(others):>6} {frr_ch[channel]:>6.2f}")
    figures.update(loso_source_frr=frr_src, loso_channel_frr=frr_ch, eer_unseen=eer_unseen)
    print("\nleave-one-out false refusals % by threshold (the held-out source / channel of each run)")
    print(f"{'threshold':>9} " + " ".join(f"{k[:11]:>11}" for k in list(held_src) + list(held_ch)))
    for t in (0.9, 0.95, 0.97, 0.98, 0.99, 0.995, 0.996, 0.997, 0.998, 0.999):
        print(f"{t:>9.3f} " + " ".join(f"{frr(v, t):>11.2f}" for v in list(held_src.values()) + list(held_ch.values())))
    calibrated = calibrate(held_src, held_ch)
    figures["calibrated_threshold"] = calibrated
    print(f"calibration: the lowest grid threshold at which every run refuses <= {CALIBRATION_FRR[0]} % of its held-out "
          f"source and <= {CALIBRATION_FRR[1]} % through its held-out channel: {calibrated} (shipped: {thr})")

    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))
    tpr = min(flagged.values()) if flagged else float("nan")
    print(f"\ntpr_valle2 is the lowest over clean and the {len(CHANNEL_ORDER)} channels; eer_unseen is {unseen} (clean) "
          f"against the real test clips (clean)")
    print(f"frr_real_max={max(frr_src.values()):.2f} frr_channel_max={max(frr_ch.values()):.2f} "
          f"tpr_valle2={tpr:.2f} eer_unseen={eer_unseen:.2f}")
    return 0


if __name__ == "__main__":
    run_main(main)
