"""Open many SSE streams of one job at once and report what each received (standard library only).

Run inside the test server, as a client on the server itself would connect::

    python3 - PORT JOB_ID STREAMS STEPS TIMEOUT < sse_load.py

Each stream is a plain HTTP/1.0 ``GET /jobs/<id>/events`` (the server answers without chunking
and closes at the end), all held open together; at most :data:`CONNECTING` connect at the same
moment so the listen backlog is not the thing measured. Prints one JSON object: ``ok`` (streams
with status 200 and event ids 1..STEPS+1 each once, the last ``done``), ``failed`` (up to 20
examples of what the others got), ``peak`` (most streams open at once), and the seconds from
the first connect to each stream's last event (``p50``, ``p99``, ``max``).
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time

CONNECTING = 200


async def _one(port: int, job: str, steps: int, gate: asyncio.Semaphore, state: dict[str, int]) -> tuple[str, float]:
    async with gate:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    state["open"] += 1
    state["peak"] = max(state["peak"], state["open"])
    try:
        writer.write(f"GET /jobs/{job}/events HTTP/1.0\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n".encode())
        await writer.drain()
        body = await reader.read()
    finally:
        state["open"] -= 1
        writer.close()
    done = time.monotonic()
    text = body.decode("utf-8", "replace")
    status = text.split("\r\n", 1)[0]
    if " 200 " not in status + " ":
        return f"status {status[:80]!r}: {text[-200:]!r}", done
    ids = [int(ln[3:].strip()) for ln in text.splitlines() if ln.startswith("id:")]
    events = [ln[6:].strip() for ln in text.splitlines() if ln.startswith("event:")]
    if ids != list(range(1, steps + 2)) or not events or events[-1] != "done":
        return f"ids {ids[:5]}..{ids[-3:]} ({len(ids)}), last event {events[-1:]}", done
    return "", done


async def main(port: int, job: str, streams: int, steps: int, timeout: float) -> dict[str, object]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    gate = asyncio.Semaphore(CONNECTING)
    state = {"open": 0, "peak": 0}
    start = time.monotonic()
    tasks = [asyncio.create_task(_one(port, job, steps, gate, state)) for _ in range(streams)]
    finished, pending = await asyncio.wait(tasks, timeout=timeout)
    for t in pending:
        t.cancel()
    failed: list[str] = [f"no end within {timeout} s"] * len(pending)
    ends: list[float] = []
    for t in finished:
        exc = t.exception()
        if exc is not None:
            failed.append(f"{type(exc).__name__}: {exc}")
            continue
        problem, end = t.result()
        (failed.append(problem) if problem else ends.append(end - start))
    ends.sort()

    def q(x: float) -> float | None:
        return round(ends[min(len(ends) - 1, int(x * len(ends)))], 3) if ends else None

    return {"ok": len(ends), "failed_count": len(failed), "failed": failed[:20], "peak": state["peak"],
            "p50": q(0.5), "p99": q(0.99), "max": round(ends[-1], 3) if ends else None, "client_nofile": hard}


if __name__ == "__main__":
    port, job, streams, steps, timeout = sys.argv[1:6]
    print(json.dumps(asyncio.run(main(int(port), job, int(streams), int(steps), float(timeout)))))
