"""Killing `render` at random moments never leaves a broken build/ (scripts/kill_render_experiment.py)."""

from __future__ import annotations

import re
import subprocess
import sys

from helpers import REPO


def test_random_kills_leave_the_old_or_the_new_tree() -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts/kill_render_experiment.py"), "--kills", "24", "--seed", "7"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    a, b, broken = map(int, re.search(r"A (\d+), B (\d+), broken (\d+)", proc.stdout).groups())
    assert broken == 0 and a + b == 24
    leftovers = int(re.search(r"leftover scratch folders beside build/: (\d+)", proc.stdout).group(1))
    assert leftovers <= 1, proc.stdout  # only the one the last kill interrupted; the next render sweeps it
