"""Chapter 9's stored table (experiments/ch09_recipe.py): layout, spreads and the
baseline."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from transformer.utils import experiment_results, seed_spread

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = (
    "recipe",
    "no_smoothing",
    "no_warmup",
    "dropout_0.1",
    "data_800",
    "rnn",
    "rnn_data_800",
)


@pytest.fixture(scope="module")
def table() -> dict:
    return experiment_results("ch09_recipe", start=ROOT)


def test_every_variant_has_three_seeds_and_its_spread(table):
    assert sorted(table["variants"]) == sorted(VARIANTS)
    assert len(table["seeds"]) >= 3
    for name, variant in table["variants"].items():
        assert "400" in variant["checkpoints"], name
        for row in variant["checkpoints"].values():
            per_seed = row["per_seed"]
            assert sorted(per_seed) == sorted(map(str, table["seeds"]))
            for metric, summary in row["summary"].items():
                values = [r[metric] for r in per_seed.values()]
                assert summary == seed_spread(values), (name, metric)
            for r in per_seed.values():
                assert 0.0 <= r["greedy_exact_match"] <= 1.0
                assert math.isfinite(r["train_loss"])


def test_the_baseline_differs_from_the_recipe_only_in_the_model(table):
    recipe = table["variants"]["recipe"]["hyperparameters"]
    rnn = table["variants"]["rnn"]["hyperparameters"]
    small = table["variants"]["rnn_data_800"]["hyperparameters"]
    assert recipe["model"] == "transformer" and rnn["model"] == "attention_gru"
    assert rnn["n_train"] == recipe["n_train"] and small["n_train"] == 800
    assert table["variants"]["data_800"]["hyperparameters"]["n_train"] == 800
    assert {k: v for k, v in small.items() if k != "n_train"} == {
        k: v for k, v in rnn.items() if k != "n_train"
    }


def test_the_recipe_keeps_learning_and_beam_rows_add_up(table):
    checkpoints = table["variants"]["recipe"]["checkpoints"]
    steps = sorted(map(int, checkpoints))
    assert steps[0] < 400 < steps[-1]
    first = checkpoints[str(steps[0])]["summary"]["greedy_exact_match"]["mean"]
    last = checkpoints[str(steps[-1])]["summary"]["greedy_exact_match"]["mean"]
    assert last > first
    for row in checkpoints.values():
        for r in row["per_seed"].values():
            assert (
                r["n_beam_higher"] + r["n_beam_lower"] <= r["n_differ"] <= r["n_test"]
            )
            assert r["n_only_beam_right"] + r["n_only_greedy_right"] <= r["n_differ"]
