"""Equal error rate of Resemblyzer speaker verification on the shared real speech, and the
cosine threshold at that point (the one :mod:`valle2.safety.gate` ships as ``SPEAKER_THRESHOLD``).

Trials, mirroring the gate (an enrolment recording against a later prompt of a few seconds):

- LibriSpeech (251 speakers, one 8 s clip each): each clip is split into two 4 s halves; the
  halves of one clip are a same-speaker trial, halves of different speakers are impostor trials.
- CMU ARCTIC bdl and slt: ``--per-speaker`` utterances each; all pairs within a speaker are
  same-speaker trials, all pairs across speakers (with each other and LibriSpeech) impostors.

Usage: ``python benchmarks/speaker_threshold.py [--data ../shared/data] [--per-speaker 60]``.
The last line reads ``eer=<x> threshold=<t> target_trials=<n> impostor_trials=<m>``.
"""
from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np
import torch

from valle2.audio import load_audio
from valle2.metrics import speaker_embedding


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    ap.add_argument("--per-speaker", type=int, default=60, help="ARCTIC utterances per speaker (bdl, slt)")
    args = ap.parse_args()
    torch.set_num_threads(1)
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
    main()
