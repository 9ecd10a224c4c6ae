"""``valle2 serve``: run the HTTP API and web page (:mod:`valle2.server`) with uvicorn.

With no ``--model`` it serves the shipped demo model, and every key may use the shipped demo
voice as voice ``"demo"`` (``--no-demo-voice``: not served).

API keys live hashed in ``<home>/api_keys.db`` (``valle2 keys``).  On a first start with no
active key, ``serve`` creates an admin key and prints it once.  ``--no-auth`` serves without keys,
and only on a loopback address.  Hashes in an older key file (``--api-key-file``, default
``<home>/api_keys`` where it exists) are imported as admin keys.
"""
from __future__ import annotations

import argparse
import ipaddress
import socket
import sys
from pathlib import Path

from ..errors import Valle2Error
from .options import add_home_arg, add_model_arg, rate_arg


def is_loopback(host: str) -> bool:
    """Whether every address ``host`` names is a loopback address (127.0.0.0/8, ::1)."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except (socket.gaierror, UnicodeError):
        return False
    return bool(infos) and all(ipaddress.ip_address(i[4][0].split("%")[0]).is_loopback for i in infos)


def register(sub) -> None:
    p = sub.add_parser("serve", help="HTTP API (OpenAI-compatible speech endpoint) and web page")
    add_model_arg(p)
    p.add_argument("--no-demo-voice", action="store_true",
                   help="do not serve the shipped demo voice (voice id 'demo', usable by every key)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    p.add_argument("--port", type=int, default=8000, help="port to listen on")
    add_home_arg(p)
    p.add_argument("--no-auth", action="store_true",
                   help="serve every call without an API key (one local user, every voice); refused unless --host "
                        "is a loopback address")
    p.add_argument("--rate-limit", type=rate_arg, default=60.0, metavar="N[/min|/s|/h]",
                   help="requests each API key may make, unless the key has its own limit (default 60/min; "
                        "0: unlimited); beyond it, 429 + Retry-After")
    p.add_argument("--api-key-file", type=Path, default=None,
                   help="an older file of API key hashes, imported as admin keys (default <home>/api_keys where it "
                        "exists); keys are kept in <home>/api_keys.db, see `valle2 keys`")
    p.add_argument("--workers", type=int, default=1, help="syntheses run at once")
    p.add_argument("--queue", type=int, default=8, help="requests that may wait; more get 429 + Retry-After")
    p.add_argument("--max-request-mb", type=int, default=10, help="largest request body")
    p.add_argument("--max-text-chars", type=int, default=4096, help="longest speech input")
    p.add_argument("--max-audio-seconds", type=float, default=30.0, help="longest uploaded recording")
    p.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"),
                   help="uvicorn's log level")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from ..safety.deployment import Deployment
    from ..synthesis import load_model
    from ..server.app import create_app
    from ..server.auth import read_key_file
    from ..server.keys import KeyStore
    from ..server.settings import ServerSettings

    if args.no_auth and not is_loopback(args.host):
        raise Valle2Error(f"--no-auth is allowed only on a loopback --host (127.0.0.1, ::1 or localhost), not "
                          f"{args.host!r}: anyone who can reach that address would use every voice without a key")
    for flag, value, least in (("--port", args.port, 0), ("--workers", args.workers, 1), ("--queue", args.queue, 0),
                               ("--max-request-mb", args.max_request_mb, 1), ("--max-text-chars", args.max_text_chars, 1)):
        if value < least:
            raise Valle2Error(f"{flag} must be at least {least}, got {value}")
    deployment = Deployment.open(args.home)
    model = load_model(args.model, gate=deployment.gate())   # a bad model fails before any key is made
    keys = KeyStore(deployment.home / "api_keys.db")
    legacy = args.api_key_file or deployment.home / "api_keys"
    if args.api_key_file is not None and not legacy.is_file():
        raise Valle2Error(f"--api-key-file {legacy} does not exist")
    if legacy.is_file():
        for row in keys.import_hashes(read_key_file(legacy), name=f"imported from {legacy.name}"):
            deployment.audit.append("api_key_create", key_id=row.id, key_prefix=row.prefix, key_name=row.name,
                                    admin=True, by="serve")
            print(f"imported an admin key from {legacy} as {row.id}", file=sys.stderr)
    if args.no_auth:
        print(f"WARNING: --no-auth: every call on {args.host}:{args.port} is served WITHOUT an API key, with every "
              "voice, to anyone who can reach this machine's loopback address (other local users too)",
              file=sys.stderr)
    elif not keys.list(include_revoked=False):
        row, key = keys.create("first admin key (valle2 serve)", admin=True)
        deployment.audit.append("api_key_create", key_id=row.id, key_prefix=row.prefix, key_name=row.name,
                                admin=True, by="serve")
        print(f"created admin API key {row.id} (shown once, keep it secret): {key}\n"
              "more keys: valle2 keys create --name NAME", file=sys.stderr)
    settings = ServerSettings(auth=not args.no_auth, rate_limit=args.rate_limit,
                              max_request_bytes=args.max_request_mb * 2**20,
                              max_text_chars=args.max_text_chars, max_audio_seconds=args.max_audio_seconds,
                              max_workers=args.workers, max_queue=args.queue,
                              model_names=model_names(args.model),
                              shipped_voices=() if args.no_demo_voice else ("demo",))
    uvicorn.run(create_app(model, deployment, settings, keys), host=args.host, port=args.port,
                log_level=args.log_level)
    return 0


def model_names(model) -> tuple[str, ...]:
    """The ``model`` values a speech request may name: the model's own name (a shipped model's, or
    its file's stem), "valle2" and OpenAI's TTS model names, all meaning the one served model."""
    from ..names import MODELS, model_file
    from ..server.settings import OPENAI_MODELS

    path = model_file(model)
    own = next((name for name in MODELS if model_file(name) == path), path.stem)
    return tuple(dict.fromkeys((own, "valle2") + OPENAI_MODELS))
