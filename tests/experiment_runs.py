"""Run an experiment script's ``--quick`` mode in a subprocess, as the experiment tests
of several chapters do, and read the table it writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_quick(script: str, out: Path, *extra: str, timeout: float = 180) -> dict:
    """``python experiments/<script>.py --quick --out <out> <extra>`` on one thread
    with the book's seed 0; the JSON table it wrote."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "BOOK_SEED": "0"}
    command = [sys.executable, f"experiments/{script}.py", "--quick", "--out", str(out)]
    subprocess.run(
        [*command, *extra],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        timeout=timeout,
    )
    return json.loads(out.read_text())
