"""``valle2 voice phrase|enroll|adapt|revoke|list``: the consent protocol, and adapting a voice to its
own recordings (``voice adapt``, :mod:`valle2.adapt`), on the deployment at
``--home`` / ``$VALLE2_HOME`` (default ``~/.valle2``).  Only ``voice phrase`` creates a deployment
there on first use; the others need one that exists and say so, naming the folder."""
from __future__ import annotations

import argparse
import datetime
from pathlib import Path

from .options import add_model_arg, home_parent, open_deployment


def when(t: float) -> str:
    """A Unix time as ``YYYY-MM-DD HH:MM UTC``."""
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def register(sub) -> None:
    home = home_parent()
    voice = sub.add_parser("voice", help="the consent protocol: phrase, enroll, adapt, list, revoke")
    vsub = voice.add_subparsers(dest="voice_command", required=True)
    p = vsub.add_parser("phrase", parents=[home], help="issue a one-time consent phrase for a speaker")
    p.add_argument("--name", required=True, help="the speaker's full name")
    p.set_defaults(func=run_phrase)
    p = vsub.add_parser("enroll", parents=[home], help="enrol a voice from a recording of its consent phrase")
    p.add_argument("--name", required=True, help="the speaker's full name, as given to `valle2 voice phrase`")
    p.add_argument("--phrase-id", required=True, help="the id `valle2 voice phrase` printed")
    p.add_argument("--consent", required=True, type=Path, help="recording of the speaker reading the phrase")
    p.set_defaults(func=run_enroll)
    p = vsub.add_parser("adapt", parents=[home], help="adapt a voice to its own recordings (30 s to 10 min); "
                        "then `valle2 synthesize --voice ID` needs no --prompt")
    p.add_argument("inputs", nargs="+", metavar="VOICE_ID FILE", help="the enrolled voice's id (v_...) then its "
                   "recordings; with --research, only the files (of an attested research corpus)")
    p.add_argument("--research", action="store_true", help="a new research voice from files of an attested corpus")
    p.add_argument("--name", default=None, help="the research voice's name (default: its first file's name)")
    p.add_argument("--texts", type=Path, default=None, help="transcripts, a TSV of FILE<TAB>TEXT lines (default: "
                   "the offline recogniser, pocketsphinx)")
    add_model_arg(p)
    p.set_defaults(func=run_adapt)
    p = vsub.add_parser("revoke", parents=[home], help="revoke a voice at once")
    p.add_argument("voice_id", help="the voice's id (v_...)")
    p.add_argument("--reason", default="", help="why, for the audit log")
    p.set_defaults(func=run_revoke)
    p = vsub.add_parser("list", parents=[home], help="list enrolled voices")
    p.set_defaults(func=run_list)


def run_phrase(args: argparse.Namespace) -> int:
    from ..safety.consent import MAX_ATTEMPTS

    phrase = open_deployment(args, create=True).registry.issue_phrase(args.name)
    print(f"phrase id: {phrase.id}  (valid until {when(phrase.expires)}, for one enrolment of this person; "
          f"{MAX_ATTEMPTS} attempts)")
    print(f"Ask {phrase.name} to read aloud, then run `valle2 voice enroll --phrase-id {phrase.id} ...`:")
    print(f"\n    {phrase.text}\n")
    return 0


def run_enroll(args: argparse.Namespace) -> int:
    from ..audio import load_audio

    wav, sr = load_audio(args.consent)
    record = open_deployment(args).registry.enroll(args.name, wav, sr, args.phrase_id)
    print(f"enrolled {record.name}: voice id {record.voice_id} (valid until {when(record.expires)})")
    return 0


def run_adapt(args: argparse.Namespace) -> int:
    from ..adapt import adapt_voice, read_texts
    from ..errors import ConsentError
    from ..synthesis import load_model

    voice_id, files = (None, args.inputs) if args.research else (args.inputs[0], args.inputs[1:])
    if voice_id is not None and not voice_id.startswith("v_"):
        raise ConsentError(f"voice adapt takes an enrolled voice's id (v_...) first, got {voice_id!r}; for files of an "
                           "attested research corpus give --research")
    if args.name is not None and not args.research:
        raise ConsentError("--name names a new research voice (--research); an enrolled voice keeps its name")
    texts = read_texts(args.texts) if args.texts is not None else None
    model = load_model(args.model, gate=open_deployment(args).gate())
    result = adapt_voice(model, files, voice_id, name=args.name, texts=texts, progress=True)
    print(f"adapted {result.adapter.name} on {len(result.used)} recording(s), {result.speech_seconds:.0f} s of speech, "
          f"in {result.seconds:.0f} s ({len(result.skipped)} skipped); prompt {result.adapter.prompt_name}; "
          f"adapter {result.adapter_bytes / 1e6:.2f} MB")
    print(f"voice_id={result.voice_id}")
    return 0


def run_revoke(args: argparse.Namespace) -> int:
    open_deployment(args).registry.revoke(args.voice_id, args.reason)
    print(f"revoked {args.voice_id}")
    return 0


def run_list(args: argparse.Namespace) -> int:
    rows = open_deployment(args).registry.db.query("SELECT id, name, created, revoked FROM voices ORDER BY created")
    if not rows:
        print("no voices enrolled")
    for vid, name, created, revoked in rows:
        print(f"{vid}  {name:<30} enrolled {when(created)}" + (f"  REVOKED {when(revoked)}" if revoked else ""))
    return 0
