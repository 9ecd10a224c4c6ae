"""Model files: the AR and NAR weights with everything needed to use them.

A checkpoint is one ``torch.save`` dict (format version 2)::

    {"format": "valle2-model", "version": 2, "dims": ModelDims dict, "ar": state_dict,
     "nar": state_dict, "code0": {"source": "ar" | "nar" | "table", "state": Code0 state_dict or {}},
     "tokenizer": TextTokenizer.state_dict(), "codec": Codec.describe(),
     "frames_per_token": float, "meta": {...}}

``code0.source`` is where the model's codebook 0 comes from (:mod:`valle2.code0`); ``code0.state``
holds what a model trained with ``model.nar_code0`` has for it (durations, the stage-0 network,
the context table).  Version-1 files, where the NAR held all of that (its output layer's first
row, ``place_emb``, ``token_frames``, ``context.*``), are read too.

Files are written atomically (temporary file, fsync, rename); ``half=True`` stores fp16 weights
for shipping.  Loading checks every key and names what is wrong.
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .audio import atomic_write_bytes
from .code0 import Code0
from .decoding import CODE0_SOURCES
from .errors import ModelError
from .model import ARModel, ModelDims, NARModel
from .text import TextTokenizer

FORMAT, VERSION = "valle2-model", 2
READS = (1, 2)


@dataclass
class ModelBundle:
    """Everything a checkpoint holds, as live objects.  ``code0``: the model's :class:`Code0`
    (None unless trained with ``model.nar_code0``); ``code0_source``: where its codebook 0 comes
    from, ``"ar"``, ``"nar"`` or ``"table"`` (what ``valle2 info`` shows)."""

    dims: ModelDims
    ar: ARModel
    nar: NARModel
    tokenizer: TextTokenizer
    codec: dict
    frames_per_token: float
    meta: dict = field(default_factory=dict)
    code0: Code0 | None = None
    code0_source: str = "ar"


def save_model(path, bundle: ModelBundle, half: bool = False) -> Path:
    """Write ``bundle`` to ``path`` atomically; ``half`` stores floating weights as fp16."""
    def weights(m):
        if m is None:
            return {}
        return {k: (v.half() if half and v.is_floating_point() else v).detach().cpu().clone() for k, v in m.state_dict().items()}

    payload = {"format": FORMAT, "version": VERSION, "dims": bundle.dims.to_dict(), "ar": weights(bundle.ar),
               "nar": weights(bundle.nar), "code0": {"source": bundle.code0_source, "state": weights(bundle.code0)},
               "tokenizer": bundle.tokenizer.state_dict(), "codec": dict(bundle.codec),
               "frames_per_token": float(bundle.frames_per_token), "meta": dict(bundle.meta)}
    buf = io.BytesIO()
    torch.save(payload, buf)
    return atomic_write_bytes(path, buf.getvalue())


def from_version_1(nar: dict, dims: ModelDims) -> tuple[dict, dict]:
    """Split a version-1 NAR state dict into the NAR's and the :class:`Code0`'s (version 2)."""
    nar = dict(nar)
    if not dims.nar_code0:
        return nar, {"source": "ar", "state": {}}
    head = nar.pop("head")
    state = {"network.head": head[0], "network.place_emb.weight": nar.pop("place_emb.weight"),
             "token_frames": nar.pop("token_frames")}
    state.update({"table." + k[len("context."):]: nar.pop(k) for k in [k for k in nar if k.startswith("context.")]})
    nar["head"] = head[1:]
    fitted = state.get("table.voice_codes", torch.zeros(0)).numel() > 0
    return nar, {"source": "table" if fitted else "nar", "state": state}


def load_model_bundle(path, device: str = "cpu") -> ModelBundle:
    """Read a checkpoint written by :func:`save_model` (or a version-1 one); raises ModelError
    naming the problem."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"model file not found: '{path}'")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a corrupt file
        raise ModelError(f"model file '{path}' is not a readable valle2 checkpoint ({exc.__class__.__name__})") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ModelError(f"'{path}' is not a valle2 model file")
    version = payload.get("version")
    if version not in READS:
        raise ModelError(f"'{path}' has checkpoint version {version}, this valle2 reads versions {READS}")
    missing = [k for k in ("dims", "ar", "nar", "tokenizer", "codec", "frames_per_token") + (("code0",) if version > 1 else ())
               if k not in payload]
    if missing:
        raise ModelError(f"model file '{path}' lacks {', '.join(missing)}")

    def floats(state: dict) -> dict:
        return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}

    try:
        dims = ModelDims(**payload["dims"])
        nar_state, code0_entry = (from_version_1(payload["nar"], dims) if version == 1
                                  else (payload["nar"], payload["code0"]))
        source = code0_entry["source"]
        if source not in CODE0_SOURCES or (source != "ar" and not dims.nar_code0):
            raise ValueError(f"codebook-0 source {source!r} does not fit the model (model.nar_code0={dims.nar_code0})")
        ar, nar = ARModel(dims), NARModel(dims)
        ar.load_state_dict(floats(payload["ar"]))
        nar.load_state_dict(floats(nar_state))
        code0 = None
        if dims.nar_code0:
            code0 = Code0(dims)
            code0.load_state_dict(floats(code0_entry["state"]))
        tokenizer = TextTokenizer.from_state_dict(payload["tokenizer"])
    except (TypeError, ValueError, RuntimeError, KeyError) as exc:
        raise ModelError(f"model file '{path}' is inconsistent: {exc}") from exc
    if tokenizer.vocab_size > dims.n_text_vocab:
        raise ModelError(f"model file '{path}': tokenizer has {tokenizer.vocab_size} symbols, the model {dims.n_text_vocab}")
    return ModelBundle(dims, ar.to(device).eval(), nar.to(device).eval(), tokenizer, payload["codec"],
                       float(payload["frames_per_token"]), payload.get("meta", {}),
                       None if code0 is None else code0.to(device).eval(), source)
