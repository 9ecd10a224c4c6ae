"""``valle2 info [MODEL]``: what a model file holds: where its codebook 0 comes from, the networks'
sizes, the codec, the tokenizer and the training metadata."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from .options import add_model_arg


def register(sub) -> None:
    p = sub.add_parser("info", help="what a model file holds: codebook-0 source, sizes, codec, training metadata")
    add_model_arg(p, positional=True)
    p.add_argument("--json", action="store_true", help="print it as JSON")
    p.set_defaults(func=run)


def describe(path: Path) -> dict:
    """The summary of model file ``path`` that ``valle2 info`` prints; ModelError for a bad file."""
    from ..checkpoint import load_model_bundle
    from ..code0 import DESCRIPTIONS
    from ..names import model_file

    bundle = load_model_bundle(model_file(path))

    def params(module) -> int:
        return 0 if module is None else sum(p.numel() for p in module.parameters())

    return {"file": str(path), "code0_source": bundle.code0_source, "code0": DESCRIPTIONS[bundle.code0_source],
            "dims": bundle.dims.to_dict(), "parameters": {"ar": params(bundle.ar), "nar": params(bundle.nar),
                                                          "code0": params(bundle.code0)},
            "codec": bundle.codec, "text_vocab": bundle.tokenizer.vocab_size,
            "frames_per_token": round(bundle.frames_per_token, 3),
            "meta": {k: v for k, v in bundle.meta.items() if k not in ("config", "heldout", "train_speakers")},
            "meta_keys": sorted(bundle.meta)}


def run(args: argparse.Namespace) -> int:
    info = describe(args.model)
    if args.json:
        print(json.dumps(info, indent=1))
        return 0
    d, n = info["dims"], info["parameters"]
    print(f"{info['file']}")
    print(f"  codebook 0 from: {info['code0']} ({info['code0_source']}; --code0 overrides it)")
    print(f"  AR: {d['n_ar_layers']} layers, group size {d['group_size']}, {n['ar'] / 1e6:.1f} M parameters; "
          f"NAR: {d['n_nar_layers']} layers, {n['nar'] / 1e6:.1f} M" + (f"; code0: {n['code0'] / 1e6:.2f} M" if n["code0"] else ""))
    print(f"  d_model {d['d_model']}, {d['n_heads']} heads, d_ff {d['d_ff']}; text vocabulary {info['text_vocab']}; "
          f"{info['frames_per_token']} frames per token")
    c = info["codec"]
    print(f"  codec: {c['name']}, {c['n_codebooks']} codebooks x {c['codebook_size']}, {c['frame_rate']} frames/s, "
          f"{c['sample_rate']} Hz")
    for k, v in info["meta"].items():
        print(f"  {k}: {v}")
    print(f"  metadata: {', '.join(info['meta_keys']) or 'none'}")
    return 0
