"""Chapter 14's speed script: a quick run end to end, and the stored table agrees."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from transformer.utils import experiment_results, seed_spread

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ["fp32", "bf16", "checkpointing", "compile"]


def check_layout(table: dict, n_seeds: int) -> None:
    for key in ("seeds", "setup", "rows", "machine", "avx512_bf16", "amx_bf16"):
        assert key in table, key
    assert len(table["seeds"]) == n_seeds
    rows = {row["name"]: row for row in table["rows"]}
    assert list(rows) == VARIANTS
    for name, row in rows.items():
        per_seed = row["per_seed"]
        assert sorted(per_seed) == sorted(str(s) for s in table["seeds"])
        steps = [r["step_cpu_s"] * 1e3 for r in per_seed.values()]
        assert row["step_cpu_ms"] == seed_spread(steps), name
        n_steps = table["setup"]["warmup"] + table["setup"]["steps"]
        assert all(len(r["losses"]) == n_steps for r in per_seed.values())
    assert rows["fp32"]["speed_vs_fp32"]["mean"] == pytest.approx(1.0)
    # a compiled graph saves its own tensors, which the hooks cannot see
    assert rows["compile"]["saved_mib"] is None
    # the same batches and weights: float32 variants follow fp32's loss curve
    assert rows["checkpointing"]["max_loss_gap_vs_fp32"]["max"] < 1e-4
    assert rows["compile"]["max_loss_gap_vs_fp32"]["max"] < 1e-3
    mib = {n: rows[n]["saved_mib"]["mean"] for n in ("fp32", "bf16", "checkpointing")}
    assert mib["checkpointing"] < mib["bf16"] < mib["fp32"]


def test_stored_table_is_consistent():
    check_layout(experiment_results("ch14_speed", ROOT), n_seeds=3)


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_quick_run_writes_the_same_layout(tmp_path):
    out = tmp_path / "ch14_speed.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "BOOK_SEED": "0"}
    subprocess.run(
        [sys.executable, "experiments/ch14_speed.py", "--quick", "--out", str(out)],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        timeout=360,
    )
    check_layout(json.loads(out.read_text()), n_seeds=1)
