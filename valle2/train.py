"""Training the AR and NAR, from a few utterances in memory up to many GPUs.

The AR learns codebook 0 of a whole utterance from its whole text.  The NAR learns codebook
``j`` (drawn per utterance from ``1 .. n_q-1``) after each utterance is split into a condition
part (its first 25-50 % of frames, all codebooks summed) and a target part, as in VALL-E.

    valle2 train --config configs/demo.yaml                        # one process
    torchrun --nproc_per_node=N -m valle2 train --config X.yaml    # DDP: gloo on CPU, nccl on GPU

Checkpoints are written atomically and resume exactly: weights, optimiser, schedule, the
lhotse sampler's position and every RNG.
"""
from __future__ import annotations

import ctypes
import hashlib
import io
import json
import math
import os
import random
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import Tensor, nn
from tqdm.auto import tqdm

from .alignment import align, fit_emissions
from .audio import atomic_write_bytes
from .code0 import Code0
from .code0.durations import mean_token_frames
from .config import Config, OptimConfig
from .data.utterance import Utterance
from .errors import ConfigError
from .model import ARModel, ModelDims, NARModel


@dataclass
class Batch:
    """A collated batch: text ``[B, L]`` right-padded with ``text_lens [B]``; per-utterance codes
    ``[n_q, T_i]``; the NAR's condition length ``nar_split[i]`` and codebook ``stage [B]``."""

    text: Tensor
    text_lens: Tensor
    codes: list[Tensor]
    nar_split: list[int]
    stage: Tensor

    @property
    def n_tokens(self) -> int:
        """Text tokens plus codec frames: the unit of training throughput."""
        return int(self.text_lens.sum()) + sum(c.shape[1] for c in self.codes)


def collate(utts: list[Utterance], rng: random.Random, cfg: OptimConfig, nar_predicts: int, nar_code0: bool = False) -> Batch:
    """Pad the text and draw each utterance's NAR split and stage from ``rng``: ``1 .. nar_predicts - 1``,
    or with ``nar_code0`` stage 0 (codebook 0, :mod:`valle2.code0.network`) at the rate
    ``cfg.nar_code0_share`` and the others evenly."""
    splits = [min(u.codes.shape[1] - 1, max(1, int(u.codes.shape[1] * rng.uniform(cfg.nar_prompt_min, cfg.nar_prompt_max))))
              for u in utts]
    return Batch(text=nn.utils.rnn.pad_sequence([u.text_ids.long() for u in utts], batch_first=True),
                 text_lens=torch.tensor([u.text_ids.shape[0] for u in utts]),
                 codes=[u.codes.long() for u in utts], nar_split=splits,
                 stage=torch.tensor([0 if nar_code0 and rng.random() < cfg.nar_code0_share else rng.randint(1, nar_predicts - 1)
                                     for _ in utts]))


def lr_lambda(cfg: OptimConfig):
    """Multiplier of ``cfg.lr`` at each step: linear warm-up, then cosine decay."""
    def f(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        t = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps))
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t))
    return f


def join(prompt: Utterance, target: Utterance, group_size: int) -> Utterance:
    """``prompt`` then ``target``, as cross-sentence decoding reads them: text ``[L1 + L2]`` and codes
    ``[n_q, T1' + T2]``, the prompt's codes trimmed at the start to a multiple of ``group_size``
    (what :func:`valle2.decoding.ar_generate` does to a prompt), so that the target starts on a
    group boundary in training as it does in decoding."""
    codes = prompt.codes[:, prompt.codes.shape[1] % group_size:]
    return Utterance(torch.cat([prompt.text_ids, target.text_ids]), torch.cat([codes, target.codes], 1), prompt.speaker)


def concat_same_speaker(utts: list[Utterance], pool: dict[str, list[int]], data: list[Utterance], prob: float,
                        rng: random.Random, group_size: int = 1) -> list[Utterance]:
    """Join each utterance, with probability ``prob``, to a random other utterance of its speaker
    (``pool``: speaker -> indices into ``data``) with :func:`join`."""
    out = []
    for u in utts:
        others = [i for i in pool.get(u.speaker, ()) if data[i] is not u] if prob > 0 else []
        if others and rng.random() < prob:
            u = join(u, data[rng.choice(others)], group_size)
        out.append(u)
    return out


