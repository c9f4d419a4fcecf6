"""Chapter 11's ablation script: a quick run end to end, and the stored table agrees."""

from __future__ import annotations

import subprocess
from pathlib import Path

import experiment_runs
import pytest

from transformer.utils import experiment_results, seed_spread

ROOT = Path(__file__).resolve().parents[1]
ROWS = ("gpt2", "+rmsnorm", "+swiglu", "+rope", "+gqa", "mqa")


def run_quick(out: Path, *extra: str) -> dict:
    return experiment_runs.run_quick("ch11_ablation", out, *extra, timeout=180)


def check_layout(table: dict, n_seeds: int) -> None:
    for key in (
        "seeds",
        "data",
        "budget_cpu_seconds",
        "model",
        "params_target",
        "training",
        "rows",
        "notes",
        "machine",
    ):
        assert key in table, key
    assert len(table["seeds"]) == n_seeds
    rows = {row["name"]: row for row in table["rows"]}
    assert list(rows) == list(ROWS)
    # the rows are cumulative: each one turns on one more of Llama's choices
    assert (rows["gpt2"]["norm"], rows["gpt2"]["ffn"], rows["gpt2"]["positional"]) == (
        "layer",
        "mlp",
        "learned",
    )
    assert rows["gpt2"]["bias"] and rows["gpt2"]["activation"] == "gelu"
    assert rows["+rmsnorm"]["norm"] == "rms" and rows["+rmsnorm"]["ffn"] == "mlp"
    assert rows["+swiglu"]["ffn"] == "swiglu" and not rows["+swiglu"]["bias"]
    assert (
        rows["+swiglu"]["positional"] == "learned"
        and rows["+rope"]["positional"] == "rope"
    )
    heads = table["model"]["n_heads"]
    assert [rows[n]["n_kv_heads"] for n in ROWS] == [heads] * 4 + [heads // 2, 1]
    # parameters matched to the GPT-2 block's within a few per cent
    target = table["params_target"]
    assert rows["gpt2"]["params"] == target
    for row in rows.values():
        assert abs(row["params"] - target) / target < 0.03, row["name"]
    # three matrices instead of two
    assert rows["+swiglu"]["d_ff"] < rows["gpt2"]["d_ff"]
    # one learning rate for every row: the sweep's best on the GPT-2 block
    sweep = table["training"]["lr_sweep"]["bpc_on_curve_slice"]
    assert table["training"]["lr"] == float(min(sweep, key=sweep.get))
    budget = table["budget_cpu_seconds"]
    for row in rows.values():
        assert sorted(row["per_seed"]) == sorted(map(str, table["seeds"]))
        runs = list(row["per_seed"].values())
        for run in runs:
            assert 0 < run["bpc"] < 8
            assert run["tokens"] == run["steps"] * table["training"]["tokens_per_batch"]
            assert run["cpu_seconds"] >= budget  # a run stops at the first step past it
            assert run["tokens_per_second"] == pytest.approx(
                run["tokens"] / run["cpu_seconds"]
            )
        assert row["summary"]["bpc"] == seed_spread([r["bpc"] for r in runs])
        assert row["summary"]["steps"] == seed_spread([r["steps"] for r in runs])


def test_ablation_quick_run_writes_the_table(tmp_path):
    table = run_quick(tmp_path / "a.json", "--seeds", "2")
    assert table["quick"] is True
    check_layout(table, n_seeds=2)


def test_ablation_rejects_zero_seeds(tmp_path):
    with pytest.raises(subprocess.CalledProcessError) as info:
        run_quick(tmp_path / "z.json", "--seeds", "0")
    assert b"--seeds must be at least 1" in info.value.stderr


def test_stored_ablation_is_consistent():
    table = experiment_results("ch11_ablation", start=ROOT)
    assert table["quick"] is False
    check_layout(table, n_seeds=3)
    assert table["model"]["d_model"] == 64 and table["budget_cpu_seconds"] >= 30
    for row in table["rows"]:
        for run in row["per_seed"].values():
            assert run["cpu_seconds"] < table["budget_cpu_seconds"] + 2.0
