"""Load check of the HTTP server: 100 concurrent speech requests on loopback.

Trains ``valle2 recipe tiny`` on the packaged clips (a minute on 2 CPU cores), creates an API key
(``--key-rate``, default unlimited, so the burst measures the server rather than the key's rate
limit), starts ``python -m valle2 serve`` as a subprocess on 127.0.0.1, registers an attested
packaged clip as that key's research voice, then sends 100 requests at once with the key.  Prints throughput, p50/p95 latency and time to first
audio byte of the served requests, the status counts, and the server's RSS before and after.
Deliberate refusals (429/503 with Retry-After, from the bounded queue or the key's rate limit) are
not errors.

    python -m benchmarks.server_load [--requests 100] [--workers 1] [--queue 16] [--key-rate 0]

Last line: ``errors_5xx=<n> rss_growth_mb=<m>``.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np

from tools import run_main
from valle2.recipe import CLIPS

TEXT = "Will we ever forget it."
VOICE = CLIPS / "arctic_bdl_a0008.flac"   # a packaged clip, registered as a research voice


def rss_mb(pid: int) -> float:
    """Resident memory of process ``pid`` in MiB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def one_request(client: httpx.AsyncClient, url: str, key: str) -> tuple[int, float, float | None]:
    """(status, seconds to the whole response, seconds to the first audio byte or None)."""
    body = {"model": "valle2", "input": TEXT, "voice": VOICE.name, "response_format": "wav"}
    tick = time.perf_counter()
    first = None
    async with client.stream("POST", url + "/v1/audio/speech", json=body,
                             headers={"Authorization": f"Bearer {key}"}) as resp:
        async for chunk in resp.aiter_bytes():
            if first is None and chunk and resp.status_code == 200:
                first = time.perf_counter() - tick
    return resp.status_code, time.perf_counter() - tick, first


async def burst(url: str, n: int, timeout: float, key: str) -> list[tuple[int, float, float | None]]:
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    async with httpx.AsyncClient(timeout=timeout, limits=limits) as client:
        results = await asyncio.gather(*(one_request(client, url, key) for _ in range(n)), return_exceptions=True)
    return [r if isinstance(r, tuple) else (-1, float("nan"), None) for r in results]


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=100, help="requests sent at once")
    ap.add_argument("--workers", type=int, default=1, help="the server's --workers (syntheses at once)")
    ap.add_argument("--queue", type=int, default=16, help="the server's --queue (requests that may wait)")
    ap.add_argument("--key-rate", type=float, default=0.0,
                    help="the API key's rate limit, requests a minute (default 0: unlimited)")
    ap.add_argument("--train-steps", type=int, default=250, help="steps of the tiny model's training")
    ap.add_argument("--timeout", type=float, default=600.0, help="per-request limit, seconds")
    args = ap.parse_args()

    from valle2.recipe import packaged_clips, train_tiny
    from valle2.safety.deployment import Deployment
    from valle2.server.keys import KeyStore

    voice = next(c for c in packaged_clips() if c["path"].name == VOICE.name)

    with tempfile.TemporaryDirectory(prefix="valle2_load_") as tmp:
        tmp = Path(tmp)
        tick = time.perf_counter()
        model = train_tiny(tmp / "tiny.pt", steps=args.train_steps, progress=False).path
        print(f"trained tiny model in {time.perf_counter() - tick:.1f} s")
        dep = Deployment.open(tmp / "home")
        dep.registry.attest_corpus("CMU ARCTIC packaged clips", [VOICE], "CMU ARCTIC licence")
        key = KeyStore(tmp / "home" / "api_keys.db").create("load test", rate_limit=args.key_rate)[1]
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
        server = subprocess.Popen([sys.executable, "-m", "valle2", "serve", "--model", str(model), "--home",
                                   str(tmp / "home"), "--host", "127.0.0.1",
                                   "--port", str(port), "--workers", str(args.workers), "--queue", str(args.queue),
                                   "--log-level", "warning"], env=env)
        try:
            deadline = time.monotonic() + 180
            while True:
                try:
                    if httpx.get(url + "/health", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if server.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("server did not start")
                time.sleep(0.5)
            resp = httpx.post(url + "/v1/voices/research", headers={"Authorization": f"Bearer {key}"},
                              data={"transcript": voice["text"]}, files={"file": (VOICE.name, VOICE.read_bytes())},
                              timeout=60)
            resp.raise_for_status()
            warm = asyncio.run(burst(url, 1, args.timeout, key))[0]
            print(f"warm-up request: status {warm[0]} in {warm[1]:.2f} s")
            rss_before = rss_mb(server.pid)
            tick = time.perf_counter()
            results = asyncio.run(burst(url, args.requests, args.timeout, key))
            wall = time.perf_counter() - tick
            time.sleep(1.0)
            rss_after = rss_mb(server.pid)
        finally:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()

    counts = Counter(status for status, _, _ in results)
    ok = [r for r in results if r[0] == 200]
    latency = [r[1] for r in ok]
    ttfb = [r[2] for r in ok if r[2] is not None]
    errors_5xx = sum(n for status, n in counts.items() if status >= 500 and status != 503)
    failed = counts.get(-1, 0)
    print(f"{args.requests} concurrent requests, workers={args.workers}, queue={args.queue}, wall {wall:.1f} s")
    print("status counts: " + ", ".join(f"{'transport error' if s == -1 else s}: {n}" for s, n in sorted(counts.items())))
    print(f"throughput: {len(ok) / wall:.2f} served requests/s")
    print(f"latency (served): p50 {pct(latency, 50):.2f} s, p95 {pct(latency, 95):.2f} s")
    print(f"time to first audio byte (served): p50 {pct(ttfb, 50):.2f} s, p95 {pct(ttfb, 95):.2f} s")
    print(f"server RSS: {rss_before:.0f} MiB before, {rss_after:.0f} MiB after")
    print(f"errors_5xx={errors_5xx + failed} rss_growth_mb={rss_after - rss_before:.1f}")
    return 0 if errors_5xx + failed == 0 else 1


if __name__ == "__main__":
    run_main(main)
