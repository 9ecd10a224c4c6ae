"""Train the quantisers of the ``offline`` codec on ../shared/data and write the shipped asset.

    python -m tools.train_offline_codec --data ../shared/data --out valle2/assets/codec/offline_codec.npz

Steps: WORLD-analyse every training clip (see ``valle2.codec.offline.analyse``); fit a residual
k-means quantiser (one stage per envelope codebook) to the mel-cepstral envelope of all frames,
then refine each stage with the others fixed; fit a k-means codebook to the band aperiodicity of
voiced frames.  F0 needs no training (a fixed log grid).  Everything is seeded, so a rerun on
the same data gives the same codebooks.  About 7 minutes on two cores.

``--stage1-size 256 --stage1-normalised`` makes codebook 0, the one the AR predicts, more
phonetic (not the shipped asset: ``docs/codec.md`` says why): stage 1 is a 256-means of each
frame minus its utterance's speech mean (coefficients 1..), and the later stages a residual
k-means of the envelope minus the stage-1 codewords, so they carry the speaker's mean and
decoding is unchanged.

Held out from training (``held_out``), so that ``python -m benchmarks.codec_quality`` measures unseen
material: the ARCTIC prompts b0390-b0539 of both speakers (b0390-b0439 for design choices,
b0440-b0539 for the benchmark), and every third LibriSpeech speaker in sorted order (84 speakers:
positions 0, 6, 12, ... for the benchmark, 3, 9, 15, ... for design choices).
"""
from __future__ import annotations

import argparse
import csv
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tools import DEFAULT_DATA, run_main, speech_data
from valle2.codec.offline import ASSET_PATH, OfflineCodec, OfflineCodecConfig, analyse, rvq_encode, stage1_input

ARCTIC_HELD_OUT_FROM = 390  # b-set prompt number from which ARCTIC utterances are held out
ARCTIC_TEST_FROM = 440  # b-set prompts >= this are the benchmark set, the rest of the held-out set is dev
LS_HELD_OUT_EVERY = 3  # every third LibriSpeech speaker (sorted) is held out


@dataclass(frozen=True)
class Clip:
    """One row of the data tables: ``text`` is '' for untranscribed clips."""

    id: str
    path: Path
    speaker: str
    text: str


def read_table(data: Path, name: str) -> list[Clip]:
    with open(data / name, newline="") as f:
        return [Clip(r["id"], data / r["path"], r["speaker"], r.get("text", "") or "") for r in csv.DictReader(f, delimiter="\t")]


def _arctic_number(clip: Clip) -> int | None:
    """Prompt number of a b-set ARCTIC id (``arctic_bdl_b0123`` -> 123), else None."""
    tail = clip.id.rsplit("_", 1)[-1]
    return int(tail[1:]) if tail.startswith("b") and tail[1:].isdigit() else None


def held_out(data: Path) -> dict[str, list[Clip]]:
    """The split: ``train``, ``dev_arctic``, ``test_arctic``, ``dev_ls``, ``test_ls`` clip lists."""
    arctic, ls = read_table(data, "transcribed.tsv"), read_table(data, "untranscribed.tsv")
    speakers = sorted({c.speaker for c in ls})
    test_spk = set(speakers[0::2 * LS_HELD_OUT_EVERY])
    dev_spk = set(speakers[LS_HELD_OUT_EVERY::2 * LS_HELD_OUT_EVERY])
    split: dict[str, list[Clip]] = {k: [] for k in ("train", "dev_arctic", "test_arctic", "dev_ls", "test_ls")}
    for c in arctic:
        n = _arctic_number(c)
        key = "train" if n is None or n < ARCTIC_HELD_OUT_FROM else ("test_arctic" if n >= ARCTIC_TEST_FROM else "dev_arctic")
        split[key].append(c)
    for c in ls:
        split["test_ls" if c.speaker in test_spk else "dev_ls" if c.speaker in dev_spk else "train"].append(c)
    return split


