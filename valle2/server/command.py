"""``valle2 serve``: run the HTTP API and web page with uvicorn; ``valle2 keys``: its API keys.

Keys live hashed in ``<home>/api_keys.db`` (:mod:`valle2.server.keys`).  On a first start with no
active key, ``serve`` creates an admin key and prints it once.  ``--no-auth`` serves without keys,
and only on a loopback address.  Hashes in an older key file (``--api-key-file``, default
``<home>/api_keys`` where it exists) are imported as admin keys.
"""
from __future__ import annotations

import argparse
import ipaddress
import json
import re
import socket
import sys
import time
from pathlib import Path

from ..errors import Valle2Error

RATE_UNITS = {"s": 60.0, "sec": 60.0, "min": 1.0, "m": 1.0, "h": 1 / 60, "hour": 1 / 60}


def rate_arg(value: str) -> float:
    """``--rate-limit``: ``N`` or ``N/s``, ``N/min``, ``N/h`` -> requests a minute (0: unlimited)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(?:/\s*([a-z]+))?\s*", value)
    if not m or (m.group(2) and m.group(2) not in RATE_UNITS):
        raise argparse.ArgumentTypeError(f"a rate is N, N/s, N/min or N/h (0: unlimited), not {value!r}")
    rate = float(m.group(1)) * RATE_UNITS[m.group(2) or "min"]
    if rate > 1e6:
        raise argparse.ArgumentTypeError(f"a rate of at most 1000000 requests a minute, not {value!r}")
    return rate


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


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from ..safety.deployment import Deployment
    from ..synthesis import load_model
    from .app import create_app
    from .auth import read_key_file
    from .keys import KeyStore
    from .settings import ServerSettings

    if args.no_auth and not is_loopback(args.host):
        raise Valle2Error(f"--no-auth is allowed only on a loopback --host (127.0.0.1, ::1 or localhost), not "
                          f"{args.host!r}: anyone who can reach that address would use every voice without a key")
    for flag, value, least in (("--port", args.port, 0), ("--workers", args.workers, 1), ("--queue", args.queue, 0),
                               ("--max-request-mb", args.max_request_mb, 1), ("--max-text-chars", args.max_text_chars, 1)):
        if value < least:
            raise Valle2Error(f"{flag} must be at least {least}, got {value}")
    deployment = Deployment.open(args.home)
    model = load_model(args.model, gate=deployment.gate())   # a bad model path fails before any key is made
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
                              model_names=("valle2", Path(args.model).stem))
    uvicorn.run(create_app(model, deployment, settings, keys), host=args.host, port=args.port,
                log_level=args.log_level)
    return 0


def add_serve_parser(sub) -> argparse.ArgumentParser:
    """Register ``serve`` on the CLI's subparsers."""
    p = sub.add_parser("serve", help="HTTP API (OpenAI-compatible speech endpoint) and web page")
    p.add_argument("--model", required=True, type=Path, help="a valle2 model file")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    p.add_argument("--port", type=int, default=8000, help="port to listen on")
    p.add_argument("--home", type=Path, default=None, help="deployment folder (default $VALLE2_HOME or ~/.valle2)")
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
    p.set_defaults(func=cmd_serve)
    return p


# -------------------------------------------------------------------------------- valle2 keys
def _open(args):
    from ..safety.deployment import Deployment
    from .keys import KeyStore

    deployment = Deployment.open(args.home)
    return deployment, KeyStore(deployment.home / "api_keys.db")


def _known_voice(deployment, voice_id: str) -> bool:
    """Whether ``voice_id`` has a prompt recording in the server's store (else: it is only in the
    registry); raises when neither knows it."""
    from .voices import NAME_RE

    if NAME_RE.fullmatch(voice_id) and (deployment.home / "voices" / f"{voice_id}.json").is_file():
        return True
    if deployment.registry.db.voice(voice_id) is not None:
        return False
    raise Valle2Error(f"no voice {voice_id!r} in this deployment (see `valle2 voice list` and GET /v1/voices)")


def _grant(deployment, keys, row, voice_id: str) -> None:
    served = _known_voice(deployment, voice_id)
    keys.grant(row.id, voice_id)
    deployment.audit.append("api_key_grant", key_id=row.id, key_prefix=row.prefix, voice_id=voice_id, by="cli")
    print(f"key {row.id} may use voice {voice_id}" + ("" if served else
          " (note: the server has no prompt recording for it: voices enrolled with `valle2 voice enroll` are "
          "spoken by `valle2 synthesize`; enrol through the server to speak it over HTTP)"))


