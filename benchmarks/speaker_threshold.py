"""Equal error rate of Resemblyzer speaker verification on the shared real speech, and the
cosine threshold at that point (the one :mod:`valle2.safety.gate` ships as ``SPEAKER_THRESHOLD``).

Trials, mirroring the gate (an enrolment recording against a later prompt of a few seconds):

- LibriSpeech (251 speakers, one 8 s clip each): each clip is split into two 4 s halves; the
  halves of one clip are a same-speaker trial, halves of different speakers are impostor trials.
- CMU ARCTIC bdl and slt: ``--per-speaker`` utterances each; all pairs within a speaker are
  same-speaker trials, all pairs across speakers (with each other and LibriSpeech) impostors.

Usage: ``python -m benchmarks.speaker_threshold [--data ../shared/data] [--per-speaker 60]``.
The last line reads ``eer=<x> threshold=<t> target_trials=<n> impostor_trials=<m>``.

``--windows`` measures the gate's second check instead (``SPEAKER_WINDOW_THRESHOLD``): every
1.6 s window of a prompt (:func:`valle2.metrics.speaker_window_embeddings`, hop 0.5 s) against a
whole-utterance reference, as the gate scores a prompt against an enrolment:

- choice (dev): even-numbered LibriSpeech speakers (reference: the first 4 s half of the clip,
  prompt: the second half) and ARCTIC bdl and slt (reference: 3 utterances joined, about 8 s;
  prompts: ``--per-speaker`` other utterances).  Real people first: the threshold refuses no
  genuine dev prompt that the whole-utterance check lets through, with a margin: the lowest window
  score among those prompts, less ``--margin`` (0.02), rounded down to 0.01.
- held out, real people: the odd-numbered LibriSpeech speakers, and from ``real-extra/`` (not
  used for the choice) VCC2016 (3 clips joined as reference, the other 13 as prompts), cathy
  (3 joined, 40 prompts) and Common Voice (each clip's halves).  The false-refusal rate of the
  whole gate (whole-utterance threshold, then windows) is reported per source.
- splices: 1.3 s of a held-out LibriSpeech speaker then 1.9 s of another held-out speaker
  (``--partners`` others each; and the reverse order), against the first speaker's reference:
  the share the gate refuses, with the windows and with the whole-utterance check alone.

The last line reads ``window_threshold=<t> dev_false_refusal=<x> splice_detection=<y> ...``.
"""
from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np
import torch

from tools import DEFAULT_DATA, run_main, speech_data
from valle2.audio import load_audio
from valle2.metrics import speaker_embedding, speaker_window_embeddings


def eer_threshold(target: np.ndarray, impostor: np.ndarray) -> tuple[float, float]:
    """Equal error rate and its threshold for cosine scores ``target [n]`` and ``impostor [m]``.

    A trial is accepted when ``score >= threshold``; the EER is where the false-reject rate of
    target trials equals the false-accept rate of impostor trials (mean of both at the closest
    crossing among all candidate thresholds).
    """
    scores = np.concatenate([target, impostor])
    labels = np.concatenate([np.ones(target.size), np.zeros(impostor.size)])
    order = np.argsort(scores)
    scores, labels = scores[order], labels[order]
    frr = np.cumsum(labels) / target.size            # targets below or at each candidate (rejected if t is just above)
    far = 1.0 - np.cumsum(1 - labels) / impostor.size  # impostors strictly above
    i = int(np.argmin(np.abs(frr - far)))
    threshold = float((scores[i] + scores[min(i + 1, scores.size - 1)]) / 2)
    return float((frr[i] + far[i]) / 2), threshold


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a @ b) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b) + 1e-12)


class Prompts:
    """Genuine prompts of one source: each one's whole-utterance and window scores against its
    speaker's reference."""

    def __init__(self, name: str):
        self.name, self.whole, self.windows = name, [], []

    def add(self, reference: np.ndarray, prompt: np.ndarray, sr: int) -> None:
        self.whole.append(float(_cos(speaker_embedding(prompt, sr), reference)))
        self.windows.append(_cos(speaker_window_embeddings(prompt, sr)[0], reference))

    def refused(self, whole_thr: float, window_thr: float) -> tuple[float, float]:
        """(share refused by the whole-utterance check, share refused by the whole gate)."""
        whole = np.array(self.whole) < whole_thr
        either = whole | np.array([w.min() < window_thr for w in self.windows])
        return float(whole.mean()), float(either.mean())


