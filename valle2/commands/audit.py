"""``valle2 audit verify|sign-head``: the hash-chained audit log of the deployment."""
from __future__ import annotations

import argparse

from ..errors import ConsentError
from .options import home_parent, open_deployment


def register(sub) -> None:
    home = home_parent()
    audit = sub.add_parser("audit", help="the hash-chained audit log")
    asub = audit.add_subparsers(dest="audit_command", required=True)
    p = asub.add_parser("verify", parents=[home], help="check the chain and its signed head (no entry edited, removed, "
                        "reordered or added without the operator key) and that the registry agrees with the log")
    p.set_defaults(func=run_verify)
    p = asub.add_parser("sign-head", parents=[home], help="upgrade a log from before signed heads: verify the chain, "
                        "then sign its head with the operator key")
    p.set_defaults(func=run_sign_head)


def run_verify(args: argparse.Namespace) -> int:
    dep = open_deployment(args)
    report = dep.audit.check()
    print(report.summary(dep.audit.path))
    if not report.ok:
        return 1
    try:
        problems = dep.registry.cross_check()
    except ConsentError as e:
        problems = [str(e)]
    for problem in problems:
        print(f"registry {dep.registry.db.path}: {problem}")
    if not problems:
        print(f"registry {dep.registry.db.path}: agrees with the audit log (enrolments and revocations)")
    return 1 if problems else 0


def run_sign_head(args: argparse.Namespace) -> int:
    dep = open_deployment(args)
    before = dep.audit.check()
    report = dep.audit.sign_head()
    if before.ok:
        print(f"audit log {dep.audit.path}: its head is already signed; nothing to do")
    else:
        print(f"audit log {dep.audit.path}: chain of {before.entries} entries verified; head now signed with the "
              "operator key (logged as audit_head_signed)")
    print(report.summary(dep.audit.path))
    return 0 if report.ok else 1
