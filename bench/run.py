"""Measure zachot-gen against floors (Python's start, the imports it cannot avoid) and peers (a
bare Jinja loop over a unit template, ``honcho export systemd``), side by side in one run.

Every figure is the median of ``--repeat`` runs of a fresh process, timed with
``time.perf_counter`` around ``os.wait4``, which also gives the process's peak RSS
(``ru_maxrss``, KiB on Linux: getrusage(2)). Floors and peers run interleaved with what they
are compared to, so a noisy machine slows both. Nothing here asserts a time: the table is read
by people (issue "Fast at any size"); ``--quick`` only shows that every measurement runs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.app_load import app_table, run_app
from bench.synth import write_spec

__all__ = ["Figure", "main", "measure"]

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
CLI = [PY, "-c", "from generator.cli import main; main()"]

JINJA_LOOP = r"""
import sys, jinja2, pathlib
n, out = int(sys.argv[1]), pathlib.Path(sys.argv[2])
out.mkdir(parents=True, exist_ok=True)
t = jinja2.Environment(trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True).from_string('''# generated
[Unit]
Description={{ s.description }}
After={{ s.after }}
Wants={{ s.after }}
StartLimitIntervalSec=120
StartLimitBurst=10

[Service]
Type=exec
User={{ s.user }}
Group={{ s.user }}
WorkingDirectory=/srv/bench/app
EnvironmentFile=/etc/bench/bench.env
ExecStart=/srv/bench/venv/bin/uvicorn {{ s.app }} --host 127.0.0.1 --port {{ s.port }}
Restart=on-failure
RestartSec=5
TimeoutStopSec=30
{% for k, v in s.hardening %}
{{ k }}={{ v }}
{% endfor %}
StandardOutput=append:/var/log/bench/{{ s.name }}.log
StandardError=append:/var/log/bench/{{ s.name }}.err

[Install]
WantedBy=multi-user.target
''')
hardening = [("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"), ("ProtectHome", "yes"), ("PrivateTmp", "yes")]
for i in range(n):
    s = {"name": f"svc{i}", "description": f"bench service {i}", "after": "redis-server@bench.service",
         "user": "bench", "app": f"svc{i}.main:app", "port": 10000 + i, "hardening": hardening}
    (out / f"bench-svc{i}.service").write_text(t.render(s=s))
"""


FULL = {"ZACHOT_GEN_NO_CACHE": "1"}
"""The environment of a check that renders and compares, whatever a record says."""


@dataclass
class Figure:
    """One row of the table: what ran, its median wall time (s), its peak RSS (MiB), or why it
    could not run (``error``); and its median CPU time (user + system, s: the wall time less
    what it waited for, the disk above all, which swings on a shared machine)."""

    what: str
    seconds: float | None
    rss_mib: float | None
    error: str | None = None
    cpu: float | None = None


def _once(argv: Sequence[str], cwd: Path, env: dict[str, str] | None = None) -> tuple[float, float, str | None, float]:
    """Run ``argv`` once; (wall seconds, peak RSS MiB, the first stderr line if it failed, CPU seconds)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, **(env or {})})
    assert proc.stderr is not None
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    cpu = usage.ru_utime + usage.ru_stime
    if proc.returncode not in (0,):
        first = next((ln for ln in err.decode(errors="replace").splitlines() if ln.strip()), "")
        return wall, usage.ru_maxrss / 1024, f"exit {proc.returncode}: {first[:160]}", cpu
    return wall, usage.ru_maxrss / 1024, None, cpu


def measure(what: str, argv: Sequence[str], repeat: int, cwd: Path = REPO,
            before: Callable[[], None] | None = None, env: dict[str, str] | None = None) -> Figure:
    """The median of ``repeat`` runs of ``argv`` (``before`` runs ahead of each, untimed;
    ``env`` is added to the environment)."""
    walls, rss, cpus = [], [], []
    for _ in range(repeat):
        if before is not None:
            before()
        wall, peak, error, cpu = _once(argv, cwd, env)
        if error:
            return Figure(what, None, None, error)
        walls.append(wall)
        rss.append(peak)
        cpus.append(cpu)
    return Figure(what, statistics.median(walls), max(rss), cpu=statistics.median(cpus))


