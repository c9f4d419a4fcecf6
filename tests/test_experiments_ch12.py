"""Chapter 12's experiments: quick runs end to end, and the stored tables agree."""

from __future__ import annotations

import subprocess
from pathlib import Path

import experiment_runs
import pytest

from transformer.finetune import PACKAGES
from transformer.utils import experiment_results, seed_spread

ROOT = Path(__file__).resolve().parents[1]


def run_quick(script: str, out: Path, *extra: str) -> dict:
    return experiment_runs.run_quick(script, out, *extra, timeout=300)


def check_finetune(table: dict, n_seeds: int) -> None:
    for key in (
        "seeds",
        "labels",
        "data",
        "model",
        "training",
        "table",
        "per_seed",
        "machine",
    ):
        assert key in table, key
    seeds = [str(s) for s in table["seeds"]]
    assert len(seeds) == n_seeds and sorted(table["per_seed"]) == sorted(seeds)
    assert table["data"]["classes"] == list(PACKAGES)
    labels = table["labels"]
    assert labels == sorted(labels) and labels[-1] == table["data"]["n_train"]
    assert list(table["table"]) == [*map(str, labels[:-1]), "all"]
    for key, row in table["table"].items():
        for arm in ("pretrained", "scratch"):
            runs = [table["per_seed"][s][f"{arm}_{key}"] for s in seeds]
            assert all(0.0 <= a <= 1.0 for a in runs)
            assert row[arm] == seed_spread(runs)
    for s in seeds:
        loss = table["per_seed"][s]["pretrain_loss"]
        assert loss and all(x > 0 for x in loss)


def check_vision(table: dict, n_seeds: int) -> None:
    for key in ("seeds", "data", "vit", "training", "rows", "size_curve", "machine"):
        assert key in table, key
    seeds = [str(s) for s in table["seeds"]]
    assert len(seeds) == n_seeds
    rows = {r["name"]: r for r in table["rows"]}
    assert list(rows) == ["vit", "cnn", "mlp"]
    sweep = table["training"]["lr_sweep"]
    for name, row in rows.items():
        assert sorted(row["per_seed"]) == sorted(seeds)
        accs = [r["accuracy"] for r in row["per_seed"].values()]
        assert row["accuracy"] == seed_spread(accs)
        best = max(sweep["accuracy"][name], key=sweep["accuracy"][name].get)
        assert row["lr"] == float(best)  # each model at its own best rate
    assert table["data"]["n_train"] + table["data"]["n_test"] == 1797
    for name in ("vit", "cnn"):
        sizes = [int(k) for k in table["size_curve"][name]]
        assert sizes == sorted(sizes) and sizes[-1] == table["data"]["n_train"]
        for point in table["size_curve"][name].values():
            assert len(point["per_seed"]) == n_seeds
            assert point["mean"] == seed_spread(point["per_seed"])["mean"]


def test_finetune_quick_run_writes_the_table(tmp_path):
    table = run_quick("ch12_finetune", tmp_path / "f.json", "--seeds", "2")
    assert table["quick"] is True
    check_finetune(table, n_seeds=2)


def test_vision_quick_run_writes_the_table(tmp_path):
    table = run_quick("ch12_vision", tmp_path / "v.json", "--seeds", "2")
    assert table["quick"] is True
    check_vision(table, n_seeds=2)


@pytest.mark.parametrize("script", ["ch12_finetune", "ch12_vision"])
def test_scripts_reject_zero_seeds(tmp_path, script):
    with pytest.raises(subprocess.CalledProcessError) as info:
        run_quick(script, tmp_path / "z.json", "--seeds", "0")
    assert b"--seeds must be at least 1" in info.value.stderr


def test_stored_tables_are_consistent():
    fine = experiment_results("ch12_finetune", start=ROOT)
    assert fine["quick"] is False
    check_finetune(fine, n_seeds=3)
    assert fine["labels"][0] == 50 and fine["training"]["pretrain_steps"] >= 500
    vision = experiment_results("ch12_vision", start=ROOT)
    assert vision["quick"] is False
    check_vision(vision, n_seeds=3)
    assert vision["training"]["steps"] >= 500
