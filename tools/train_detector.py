"""Train valle2's synthesized-speech detector, with every channel of :mod:`valle2.data.channels` on
both classes, and the leave-one-out runs that validate it.

    python -m tools.detector_data --data ../shared/data --cache CACHE              # the clips (once)
    python -m tools.train_detector --cache CACHE --out valle2/assets/detector/detector.pt
    python -m tools.train_detector --cache CACHE --leave-out commonvoice --leave-out opus --out run.pt

Training crops come from a bank built once per data set (``CACHE/bank-*.npz``): up to three crops
of :data:`CROP_SECONDS` from every training clip (short clips are tiled), each passed through no
channel (a quarter of them), one, or two chained channels, drawn at random (MP3 and Opus crops are
encoded together, one ffmpeg call per bit rate), kept as LFCC features.  A batch is half real and half synthesized: real
crops are drawn with each source equally likely (so the 99 Common Voice volunteers weigh as much as
two hours of ARCTIC), synthesized crops by :data:`FAKE_WEIGHTS`; every batch takes its own crop
length (1-3 s), as the deployed detector scores clips shorter than its 3 s window.

The shipped detector is :data:`ENSEMBLE` networks of different seeds, whose probabilities are
averaged: single networks' highest scores on real speech through a channel vary from seed to seed,
and their mean has a shorter tail, so real people pass at a lower threshold.

``--leave-out`` (repeatable) drops a real source (with the codec and vocoder resyntheses of its
clips), a channel (every crop that passed through it) or a training generator (all of its clips)
from training: ``benchmarks/detector_unseen.py`` leaves out one generator at a time.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import math
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent

from tools import run_main
from tools.detector_data import (DEFAULT_CACHE, REAL_SOURCES, SR, TRAIN_GENERATORS, UNSEEN_GENERATORS, Item,
                           read_manifest)

CROP_SECONDS = 3.0
CHANNEL_ORDER = ("eq", "reverb", "noise", "gain", "resample", "telephone", "mp3", "opus")   # how chains are applied
P_CLEAN, P_TWO = 0.25, 0.25        # shares of bank crops with no channel and with two chained channels
# share of the synthesized half of each batch (renormalised over the generators present): valle2
# outputs weigh most, as the detector is for them and resyntheses alone do not carry over to them
FAKE_WEIGHTS = {"valle2": 0.30, "codec": 0.25, "espeak": 0.15, "festival": 0.10, "pulsenoise": 0.10, "griffinlim": 0.10}
FRONT_END_FIELDS = ("sample_rate", "n_fft", "win_length", "hop_length", "n_filters", "n_lfcc", "preemphasis", "log_floor",
                    "delta_width", "target_rms")   # DetectorConfig fields that the bank's features depend on
ENSEMBLE = 3         # networks per detector (seeds seed, seed + 1, ...); their probabilities are averaged


# ----------------------------------------------------------------------------------------- bank
def load_clip(path: str) -> np.ndarray:
    """16 kHz audio of a clip, silence trimmed at its ends as the detector trims."""
    from valle2.audio import load_audio
    from valle2.safety.detector import DetectorConfig, trim_silence

    return trim_silence(load_audio(path, sr=SR, allow_silent=True)[0], DetectorConfig())


def draw_chain(rng: np.random.Generator) -> tuple[str, ...]:
    """No channel, one, or two chained (at most one of MP3 and Opus), in :data:`CHANNEL_ORDER`."""
    u = rng.random()
    if u < P_CLEAN:
        return ()
    k = 2 if u > 1 - P_TWO else 1
    while True:
        chain = set(rng.choice(CHANNEL_ORDER, k, replace=False).tolist())
        if not {"mp3", "opus"} <= chain:
            return tuple(c for c in CHANNEL_ORDER if c in chain)


def features(crops: list[np.ndarray], cfg, chunk: int = 256) -> np.ndarray:
    """LFCC (``cfg``: a DetectorConfig) of each crop, scaled to the detector's RMS first:
    ``[N, n_features, frames] float16``."""
    from valle2.safety.detector import LFCC, normalize_rms

    lfcc = LFCC(cfg)
    out = []
    with torch.no_grad():
        for i in tqdm(range(0, len(crops), chunk), desc="LFCC of the crops", unit="chunk"):
            x = normalize_rms(torch.from_numpy(np.stack(crops[i:i + chunk])), cfg.target_rms)
            out.append(lfcc(x).half().numpy())
    return np.concatenate(out)


def build_bank(items: list[Item], cache: Path, seed: int = 0, cfg=None) -> dict[str, np.ndarray]:
    """Augmented training crops of ``items``, as features of ``cfg``'s front end (default: the
    shipped DetectorConfig): ``feats [N, n_features, frames] float16`` (:func:`features`), ``item [N]``
    (index into ``items``) and ``chain [N]`` ("+"-joined channel names, "" for none).  Cached by the
    items' ids and the front end's settings."""
    from valle2.audio import atomic_write_bytes
    from valle2.data.channels import apply_batched
    from valle2.safety.detector import DetectorConfig

    front = lambda c: {k: v for k, v in asdict(c).items() if k in FRONT_END_FIELDS}   # noqa: E731
    cfg = cfg or DetectorConfig()
    key = hashlib.sha256(("\n".join(it.id for it in items) + f"|{seed}|{CROP_SECONDS}|{CHANNEL_ORDER}"
                          + ("" if front(cfg) == front(DetectorConfig()) else f"|{sorted(front(cfg).items())}")).encode()).hexdigest()[:12]
    path = cache / f"bank-{key}.npz"
    if path.is_file():
        z = np.load(path)
        return {k: z[k] for k in z.files}
    rng = np.random.default_rng(seed)
    crop = int(CROP_SECONDS * SR)
    crops, owner = [], []
    for i, it in enumerate(tqdm(items, desc="cutting training crops", unit="clip")):
        clip = load_clip(it.path)
        if clip.size < SR // 4:
            continue
        n = min(3, math.ceil(clip.size / crop))
        if clip.size < crop:
            clip = np.tile(clip, math.ceil(crop / clip.size))
        for _ in range(n):
            s = int(rng.integers(0, clip.size - crop + 1))
            crops.append(clip[s:s + crop].astype(np.float32))
            owner.append(i)
    chains = [draw_chain(rng) for _ in crops]
    for name in tqdm(CHANNEL_ORDER, desc="channels of the crops", unit="channel"):
        idx = [j for j, ch in enumerate(chains) if name in ch]
        if not idx:
            continue
        done = apply_batched(name, [crops[j] for j in idx], rng)
        for j, y in zip(idx, done):
            crops[j] = np.clip(y, -1, 1)
    bank = {"feats": features(crops, cfg), "item": np.array(owner, np.int32), "chain": np.array(["+".join(c) for c in chains])}
    buf = io.BytesIO()
    np.savez(buf, **bank)
    atomic_write_bytes(path, buf.getvalue())
    return bank


# ------------------------------------------------------------------------------------- training
class Sampler:
    """Balanced batches of features from the bank rows allowed: half real (sources equally likely),
    half synthesized (by :data:`FAKE_WEIGHTS`); each batch has one random length of 1-3 s."""

    def __init__(self, items: list[Item], bank: dict[str, np.ndarray], rows: np.ndarray, seed: int):
        self.feats, self.rng = bank["feats"], np.random.default_rng(seed)
        self.real: dict[str, np.ndarray] = {}
        self.fake: dict[str, np.ndarray] = {}
        for r in rows:
            it = items[int(bank["item"][r])]
            pools = self.real if it.label == 0 else self.fake
            pools.setdefault(it.source if it.label == 0 else it.generator, []).append(r)
        self.real = {k: np.array(v) for k, v in self.real.items()}
        self.fake = {k: np.array(v) for k, v in self.fake.items()}
        w = np.array([FAKE_WEIGHTS.get(g, 0.1) for g in self.fake])
        self.fake_p = w / w.sum()

    def counts(self) -> dict[str, int]:
        return {**{f"real/{k}": len(v) for k, v in self.real.items()}, **{k: len(v) for k, v in self.fake.items()}}

    def batch(self, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        half = size // 2
        real_keys, fake_keys = list(self.real), list(self.fake)
        rows = [self.rng.choice(self.real[real_keys[int(self.rng.integers(len(real_keys)))]]) for _ in range(half)]
        rows += [self.rng.choice(self.fake[fake_keys[i]]) for i in self.rng.choice(len(fake_keys), size - half, p=self.fake_p)]
        frames = self.feats.shape[2]
        n = int(self.rng.integers(frames // 3, frames + 1))
        starts = self.rng.integers(0, frames - n + 1, size)
        x = np.stack([self.feats[r, :, s:s + n] for r, s in zip(rows, starts)]).astype(np.float32)
        return torch.from_numpy(x), torch.tensor([0.0] * half + [1.0] * (size - half))


def allowed_rows(items: list[Item], bank: dict[str, np.ndarray], leave_out: tuple[str, ...]) -> np.ndarray:
    """Bank rows of training generators, without the left-out sources (and their resyntheses),
    channels and generators."""
    bad_sources = {x for x in leave_out if x in REAL_SOURCES}
    bad_channels = {x for x in leave_out if x in CHANNEL_ORDER}
    bad_generators = {x for x in leave_out if x in TRAIN_GENERATORS}
    keep = []
    for r, (i, chain) in enumerate(zip(bank["item"], bank["chain"])):
        it = items[int(i)]
        if it.generator not in ("real",) + TRAIN_GENERATORS or it.source in bad_sources or it.generator in bad_generators:
            continue
        if bad_channels & set(str(chain).split("+")):
            continue
        keep.append(r)
    return np.array(keep)


def train_network(items: list[Item], bank: dict[str, np.ndarray], leave_out: tuple[str, ...] = (), steps: int = 1000,
                  batch: int = 32, lr: float = 2e-3, seed: int = 0, desc: str = "training detector", cfg=None):
    """One :class:`DetectorNet` (``cfg``: its DetectorConfig, default the shipped one; the bank's
    features must be its front end's) trained on the bank without ``leave_out``; returns (net, meta)."""
    from valle2.safety.detector import DetectorConfig, DetectorNet

    unknown = [x for x in leave_out if x not in REAL_SOURCES + CHANNEL_ORDER + TRAIN_GENERATORS]
    if unknown:
        raise SystemExit(f"--leave-out {unknown[0]}: not a real source ({', '.join(REAL_SOURCES)}), a channel "
                         f"({', '.join(CHANNEL_ORDER)}) or a training generator ({', '.join(TRAIN_GENERATORS)})")
    torch.manual_seed(seed)
    cfg = cfg or DetectorConfig()
    sampler = Sampler(items, bank, allowed_rows(items, bank, leave_out), seed)
    net = DetectorNet(cfg)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    net.train()
    losses = []
    tick = time.time()
    bar = tqdm(range(steps), desc=desc, unit="step")
    for step in bar:
        x, y = sampler.batch(batch)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(net.tdnn(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
        if step % 20 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}")
    meta = {"trained_on": sampler.counts(), "left_out": list(leave_out), "unseen_generators": list(UNSEEN_GENERATORS),
            "steps": steps, "batch": batch, "lr": lr, "seeds": [seed], "train_seconds": round(time.time() - tick, 1),
            "final_loss": round(float(np.mean(losses[-100:])), 5)}
    return net.eval(), meta


def train_to(path: Path, cache: Path, leave_out: tuple[str, ...] = (), steps: int = 1000, seed: int = 0,
             ensemble: int = ENSEMBLE, cfg=None) -> Path:
    """Train ``ensemble`` networks (seeds ``seed``, ``seed + 1``, ...; ``cfg``: a DetectorConfig,
    default the shipped one) on the cached data set (bank built on first use) without ``leave_out``,
    and save them as one detector at ``path``."""
    from valle2.safety.detector import save_detector

    items = read_manifest(cache)
    train_items = [it for it in items if it.split == "train" and (it.label == 0 or it.generator in TRAIN_GENERATORS)]
    bank = build_bank(train_items, cache, cfg=cfg)
    without = f" without {'+'.join(leave_out)}" if leave_out else ""
    members, metas = [], []
    for s in range(seed, seed + ensemble):
        net, meta = train_network(train_items, bank, leave_out, steps, seed=s, desc=f"training detector {s - seed + 1}/{ensemble}{without}", cfg=cfg)
        members.append(net)
        metas.append(meta)
    meta = {**metas[0], "seeds": [m["seeds"][0] for m in metas], "train_seconds": round(sum(m["train_seconds"] for m in metas), 1),
            "final_loss": [m["final_loss"] for m in metas],
            "valle2_models": sorted({it.id.split("_")[1] for it in train_items if it.generator == "valle2"})}
    out = save_detector(path, members, meta)
    print(f"wrote {out} ({out.stat().st_size / 1024:.0f} KiB): {json.dumps(meta)}")
    return out


def detector_config(overrides: list[str]):
    """The shipped DetectorConfig with ``FIELD=VALUE`` overrides (each value read as its field's type)."""
    from valle2.safety.detector import DetectorConfig

    cfg = asdict(DetectorConfig())
    for o in overrides:
        name, sep, value = o.partition("=")
        if not sep or name not in cfg:
            raise SystemExit(f"--set {o}: expected FIELD=VALUE with FIELD one of {', '.join(cfg)}")
        kind = type(cfg[name])
        cfg[name] = tuple(int(v) for v in value.split(",")) if kind is tuple else kind(value)
    return DetectorConfig.from_dict(cfg)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="the data set of tools/detector_data.py")
    p.add_argument("--out", type=Path, default=ROOT / "valle2" / "assets" / "detector" / "detector.pt",
                   help="where the weights go (default: the shipped ones)")
    p.add_argument("--leave-out", action="append", default=[],
                   help=f"a real source ({', '.join(REAL_SOURCES)}), channel ({', '.join(CHANNEL_ORDER)}) or "
                        f"generator ({', '.join(TRAIN_GENERATORS)}) to train without (repeatable)")
    p.add_argument("--steps", type=int, default=1000, help="training steps of 32 crops")
    p.add_argument("--seed", type=int, default=0, help="initialisation and batch order of the first network")
    p.add_argument("--ensemble", type=int, default=ENSEMBLE, help="networks trained (seeds --seed, --seed + 1, ...) and averaged")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 trains fastest on a busy 2-core machine)")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="a DetectorConfig field other than the shipped one, e.g. --set n_filters=60 (repeatable)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if not (args.cache / "manifest.tsv").is_file():
        print(f"no data set at {args.cache}: run `python -m tools.detector_data --cache {args.cache}` first", file=sys.stderr)
        return 2
    train_to(args.out, args.cache, tuple(args.leave_out), args.steps, args.seed, args.ensemble, detector_config(args.set))
    return 0


if __name__ == "__main__":
    run_main(main)
