"""``valle2 train``: train the AR and NAR from a YAML config.  Several processes (DDP: gloo on
the CPU, nccl on GPUs): ``torchrun --nproc_per_node=N -m valle2 train --config X.yaml``."""
from __future__ import annotations

import argparse
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("train", help="train the AR and NAR from a YAML config (torchrun -m valle2 train for DDP)")
    p.add_argument("--config", required=True, type=Path, help="YAML config (see configs/)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a config value (repeatable)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..config import load_config
    from ..train import run as train

    print(f"exported {train(load_config(args.config, args.set))}")
    return 0
