"""Chapter 8's experiments: the depth script end to end; both stored tables agree."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from transformer.utils import experiment_results, seed_spread

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ("post-LN, no warm-up", "post-LN, warm-up", "pre-LN, no warm-up")


def run_depth(out: Path, *extra: str) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(
        [sys.executable, "experiments/ch08_depth.py", "--out", str(out), *extra],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        timeout=300,
    )
    return json.loads(out.read_text())


def tilt(norms) -> float:
    slope = np.polyfit(np.arange(len(norms)), np.log(norms), 1)[0]
    return float(np.exp(slope * (len(norms) - 1)))


def check_gradients(table: dict, depths: list[int], n_seeds: int) -> None:
    grads = table["gradients"]
    assert grads["depths"] == depths and len(grads["seeds"]) == n_seeds
    rows = {(r["init"], r["depth"]): r for r in grads["rows"]}
    assert set(rows) == {(i, d) for i in ("default", "xavier") for d in depths}
    for (_, depth), row in rows.items():
        tops = {}
        for kind in ("post", "pre"):
            part = row[kind]
            w2 = [part["w2"][str(s)] for s in grads["seeds"]]  # (seeds, depth)
            assert all(len(v) == depth and min(v) > 0 for v in w2)
            assert all(len(part["block"][str(s)]) == depth for s in grads["seeds"])
            # a block's gradient includes its W2's, so it is at least as large
            for s in grads["seeds"]:
                assert all(
                    b >= w - 1e-9
                    for b, w in zip(part["block"][str(s)], part["w2"][str(s)])
                )
            assert part["w2_top"] == pytest.approx(seed_spread([v[-1] for v in w2]))
            assert part["w2_tilt"] == pytest.approx(seed_spread([tilt(v) for v in w2]))
            ratio = seed_spread([v[-1] / v[0] for v in w2])
            assert part["w2_top_over_bottom"] == pytest.approx(ratio)
            tops[kind] = [v[-1] for v in w2]
        ratios = [a / b for a, b in zip(tops["post"], tops["pre"])]
        assert row["top_post_over_pre"] == pytest.approx(seed_spread(ratios))


def check_training(table: dict, depths: list[int], seeds: list[int]) -> None:
    training, config = table["training"], table["config"]
    assert training["depths"] == depths and training["seeds"] == seeds
    rows = {(r["depth"], r["recipe"]): r for r in training["rows"]}
    assert set(rows) == {(d, name) for d in depths for name in RECIPES}
    for (_, name), row in rows.items():
        warmed = name == "post-LN, warm-up"
        assert row["norm_first"] == name.startswith("pre")
        assert (row["warmup"] > 0) == warmed
        runs = [row["per_seed"][str(s)] for s in seeds]
        for run in runs:
            assert len(run["loss"]) == training["steps"]
            final = sum(run["loss"][-20:]) / 20
            assert run["final_loss"] == pytest.approx(final, abs=1e-4)
            diverged = not math.isfinite(final) or final > config["diverged_above"]
            assert run["diverged"] == diverged
            assert run["spiked"] == (run["worst_rise"] > config["spike_above"])
            assert 0 <= run["accuracy"] <= 1 and run["worst_rise"] >= 0
        assert row["final_loss"] == seed_spread([r["final_loss"] for r in runs])
        assert row["accuracy"] == seed_spread([r["accuracy"] for r in runs])
        assert row["n_diverged"] == sum(r["diverged"] for r in runs)
        assert row["n_spiked"] == sum(r["spiked"] for r in runs)


def test_depth_quick_run_writes_the_table(tmp_path):
    table = run_depth(
        tmp_path / "d.json", "--quick", "--seeds", "0", "--grad-seeds", "2"
    )
    assert table["quick"] is True
    check_gradients(table, [2, 3], n_seeds=2)
    check_training(table, [2, 3], [0])
    assert table["training"]["steps"] == 30


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--grad-seeds", "0"], b"--grad-seeds must be at least 1"),
        (["--seeds", "1", "1"], b"--seeds must name distinct seeds"),
    ],
)
def test_depth_rejects_bad_seeds(tmp_path, args, message):
    with pytest.raises(subprocess.CalledProcessError) as info:
        run_depth(tmp_path / "z.json", "--quick", *args)
    assert message in info.value.stderr


def test_stored_depth_table_is_consistent():
    table = experiment_results("ch08_depth", start=ROOT)
    assert table["quick"] is False
    check_gradients(table, [2, 6, 12], n_seeds=len(table["gradients"]["seeds"]))
    assert len(table["gradients"]["seeds"]) >= 3
    seeds = table["training"]["seeds"]
    assert len(seeds) >= 3
    check_training(table, [2, 6, 12], seeds)
    assert table["training"]["steps"] == 300


def test_stored_warmup_table_is_consistent():
    table = experiment_results("ch08_warmup", start=ROOT)
    seeds = [str(s) for s in table["seeds"]]
    assert len(seeds) >= 3
    for name, summary in table["summary"].items():
        accuracy = table["accuracy"][name]
        assert sorted(accuracy) == sorted(seeds)
        assert summary == pytest.approx(seed_spread([accuracy[s] for s in seeds]))
        assert all(
            len(table["loss"][name][s]) == table["config"]["steps"] for s in seeds
        )
