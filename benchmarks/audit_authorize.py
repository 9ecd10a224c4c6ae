"""Time of the consent check that authorisation runs (``ConsentRegistry.verify_record``: record
signature, registry row, and the revocations of the verified, signed audit log) with a long log.

A fresh deployment gets one enrolled voice (stand-in transcriber and embedder) and ``--lines``
synthesis entries; then it times, in a new process's view of the deployment:

- the first check (reads and verifies the whole chain once),
- a check with nothing appended since (the kept state; the head is re-read),
  and the audit-log part of it alone (the rest is the record's signature and the registry query),
- a check after one append (reads and verifies the one new line),
- ``AuditLog.check()`` (the whole-chain verification of ``valle2 audit verify``).

Reproduce with: python -m benchmarks.audit_authorize --lines 10000
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from tools import run_main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lines", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=200)
    args = ap.parse_args()

    from valle2.safety.deployment import Deployment

    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        dep = Deployment.open(home)
        reg = dep.registry
        phrase = reg.issue_phrase("Ada Lovelace")
        reg.transcriber, reg.embedder, reg.liveness_checks = (lambda w, s: phrase.text), (lambda w, s: np.ones(256)), []
        wav = (np.random.default_rng(0).standard_normal(16000) * 0.1).astype(np.float32)
        rec = reg.enroll("Ada Lovelace", wav, 16000, phrase.id)
        dep.audit._append([("synthesis", {"i": i, "text_sha256": "0" * 64, "output_sha256": "0" * 64})
                           for i in range(args.lines - 1)])
        size = dep.audit.path.stat().st_size

        fresh = Deployment.open(home)          # what a new server or CLI process sees
        record = fresh.registry.get_record(rec.voice_id)
        t = time.perf_counter()
        fresh.registry.verify_record(record)
        first = time.perf_counter() - t

        kept = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            fresh.registry.verify_record(record)
            kept.append(time.perf_counter() - t)

        state_only = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            fresh.audit.verified_state()
            state_only.append(time.perf_counter() - t)

        appended, appended_state = [], []
        for i in range(args.repeats):
            dep.audit.append("synthesis", i=-i)
            t = time.perf_counter()
            fresh.registry.verify_record(record)
            appended.append(time.perf_counter() - t)
            dep.audit.append("synthesis", i=-i)
            t = time.perf_counter()
            fresh.audit.verified_state()
            appended_state.append(time.perf_counter() - t)

        t = time.perf_counter()
        report = fresh.audit.check()
        full = time.perf_counter() - t
        assert report.ok, report.problem

    ms = lambda xs: f"median {1e3 * statistics.median(xs):.3f} ms, p95 {1e3 * sorted(xs)[int(0.95 * len(xs))]:.3f} ms"
    print(f"audit log: {args.lines} lines, {size / 1e6:.2f} MB")
    print(f"verify_record, first in a process (whole chain): {1e3 * first:.1f} ms")
    print(f"verify_record, nothing appended since ({args.repeats}x): {ms(kept)}")
    print(f"  of which the audit-log check (AuditLog.verified_state): {ms(state_only)}")
    print(f"verify_record, one line appended since ({args.repeats}x): {ms(appended)}")
    print(f"  of which the audit-log check (AuditLog.verified_state): {ms(appended_state)}")
    print(f"AuditLog.check() (valle2 audit verify), whole chain: {1e3 * full:.1f} ms")


if __name__ == "__main__":
    run_main(main)
