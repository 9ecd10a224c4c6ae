"""The ``valle2`` command line: ``valle2 <command> --help`` for each command's options."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import Valle2Error


def add_decoding_args(p: argparse.ArgumentParser) -> None:
    """Decoding options shared by every command that decodes (:class:`valle2.DecodingOptions`; a flag
    not given leaves its option unset, which a codebook-0 source it does not apply to accepts)."""
    from .decoding import CODE0_SOURCES, CODE_CHOICES

    g = p.add_argument_group("sampling")
    g.add_argument("--temperature", type=float, default=None, help="AR: 0 = greedy (default 1.0)")
    g.add_argument("--top-k", type=int, default=None, help="AR: 0 = off (default 0)")
    g.add_argument("--top-p", type=float, default=None, help="AR nucleus mass; 0 = greedy, 1 = off (default 0.8)")
    g.add_argument("--no-ras", action="store_true", help="AR: plain nucleus sampling, without Repetition Aware Sampling")
    g.add_argument("--code-choice", choices=CODE_CHOICES, default=None,
                   help="how codebook 0 is picked: 'sample' (nucleus sampling with RAS, as the paper), 'mean' (the "
                        "code nearest the distribution's mean codeword); default mean where the codec has codewords")
    g.add_argument("--ras-window", type=int, default=None, help="AR: K, the window of Repetition Aware Sampling (default 10)")
    g.add_argument("--ras-threshold", type=float, default=None,
                   help="AR: t_r, the repetition ratio that triggers resampling (default 0.1)")
    g.add_argument("--no-kv-cache", action="store_true", help="AR: recompute the whole sequence each step (slow; for comparison)")
    g.add_argument("--seed", type=int, default=None)
    g.add_argument("--no-voice-match", action="store_true",
                   help="decode the NAR's codes as they are, without matching pitch level and timbre to the prompt")
    g.add_argument("--nar-codebooks", type=int, default=None, metavar="N",
                   help="codebooks the NAR fills, codebook 0 counted (8: all, as the paper); the codec completes the "
                        "rest with no fine detail (default: the codec's choice, 5 of the offline codec's 8)")
    g.add_argument("--code0", choices=CODE0_SOURCES, default=None,
                   help="where codebook 0 comes from: 'ar' (the AR decodes it, as the paper); with models trained with "
                        "model.nar_code0, 'nar' (the NAR's stage 0 network) or 'table' (the context table); "
                        "default: the source the model file records")
    g.add_argument("--pace", type=pace_arg, default=None, metavar="X|prompt",
                   help="where codebook 0 does not come from the AR: each token lasts its mean duration in the training "
                        "voices times X (2 = twice as slow, default 1); 'prompt' follows the prompt's pace, measured "
                        "against its transcript")


def pace_arg(value: str) -> float:
    """``--pace``: a number, or "prompt" (0: the prompt's pace)."""
    from .decoding import PROMPT_PACE

    if value == "prompt":
        return PROMPT_PACE
    try:
        return float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--pace takes a number or 'prompt', not {value!r}") from None


def decoding_options(args: argparse.Namespace):
    from .decoding import DecodingOptions

    return DecodingOptions(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                           ras=False if args.no_ras else None, ras_window=args.ras_window,
                           ras_threshold=args.ras_threshold, use_kv_cache=False if args.no_kv_cache else None,
                           seed=args.seed, match_voice=not args.no_voice_match, code_choice=args.code_choice,
                           nar_codebooks=args.nar_codebooks, code0=args.code0, pace=args.pace)


def cmd_synthesize(args: argparse.Namespace) -> int:
    from .audio import AudioFile, save_audio
    from .safety.deployment import Deployment
    from .synthesis import load_model

    deployment = Deployment.open()
    signer = None
    if args.c2pa:   # fail on a missing extra or a format without C2PA support before any synthesis
        from .safety.provenance import ProvenanceSigner, mime_type

        mime_type(args.out.suffix.lstrip(".") or "wav")
        signer = ProvenanceSigner.open(deployment.home)
    model = load_model(args.model, gate=deployment.gate(), int8=args.int8)
    prompt = AudioFile.read(args.prompt)   # read once: the gate hashes the bytes that were decoded
    wav, sr = prompt.load()
    consent = {"voice_id": args.voice} if args.voice else {"corpus_file": prompt}
    out, out_sr = model.synthesize(args.text, wav, sr, prompt_text=args.prompt_text, mode=args.mode, **consent,
                                   options=decoding_options(args), include_prompt=args.include_prompt, speed=args.speed,
                                   progress=True)
    if signer is None:
        save_audio(args.out, out, out_sr)
    else:
        from .safety.consent import file_sha256
        from .safety.provenance import save_with_manifest, synthesis_assertion

        save_with_manifest(args.out, out, out_sr, signer,
                           synthesis_assertion(deployment.audit, out, model_sha256=file_sha256(args.model)))
    print(f"wrote {args.out}: {len(out) / out_sr:.2f} s at {out_sr} Hz" + (", with a signed C2PA manifest" if signer else ""))
    return 0


DEMO_TEXT = "Hello! This is the valle2 demo voice, reading a sentence it has never heard."


def cmd_demo(args: argparse.Namespace) -> int:
    """Synthesize with a model (default: the one shipped in the package) and the packaged demo
    voice, through the consent gate: the voice's clips are an attested research corpus."""
    import json

    from .audio import AudioFile, save_audio
    from .errors import ModelError
    from .recipe import ASSETS
    from .safety.deployment import Deployment
    from .synthesis import load_model

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
    out, out_sr = model.synthesize(text, prompt, sr, corpus_file=clip, mode=args.mode, options=decoding_options(args),
                                   speed=args.speed, progress=True, **extra)
    save_audio(args.out, out, out_sr)
    print(f"demo voice {voice['id']} ({voice['speaker']}), {args.mode} mode, said: {text!r}")
    print(f"wrote {args.out}: {len(out) / out_sr:.2f} s at {out_sr} Hz, watermarked; check it with `valle2 detect {args.out}`")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="valle2", description="VALL-E 2 zero-shot text-to-speech with safeguards")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("synthesize", help="speak text in the voice of a prompt recording")
    p.add_argument("--model", required=True, type=Path, help="a valle2 model file")
    p.add_argument("--prompt", required=True, type=Path, help="prompt recording (wav, flac, ogg, mp3), about 3 s")
    p.add_argument("--voice", default=None, help="id of the enrolled voice whose consent covers the prompt "
                   "(without it, the prompt file must belong to an attested research corpus)")
    p.add_argument("--prompt-text", default=None, help="transcript of the prompt (needed for --mode cross)")
    p.add_argument("--text", required=True, help="what to say")
    p.add_argument("--out", required=True, type=Path, help="output audio file (.wav, .flac, .ogg, .mp3)")
    p.add_argument("--mode", choices=("cross", "continuation"), default="cross",
                   help="cross: prompt is another utterance; continuation: --text is the prompt's whole transcript")
    p.add_argument("--include-prompt", action="store_true", help="prepend the prompt's resynthesis to the output")
    p.add_argument("--speed", type=float, default=1.0, help="tempo, 0.25-4 (pitch kept; like OpenAI's speed)")
    p.add_argument("--c2pa", action="store_true",
                   help='add a signed C2PA provenance manifest (wav, flac, mp3; pip install "valle2[c2pa]")')
    p.add_argument("--int8", action=argparse.BooleanOptionalAction, default=None,
                   help="int8 linear layers in the AR and NAR (default on the CPU: faster, not bit-identical; "
                   "--no-int8 for fp32)")
    add_decoding_args(p)
    p.set_defaults(func=cmd_synthesize)

    p = sub.add_parser("demo", help="synthesize with the shipped demo model and demo voice")
    p.add_argument("--model", type=Path, default=None, help="a model file (default: the one in the package)")
    p.add_argument("--text", default=DEMO_TEXT, help="what to say (cross mode)")
    p.add_argument("--mode", choices=("cross", "continuation"), default="cross")
    p.add_argument("--prompt-seconds", type=float, default=1.2, help="prompt length in continuation mode")
    p.add_argument("--out", type=Path, default=Path("demo_out/demo.wav"))
    p.add_argument("--speed", type=float, default=1.0, help="tempo, 0.25-4 (pitch kept; like OpenAI's speed)")
    add_decoding_args(p)
    p.set_defaults(func=cmd_demo)

    from .data import add_prepare_parser
    from .evaluation import add_evaluate_parsers
    from .recipe import add_recipe_parser
    from .safety.command import add_safety_parsers
    from .server.command import add_keys_parser, add_serve_parser
    from .train import add_train_args, cmd_train

    add_prepare_parser(sub)
    add_recipe_parser(sub)
    add_safety_parsers(sub)
    add_evaluate_parsers(sub)
    add_serve_parser(sub)
    add_keys_parser(sub)
    p = sub.add_parser("train", help="train the AR and NAR from a YAML config (torchrun -m valle2.train for DDP)")
    add_train_args(p)
    p.set_defaults(func=cmd_train)
    return parser


def run_command(args: argparse.Namespace, name: str) -> int:
    """Run a parsed command; a :class:`Valle2Error` becomes ``valle2 <name>: error: ...`` and exit 2."""
    try:
        return args.func(args)
    except Valle2Error as exc:
        print(f"valle2 {name}: error: {exc}", file=sys.stderr)
        return 2


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command(args, args.command)


if __name__ == "__main__":
    sys.exit(main())
