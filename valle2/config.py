"""Typed training configuration, read from YAML (``configs/*.yaml``).

A config has four sections; every key is optional except ``data.train`` and ``run.out_dir``::

    model: {d_model: 256, n_heads: 4, n_ar_layers: 6, n_nar_layers: 6, d_ff: 1024, dropout: 0.1, group_size: 2}
    optim: {lr: 1.0e-3, warmup_steps: 200, steps: 20000, ...}
    data:  {train: data/prepared/train, valid: data/prepared/valid, max_duration: 60}
    run:   {out_dir: runs/demo, log_every: 10, valid_every: 500, ...}

The text vocabulary and the codec's codebooks come from the prepared data, not the config.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

import yaml

from .errors import ConfigError
from .model import ModelSize


@dataclass
class OptimConfig:
    """AdamW with linear warm-up then cosine decay to ``min_lr_ratio * lr``, as in the paper's recipe."""

    steps: int = 1000
    lr: float = 1e-3
    min_lr_ratio: float = 0.05
    warmup_steps: int = 100
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.98)
    grad_clip: float = 1.0
    grad_accum: int = 1
    nar_prompt_min: float = 0.25
    nar_prompt_max: float = 0.5
    seed: int = 0
    train_ar: bool = True  # false: the AR is frozen and its loss skipped (a NAR-only fine-tune, with run.init_from)
    nar_code0_share: float = 0.5  # model.nar_code0: the share of NAR examples drawn for codebook 0 (valle2.code0)

    def __post_init__(self):
        if not 0 < self.nar_code0_share < 1:
            raise ValueError(f"nar_code0_share must be in (0, 1), got {self.nar_code0_share}")


@dataclass
class DataConfig:
    """Prepared shards (``valle2 prepare``) and lhotse duration-bucketed dynamic batching.

    ``concat_prob``: the chance that a training utterance is joined to another of the same
    speaker (text and codes, in that order), so that short-utterance corpora show the AR the
    prompt-then-target sequences of cross-sentence prompting.  ``text_vocab`` is the phoneme-BPE
    vocabulary a recipe prepares the text with (0 = phoneme symbols, no merges); ``valle2 prepare``
    takes it as ``--vocab-size``.
    """

    train: str = ""
    valid: str | None = None
    max_duration: float = 60.0
    num_buckets: int = 6
    max_utterance_seconds: float = 20.0
    valid_max_utterances: int = 64
    concat_prob: float = 0.0
    text_vocab: int = 256

    def __post_init__(self):
        if self.text_vocab != 0 and self.text_vocab < 3:
            raise ValueError(f"text_vocab must be 0 (phoneme symbols) or at least 3, got {self.text_vocab}")


@dataclass
class RunConfig:
    """Where and how often to log, validate, sample and checkpoint."""

    out_dir: str = ""
    log_every: int = 10
    valid_every: int = 500
    sample_every: int = 1000
    checkpoint_every: int = 500
    keep_checkpoints: int = 3
    device: str = "auto"
    fsdp: bool = False
    threads: int = 0
    export_half: bool = True
    init_from: str = ""  # a valle2 model file whose weights start a new run (a fine-tune); what it lacks starts fresh


@dataclass
class Config:
    model: ModelSize = field(default_factory=ModelSize)
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)
    run: RunConfig = field(default_factory=RunConfig)


def _section(cls, values: dict, name: str):
    if values is None:
        return cls()
    if not isinstance(values, dict):
        raise ConfigError(f"config section '{name}' must be a mapping, got {type(values).__name__}")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"unknown key(s) in section '{name}': {', '.join(unknown)} (known: {', '.join(known)})")
    out = {}
    for key, value in values.items():
        default = getattr(cls(), key)
        if isinstance(default, tuple):
            value = tuple(value)
        elif isinstance(default, bool) and not isinstance(value, bool):
            raise ConfigError(f"{name}.{key} must be true or false, got {value!r}")
        elif isinstance(default, (int, float)) and not isinstance(default, bool):
            if isinstance(default, float) and isinstance(value, str):  # YAML 1.1 reads 2e-3 (no dot) as a string
                try:
                    value = float(value)
                except ValueError:
                    pass
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise ConfigError(f"{name}.{key} must be a number, got {value!r}")
            value = type(default)(value)
        out[key] = value
    try:
        return cls(**out)
    except ValueError as exc:  # a section's own checks, e.g. model.group_size
        raise ConfigError(f"config section '{name}': {exc}") from None


def config_from_dict(d: dict) -> Config:
    """Build a :class:`Config` from nested dicts, refusing unknown sections and keys."""
    sections = {"model": ModelSize, "optim": OptimConfig, "data": DataConfig, "run": RunConfig}
    unknown = sorted(set(d) - set(sections))
    if unknown:
        raise ConfigError(f"unknown config section(s): {', '.join(unknown)}")
    return Config(**{name: _section(cls, d.get(name), name) for name, cls in sections.items()})


def load_config(path, overrides: list[str] | None = None) -> Config:
    """Read a YAML config; ``overrides`` are ``section.key=value`` strings (YAML-parsed values)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: '{path}'")
    try:
        d = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file '{path}' is not valid YAML: {exc}") from exc
    if not isinstance(d, dict):
        raise ConfigError(f"config file '{path}' must hold a mapping of sections")
    for item in overrides or []:
        key, sep, value = item.partition("=")
        section, dot, name = key.partition(".")
        if not sep or not dot:
            raise ConfigError(f"override '{item}' must look like section.key=value")
        d.setdefault(section, {})
        if d[section] is None:
            d[section] = {}
        d[section][name] = yaml.safe_load(value)
    cfg = config_from_dict(d)
    if not cfg.data.train:
        raise ConfigError(f"config '{path}' needs data.train (a folder written by `valle2 prepare`)")
    if not cfg.run.out_dir:
        raise ConfigError(f"config '{path}' needs run.out_dir")
    return cfg