# ----------------------------------------------------------------------------------- k-means
def kmeans(x: torch.Tensor, k: int, iters: int, seed: int) -> torch.Tensor:
    """Lloyd's k-means of ``x [N, D]`` (float32) with k-means++ seeding -> centroids ``[k, D]``.

    Empty clusters are re-seeded with the points farthest from their centroid.
    """
    gen = torch.Generator().manual_seed(seed)
    n = len(x)
    sq = (x * x).sum(1)
    centres = torch.empty(k, x.shape[1], dtype=x.dtype)
    centres[0] = x[torch.randint(n, (1,), generator=gen)]
    best = sq - 2 * x @ centres[0] + centres[0] @ centres[0]
    for i in range(1, k):
        p = best.clamp_min(0)
        idx = torch.multinomial(p / p.sum(), 1, generator=gen) if p.sum() > 0 else torch.randint(n, (1,), generator=gen)
        centres[i] = x[idx]
        best = torch.minimum(best, sq - 2 * x @ centres[i] + centres[i] @ centres[i])
    for _ in range(iters):
        assign, dist = _assign(x, sq, centres)
        counts = torch.bincount(assign, minlength=k)
        sums = torch.zeros_like(centres).index_add_(0, assign, x)
        filled = counts > 0
        centres[filled] = sums[filled] / counts[filled, None]
        empty = torch.nonzero(~filled).flatten()
        if len(empty):
            centres[empty] = x[torch.topk(dist, len(empty)).indices]
    return centres


