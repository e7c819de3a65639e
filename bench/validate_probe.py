"""``python -m bench.validate_probe OUT.json ARGS...``: run ``zachot-gen ARGS...`` (validate) and
write how much of its wall time its tool processes took: ``{"tools_s": float, "calls": int}``.

The probe wraps ``subprocess.run`` (every tool zachot-gen runs goes through it) and sums each
call's wall time, so the bench can tell zachot-gen's own time from systemd-analyze's, logrotate's
and systemd-sysusers'/systemd-tmpfiles'."""

from __future__ import annotations

import atexit
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

_run = subprocess.run
spent = {"tools_s": 0.0, "calls": 0}


def _timed(*args: Any, **kwargs: Any) -> Any:
    t0 = time.perf_counter()
    try:
        return _run(*args, **kwargs)
    finally:
        spent["tools_s"] += time.perf_counter() - t0
        spent["calls"] += 1


if __name__ == "__main__":
    out = Path(sys.argv[1])
    subprocess.run = _timed
    atexit.register(lambda: out.write_text(json.dumps(spent)))
    sys.argv = ["zachot-gen", *sys.argv[2:]]
    from generator.cli import main

    main()
