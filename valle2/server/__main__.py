"""``python -m valle2.server --model model.pt ...``: the same as ``valle2 serve``."""
import argparse
import sys

from ..cli import run_command
from .command import add_serve_parser


def main(argv: list[str] | None = None) -> int:
    serve = add_serve_parser(argparse.ArgumentParser().add_subparsers(dest="command", required=True))
    serve.prog = "python -m valle2.server"
    return run_command(serve.parse_args(argv), "serve")


if __name__ == "__main__":
    sys.exit(main())