def cmd_keys_create(args: argparse.Namespace) -> int:
    deployment, keys = _open(args)
    for voice_id in args.voice:
        _known_voice(deployment, voice_id)
    row, key = keys.create(args.name, admin=args.admin, rate_limit=args.rate_limit)
    deployment.audit.append("api_key_create", key_id=row.id, key_prefix=row.prefix, key_name=row.name,
                            admin=row.admin, by="cli")
    print(f"created {'admin ' if row.admin else ''}API key {row.id} ({row.name!r}); the key, shown once, keep it "
          f"secret:\n{key}")
    for voice_id in args.voice:
        _grant(deployment, keys, row, voice_id)
    return 0


def cmd_keys_list(args: argparse.Namespace) -> int:
    _, keys = _open(args)
    rows = keys.list(include_revoked=args.all)
    if args.json:
        print(json.dumps([dict(k.public(), voices=sorted(keys.voices_of(k.id))) for k in rows], indent=1))
        return 0
    if not rows:
        print("no API keys" + ("" if args.all else " (--all shows revoked ones)"))
    for k in rows:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(k.created))
        state = "revoked " + time.strftime("%Y-%m-%d %H:%M", time.localtime(k.revoked)) if k.revoked else "active"
        rate = "default rate" if k.rate_limit is None else ("unlimited" if k.rate_limit == 0 else f"{k.rate_limit:g}/min")
        print(f"{k.id}  {k.prefix}...  {'admin' if k.admin else 'user '}  {state:<24} created {when}  {rate}  "
              f"{len(keys.voices_of(k.id))} voice(s)  {k.name}")
    return 0


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    deployment, keys = _open(args)
    row = keys.revoke(args.key_id)
    deployment.audit.append("api_key_revoke", key_id=row.id, key_prefix=row.prefix, key_name=row.name,
                            admin=row.admin, by="cli")
    print(f"revoked API key {row.id} ({row.name!r}); a running server refuses it from its next request")
    return 0


def cmd_keys_grant(args: argparse.Namespace) -> int:
    deployment, keys = _open(args)
    _grant(deployment, keys, keys.get(args.key_id), args.voice_id)
    return 0


def add_keys_parser(sub) -> argparse.ArgumentParser:
    """Register ``keys`` (create, list, revoke, grant) on the CLI's subparsers."""
    p = sub.add_parser("keys", help="API keys of the HTTP server: create, list, revoke, grant a voice")
    ks = p.add_subparsers(dest="keys_command", required=True)
    home = argparse.ArgumentParser(add_help=False)
    home.add_argument("--home", type=Path, default=None, help="deployment folder (default $VALLE2_HOME or ~/.valle2)")

    c = ks.add_parser("create", parents=[home], help="a new key, printed once (only its hash is stored)")
    c.add_argument("--name", required=True, help="who or what the key is for (1-100 characters)")
    c.add_argument("--admin", action="store_true", help="the key may also manage keys over HTTP (/v1/keys)")
    c.add_argument("--rate-limit", type=rate_arg, default=None, metavar="N[/min|/s|/h]",
                   help="this key's request rate (default: the server's --rate-limit; 0: unlimited)")
    c.add_argument("--voice", action="append", default=[], metavar="VOICE_ID",
                   help="an existing voice the key may use (repeatable); voices enrolled through the server with the "
                        "key are its own anyway")
    c.set_defaults(func=cmd_keys_create)

    ls = ks.add_parser("list", parents=[home], help="the keys (id, prefix, admin, state), never the keys themselves")
    ls.add_argument("--all", action="store_true", help="revoked keys too")
    ls.add_argument("--json", action="store_true", help="JSON, with each key's voices")
    ls.set_defaults(func=cmd_keys_list)

    r = ks.add_parser("revoke", parents=[home], help="revoke a key; a running server refuses it from its next request")
    r.add_argument("key_id", help="the key's id (k_...) or prefix (v2k-...)")
    r.set_defaults(func=cmd_keys_revoke)

    g = ks.add_parser("grant", parents=[home], help="let a key use an existing voice")
    g.add_argument("key_id", help="the key's id (k_...) or prefix (v2k-...)")
    g.add_argument("voice_id", help="the voice (v_... or a research voice's name)")
    g.set_defaults(func=cmd_keys_grant)
    return p
