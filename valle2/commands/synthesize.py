"""``valle2 synthesize``: speak text in the voice of a prompt recording, through the consent gate."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .options import add_decoding_args, add_model_arg, decoding_options, output_file


def register(sub) -> None:
    p = sub.add_parser("synthesize", help="speak text in the voice of a prompt recording")
    add_model_arg(p)
    p.add_argument("--prompt", type=Path, default=None, help="prompt recording (wav, flac, ogg, mp3), about 3 s "
                   "(default with --voice demo: the demo voice's clip)")
    p.add_argument("--voice", default=None, help="id of the enrolled voice whose consent covers the prompt (an "
                   "adapted voice, v_... or r_..., needs no --prompt), or a shipped voice's name: demo, the attested "
                   "demo voice (without --voice, the prompt file must belong to an attested research corpus)")
    p.add_argument("--prompt-text", default=None, help="transcript of the prompt (needed for --mode cross; with "
                   "--voice demo and no --prompt, the clip's own)")
    p.add_argument("--text", required=True, help="what to say")
    p.add_argument("--out", required=True, type=output_file, help="output audio file (.wav, .flac, .ogg, .mp3)")
    p.add_argument("--mode", choices=("cross", "continuation"), default="cross",
                   help="cross: prompt is another utterance; continuation: --text is the prompt's whole transcript")
    p.add_argument("--prompt-seconds", type=positive_seconds, default=None,
                   help="cut the prompt to its first this many seconds (default: 3 in continuation mode, the paper's "
                   "prefix, saying so when it cuts; the whole prompt in cross mode, where --prompt-text must then "
                   "be the transcript of what is kept)")
    p.add_argument("--include-prompt", action="store_true", help="prepend the prompt's resynthesis to the output")
    p.add_argument("--speed", type=float, default=1.0, help="tempo, 0.25-4 (pitch kept; like OpenAI's speed)")
    p.add_argument("--c2pa", action="store_true",
                   help='add a signed C2PA provenance manifest (wav, flac, mp3; pip install "valle2[c2pa]")')
    p.add_argument("--int8", action=argparse.BooleanOptionalAction, default=None,
                   help="int8 linear layers in the AR and NAR (default on the CPU: faster, not bit-identical; "
                   "--no-int8 for fp32)")
    add_decoding_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..audio import AudioFile, save_audio
    from ..errors import AudioError
    from ..names import is_shipped_voice, shipped_voice
    from ..safety.deployment import Deployment
    from ..synthesis import load_model

    options = decoding_options(args)   # bad options fail before the model loads
    shipped = shipped_voice(args.voice) if is_shipped_voice(args.voice) else None
    if args.prompt is None and shipped is None and not args.voice:
        raise AudioError("--prompt is needed (a recording of the voice to speak in), unless --voice names a shipped "
                         "voice (--voice demo) or an adapted one (`valle2 voice adapt`)")
    deployment = Deployment.open()
    signer = None
    if args.c2pa:   # fail on a missing extra or a format without C2PA support before any synthesis
        from ..safety.provenance import ProvenanceSigner, mime_type

        mime_type(args.out.suffix.lstrip(".") or "wav")
        signer = ProvenanceSigner.open(deployment.home)
    model = load_model(args.model, gate=deployment.gate(), int8=args.int8)
    if args.prompt is None and shipped is None:   # an adapted voice brings its own prompt (VallE2.consent_source)
        prompt, wav, sr, own_text = None, None, None, None
    else:
        prompt = AudioFile.read(args.prompt or shipped.clip)   # read once: the gate hashes the bytes that were decoded
        wav, sr = prompt.load()
        wav = cut_prompt(wav, sr, args.prompt_seconds, args.mode)
        own_text = shipped.text if args.prompt is None and args.mode == "cross" else None   # the shipped clip's transcript
    consent = {"voice_id": args.voice} if args.voice else {"corpus_file": prompt}
    out, out_sr = model.synthesize(args.text, wav, sr, prompt_text=args.prompt_text or own_text, mode=args.mode,
                                   **consent, options=options, include_prompt=args.include_prompt, speed=args.speed,
                                   progress=True)
    if signer is None:
        save_audio(args.out, out, out_sr)
    else:
        from ..safety.consent import file_sha256
        from ..safety.provenance import save_with_manifest, synthesis_assertion

        save_with_manifest(args.out, out, out_sr, signer,
                           synthesis_assertion(deployment.audit, out, model_sha256=file_sha256(args.model)))
    print(f"wrote {args.out}: {len(out) / out_sr:.2f} s at {out_sr} Hz" + (", with a signed C2PA manifest" if signer else ""))
    return 0


CONTINUATION_PROMPT_SECONDS = 3.0   # the paper's continuation prompt: the utterance's first 3 s


def positive_seconds(value: str) -> float:
    """``--prompt-seconds``: a number of seconds above 0."""
    try:
        seconds = float(value)
    except ValueError:
        seconds = float("nan")
    if not 0 < seconds < float("inf"):
        raise argparse.ArgumentTypeError(f"--prompt-seconds takes a number of seconds above 0, not {value!r}")
    return seconds


def cut_prompt(wav, sr: int, seconds: float | None, mode: str):
    """The first ``seconds`` of the prompt ``wav [samples]`` (default: ``CONTINUATION_PROMPT_SECONDS``
    in continuation mode, saying so on stderr when it cuts; the whole prompt in cross mode)."""
    if seconds is None and mode == "continuation" and wav.shape[-1] > CONTINUATION_PROMPT_SECONDS * sr:
        print(f"valle2 synthesize: continuation mode: the prompt ({wav.shape[-1] / sr:.1f} s) is cut to its first "
              f"{CONTINUATION_PROMPT_SECONDS:g} s, the paper's prefix (--prompt-seconds sets another length)",
              file=sys.stderr)
        seconds = CONTINUATION_PROMPT_SECONDS
    return wav if seconds is None else wav[..., :int(round(seconds * sr))]
