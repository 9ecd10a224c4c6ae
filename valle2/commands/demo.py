"""``valle2 demo``: synthesize with a model (default: the one shipped in the package) and the
packaged demo voice (``voice_id="demo"``, :mod:`valle2.names`), through the consent gate: the
voice's clips are an attested research corpus."""
from __future__ import annotations

import argparse
from pathlib import Path

from .options import add_decoding_args, add_model_arg, decoding_options, output_file

DEMO_TEXT = "Hello! This is the valle2 demo voice, reading a sentence it has never heard."


def register(sub) -> None:
    p = sub.add_parser("demo", help="synthesize with the shipped demo model and demo voice")
    add_model_arg(p)
    p.add_argument("--text", default=DEMO_TEXT, help="what to say (cross mode)")
    p.add_argument("--mode", choices=("cross", "continuation"), default="cross",
                   help="cross: the demo clip is the prompt for --text; continuation: the clip's start is the prompt "
                        "and the model continues the clip's own sentence")
    p.add_argument("--prompt-seconds", type=float, default=1.2, help="prompt length in continuation mode")
    p.add_argument("--out", type=output_file, default=Path("demo_out/demo.wav"), help="output audio file")
    p.add_argument("--speed", type=float, default=1.0, help="tempo, 0.25-4 (pitch kept; like OpenAI's speed)")
    add_decoding_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..audio import load_audio, save_audio
    from ..names import shipped_voice
    from ..safety.deployment import Deployment
    from ..synthesis import load_model

    options = decoding_options(args)   # bad options fail before the model loads
    model = load_model(args.model, gate=Deployment.open().gate())
    voice = shipped_voice("demo")
    text, prompt = args.text, {}   # cross: the demo clip and its transcript are the prompt
    if args.mode == "continuation":  # the clip's start as prompt; the model continues its own sentence
        wav, sr = load_audio(voice.clip)
        text, prompt = voice.text, {"prompt_wav": wav[: int(args.prompt_seconds * sr)], "prompt_sr": sr,
                                    "include_prompt": True}
    out, out_sr = model.synthesize(text, voice_id="demo", mode=args.mode, options=options, speed=args.speed,
                                   progress=True, **prompt)
    save_audio(args.out, out, out_sr)
    print(f"demo voice {voice.id} ({voice.speaker}), {args.mode} mode, said: {text!r}")
    print(f"wrote {args.out}: {len(out) / out_sr:.2f} s at {out_sr} Hz, watermarked; check it with `valle2 detect {args.out}`")
    return 0