def _remover(path: Path) -> Callable[[], None]:
    """What runs before each timed run: the previous run's output goes, so every run writes anew."""
    return lambda: shutil.rmtree(path, ignore_errors=True)


def _written(path: Path) -> str:
    """What a run left in ``path``: its file count and bytes (MB), the work behind a ratio."""
    files = [f for f in path.rglob("*") if f.is_file()]
    return f"{len(files)} files, {sum(f.stat().st_size for f in files) / 1e6:.1f} MB"


def _honcho() -> list[str] | None:
    found = shutil.which("honcho", path=str(Path(PY).parent)) or shutil.which("honcho")
    return [found] if found else None


def _ratio(a: Figure, b: Figure) -> str:
    if a.seconds is None or b.seconds is None or b.seconds == 0:
        return "—"
    return f"{a.seconds / b.seconds:.1f}×"


def _cpu_ratio(a: Figure, b: Figure) -> str:
    if a.cpu is None or b.cpu is None or b.cpu == 0:
        return "—"
    return f"{a.cpu / b.cpu:.1f}×"


def _validate_row(n: int, spec: Path, checked: Figure, work: Path) -> tuple[Figure, str]:
    """``validate`` at ``n`` services, once (its tools run 16 times, whatever ``n``), its tools'
    share measured by bench/validate_probe.py; the ratio is its own time over ``check``'s."""
    probe = work / f"validate-{n}.json"
    v = measure(f"validate, {n} services (once)",
                [PY, "-m", "bench.validate_probe", str(probe), "validate", "--spec", str(spec)], 1)
    if v.seconds is None or checked.seconds is None or not probe.exists():
        return v, ""
    tools = json.loads(probe.read_text())
    own = v.seconds - tools["tools_s"]
    return v, (f"tools {tools['tools_s']:.2f} s in {tools['calls']} runs; the rest {own:.2f} s = "
               f"{own / checked.seconds:.1f}× check, {n}")


def run(sizes: Sequence[int], repeat: int, work: Path, validate_upto: int = 100) -> list[tuple[Figure, str]]:
    """Every measurement, each with its ratio text; ``work`` is an empty scratch folder;
    ``validate`` runs at the sizes up to ``validate_upto`` services."""
    rows: list[tuple[Figure, str]] = []
    python = measure("python -c pass (floor)", [PY, "-c", "pass"], repeat)
    imports = measure("import jinja2, yaml, pydantic (floor)", [PY, "-c", "import jinja2, yaml, pydantic"], repeat)
    rows += [(python, ""), (imports, "")]
    helped = measure("zachot-gen --help", [*CLI, "--help"], repeat)
    rows.append((helped, f"{_ratio(helped, imports)} the import floor"))
    os.environ["XDG_CACHE_HOME"] = str(work / "cache")  # check's records (generator/checkcache.py) stay here
    checked = measure("zachot-gen check (repo spec, full)", [*CLI, "check"], repeat, env=FULL)
    rows.append((checked, f"{_ratio(checked, imports)} the import floor"))

    def clean_check() -> None:  # untimed: leaves the record the timed run answers from
        _once([*CLI, "check"], REPO)

    again = measure("zachot-gen check (repo spec, unchanged since a clean check)", [*CLI, "check"], repeat,
                    before=clean_check)
    rows.append((again, f"{_ratio(again, imports)} the import floor"))
    honcho = _honcho()
    per_service: dict[int, float] = {}
    for n in sizes:
        spec = write_spec(work / f"spec-{n}", n)
        out, loop_out, honcho_out = work / f"build-{n}", work / f"loop-{n}", work / f"honcho-{n}"
        rendered = measure(f"render, {n} services", [*CLI, "render", "--spec", str(spec), "--build", str(out)],
                           repeat, before=_remover(out))
        loop = measure(f"bare Jinja loop, {n} units (peer)", [PY, "-c", JINJA_LOOP, str(n), str(loop_out)],
                       repeat, before=_remover(loop_out))
        rows += [(rendered, f"{_ratio(rendered, loop)} the Jinja loop (CPU {_cpu_ratio(rendered, loop)}); "
                            f"wrote {_written(out)}"),
                 (loop, f"wrote {_written(loop_out)}")]
        if honcho:
            procfile = work / f"Procfile-{n}"
            procfile.write_text("".join(f"svc{i}: uvicorn svc{i}.main:app --port {10000 + i}\n" for i in range(n)))
            peer = measure(f"honcho export systemd, {n} processes (peer)",
                           [*honcho, "export", "-f", str(procfile), "-a", "bench", "systemd", str(honcho_out)],
                           repeat, before=_remover(honcho_out))
            rows.append((peer, ""))
            rows[-3] = (rendered, rows[-3][1].replace("; wrote", f", {_ratio(rendered, peer)} honcho; wrote"))
        if rendered.seconds is not None:
            checked_n = measure(f"check, {n} services", [*CLI, "check", "--spec", str(spec), "--build", str(out)],
                                repeat, env=FULL)
            rows.append((checked_n, ""))
            per_service[n] = rendered.seconds / n
            if n <= validate_upto:
                rows.append(_validate_row(n, spec, checked_n, work))
    if 100 in per_service:
        for n, t in per_service.items():
            if n > 100:
                rows.append((Figure(f"render per service at {n} / at 100", None, None),
                             f"{t / per_service[100]:.2f}×"))
    return rows


