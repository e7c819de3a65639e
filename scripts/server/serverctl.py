#!/usr/bin/env python3
"""The zachot test server by hand (the same code the `server` tests use, tests/server/).

    .venv/bin/python scripts/server/serverctl.py prepare   # build/refresh the cached root and venv
    .venv/bin/python scripts/server/serverctl.py shell     # deploy a fresh server, open a shell in it
    .venv/bin/python scripts/server/serverctl.py clean     # remove the cache

`shell` boots a throwaway server with zachot installed by the runbook of build/staging/docs/README.md and
runs bash inside it (nsenter); exiting the shell powers it off and removes it. Run as root.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "server"))

import server_support  # noqa: E402
import testserver as ts  # noqa: E402

from generator import build  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=["prepare", "shell", "clean"])
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("run as root (debootstrap, mount, systemd-nspawn)", file=sys.stderr)
        return 2
    if args.command == "clean":
        shutil.rmtree(ts.CACHE_DIR, ignore_errors=True)
        print(f"removed {ts.CACHE_DIR}")
        return 0
    subprocess.run([str(REPO / "scripts/server/install-host-deps.sh")], check=True)
    timings: dict[str, float] = {}
    if args.command == "prepare":
        runbook = ts.parse_runbook((REPO / ts.STAGING / "docs/README.md").read_text())
        base, key = ts.ensure_base(timings, runbook.apt_packages)
        print(f"base root: {base}\nvenv layer: {ts.ensure_venv(base, key, runbook, timings)}")
        return 0
    facts = server_support.Facts(build(REPO / "spec", env="staging"))
    with server_support.deploy(facts, timings) as dep:
        s = dep.server
        print(f"\nserver up (container PID 1 = host PID {s.leader}); root {s.root}\n"
              f"API: curl --unix-socket {s.api_sock} http://x/readyz   Redis socket: {s.redis_sock}\n"
              "exit the shell to power it off\n", flush=True)
        subprocess.run(["nsenter", "-t", str(s.leader), "-a", "env", "-i", f"PATH={ts.PATH_INSIDE}",
                        "TERM=" + os.environ.get("TERM", "xterm"), "HOME=/root", "LANG=C.UTF-8",
                        "bash", "-l"], check=False, cwd="/")
    print(f"timings: {timings}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
