#!/usr/bin/env python3
"""Kill `zachot-gen render` at random moments and check build/ is always whole.

Two specs (A: the repo's, B: the same with another RestartSec=) are rendered alternately
into one build folder; each render is SIGKILLed after a random delay within its usual
run time. After every kill the folder must hold exactly tree A or exactly tree B.
Prints the figures; exits 1 if any kill left a broken tree.

    .venv/bin/python scripts/kill_render_experiment.py --kills 200
"""

from __future__ import annotations

import argparse
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from generator import build_files  # noqa: E402


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        spec_a, spec_b = work / "a" / "spec", work / "b" / "spec"
        for spec in (spec_a, spec_b):
            shutil.copytree(REPO / "spec", spec)
            project = spec / "project.yaml"
            project.write_text(project.read_text().replace("  source: ..\n", f"  source: {REPO}\n"))
        svc = spec_b / "services.yaml"
        svc.write_text(svc.read_text().replace("delay_sec: 5\n", "delay_sec: 6\n", 1))
        trees = {name: {k: v.encode() for k, v in build_files(s).items()} for name, s in (("A", spec_a), ("B", spec_b))}
        out = work / "out" / "build"
        cmd = [sys.executable, "-c", "from generator.cli import main; main()", "render", "--build", str(out)]
        subprocess.run([*cmd, "--spec", str(spec_a)], check=True, capture_output=True, cwd=REPO)
        start = time.perf_counter()
        subprocess.run([*cmd, "--spec", str(spec_b)], check=True, capture_output=True, cwd=REPO)
        duration = time.perf_counter() - start
        counts = {"A": 0, "B": 0, "broken": 0, "finished": 0}
        for i in range(args.kills):
            spec = spec_a if i % 2 == 0 else spec_b
            proc = subprocess.Popen(
                [*cmd, "--spec", str(spec)], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            time.sleep(rng.uniform(0, duration * 1.1))
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
            else:
                counts["finished"] += 1
            proc.wait()
            got = _tree(out) if out.is_dir() else {}
            match = next((name for name, tree in trees.items() if got == tree), None)
            counts[match or "broken"] += 1
        leftovers = [p.name for p in out.parent.iterdir() if p.name != "build"]
    print(f"render duration: {duration * 1000:.0f} ms (one uninterrupted run)")
    print(f"kills: {args.kills} (of which {counts['finished']} renders had already finished)")
    print(f"tree after kill: A {counts['A']}, B {counts['B']}, broken {counts['broken']}")
    print(f"leftover scratch folders beside build/: {len(leftovers)}")
    return 1 if counts["broken"] else 0


if __name__ == "__main__":
    sys.exit(main())
