"""The ``valle2`` command line, one module per command: ``valle2 <command> --help`` for each
command's options.  Each module has ``register(subparsers)``, which adds its parser and sets
``func``, the function that runs it.  Only this package imports from it (``valle2/__main__.py``
and the ``valle2`` console script call :func:`main`).
"""
from __future__ import annotations

import argparse
import sys

from ..errors import Valle2Error
from . import ablate, audit, corpus, demo, detect, evaluate, info, keys, prepare, recipe, serve, synthesize, train, voice
from .messages import cli_message

COMMANDS = (synthesize, demo, info, prepare, train, recipe, evaluate, ablate, voice, corpus, audit, detect, serve, keys)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="valle2", description="VALL-E 2 zero-shot text-to-speech with safeguards")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.register(sub)
    return parser


def run_command(args: argparse.Namespace) -> int:
    """Run a parsed command; a :class:`Valle2Error` becomes ``valle2 <command>: error: ...`` (the
    Python argument names in it replaced by their flags, :func:`cli_message`) and exit 2."""
    try:
        return args.func(args)
    except Valle2Error as exc:
        print(f"valle2 {args.command}: error: {cli_message(str(exc))}", file=sys.stderr)
        return 2


def main(argv: list[str] | None = None) -> int:
    """``valle2 ARGS`` (``argv``, default ``sys.argv[1:]``); returns the exit status."""
    return run_command(build_parser().parse_args(argv))
