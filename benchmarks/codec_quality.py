"""Codec resynthesis quality on clips held out from codec training.

    python -m benchmarks.codec_quality                      # the shipped offline codec
    python -m benchmarks.codec_quality --codec encodec --random-init

For each held-out clip (ARCTIC prompts b0440-b0539 of bdl and slt, which carry text, and
LibriSpeech speakers never seen in training; see ``tools.train_offline_codec.held_out``) the clip is
encoded and decoded on one CPU thread and compared with the original:

- Resemblyzer cosine between original and resynthesis;
- pocketsphinx WER of the original and of the resynthesis against the ARCTIC prompt text;
- DNSMOS P.808 of both;
- encode and decode speed on one thread, as multiples of real time (CPU time, so that other
  jobs on the machine do not distort it).

Prints one table row per clip set and, last, ``cosine=<x> wer_delta=<y> dnsmos_delta=<z>
encode_xrt=<w>`` (cosine and DNSMOS over all clips; WER delta in points over the ARCTIC clips).
"""
from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # one core for the codec, as the speed figures claim

import numpy as np  # noqa: E402
import torch  # noqa: E402

from tools import DEFAULT_DATA, run_main, speech_data  # noqa: E402
from tools.train_offline_codec import Clip, held_out  # noqa: E402
from valle2 import metrics  # noqa: E402
from valle2.audio import load_audio, resample  # noqa: E402
from valle2.codec import load_codec  # noqa: E402


@dataclass
class SetResult:
    """Per-clip measurements of one clip set."""

    cosine: list[float] = field(default_factory=list)
    refs: list[str] = field(default_factory=list)
    hyp_orig: list[str] = field(default_factory=list)
    hyp_resyn: list[str] = field(default_factory=list)
    mos_orig: list[float] = field(default_factory=list)
    mos_resyn: list[float] = field(default_factory=list)
    seconds: float = 0.0
    encode_s: float = 0.0
    decode_s: float = 0.0

    def wer(self) -> tuple[float, float] | None:
        if not self.refs:
            return None
        return 100 * metrics.wer(self.refs, self.hyp_orig), 100 * metrics.wer(self.refs, self.hyp_resyn)


def select(data: Path, n_arctic: int, n_ls: int) -> dict[str, list[Clip]]:
    """The benchmark clips: ``n_arctic`` split evenly between bdl and slt, and ``n_ls`` LibriSpeech."""
    split = held_out(data)
    half = n_arctic // 2
    arctic = split["test_arctic"]
    return {"arctic-bdl": [c for c in arctic if c.speaker == "bdl"][:half],
            "arctic-slt": [c for c in arctic if c.speaker == "slt"][:n_arctic - half],
            "librispeech": split["test_ls"][:n_ls]}


def measure(codec, clips: list[Clip], result: SetResult, progress) -> None:
    """Encode, decode and score each clip of one set into ``result``."""
    for clip in clips:
        wav, sr = load_audio(clip.path)
        # CPU time of this (single-threaded) process: the speed of one dedicated core, even on a busy machine
        t0 = time.process_time()
        codes = codec.encode(wav, sr)
        t1 = time.process_time()
        out = codec.decode(codes).numpy()
        t2 = time.process_time()
        result.seconds += len(wav) / sr
        result.encode_s += t1 - t0
        result.decode_s += t2 - t1
        resyn = resample(out, codec.sample_rate, sr)[: len(wav)]
        result.cosine.append(metrics.speaker_similarity(wav, sr, resyn, sr))
        result.mos_orig.append(metrics.dnsmos(wav, sr))
        result.mos_resyn.append(metrics.dnsmos(resyn, sr))
        if clip.text:
            result.refs.append(clip.text)
            result.hyp_orig.append(metrics.transcribe(wav, sr))
            result.hyp_resyn.append(metrics.transcribe(resyn, sr))
        progress.update(1)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Codec resynthesis quality on held-out speech.")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the speech data folder")
    p.add_argument("--codec", default="offline", choices=["offline", "encodec"])
    p.add_argument("--random-init", action="store_true", help="encodec only: random weights instead of the published ones")
    p.add_argument("--path", type=Path, default=None, help="offline only: another trained codec asset")
    p.add_argument("--n-arctic", type=int, default=40, help="held-out ARCTIC clips (half bdl, half slt)")
    p.add_argument("--n-ls", type=int, default=20, help="held-out LibriSpeech clips")
    args = p.parse_args(argv)
    speech_data(args.data)
    from tqdm import tqdm

    torch.set_num_threads(1)
    if args.codec == "encodec":
        codec = load_codec("encodec", pretrained=not args.random_init)
    else:
        codec = load_codec("offline", path=args.path)
    sets = select(args.data, args.n_arctic, args.n_ls)
    results = {name: SetResult() for name in sets}
    with tqdm(total=sum(map(len, sets.values())), desc=f"{codec.name} resynthesis", unit="clip") as progress:
        for name, clips in sets.items():
            measure(codec, clips, results[name], progress)

    print(f"\ncodec {codec.name}: {codec.n_codebooks} x {codec.codebook_size}, {codec.frame_rate:g} frames/s, "
          f"{codec.sample_rate} Hz")
    header = f"{'set':<12} {'n':>3} {'cosine':>7} {'WER orig':>9} {'WER resyn':>10} {'MOS orig':>9} {'MOS resyn':>10} {'enc xRT':>8} {'dec xRT':>8}"
    print(header)
    print("-" * len(header))
    total = SetResult()
    for name, r in results.items():
        w = r.wer()
        wer_cols = f"{w[0]:>9.1f} {w[1]:>10.1f}" if w else f"{'-':>9} {'-':>10}"
        print(f"{name:<12} {len(r.cosine):>3} {np.mean(r.cosine):>7.3f} {wer_cols} {np.mean(r.mos_orig):>9.2f} "
              f"{np.mean(r.mos_resyn):>10.2f} {r.seconds / r.encode_s:>8.1f} {r.seconds / r.decode_s:>8.1f}")
        for attr in ("cosine", "refs", "hyp_orig", "hyp_resyn", "mos_orig", "mos_resyn"):
            getattr(total, attr).extend(getattr(r, attr))
        total.seconds += r.seconds
        total.encode_s += r.encode_s
        total.decode_s += r.decode_s
    w = total.wer()
    wer_cols = f"{w[0]:>9.1f} {w[1]:>10.1f}" if w else f"{'-':>9} {'-':>10}"
    print(f"{'all':<12} {len(total.cosine):>3} {np.mean(total.cosine):>7.3f} {wer_cols} {np.mean(total.mos_orig):>9.2f} "
          f"{np.mean(total.mos_resyn):>10.2f} {total.seconds / total.encode_s:>8.1f} {total.seconds / total.decode_s:>8.1f}")
    wer_delta = w[1] - w[0] if w else float("nan")
    dmos = float(np.mean(total.mos_resyn) - np.mean(total.mos_orig))
    print(f"cosine={np.mean(total.cosine):.3f} wer_delta={wer_delta:.2f} dnsmos_delta={dmos:.3f} "
          f"encode_xrt={total.seconds / total.encode_s:.1f}")


if __name__ == "__main__":
    run_main(main)