def frames_per_token(data: list[Utterance]) -> float:
    """Mean codec frames per text token over a corpus (sets the decoding length limit)."""
    return sum(u.codes.shape[1] for u in data) / max(1, sum(u.text_ids.shape[0] for u in data))


class VallE2Loss(nn.Module):
    """Both networks (and a :class:`~valle2.code0.Code0`, with ``model.nar_code0``) behind one
    ``forward`` so that DDP/FSDP see every parameter."""

    def __init__(self, ar: ARModel, nar: NARModel, code0: Code0 | None = None, train_ar: bool = True):
        super().__init__()
        self.ar, self.nar, self.code0, self.train_ar = ar, nar, code0, train_ar

    def forward(self, batch: Batch) -> tuple[Tensor, dict]:
        """Sum of the AR's loss (unless ``train_ar`` is off) and the NAR's.  An aligned AR's Viterbi
        alignments are computed once and serve both (the NAR's stage-0 rows read them)."""
        device = next(self.parameters()).device
        text, lens = batch.text.to(device), batch.text_lens.to(device)
        codes = [c.to(device) for c in batch.codes]
        index = None
        if self.ar.dims.aligned and (self.train_ar or self.code0 is not None):
            index = [align(self.ar.log_emission, text[i, : int(lens[i])], c[0]) for i, c in enumerate(codes)]
        loss, stats = text.new_zeros((), dtype=torch.float32), {}
        if self.train_ar:
            loss, stats = self.ar.loss(text, lens, [c[0] for c in codes], alignments=index)
        split, stage = batch.nar_split, batch.stage.to(device)
        inputs = head0 = None
        if self.code0 is not None:
            net = self.code0.network
            inputs, head0 = net.loss_inputs(self.nar, text, lens, stage, [x[p:] for x, p in zip(index, split)]), net.head
        nar_loss, nar_stats = self.nar.loss(text, lens, [c[:, :p].T for c, p in zip(codes, split)],
                                            [c[:, p:].T for c, p in zip(codes, split)], stage, inputs, head0)
        stats.update(nar_stats)
        return loss + nar_loss, stats


