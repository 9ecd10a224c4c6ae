"""``valle2 serve``: run the HTTP API and web page with uvicorn.

API keys are read (as scrypt hashes) from ``--api-key-file`` (default ``<home>/api_keys``); when
that file does not exist, a key is created, printed once, and only its hash is stored.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from ..safety.deployment import Deployment
    from ..synthesis import load_model
    from .app import create_app
    from .auth import create_key_file, read_key_file
    from .settings import ServerSettings

    deployment = Deployment.open(args.home)
    model = load_model(args.model, gate=deployment.gate())   # a bad model path fails before any key is made
    key_file = args.api_key_file or deployment.home / "api_keys"
    if not key_file.exists():
        key = create_key_file(key_file)
        print(f"created API key file {key_file}; the API key (shown once, keep it secret): {key}", file=sys.stderr)
    settings = ServerSettings(api_key_hashes=read_key_file(key_file), max_request_bytes=args.max_request_mb * 2**20,
                              max_text_chars=args.max_text_chars, max_audio_seconds=args.max_audio_seconds,
                              max_workers=args.workers, max_queue=args.queue,
                              model_names=("valle2", Path(args.model).stem))
    uvicorn.run(create_app(model, deployment, settings), host=args.host, port=args.port, log_level=args.log_level)
    return 0


def add_serve_parser(sub) -> argparse.ArgumentParser:
    """Register ``serve`` on the CLI's subparsers."""
    p = sub.add_parser("serve", help="HTTP API (OpenAI-compatible speech endpoint) and web page")
    p.add_argument("--model", required=True, type=Path, help="a valle2 model file")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--home", type=Path, default=None, help="deployment folder (default $VALLE2_HOME or ~/.valle2)")
    p.add_argument("--api-key-file", type=Path, default=None,
                   help="file of API key hashes (default <home>/api_keys, created with a new key if missing)")
    p.add_argument("--workers", type=int, default=1, help="syntheses run at once")
    p.add_argument("--queue", type=int, default=8, help="requests that may wait; more get 429 + Retry-After")
    p.add_argument("--max-request-mb", type=int, default=10, help="largest request body")
    p.add_argument("--max-text-chars", type=int, default=4096, help="longest speech input")
    p.add_argument("--max-audio-seconds", type=float, default=30.0, help="longest uploaded recording")
    p.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"))
    p.set_defaults(func=cmd_serve)
    return p