def _assign(x: torch.Tensor, sq: torch.Tensor, centres: torch.Tensor, chunk: int = 65536) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest centre ``[N]`` and squared distance ``[N]`` for each row of ``x [N, D]``."""
    csq = (centres * centres).sum(1)
    idx, dist = [], []
    for s in range(0, len(x), chunk):
        d = csq[None, :] - 2 * x[s:s + chunk] @ centres.T
        v, i = d.min(1)
        idx.append(i)
        dist.append(v + sq[s:s + chunk])
    return torch.cat(idx), torch.cat(dist)


def train_rvq(x: np.ndarray, stages: int, k: int, iters: int, refine_rounds: int, seed: int) -> np.ndarray:
    """Residual k-means of ``x [N, D]``: ``stages`` codebooks ``[stages, k, D]``, coarse to fine.

    After the greedy stage-by-stage fit, each stage is refitted ``refine_rounds`` times to the
    target minus the other stages' codewords (encoding stays greedy).
    """
    xt = torch.from_numpy(x.astype(np.float32))
    books, residual = [], xt.clone()
    for s in range(stages):
        cb = kmeans(residual, k, iters, seed + s)
        residual -= cb[_assign(residual, (residual * residual).sum(1), cb)[0]]
        books.append(cb)
        print(f"  stage {s + 1}: residual rms {residual.pow(2).sum(1).mean().sqrt():.4f}", flush=True)
    books = torch.stack(books)
    for r in range(refine_rounds):
        codes = torch.from_numpy(rvq_encode(x, books.numpy()))
        for s in range(stages):
            others = sum((books[j][codes[j]] for j in range(stages) if j != s), torch.zeros_like(xt))
            target = xt - others
            counts = torch.bincount(codes[s], minlength=k)
            sums = torch.zeros(k, x.shape[1], dtype=xt.dtype).index_add_(0, codes[s], target)
            filled = counts > 0
            books[s][filled] = sums[filled] / counts[filled, None]
        codes = torch.from_numpy(rvq_encode(x, books.numpy()))
        err = xt - sum(books[j][codes[j]] for j in range(stages))
        print(f"  refine {r + 1}: residual rms {err.pow(2).sum(1).mean().sqrt():.4f}", flush=True)
    return books.numpy()


# -------------------------------------------------------------------------------------- main
def train_envelope(env: np.ndarray, stage1: np.ndarray, cfg: OfflineCodecConfig, iters: int, refine_rounds: int,
                   seed: int) -> np.ndarray:
    """Envelope codebooks ``[stages, codebook_size, D]`` for frames ``env [N, D]``.

    ``stage1 [N, D]`` is what stage 1 quantises (:func:`stage1_input`: ``env`` itself, or each
    frame minus its utterance's speech mean).  Plain residual k-means when they are the same;
    otherwise stage 1 is a ``cfg.stage1_size``-means of ``stage1`` (unused rows are zero) and the
    later stages a residual k-means of ``env`` minus the stage-1 codewords.
    """
    stages, k = len(cfg.envelope_books), cfg.codebook_size
    if not cfg.stage1_normalised and cfg.stage1_size == k:
        return train_rvq(env, stages, k, iters, refine_rounds, seed)
    x1 = torch.from_numpy(stage1.astype(np.float32))
    book1 = torch.zeros(k, env.shape[1])
    book1[: cfg.stage1_size] = kmeans(x1, cfg.stage1_size, iters, seed)
    codes1 = _assign(x1, (x1 * x1).sum(1), book1[: cfg.stage1_size])[0].numpy()
    residual = env - book1.numpy()[codes1]
    print(f"  stage 1 ({cfg.stage1_size} codewords, normalised={cfg.stage1_normalised}): residual rms "
          f"{np.sqrt((residual ** 2).sum(1).mean()):.4f}", flush=True)
    rest = train_rvq(residual, stages - 1, k, iters, refine_rounds, seed + 1)
    return np.concatenate([book1.numpy()[None], rest])


def extract(clips: list[Clip], cfg: OfflineCodecConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Envelope ``[N, envelope_dims]`` of all frames, its stage-1 input ``[N, envelope_dims]``
    (:func:`stage1_input`, per clip) and band aperiodicity ``[M, bands]`` of voiced frames."""
    import soundfile as sf
    from tqdm import tqdm

    from valle2.audio import resample

    env, st1, ap = [], [], []
    for c in tqdm(clips, desc="WORLD analysis", unit="clip"):
        wav, sr = sf.read(c.path, dtype="float32")
        wav = resample(wav, sr, cfg.sample_rate)
        f = analyse(wav, cfg)
        env.append(f.envelope)
        st1.append(stage1_input(f.envelope, cfg))
        ap.append(f.aperiodicity[f.f0 > 0])
    return np.concatenate(env), np.concatenate(st1), np.concatenate(ap)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the speech data folder (transcribed.tsv, untranscribed.tsv)")
    p.add_argument("--out", type=Path, default=ASSET_PATH, help="where to write the codec asset (.npz)")
    p.add_argument("--max-frames", type=int, default=200_000, help="frames sampled for k-means")
    p.add_argument("--iters", type=int, default=15, help="Lloyd iterations per codebook")
    p.add_argument("--refine", type=int, default=1, help="RVQ refinement rounds")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1: leave the other cores free)")
    p.add_argument("--stage1-size", type=int, default=1024, help="codewords of envelope stage 1 (codebook 0, the AR's)")
    p.add_argument("--stage1-normalised", action="store_true",
                   help="stage 1 quantises each frame minus its utterance's speech mean (a more phonetic codebook 0)")
    args = p.parse_args(argv)
    speech_data(args.data)
    torch.set_num_threads(args.threads)
    cfg = OfflineCodecConfig(stage1_size=args.stage1_size, stage1_normalised=args.stage1_normalised)
    clips = held_out(args.data)["train"]
    print(f"{len(clips)} training clips; layout: envelope books {cfg.envelope_books}, F0 book {cfg.f0_book}, "
          f"aperiodicity book {cfg.aperiodicity_book}", flush=True)
    t0 = time.time()
    env, st1, ap = extract(clips, cfg)
    rng = np.random.default_rng(args.seed)
    if len(env) > args.max_frames:
        keep = np.sort(rng.choice(len(env), args.max_frames, replace=False))
        env, st1 = env[keep], st1[keep]
    if len(ap) > args.max_frames:
        ap = ap[np.sort(rng.choice(len(ap), args.max_frames, replace=False))]
    print(f"envelope RVQ on {len(env)} frames x {env.shape[1]} dims", flush=True)
    env_books = train_envelope(env, st1, cfg, args.iters, args.refine, args.seed)
    print(f"aperiodicity k-means on {len(ap)} voiced frames x {ap.shape[1]} bands", flush=True)
    ap_book = kmeans(torch.from_numpy(ap.astype(np.float32)), cfg.codebook_size, args.iters, args.seed + 100).numpy()
    out = OfflineCodec(cfg, env_books, ap_book).save(args.out)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB) in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    run_main(main)
