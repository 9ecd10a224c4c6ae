"""A voice's adapter: what ``valle2 voice adapt`` (:mod:`valle2.adapt`) fits on a speaker's own
recordings and synthesis then uses for that voice, as one small file (npz, no pickle).

- ``table``: the speaker's own context table (:class:`valle2.code0.table.ContextTable` buffers,
  one voice), the codebook-0 statistics of their recordings, unseen contexts filled from the
  model's nearest training voice;
- ``prompt_name``/``prompt_data``/``prompt_text``: the recording chosen as the voice's prompt,
  byte for byte (so that the gate hashes and decodes what was checked), and its transcript;
- ``reference [n_codebooks, R]``: codes of the adaptation recordings, the voice statistics that
  :meth:`valle2.codec.Codec.match_voice` moves outputs toward (in place of the prompt's few seconds).
"""
from __future__ import annotations

import io
import json
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ..errors import ModelError
from .table import BUFFERS, ContextTable

FORMAT = 1


@dataclass
class VoiceAdapter:
    """See the module docstring.  ``kind``: "consent" (``voice_id`` an enrolled ``v_...``) or
    "research" (``r_...``, the prompt a file of an attested research corpus)."""

    voice_id: str
    kind: str
    name: str
    table: dict[str, Tensor]
    prompt_name: str
    prompt_data: bytes
    prompt_text: str
    reference: Tensor

    def to_bytes(self) -> bytes:
        """The adapter as npz bytes (integers at their smallest exact width)."""
        meta = {"format": FORMAT, "voice_id": self.voice_id, "kind": self.kind, "name": self.name,
                "prompt_name": self.prompt_name, "prompt_text": self.prompt_text}
        arrays = {f"table_{k}": _narrow(self.table[k].cpu().numpy()) for k in BUFFERS}
        buf = io.BytesIO()
        np.savez_compressed(buf, meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8),
                            prompt=np.frombuffer(self.prompt_data, dtype=np.uint8),
                            reference=_narrow(self.reference.cpu().numpy()), **arrays)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> "VoiceAdapter":
        """Read :meth:`to_bytes`; ModelError when the bytes are no adapter of this format."""
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as z:
                meta = json.loads(z["meta"].tobytes().decode())
                if meta.get("format") != FORMAT:
                    raise ModelError(f"voice adapter format {meta.get('format')!r} is not {FORMAT}: adapt the voice "
                                     "again (`valle2 voice adapt`)")
                table = {k: torch.from_numpy(z[f"table_{k}"].astype(np.int64)) for k in BUFFERS}
                return cls(meta["voice_id"], meta["kind"], meta["name"], table, meta["prompt_name"],
                           z["prompt"].tobytes(), meta["prompt_text"], torch.from_numpy(z["reference"].astype(np.int64)))
        except (ValueError, KeyError, OSError, UnicodeDecodeError) as e:
            raise ModelError(f"not a voice adapter ({e}): adapt the voice again (`valle2 voice adapt`)") from None

    def context_table(self, n_vocab: int) -> ContextTable:
        """The adapter's context table, for a model with ``n_vocab`` text tokens."""
        table = ContextTable(n_vocab)
        table.load_state_dict(self.table)
        if table.token_codes.shape[1] != n_vocab:
            raise ModelError(f"voice adapter of {self.voice_id} was fitted for {table.token_codes.shape[1]} text tokens, "
                             f"this model has {n_vocab}: adapt the voice again with this model")
        return table


def _narrow(a: np.ndarray) -> np.ndarray:
    """Integers ``a`` in the smallest of int16/int32/int64 that holds them exactly."""
    for dtype in (np.int16, np.int32):
        if a.size == 0 or (a.min() >= np.iinfo(dtype).min and a.max() <= np.iinfo(dtype).max):
            return a.astype(dtype)
    return a.astype(np.int64)
