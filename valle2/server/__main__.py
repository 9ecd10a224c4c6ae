"""``python -m valle2.server --model model.pt ...``: the same as ``valle2 serve``."""
import argparse
import sys

from ..errors import Valle2Error
from .command import add_serve_parser


def main(argv: list[str] | None = None) -> int:
    serve = add_serve_parser(argparse.ArgumentParser().add_subparsers(dest="command", required=True))
    serve.prog = "python -m valle2.server"
    args = serve.parse_args(argv)
    try:
        return args.func(args)
    except Valle2Error as exc:
        print(f"valle2 serve: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