def window_benchmark(args) -> None:
    from valle2.safety.gate import SPEAKER_THRESHOLD

    rows = list(csv.DictReader(open(args.data / "untranscribed.tsv"), delimiter="\t"))
    rows.sort(key=lambda r: r["speaker"])
    dev, held, t0 = Prompts("LibriSpeech dev + ARCTIC"), Prompts("LibriSpeech held out"), time.time()
    halves = {}
    for i, row in enumerate(rows):
        wav, sr = load_audio(args.data / row["path"], sr=16_000)
        half = wav.size // 2
        ref = speaker_embedding(wav[:half], sr)
        halves[row["speaker"]] = (ref, wav[half:], i % 2)
        (dev if i % 2 == 0 else held).add(ref, wav[half:], sr)
    arctic: dict[str, list] = {}
    for row in csv.DictReader(open(args.data / "transcribed.tsv"), delimiter="\t"):
        arctic.setdefault(row["speaker"], []).append(row)
    for spk, utts in arctic.items():
        wavs = [load_audio(args.data / r["path"], sr=16_000)[0] for r in utts[: 3 + args.per_speaker]]
        ref = speaker_embedding(np.concatenate(wavs[:3]), 16_000)
        for w in wavs[3:]:
            dev.add(ref, w, 16_000)
    # impostor windows on dev: every dev LibriSpeech prompt's windows against the other dev references
    dev_spk = [s for s, (_, _, odd) in halves.items() if not odd]
    refs = np.stack([halves[s][0] for s in dev_spk])
    impostor = []
    for i, s in enumerate(dev_spk):
        win = speaker_window_embeddings(halves[s][1], 16_000)[0]
        cos = win @ refs.T / np.linalg.norm(refs, axis=1)
        impostor.append(np.delete(cos, i, axis=1).ravel())
    impostor = np.concatenate(impostor)
    print(f"dev prompts={len(dev.whole)} held-out prompts={len(held.whole)} seconds={time.time() - t0:.0f}")

    lowest = min(w.min() for s, w in zip(dev.whole, dev.windows) if s >= SPEAKER_THRESHOLD)
    thr = float(np.floor((lowest - args.margin) * 100) / 100)
    print(f"lowest window of a genuine dev prompt that passes the whole check: {lowest:.4f}")
    print(f"window threshold {thr:.3f}: window false accepts on dev impostor windows {np.mean(impostor >= thr):.4f} "
          f"({impostor.size} windows); target window scores p1 {np.percentile(np.concatenate(dev.windows), 1):.3f}")

    extra = args.data / "real-extra"
    sources = [held]
    clips = list(csv.DictReader(open(extra / "clips.tsv"), delimiter="\t", quoting=csv.QUOTE_NONE))
    for name in ("vcc2016", "cathy"):
        by_spk: dict[str, list] = {}
        for c in clips:
            if c["source"] == name:
                by_spk.setdefault(c["speaker"], []).append(c)
        src = Prompts(name)
        for spk, cs in sorted(by_spk.items()):
            wavs = [load_audio(extra / c["path"], sr=16_000)[0] for c in cs[: 3 + args.per_speaker]]
            ref = speaker_embedding(np.concatenate(wavs[:3]), 16_000)
            for w in wavs[3:]:
                src.add(ref, w, 16_000)
        sources.append(src)
    cv = Prompts("commonvoice (clip halves)")
    for c in clips:
        if c["source"] == "commonvoice" and float(c["seconds"]) >= 4.0:
            w = load_audio(extra / c["path"], sr=16_000, allow_silent=True)[0]
            cv.add(speaker_embedding(w[: w.size // 2], 16_000), w[w.size // 2:], 16_000)
    sources.append(cv)
    whole_dev, both_dev = dev.refused(SPEAKER_THRESHOLD, thr)
    print(f"false refusals of genuine prompts (whole-utterance check alone -> whole gate with windows):")
    print(f"  {dev.name:<28} n={len(dev.whole):<4} {whole_dev:.4f} -> {both_dev:.4f}  (the threshold was chosen here)")
    for src in sources:
        w, b = src.refused(SPEAKER_THRESHOLD, thr)
        print(f"  {src.name:<28} n={len(src.whole):<4} {w:.4f} -> {b:.4f}")

    rng = np.random.default_rng(0)
    held_spk = [s for s, (_, _, odd) in halves.items() if odd]
    a_len, b_len = int(1.3 * 16_000), int(1.9 * 16_000)
    scores = {"consenting first": [], "other first": []}   # (whole cosine, lowest window cosine) of each splice
    for s in held_spk:
        for o in rng.choice([x for x in held_spk if x != s], args.partners, replace=False):
            ref, mine, theirs = halves[s][0], halves[s][1], halves[o][1]
            for order, prompt in (("consenting first", np.concatenate([mine[:a_len], theirs[:b_len]])),
                                  ("other first", np.concatenate([theirs[:b_len], mine[:a_len]]))):
                scores[order].append((float(_cos(speaker_embedding(prompt, 16_000), ref)),
                                      float(_cos(speaker_window_embeddings(prompt, 16_000)[0], ref).min())))

    def detected(order: str, t: float) -> float:
        sc = np.array(scores[order])
        return float(np.mean((sc[:, 0] < SPEAKER_THRESHOLD) | (sc[:, 1] < t)))

    for order, sc in scores.items():
        print(f"splices 1.3 s consenting + 1.9 s other ({order}), held-out speakers: n={len(sc)}, refused by the "
              f"whole check alone {np.mean(np.array(sc)[:, 0] < SPEAKER_THRESHOLD):.4f}, by the gate with windows "
              f"{detected(order, thr):.4f}")
    print("sweep: window threshold | false refusals per source (whole gate) | splices refused (both orders)")
    for t in sorted({round(x, 3) for x in np.arange(0.58, 0.72, 0.02)} | {thr}):
        frr = "  ".join(f"{src.name.split()[0]} {src.refused(SPEAKER_THRESHOLD, t)[1]:.3f}" for src in [dev] + sources)
        print(f"  {t:.3f} | {frr} | {np.mean([detected(o, t) for o in scores]):.3f}" + ("  <- chosen" if t == thr else ""))
    n = sum(len(sc) for sc in scores.values())
    det = float(np.mean([detected(o, thr) for o in scores]))
    print(f"seconds={time.time() - t0:.0f}")
    print(f"window_threshold={thr:.3f} dev_false_refusal={both_dev:.4f} splice_detection={det:.4f} splices={n}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the speech data folder")
    ap.add_argument("--per-speaker", type=int, default=60, help="ARCTIC utterances per speaker (bdl, slt)")
    ap.add_argument("--windows", action="store_true", help="measure the window threshold (SPEAKER_WINDOW_THRESHOLD)")
    ap.add_argument("--margin", type=float, default=0.02,
                    help="--windows: how far below the lowest genuine dev window the threshold goes")
    ap.add_argument("--partners", type=int, default=3, help="--windows: other speakers spliced onto each held-out one")
    args = ap.parse_args()
    speech_data(args.data)
    torch.set_num_threads(1)
    if args.windows:
        return window_benchmark(args)
    t0 = time.time()
    embs, spk = [], []
    with open(args.data / "untranscribed.tsv") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            wav, sr = load_audio(args.data / row["path"], sr=16_000)
            half = wav.size // 2
            for part in (wav[:half], wav[half:]):
                embs.append(speaker_embedding(part, sr))
                spk.append(row["speaker"])
    per: dict[str, int] = {}
    with open(args.data / "transcribed.tsv") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            if per.get(row["speaker"], 0) >= args.per_speaker:
                continue
            per[row["speaker"]] = per.get(row["speaker"], 0) + 1
            wav, sr = load_audio(args.data / row["path"], sr=16_000)
            embs.append(speaker_embedding(wav, sr))
            spk.append(row["speaker"])
    e = np.stack(embs)
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    cos = e @ e.T
    same = np.asarray(spk)[:, None] == np.asarray(spk)[None, :]
    upper = np.triu(np.ones_like(same), k=1)
    target, impostor = cos[same & upper], cos[~same & upper]
    eer, thr = eer_threshold(target, impostor)
    far_at = float(np.mean(impostor >= thr))
    frr_at = float(np.mean(target < thr))
    print(f"embeddings={len(embs)} speakers={len(set(spk))} seconds={time.time() - t0:.0f}")
    print(f"at threshold: false accept {far_at:.4f}, false reject {frr_at:.4f}")
    print(f"eer={eer:.4f} threshold={thr:.4f} target_trials={target.size} impostor_trials={impostor.size}")


if __name__ == "__main__":
    run_main(main)