class Trainer:
    """Both models, one AdamW optimiser and the schedule; :meth:`step` runs one update."""

    def __init__(self, dims: ModelDims, cfg: OptimConfig, device: str = "cpu", distributed: bool = False, fsdp: bool = False):
        self.dims, self.cfg, self.device = dims, cfg, torch.device(device)
        torch.manual_seed(cfg.seed)
        self.ar, self.nar = ARModel(dims).to(self.device), NARModel(dims).to(self.device)
        self.code0 = Code0(dims).to(self.device) if dims.nar_code0 else None
        self.ar.requires_grad_(cfg.train_ar)
        self.module: nn.Module = VallE2Loss(self.ar, self.nar, self.code0, cfg.train_ar)
        if fsdp:
            from torch.distributed.fsdp import fully_shard

            for block in [*self.ar.backbone.blocks, *self.nar.backbone.blocks]:
                fully_shard(block)
            fully_shard(self.module)
        elif distributed:
            self.module = nn.parallel.DistributedDataParallel(self.module, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        params = [p for p in self.module.parameters() if p.requires_grad]
        decay = [p for p in params if p.dim() >= 2]
        no_decay = [p for p in params if p.dim() < 2]
        self.opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                      {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=cfg.betas)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lr_lambda(cfg))
        self.rng = random.Random(cfg.seed)
        self.step_count = 0

    def step(self, micro_batches: list[list[Utterance]]) -> dict:
        """One optimiser update over ``grad_accum`` micro-batches; returns averaged statistics."""
        self.module.train()
        self.opt.zero_grad(set_to_none=True)
        totals: dict[str, float] = {"tokens": 0.0}
        for utts in micro_batches:
            batch = collate(utts, self.rng, self.cfg, self.dims.nar_predicts, self.dims.nar_code0)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
                loss, stats = self.module(batch)
            (loss / len(micro_batches)).backward()
            for k, v in stats.items():
                totals[k] = totals.get(k, 0.0) + v / len(micro_batches)
            totals["tokens"] += batch.n_tokens
        totals["grad_norm"] = float(nn.utils.clip_grad_norm_([p for p in self.module.parameters() if p.requires_grad],
                                                             self.cfg.grad_clip))
        self.opt.step()
        self.sched.step()
        self.step_count += 1
        totals["lr"] = self.sched.get_last_lr()[0]
        return totals

    @torch.no_grad()
    def evaluate(self, batches: list[list[Utterance]]) -> dict:
        """Mean validation statistics (loss, accuracy, top-10 accuracy) over fixed batches."""
        self.module.eval()
        rng = random.Random(0)  # the same NAR splits and stages every time
        totals: dict[str, float] = {}
        for utts in batches:
            _, stats = self.module(collate(utts, rng, self.cfg, self.dims.nar_predicts, self.dims.nar_code0))
            for k, v in stats.items():
                totals[k] = totals.get(k, 0.0) + v / len(batches)
        return totals

    def fit(self, data: list[Utterance], batch_size: int = 8, progress: bool = True, log=None) -> list[dict]:
        """Train to ``cfg.steps`` on random batches of in-memory ``data``; returns each step's stats."""
        history = []
        bar = tqdm(range(self.step_count, self.cfg.steps), desc="training", disable=not progress)
        for _ in bar:
            stats = self.step([self.rng.sample(data, min(batch_size, len(data))) for _ in range(self.cfg.grad_accum)])
            history.append(stats)
            bar.set_postfix({k[:-5]: f"{stats[k]:.2f}" for k in ("ar_loss", "nar_loss") if k in stats})
            if log is not None:
                log(self.step_count, stats)
        return history

    def state_dict(self) -> dict:
        """Everything exact resume needs (the sampler's position is added by the caller)."""
        return {"step": self.step_count, "ar": self.ar.state_dict(), "nar": self.nar.state_dict(),
                "code0": None if self.code0 is None else self.code0.state_dict(), "opt": self.opt.state_dict(), "sched": self.sched.state_dict(), "rng_python": self.rng.getstate(),
                "rng_torch": torch.get_rng_state(),
                "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}

    def load_state_dict(self, state: dict) -> None:
        self.ar.load_state_dict(state["ar"])
        self.nar.load_state_dict(state["nar"])
        if self.code0 is not None:
            self.code0.load_state_dict(state["code0"])
        self.opt.load_state_dict(state["opt"])
        self.sched.load_state_dict(state["sched"])
        self.rng.setstate(state["rng_python"])
        torch.set_rng_state(state["rng_torch"])
        if state["rng_cuda"]:
            torch.cuda.set_rng_state_all(state["rng_cuda"])
        self.step_count = state["step"]

    def weights_digest(self) -> str:
        """SHA-256 over every parameter: equal on all DDP ranks when they are in sync."""
        h = hashlib.sha256()
        for m in (self.ar, self.nar, self.code0):
            for k, v in ({} if m is None else m.state_dict()).items():
                h.update(k.encode())
                h.update(v.detach().float().cpu().numpy().tobytes())
        return h.hexdigest()


def init_weights(trainer: Trainer, path: str, tokenizer, codec: dict) -> tuple[list[str], dict]:
    """Start a new run from the weights of model file ``path`` (``run.init_from``, a fine-tune).

    The file's tokenizer and codec must be the prepared corpus's, and each tensor it holds must fit
    this model by name and shape; what it lacks (a stage-0 network, say) keeps its initialisation,
    and durations and the context table are fitted anew.  Raises ConfigError naming what does not
    fit.  Returns the names of the tensors the file lacked (``"ar.<name>"``, ``"nar.<name>"``,
    ``"code0.network.<name>"``) and its metadata.
    """
    from .checkpoint import load_model_bundle

    bundle, fresh = load_model_bundle(path), []
    if bundle.tokenizer.state_dict() != tokenizer.state_dict():
        raise ConfigError(f"run.init_from: '{path}' was trained with another text tokenizer than this prepared corpus")
    for key in ("name", "n_codebooks", "codebook_size", "frame_rate", "fingerprint"):
        if bundle.codec.get(key) != codec.get(key):
            raise ConfigError(f"run.init_from: '{path}' was trained with another codec than this prepared corpus ({key} differs)")
    pairs = [("ar", trainer.ar, bundle.ar), ("nar", trainer.nar, bundle.nar)]
    if trainer.code0 is not None:
        pairs.append(("code0.network", trainer.code0.network, None if bundle.code0 is None else bundle.code0.network))
    for name, own, theirs in pairs:
        state, mine = ({} if theirs is None else theirs.state_dict()), own.state_dict()
        bad = [k for k, v in state.items() if k not in mine or mine[k].shape != v.shape]
        if bad:
            raise ConfigError(f"run.init_from: the {name} of '{path}' does not fit this model ({', '.join(bad[:4])})")
        fresh += [f"{name}.{k}" for k in own.load_state_dict(state, strict=False).missing_keys]
    return fresh, bundle.meta


def fit_code0(code0: Code0, log_emission: Tensor, data: list[Utterance], code_vectors: Tensor | None,
              frame_rate: float, min_voice_seconds: float = 600.0, progress: bool = True) -> list[str]:
    """Fit what codebook 0 without the AR reads from the training alignments under the AR's
    emission table ``log_emission`` (one Viterbi pass over ``data``): each token's mean frames
    (``code0.token_frames``) and, given the codec's codewords ``code_vectors``, the context table
    (:class:`valle2.code0.table.ContextTable`), whose voices are the speakers with at least
    ``min_voice_seconds`` of audio.  Returns the voices' names ([] without codewords: no table)."""
    index = [align(log_emission, u.text_ids, u.codes[0]) for u in tqdm(data, desc="aligning for codebook 0", disable=not progress)]
    frames = mean_token_frames(code0.token_frames.shape[0], ((u.text_ids, ix) for u, ix in zip(data, index)))
    code0.token_frames.copy_(frames.to(code0.token_frames.device))
    if code_vectors is None:  # a codec without codewords gives no table (--code0 table is refused)
        return []
    items = ((u.speaker, u.text_ids, u.codes[0], ix) for u, ix in zip(data, index))
    return code0.table.fit(items, code_vectors, min_voice_frames=int(min_voice_seconds * frame_rate))


def training_set(cfg: Config, train) -> tuple[list[Utterance], ModelDims]:
    """The utterances a run trains on (more than one frame, at most ``data.max_utterance_seconds``)
    and the model's dims, from ``cfg`` and its prepared training data ``train``
    (:class:`~valle2.data.Prepared`).  ConfigError for a model setting the prepared codec does not
    allow (``model.nar_codebooks``)."""
    limit = cfg.data.max_utterance_seconds * float(train.codec["frame_rate"])
    data = [u for u in train.utterances if 1 < u.codes.shape[1] <= limit]
    try:
        dims = ModelDims(n_text_vocab=train.tokenizer.vocab_size, n_codebooks=train.codec["n_codebooks"],
                         codebook_size=train.codec["codebook_size"], **asdict(cfg.model))
    except ValueError as exc:
        raise ConfigError(f"config section 'model': {exc}") from None
    return data, dims


def bundle_from_checkpoint(path: str | Path):
    """The model a training checkpoint (``run.out_dir/checkpoints/step-N.pt`` or ``last.pt``) holds,
    as a :class:`~valle2.checkpoint.ModelBundle` (the run's prepared data gives its tokenizer and
    codec): what a run exported had it stopped there.  Metadata ``{"steps": N, "checkpoint": path}``."""
    from .checkpoint import ModelBundle
    from .config import config_from_dict
    from .data import load_prepared

    state = torch.load(path, map_location="cpu", weights_only=False)
    cfg = config_from_dict(state["config"])
    train = load_prepared(cfg.data.train)
    data, dims = training_set(cfg, train)
    ar, nar = ARModel(dims), NARModel(dims)
    ar.load_state_dict(state["trainer"]["ar"])
    nar.load_state_dict(state["trainer"]["nar"])
    code0 = None
    if state["trainer"]["code0"] is not None:
        code0 = Code0(dims)
        code0.load_state_dict(state["trainer"]["code0"])
    return ModelBundle(dims, ar.eval(), nar.eval(), train.tokenizer, train.codec, frames_per_token(data),
                       {**state.get("meta", {}), "steps": state["trainer"]["step"], "checkpoint": str(path),
                        "train_seconds": state.get("train_seconds")}, code0,
                       "ar" if code0 is None else code0.source)


def setup_distributed(device_pref: str) -> tuple[int, int, torch.device]:
    """Join the process group that torchrun describes (gloo on CPU, nccl on GPU).

    Returns ``(rank, world_size, device)``; a plain run is rank 0 of 1.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() if device_pref == "auto" else device_pref.startswith("cuda")
    device = torch.device(f"cuda:{local}" if use_cuda else "cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return rank, world, device


def _cutset(data: list[Utterance], frame_rate: float):
    """Recording-free lhotse cuts, one an utterance (id = its index), for duration bucketing."""
    from lhotse import CutSet, MonoCut

    return CutSet.from_cuts(MonoCut(id=str(i), start=0.0, duration=u.codes.shape[1] / frame_rate, channel=0)
                            for i, u in enumerate(data))


def release_free_memory() -> bool:
    """Hand the heap memory that glibc keeps after frees back to the OS (``malloc_trim``).

    Batches of varying shapes leave the CPU allocator's heap fragmented, and the resident size
    grows step by step until the heap is trimmed.  Returns False where the C library has none
    (not glibc), True once the heap was trimmed."""
    trim = getattr(ctypes.CDLL(None), "malloc_trim", None)
    if trim is None:
        return False
    trim(0)
    return True


def _atomic_torch_save(obj, path: Path) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def run(cfg: Config) -> Path:
    """Train from prepared shards as ``cfg`` says; returns the exported model file.

    Resumes from ``run.out_dir/last.pt`` when present.  Rank 0 logs to TensorBoard under
    ``run.out_dir/tb``, writes checkpoints and exports ``run.out_dir/model.pt``.
    """
    from lhotse.dataset import DynamicBucketingSampler

    from .checkpoint import ModelBundle, save_model
    from .data import load_prepared
    from .monitor import Monitor

    if cfg.data.num_buckets < 2:
        raise ConfigError(f"data.num_buckets must be at least 2, got {cfg.data.num_buckets}")
    rank, world, device = setup_distributed(cfg.run.device)
    if cfg.run.threads:
        torch.set_num_threads(cfg.run.threads)
    out = Path(cfg.run.out_dir)
    train = load_prepared(cfg.data.train)
    valid = load_prepared(cfg.data.valid) if cfg.data.valid else None
    frame_rate = float(train.codec["frame_rate"])
    limit = cfg.data.max_utterance_seconds * frame_rate
    data, dims = training_set(cfg, train)
    if dims.nar_predicts < dims.n_codebooks:  # the codec must complete what the NAR leaves out
        required = train.load_codec().required_codebooks
        if dims.nar_predicts < required:
            raise ConfigError(f"model.nar_codebooks is {dims.nar_codebooks}, but codec '{train.codec['name']}' "
                              f"completes codes from no fewer than {required} codebooks")
    trainer = Trainer(dims, cfg.optim, str(device), distributed=world > 1 and not cfg.run.fsdp, fsdp=cfg.run.fsdp)
    with warnings.catch_warnings():   # the utterances are in memory already: lhotse's advice to read lazily does not apply
        warnings.filterwarnings("ignore", message="You are using DynamicBucketingSampler with an eagerly read CutSet")
        sampler = DynamicBucketingSampler(_cutset(data, frame_rate), max_duration=cfg.data.max_duration,
                                          num_buckets=cfg.data.num_buckets, shuffle=True, drop_last=False,
                                          seed=cfg.optim.seed, world_size=world, rank=rank)
    pool: dict[str, list[int]] = {}
    for i, u in enumerate(data):
        pool.setdefault(u.speaker, []).append(i)
    concat_rng = random.Random(cfg.optim.seed + 7919 * rank)
    epoch = 0
    trained = 0.0   # wall-clock seconds of training over every run that led here (kept in each checkpoint)
    meta: dict = {}  # what the exported model's metadata adds to the run's: that of the run.init_from model
    last = out / "last.pt"
    if last.is_file():
        state = torch.load(last, map_location="cpu", weights_only=False)
        trainer.load_state_dict(state["trainer"])
        epoch = state["epoch"]
        trained = state.get("train_seconds", 0.0)
        sampler.load_state_dict(state["sampler"])
        concat_rng.setstate(state["concat_rng"])
        meta = state.get("meta", {})
    else:  # a new run: every rank sets the same weights and tables (a resumed one loads them)
        fresh = ["ar.log_emission"]
        if cfg.run.init_from:  # an aligned AR's emission table comes with its weights
            fresh, init_meta = init_weights(trainer, cfg.run.init_from, train.tokenizer, train.codec)
            meta = {**init_meta, "init_from": str(cfg.run.init_from)}
        if dims.aligned and "ar.log_emission" in fresh:
            table = fit_emissions(((u.text_ids, u.codes[0]) for u in data), dims.n_text_vocab, dims.codebook_size,
                                  progress=rank == 0)
            trainer.ar.log_emission.copy_(table.to(trainer.ar.log_emission.device))
        if trainer.code0 is not None:  # the codec's codebook-0 codewords: the context table's
            voices = fit_code0(trainer.code0, trainer.ar.log_emission, data, train.load_codec().code0_vectors(), frame_rate,
                               progress=rank == 0)
            if voices:
                meta["context_voices"] = voices
    valid_batches = []
    if valid is not None:
        vd = [u for u in valid.utterances if 1 < u.codes.shape[1] <= limit][: cfg.data.valid_max_utterances]
        valid_batches = [vd[i:i + 8] for i in range(0, len(vd), 8)]
    monitor = Monitor(out, cfg, train, valid, dims) if rank == 0 else None
    fpt = frames_per_token(data)

    def save_checkpoint() -> None:
        state = {"trainer": trainer.state_dict(), "sampler": sampler.state_dict(), "epoch": epoch, "config": asdict(cfg),
                 "concat_rng": concat_rng.getstate(), "meta": meta,
                 "train_seconds": trained + time.perf_counter() - started}
        ckpt = out / "checkpoints" / f"step-{trainer.step_count:08d}.pt"
        _atomic_torch_save(state, ckpt)
        _atomic_torch_save(state, last)
        for old in sorted((out / "checkpoints").glob("step-*.pt"))[: -cfg.run.keep_checkpoints]:
            old.unlink()

    def batches():
        nonlocal epoch
        while True:
            n = 0
            for cuts in sampler:
                n += 1
                yield [data[int(c.id.split("_", 1)[0])] for c in cuts]  # lhotse may add "_dup<k>" for DDP
            if n == 0:
                raise ConfigError(f"an epoch gave rank {rank} no batch: {len(data)} utterances are too few for "
                                  f"{world} process(es); use more data or fewer processes")
            epoch += 1
            sampler.set_epoch(epoch)

    stream = (concat_same_speaker(b, pool, data, cfg.data.concat_prob, concat_rng, dims.group_size) for b in batches())
    started = time.perf_counter()
    bar = tqdm(total=cfg.optim.steps, initial=trainer.step_count, desc="training", disable=rank != 0)
    while trainer.step_count < cfg.optim.steps:
        micro = [next(stream) for _ in range(cfg.optim.grad_accum)]
        tick = time.perf_counter()
        stats = trainer.step(micro)
        stats["tokens_per_s"] = stats["tokens"] * world / max(time.perf_counter() - tick, 1e-9)
        step = trainer.step_count
        bar.update(1)
        bar.set_postfix({k[:-5]: f"{stats[k]:.2f}" for k in ("ar_loss", "nar_loss") if k in stats})
        if step % cfg.run.log_every == 0:
            if device.type == "cpu":
                release_free_memory()
            if monitor is not None:
                monitor.scalars("train", stats, step)
        if valid_batches and step % cfg.run.valid_every == 0:
            vstats = trainer.evaluate(valid_batches)
            if monitor is not None:
                monitor.scalars("valid", vstats, step)
        if monitor is not None and step % cfg.run.sample_every == 0:
            monitor.sample(trainer.ar, trainer.nar, trainer.code0, fpt, step)
        if step % cfg.run.checkpoint_every == 0 or step == cfg.optim.steps:
            if rank == 0:
                save_checkpoint()
    bar.close()
    digests = [trainer.weights_digest()]
    if world > 1:
        gathered: list = [None] * world
        dist.all_gather_object(gathered, digests[0])
        digests = gathered
    model_path = out / "model.pt"
    if rank == 0:
        bundle = ModelBundle(dims, trainer.ar, trainer.nar, train.tokenizer, train.codec, fpt,
                             {**meta, "steps": trainer.step_count, "config": asdict(cfg),
                              "train_seconds": trained + time.perf_counter() - started}, trainer.code0,
                             "ar" if trainer.code0 is None else trainer.code0.source)
        save_model(model_path, bundle, half=cfg.run.export_half)
        summary = {"step": trainer.step_count, "world_size": world, "rank_weight_digests": digests}
        atomic_write_bytes(out / "final_state.json", json.dumps(summary, indent=2).encode())
        monitor.close()
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return model_path
