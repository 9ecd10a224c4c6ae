"""``valle2 keys create|list|revoke|grant``: the API keys of the HTTP server (``valle2 serve``),
kept hashed in ``<home>/api_keys.db`` (:mod:`valle2.server.keys`); each change is logged in the
deployment's audit log."""
from __future__ import annotations

import argparse
import json
import time

from ..errors import Valle2Error
from .options import home_parent, rate_arg


def register(sub) -> None:
    p = sub.add_parser("keys", help="API keys of the HTTP server: create, list, revoke, grant a voice")
    ks = p.add_subparsers(dest="keys_command", required=True)
    home = home_parent()

    c = ks.add_parser("create", parents=[home], help="a new key, printed once (only its hash is stored)")
    c.add_argument("--name", required=True, help="who or what the key is for (1-100 characters)")
    c.add_argument("--admin", action="store_true", help="the key may also manage keys over HTTP (/v1/keys)")
    c.add_argument("--rate-limit", type=rate_arg, default=None, metavar="N[/min|/s|/h]",
                   help="this key's request rate (default: the server's --rate-limit; 0: unlimited)")
    c.add_argument("--voice", action="append", default=[], metavar="VOICE_ID",
                   help="an existing voice the key may use (repeatable); voices enrolled through the server with the "
                        "key are its own anyway")
    c.set_defaults(func=run_create)

    ls = ks.add_parser("list", parents=[home], help="the keys (id, prefix, admin, state), never the keys themselves")
    ls.add_argument("--all", action="store_true", help="revoked keys too")
    ls.add_argument("--json", action="store_true", help="JSON, with each key's voices")
    ls.set_defaults(func=run_list)

    r = ks.add_parser("revoke", parents=[home], help="revoke a key; a running server refuses it from its next request")
    r.add_argument("key_id", help="the key's id (k_...) or prefix (v2k-...)")
    r.set_defaults(func=run_revoke)

    g = ks.add_parser("grant", parents=[home], help="let a key use an existing voice")
    g.add_argument("key_id", help="the key's id (k_...) or prefix (v2k-...)")
    g.add_argument("voice_id", help="the voice (v_... or a research voice's name)")
    g.set_defaults(func=run_grant)


def _open(args: argparse.Namespace):
    from ..safety.deployment import Deployment
    from ..server.keys import KeyStore

    deployment = Deployment.open(args.home)
    return deployment, KeyStore(deployment.home / "api_keys.db")


def _known_voice(deployment, voice_id: str) -> bool:
    """Whether ``voice_id`` has a prompt recording in the server's store (else: it is only in the
    registry); raises when neither knows it."""
    from ..server.voices import NAME_RE

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


def run_create(args: argparse.Namespace) -> int:
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


def run_list(args: argparse.Namespace) -> int:
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


def run_revoke(args: argparse.Namespace) -> int:
    deployment, keys = _open(args)
    row = keys.revoke(args.key_id)
    deployment.audit.append("api_key_revoke", key_id=row.id, key_prefix=row.prefix, key_name=row.name,
                            admin=row.admin, by="cli")
    print(f"revoked API key {row.id} ({row.name!r}); a running server refuses it from its next request")
    return 0


def run_grant(args: argparse.Namespace) -> int:
    deployment, keys = _open(args)
    _grant(deployment, keys, keys.get(args.key_id), args.voice_id)
    return 0
