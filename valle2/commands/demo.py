"""``valle2 demo``: synthesize with a model (default: the one shipped in the package) and the
packaged demo voice, through the consent gate: the voice's clips are an attested research corpus."""
from __future__ import annotations

import argparse
from pathlib import Path

from .options import add_decoding_args, decoding_options

DEMO_TEXT = "Hello! This is the valle2 demo voice, reading a sentence it has never heard."


def register(sub) -> None:
    p = sub.add_parser("demo", help="synthesize with the shipped demo model and demo voice")
    p.add_argument("--model", type=Path, default=None, help="a model file (default: the one in the package)")
    p.add_argument("--text", default=DEMO_TEXT, help="what to say (cross mode)")
    p.add_argument("--mode", choices=("cross", "continuation"), default="cross",
                   help="cross: the demo clip is the prompt for --text; continuation: the clip's start is the prompt "
                        "and the model continues the clip's own sentence")
    p.add_argument("--prompt-seconds", type=float, default=1.2, help="prompt length in continuation mode")
    p.add_argument("--out", type=Path, default=Path("demo_out/demo.wav"), help="output audio file")
    p.add_argument("--speed", type=float, default=1.0, help="tempo, 0.25-4 (pitch kept; like OpenAI's speed)")
    add_decoding_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json

    from ..audio import AudioFile, save_audio
    from ..errors import ModelError
    from ..recipe import ASSETS
    from ..safety.deployment import Deployment
    from ..synthesis import load_model

    options = decoding_options(args)   # bad options fail before the model loads
    model_path = args.model or ASSETS / "model.pt"
    if not model_path.is_file():
        raise ModelError(f"no model at {model_path}: train one with `valle2 recipe tiny` (minutes) or "
                         "`valle2 recipe demo --data ../shared/data --ship` (about 2 hours)")
    voice = json.loads((ASSETS / "voice.json").read_text())
    clip = AudioFile.read(ASSETS / voice["file"])
    deployment = Deployment.open()
    deployment.import_attestation_file(ASSETS / "attestation.json")
    model = load_model(model_path, gate=deployment.gate())
    wav, sr = clip.load()
    if args.mode == "continuation":  # the clip's start as prompt; the model continues its own sentence
        text, prompt, extra = voice["text"], wav[: int(args.prompt_seconds * sr)], {"include_prompt": True}
    else:
        text, prompt, extra = args.text, wav, {"prompt_text": voice["text"]}
    out, out_sr = model.synthesize(text, prompt, sr, corpus_file=clip, mode=args.mode, options=options,
                                   speed=args.speed, progress=True, **extra)
    save_audio(args.out, out, out_sr)
    print(f"demo voice {voice['id']} ({voice['speaker']}), {args.mode} mode, said: {text!r}")
    print(f"wrote {args.out}: {len(out) / out_sr:.2f} s at {out_sr} Hz, watermarked; check it with `valle2 detect {args.out}`")
    return 0
