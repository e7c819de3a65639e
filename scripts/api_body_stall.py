#!/usr/bin/env python3
"""Measure whether one huge request body stalls the API: /healthz latency while a big POST /jobs is sent.

Starts a redis-server and ``uvicorn app.api:app`` on free 127.0.0.1 ports (or uses the API at
``--url``, which must be a loopback address), sends ONE request of ``--size-mb`` MB (default 50)
to ``POST /jobs`` (with a Content-Length, or ``--chunked`` without one), and meanwhile polls
``GET /healthz`` every ``--interval`` seconds (default 0.1). Prints the big request's status
and the /healthz latency (max, p99, median, in milliseconds) and how many polls did not get 200.
Stops by itself: the big request and the polling are bounded by ``--max-seconds`` (default 120);
processes it started are stopped (SIGTERM, then SIGKILL) by their process id at the end.

    .venv/bin/python scripts/api_body_stall.py                  # 50 MB with Content-Length
    .venv/bin/python scripts/api_body_stall.py --chunked        # 50 MB, chunked transfer encoding
    .venv/bin/python scripts/api_body_stall.py --url http://127.0.0.1:8000

Exit status: 0 when every poll got 200, 1 otherwise, 2 on bad arguments / start-up failure.
"""

from __future__ import annotations

import argparse
import ipaddress
import math
import multiprocessing
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
#: The request body is sent in pieces of this many bytes (both modes).
PIECE_BYTES = 64 * 1024


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def require_loopback(url: str) -> None:
    """Raise SystemExit(2) unless ``url`` is http(s) on a loopback address (127.0.0.0/8, ::1, localhost)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme not in ("http", "https") or not host:
        raise SystemExit(f"--url must be http://HOST:PORT, got {url!r}")
    try:
        infos = socket.getaddrinfo(host, parts.port or 80, proto=socket.IPPROTO_TCP)
    except OSError as exc:
        raise SystemExit(f"--url host {host!r} does not resolve: {exc}") from exc
    for info in infos:
        if not ipaddress.ip_address(info[4][0]).is_loopback:
            raise SystemExit(f"--url must point at a loopback address, {host!r} resolves to {info[4][0]}")


def wait_until_up(url: str, timeout: float) -> bool:
    """Poll ``url`` + /healthz until it answers 200 or ``timeout`` seconds pass; return whether it did."""
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=1.0) as c:
        while time.monotonic() < deadline:
            try:
                if c.get(f"{url}/healthz").status_code == 200:
                    return True
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
    return False


@dataclass
class Started:
    """Processes this script started (each in its own session), stopped by pid in :meth:`stop`."""

    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self, argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
        """Start ``argv`` in the repo root with output in ``log``."""
        with open(log, "wb") as out:
            p = subprocess.Popen(argv, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, start_new_session=True)
        self.procs.append(p)
        return p

    def stop(self) -> None:
        """SIGTERM each started process (newest first), wait up to 10 s, then SIGKILL its process group."""
        for p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, signal.SIGKILL)
                    p.wait(timeout=10)


def start_stack(started: Started, workdir: Path) -> str:
    """Start redis-server and uvicorn app.api:app on free loopback ports; return the API's base URL.

    Raises:
        SystemExit: redis-server is not installed, or a process did not come up within 30 s.
    """
    redis_bin = shutil.which("redis-server")
    if redis_bin is None:
        raise SystemExit("redis-server is not on PATH (scripts/install-system-deps.sh installs it)")
    rport, aport = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZACHOT_")}
    env["PYTHONUNBUFFERED"] = "1"
    started.start([redis_bin, "--port", str(rport), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                   "--dir", str(workdir)], env, workdir / "redis.log")
    env["ZACHOT_REDIS_URL"] = f"redis://127.0.0.1:{rport}/0"
    api = started.start([PYTHON, "-m", "uvicorn", "app.api:app", "--host", "127.0.0.1", "--port", str(aport)],
                        env, workdir / "api.log")
    url = f"http://127.0.0.1:{aport}"
    if not wait_until_up(url, 30) or api.poll() is not None:
        raise SystemExit(f"uvicorn did not answer /healthz within 30 s:\n{(workdir / 'api.log').read_text()}")
    return url


def body_pieces(size: int) -> Iterator[bytes]:
    """Yield a syntactically valid JSON object of exactly ``size`` bytes (>= 64) in PIECE_BYTES pieces.

    The object is ``{"steps": 3, "step_seconds": 1, "pad": "xxx..."}``: a body the API must
    refuse (unknown field) and whose only large part is one string.
    """
    head, tail = b'{"steps": 3, "step_seconds": 1, "pad": "', b'"}'
    pad = size - len(head) - len(tail)
    yield head
    while pad > 0:
        n = min(pad, PIECE_BYTES)
        yield b"x" * n
        pad -= n
    yield tail


@dataclass
class BigResult:
    """Outcome of the big request: HTTP status (None on a transport error), error text, seconds taken."""

    status: int | None = None
    error: str = ""
    seconds: float = math.nan
    reply: str = ""


def send_big(url: str, size: int, chunked: bool, timeout: float, results: multiprocessing.Queue[BigResult]) -> None:
    """POST a ``size``-byte body (see :func:`body_pieces`) to ``url``/jobs; put a BigResult on ``results``.

    Runs in a child process, so that building and sending 50 MB does not hold the GIL of the
    process that polls /healthz (that would be measured as server latency). With ``chunked`` the
    body is a generator (httpx sends ``Transfer-Encoding: chunked``, no Content-Length); otherwise
    bytes with a Content-Length header. ``timeout``: seconds, httpx's per-operation timeout.
    """
    content: bytes | Iterator[bytes] = body_pieces(size) if chunked else b"".join(body_pieces(size))
    out = BigResult()
    t0 = time.monotonic()
    try:
        with httpx.Client(timeout=timeout) as c:
            r = c.post(f"{url}/jobs", content=content, headers={"content-type": "application/json"})
        out.status, out.reply = r.status_code, r.text[:200]
    except httpx.HTTPError as exc:
        out.error = f"{type(exc).__name__}: {exc}"
    out.seconds = time.monotonic() - t0
    results.put(out)


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile (``pct`` in 0..100) of ``values``; NaN for an empty list."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def measure(url: str, size: int, chunked: bool, interval: float, max_seconds: float) -> int:
    """Send the big request while polling /healthz; print the figures; return the exit status (0/1)."""
    ctx = multiprocessing.get_context("spawn")
    results: multiprocessing.Queue[BigResult] = ctx.Queue()
    sender = ctx.Process(target=send_big, args=(url, size, chunked, max_seconds, results), daemon=True)
    latencies: list[float] = []
    failures: list[str] = []
    deadline = time.monotonic() + max_seconds
    extra_polls = 5  # keep polling a little after the big request ended (a stall may come after the reply)
    with httpx.Client(timeout=max(interval * 50, 5.0)) as c:
        sender.start()
        while time.monotonic() < deadline and extra_polls > 0:
            if not sender.is_alive():
                extra_polls -= 1
            t0 = time.monotonic()
            try:
                status = c.get(f"{url}/healthz").status_code
                if status != 200:
                    failures.append(str(status))
            except httpx.HTTPError as exc:
                failures.append(type(exc).__name__)
            took = time.monotonic() - t0
            latencies.append(took)
            time.sleep(max(0.0, interval - took))
    sender.join(timeout=5)
    if sender.is_alive():
        sender.kill()  # only after --max-seconds: the request is reported as still running
        sender.join(timeout=5)
    try:
        big = results.get(timeout=1)
    except queue.Empty:
        big = BigResult()
    mode = "chunked (no Content-Length)" if chunked else "Content-Length"
    print(f"big request: {size} bytes, {mode}: "
          + (f"HTTP {big.status}" if big.status is not None else f"no reply ({big.error or 'still running'})")
          + f" after {big.seconds:.2f} s")
    if big.reply:
        print(f"  reply (first 200 chars): {big.reply}")
    print(f"/healthz polls: {len(latencies)} every {interval * 1000:.0f} ms, not 200: {len(failures)}"
          + (f" ({', '.join(sorted(set(failures)))})" if failures else ""))
    print(f"/healthz latency ms: max {max(latencies) * 1000:.1f}  p99 {percentile(latencies, 99) * 1000:.1f}  "
          f"median {percentile(latencies, 50) * 1000:.1f}")
    return 0 if not failures else 1


def main() -> int:
    """Parse arguments, start the stack unless ``--url`` is given, measure, stop what was started."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--url", help="base URL of a running API (loopback only); default: start one")
    parser.add_argument("--size-mb", type=float, default=50.0, help="body size in MB (10**6 bytes)")
    parser.add_argument("--chunked", action="store_true", help="send without Content-Length (chunked)")
    parser.add_argument("--interval", type=float, default=0.1, help="seconds between /healthz polls")
    parser.add_argument("--max-seconds", type=float, default=120.0, help="upper bound on the whole measurement")
    args = parser.parse_args()
    if not (0 < args.size_mb <= 1000 and 0.01 <= args.interval <= 10 and 1 <= args.max_seconds <= 600):
        parser.error("need 0 < --size-mb <= 1000, 0.01 <= --interval <= 10, 1 <= --max-seconds <= 600")
    size = max(64, int(args.size_mb * 1_000_000))
    started = Started()
    with tempfile.TemporaryDirectory(prefix="api_body_stall.") as tmp:
        try:
            if args.url:
                require_loopback(args.url)
                url = args.url.rstrip("/")
                if not wait_until_up(url, 10):
                    raise SystemExit(f"{url}/healthz does not answer 200")
            else:
                url = start_stack(started, Path(tmp))
            print(f"API: {url}")
            return measure(url, size, args.chunked, args.interval, args.max_seconds)
        finally:
            started.stop()


if __name__ == "__main__":
    sys.exit(main())
