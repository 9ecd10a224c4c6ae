"""The unit of training data: what :func:`valle2.data.load_shards` reads and :mod:`valle2.train` learns from."""
from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass
class Utterance:
    """One training example: text token ids ``[L]`` and codec codes ``[n_q, T]``."""

    text_ids: Tensor
    codes: Tensor
    speaker: str = ""
