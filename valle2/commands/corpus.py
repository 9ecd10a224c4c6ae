"""``valle2 corpus attest``: sign an attestation that files form a licensed research corpus, so
that the consent gate lets them be prompts (creates the deployment on first use)."""
from __future__ import annotations

import argparse
from pathlib import Path

from .options import home_parent, open_deployment


def register(sub) -> None:
    corpus = sub.add_parser("corpus", help="research-corpus attestations")
    csub = corpus.add_subparsers(dest="corpus_command", required=True)
    p = csub.add_parser("attest", parents=[home_parent()],
                        help="sign an attestation that files form a licensed research corpus")
    p.add_argument("--name", required=True, help="the corpus's name")
    p.add_argument("--licence", required=True, help="the corpus's licence, e.g. 'CC BY 4.0'")
    p.add_argument("files", nargs="+", type=Path, help="the audio files of the corpus")
    p.set_defaults(func=run_attest)


def run_attest(args: argparse.Namespace) -> int:
    att = open_deployment(args, create=True).registry.attest_corpus(args.name, args.files, args.licence)
    print(f"attested corpus {att.name!r}: {att.corpus_id}, {len(att.files)} file(s), signed by key {att.key_id}")
    return 0
