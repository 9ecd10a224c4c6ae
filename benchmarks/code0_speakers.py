"""How phonetic is codebook 0?  Two speakers reading the same sentences, aligned in time.

CMU ARCTIC's bdl (male) and slt (female) read the same prompts.  For the first ``--n`` a-set
prompts, each pair of recordings is aligned by DTW (librosa) on their mel-cepstra with each
utterance's mean removed, and every offline-codec asset given is asked for both recordings'
codebook-0 codes (the codes the AR predicts).  If codebook 0 codes the phone rather than the
voice, bdl's code at a frame tells a lot about slt's code at the aligned frame.  Printed per
asset, over the aligned frame pairs of the second half of the sentences:

- ``unigram``: cross-entropy (nats) of slt's codes under their frequencies in the first half;
- ``given_bdl``: cross-entropy of slt's code given bdl's aligned code, estimated on the first
  half (counts smoothed toward the unigram);
- ``gain``: ``1 - given_bdl / unigram``, the share of slt's code that bdl's code predicts.

Last line: ``code0_gain[<asset path>]=<gain>`` for each asset.  About 3 minutes for 200 pairs.

    python -m benchmarks.code0_speakers --n 200                  # the shipped codec asset alone
    python -m tools.train_offline_codec --stage1-size 256 --stage1-normalised --out /tmp/phonetic/offline_codec.npz
    python -m benchmarks.code0_speakers --n 200 valle2/assets/codec/offline_codec.npz /tmp/phonetic/offline_codec.npz
"""
from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
from tqdm import tqdm

from tools import DEFAULT_DATA, run_main, speech_data
from valle2.codec.offline import ASSET_PATH

SMOOTHING = 5.0  # pseudo-counts of the unigram in each conditional distribution


def cross_entropies(x: np.ndarray, y: np.ndarray, k: int) -> tuple[float, float]:
    """Codes ``x``, ``y`` ``[N]`` (aligned pairs, in sentence order): held-out cross-entropy of ``y``
    (second half) under its unigram and under ``P(y | x)``, both counted on the first half."""
    n = len(x) // 2
    uni = np.bincount(y[:n], minlength=k) + 0.5
    uni = uni / uni.sum()
    counts = np.zeros((k, k))
    np.add.at(counts, (x[:n], y[:n]), 1)
    cond = (counts + SMOOTHING * uni[None, :]) / (counts.sum(1, keepdims=True) + SMOOTHING)
    return float(-np.log(uni[y[n:]]).mean()), float(-np.log(cond[x[n:], y[n:]]).mean())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("assets", type=Path, nargs="*", default=[ASSET_PATH],
                   help="offline codec assets (.npz) to compare (default: the shipped one)")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the speech data folder")
    p.add_argument("--n", type=int, default=200, help="ARCTIC a-set prompts read by both speakers")
    args = p.parse_args(argv)
    speech_data(args.data)

    import librosa
    import soundfile as sf

    from valle2.audio import resample
    from valle2.codec.offline import OfflineCodec, analyse

    codecs = {str(a): OfflineCodec.load(a, postnet=False) for a in args.assets}
    cfg = next(iter(codecs.values())).config
    with open(args.data / "transcribed.tsv", newline="") as f:
        rows = {r["id"]: r for r in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)}
    ids = sorted(i.split("_", 2)[2] for i in rows if i.startswith("arctic_bdl_a") and f"arctic_slt_{i.split('_', 2)[2]}" in rows)
    pairs: dict[str, tuple[list, list]] = {name: ([], []) for name in codecs}
    for sid in tqdm(ids[: args.n], desc="sentence pairs", unit="pair"):
        feats = {}
        for spk in ("bdl", "slt"):
            wav, sr = sf.read(args.data / rows[f"arctic_{spk}_{sid}"]["path"], dtype="float32")
            feats[spk] = analyse(resample(wav, sr, cfg.sample_rate), cfg)
        norm = {s: (f.envelope - f.envelope.mean(0))[:, 1:].T for s, f in feats.items()}  # [D - 1, T]
        _, path = librosa.sequence.dtw(X=norm["bdl"], Y=norm["slt"])
        path = path[::-1]
        for name, codec in codecs.items():
            c = {s: codec.encode_envelope(f.envelope)[0] for s, f in feats.items()}
            pairs[name][0].extend(c["bdl"][path[:, 0]])
            pairs[name][1].extend(c["slt"][path[:, 1]])
    gains = {}
    for name, (x, y) in pairs.items():
        uni, given = cross_entropies(np.array(x), np.array(y), codecs[name].codebook_size)
        gains[name] = 1 - given / uni
        print(f"{name}: {len(x)} aligned frame pairs, unigram {uni:.3f} nats, given bdl's code {given:.3f}, gain {gains[name]:.3f}")
    print(" ".join(f"code0_gain[{name}]={g:.3f}" for name, g in gains.items()))
    return 0


if __name__ == "__main__":
    run_main(main)
