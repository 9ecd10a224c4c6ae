"""Model files: the AR and NAR weights with everything needed to use them.

A checkpoint is one ``torch.save`` dict::

    {"format": "valle2-model", "version": 1, "dims": ModelDims dict, "ar": state_dict,
     "nar": state_dict, "tokenizer": TextTokenizer.state_dict(), "codec": Codec.describe(),
     "frames_per_token": float, "meta": {...}}

Files are written atomically (temporary file, fsync, rename); ``half=True`` stores fp16 weights
for shipping.  Loading checks every key and names what is wrong.
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .audio import atomic_write_bytes
from .errors import ModelError
from .model import ARModel, ModelDims, NARModel
from .text import TextTokenizer

FORMAT, VERSION = "valle2-model", 1


@dataclass
class ModelBundle:
    """Everything a checkpoint holds, as live objects."""

    dims: ModelDims
    ar: ARModel
    nar: NARModel
    tokenizer: TextTokenizer
    codec: dict
    frames_per_token: float
    meta: dict = field(default_factory=dict)


def save_model(path, bundle: ModelBundle, half: bool = False) -> Path:
    """Write ``bundle`` to ``path`` atomically; ``half`` stores floating weights as fp16."""
    def weights(m):
        return {k: (v.half() if half and v.is_floating_point() else v).detach().cpu().clone() for k, v in m.state_dict().items()}

    payload = {"format": FORMAT, "version": VERSION, "dims": bundle.dims.to_dict(), "ar": weights(bundle.ar),
               "nar": weights(bundle.nar), "tokenizer": bundle.tokenizer.state_dict(), "codec": dict(bundle.codec),
               "frames_per_token": float(bundle.frames_per_token), "meta": dict(bundle.meta)}
    buf = io.BytesIO()
    torch.save(payload, buf)
    return atomic_write_bytes(path, buf.getvalue())


def load_model_bundle(path, device: str = "cpu") -> ModelBundle:
    """Read a checkpoint written by :func:`save_model`; raises ModelError naming the problem."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"model file not found: '{path}'")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a corrupt file
        raise ModelError(f"model file '{path}' is not a readable valle2 checkpoint ({exc.__class__.__name__})") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ModelError(f"'{path}' is not a valle2 model file")
    if payload.get("version") != VERSION:
        raise ModelError(f"'{path}' has checkpoint version {payload.get('version')}, this valle2 reads version {VERSION}")
    missing = [k for k in ("dims", "ar", "nar", "tokenizer", "codec", "frames_per_token") if k not in payload]
    if missing:
        raise ModelError(f"model file '{path}' lacks {', '.join(missing)}")
    try:
        dims = ModelDims(**payload["dims"])
        ar, nar = ARModel(dims), NARModel(dims)
        ar.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in payload["ar"].items()})
        nar.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in payload["nar"].items()})
        tokenizer = TextTokenizer.from_state_dict(payload["tokenizer"])
    except (TypeError, ValueError, RuntimeError, KeyError) as exc:
        raise ModelError(f"model file '{path}' is inconsistent: {exc}") from exc
    if tokenizer.vocab_size > dims.n_text_vocab:
        raise ModelError(f"model file '{path}': tokenizer has {tokenizer.vocab_size} symbols, the model {dims.n_text_vocab}")
    return ModelBundle(dims, ar.to(device).eval(), nar.to(device).eval(), tokenizer, payload["codec"],
                       float(payload["frames_per_token"]), payload.get("meta", {}))