def table(rows: list[tuple[Figure, str]]) -> str:
    """The Markdown table ``python -m bench`` prints."""
    out = ["| what | median s | CPU s | peak RSS MiB | ratio |", "|---|---|---|---|---|"]
    for f, ratio in rows:
        secs = f"{f.seconds:.3f}" if f.seconds is not None else (f"refused: {f.error}" if f.error else "")
        cpu = f"{f.cpu:.3f}" if f.cpu is not None else ""
        rss = f"{f.rss_mib:.0f}" if f.rss_mib is not None else ""
        out.append(f"| {f.what} | {secs} | {cpu} | {rss} | {ratio} |")
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the options, run, print the table; returns 0 (1 if a floor or the repo spec failed)."""
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="10 services, one run each: shows that it runs (CI)")
    ap.add_argument("--sizes", default="10,100,1000", help="services per synthetic spec, comma-separated")
    ap.add_argument("--repeat", type=int, default=5, help="runs per figure (the median is shown)")
    ap.add_argument("--validate-upto", type=int, default=100, help="run validate at the sizes up to this many")
    ap.add_argument("--posts", type=int, default=3000, help="POST /jobs requests for the enqueue rate")
    ap.add_argument("--streams", type=int, default=5000, help="concurrent SSE streams")
    ap.add_argument("--no-app", action="store_true", help="skip the app's measurements (redis-server, uvicorn)")
    args = ap.parse_args(argv)
    sizes = [10] if args.quick else [int(x) for x in args.sizes.split(",")]
    repeat = 1 if args.quick else args.repeat
    with tempfile.TemporaryDirectory(prefix="zachot-bench-") as tmp:
        rows = run(sizes, repeat, Path(tmp), args.validate_upto)
    print(f"zachot-gen bench: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, median of {repeat}\n")
    print(table(rows))
    if not args.no_app:
        # a full run's idle window spans a keep-alive period (15 s): each idle stream reads its job once
        posts, streams, idle = (100, 50, 1.0) if args.quick else (args.posts, args.streams, 16.0)
        print("\n" + app_table(run_app(posts, streams, idle)))
    broken = [f for f, _ in rows[:4] if f.error]
    for f in broken:
        print(f"\n{f.what}: {f.error}", file=sys.stderr)
    return 1 if broken else 0
