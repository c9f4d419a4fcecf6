"""Chapter 10's experiment scripts: quick runs end to end, and the stored tables
agree."""

from __future__ import annotations

import math
from pathlib import Path

import experiment_runs
import pytest

from transformer.utils import experiment_results, seed_spread

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("lstm", "transformer")


def run_quick(script: str, out: Path, *extra: str) -> dict:
    return experiment_runs.run_quick(script, out, *extra, timeout=120)


def check_baselines_layout(table: dict, n_seeds: int) -> None:
    for key in (
        "seeds",
        "data",
        "budget_cpu_seconds",
        "training",
        "ngram",
        "models",
        "verdicts",
        "notes",
        "machine",
    ):
        assert key in table, key
    assert len(table["seeds"]) == n_seeds
    for order, row in table["ngram"].items():
        assert int(order) >= 2 and 0 < row["bpc"] < 8
        assert all(s.startswith(table["prompt"]) for s in row["samples"].values())
    for kind in MODELS:
        model = table["models"][kind]
        assert sorted(model["per_seed"]) == sorted(map(str, table["seeds"]))
        for run in model["per_seed"].values():
            assert 0 < run["bpc"] < 8
            assert run["tokens"] == run["steps"] * table["training"]["tokens_per_batch"]
            assert 2 <= len(run["curve"]) <= 12
            assert [p[0] for p in run["curve"]] == sorted(p[0] for p in run["curve"])
            assert set(run["samples"]) == {
                "greedy",
                "temperature_0.8_seed_0",
                "temperature_0.8_seed_1",
            }
        assert model["summary"]["bpc"] == seed_spread(
            [r["bpc"] for r in model["per_seed"].values()]
        )
    verdict = table["verdicts"][0]
    assert verdict["winner"] == min(verdict["bpc"], key=verdict["bpc"].get)
    # both networks were tuned over the same grid of learning rates
    sweep = table["training"]["lr_sweep"]["bpc_on_curve_slice"]
    assert sorted(sweep["lstm"]) == sorted(sweep["transformer"])
    for kind in MODELS:
        assert table["models"][kind]["lr"] == float(
            min(sweep[kind], key=sweep[kind].get)
        )


def check_scaling_layout(table: dict) -> None:
    for key in (
        "training",
        "flops_method",
        "models",
        "table",
        "frontier",
        "fit",
        "machine",
    ):
        assert key in table, key
    assert len(table["table"]) == sum(len(m["points"]) for m in table["models"])
    for model in table["models"]:
        # the count includes attention's T x T products, which 6 N D leaves out
        assert 1.0 < model["counted_over_6nd"] < 2.0
        flops = [p["flops"] for p in model["points"]]
        assert flops == sorted(flops)
        for p in model["points"]:
            assert p["flops"] == p["steps"] * model["flops_per_step_counted"]
            assert math.isclose(p["val_bpc"], p["val_nats_per_char"] / math.log(2))
    for row in table["table"]:
        assert math.isclose(
            row["val_nats_per_char"],
            sum(row["val_nats_by_seed"]) / len(row["val_nats_by_seed"]),
        )
        assert len(row["val_nats_by_seed"]) == len(table["seeds"])
    losses = [r["val_nats_per_char"] for r in table["frontier"]]
    assert losses == sorted(losses, reverse=True) and len(set(losses)) == len(losses)
    best = min(r["val_nats_per_char"] for r in table["table"])
    assert losses[-1] == best


def test_baselines_quick_run_writes_the_table(tmp_path):
    table = run_quick("ch10_baselines", tmp_path / "b.json", "--seeds", "2")
    assert table["quick"] is True
    check_baselines_layout(table, n_seeds=2)


def test_scaling_quick_run_writes_the_table(tmp_path):
    table = run_quick("ch10_scaling", tmp_path / "s.json")
    assert table["quick"] is True
    check_scaling_layout(table)


@pytest.fixture(scope="module")
def baselines() -> dict:
    return experiment_results("ch10_baselines", start=ROOT)


def test_stored_baselines_are_consistent(baselines):
    assert baselines["quick"] is False
    check_baselines_layout(baselines, n_seeds=3)
    assert sorted(baselines["ngram"]) == ["3", "5", "7"]


def test_stored_baselines_give_both_networks_the_same_budget(baselines):
    budget = baselines["budget_cpu_seconds"]
    for kind in MODELS:
        for run in baselines["models"][kind]["per_seed"].values():
            # a run stops at the first step that reaches the budget
            assert budget <= run["cpu_seconds"] < budget + 2.0
    budgets = [budget]
    for ext in baselines["extended"]:
        assert ext["budget_cpu_seconds"] > budgets[-1]
        budgets.append(ext["budget_cpu_seconds"])
        assert sorted(ext["runs"]) == sorted(MODELS)
        for run in ext["runs"].values():
            assert (
                ext["budget_cpu_seconds"]
                <= run["cpu_seconds"]
                < ext["budget_cpu_seconds"] + 2
            )
    assert [v["budget_cpu_seconds"] for v in baselines["verdicts"]] == budgets
    # longer budgets are tried only while the Transformer has not won
    assert all(v["winner"] != "transformer" for v in baselines["verdicts"][:-1])


def test_stored_baselines_verdicts_follow_the_numbers(baselines):
    for verdict in baselines["verdicts"]:
        assert verdict["winner"] == min(verdict["bpc"], key=verdict["bpc"].get)
    first = baselines["verdicts"][0]["bpc"]
    for kind in MODELS:
        assert first[kind] == baselines["models"][kind]["summary"]["bpc"]["mean"]
    assert first["ngram"] == min(row["bpc"] for row in baselines["ngram"].values())
    # a higher order fits the training text better and, here, the validation text too
    assert baselines["ngram"]["7"]["bpc"] < baselines["ngram"]["3"]["bpc"]


def test_stored_scaling_is_consistent():
    table = experiment_results("ch10_scaling", start=ROOT)
    assert table["quick"] is False
    check_scaling_layout(table)
    assert len(table["models"]) >= 4
    params = [m["params"] for m in table["models"]]
    assert params == sorted(params)
    assert table["fit"]["b"] > 0  # more compute, lower loss
    assert len(table["seeds"]) >= 2 and 0 <= table["fit"]["r2_log"] <= 1


LONG_KINDS = ("transformer", "transformer_c96", "lstm")


def check_long_layout(table: dict) -> None:
    for key in (
        "seeds",
        "data",
        "budget_cpu_seconds",
        "training",
        "ngram",
        "models",
        "verdict",
        "notes",
        "machine",
    ):
        assert key in table, key
    assert sorted(table["models"]) == sorted(LONG_KINDS)
    budget = table["budget_cpu_seconds"]
    for kind, model in table["models"].items():
        assert sorted(model["per_seed"]) == sorted(map(str, table["seeds"]))
        assert model["summary"]["bpc"] == seed_spread(
            [r["bpc"] for r in model["per_seed"].values()]
        )
        for run in model["per_seed"].values():
            assert run["kind"] == kind and 0 < run["bpc"] < 8
            # every network gets the same CPU budget, stopping at the first step past it
            assert budget <= run["cpu_seconds"] < budget + 2.0
            assert run["tokens"] == run["steps"] * table["training"]["tokens_per_batch"]
            assert run["lr"] == table["training"]["peak_lr"][kind]
            assert 2 <= len(run["curve"]) <= 12
            assert all(s.startswith(table["prompt"]) for s in run["samples"].values())
    verdict = table["verdict"]
    assert verdict["bpc"]["ngram"] == table["ngram"]["bpc"]
    for kind in LONG_KINDS:
        assert verdict["bpc"][kind] == table["models"][kind]["summary"]["bpc"]["mean"]
    assert verdict["winner"] == min(verdict["bpc"], key=verdict["bpc"].get)
    best_other = min(
        table["models"]["lstm"]["summary"]["bpc"]["min"], table["ngram"]["bpc"]
    )
    for kind, wins in verdict["beats_both_every_seed"].items():
        assert wins == (table["models"][kind]["summary"]["bpc"]["max"] < best_other)


def test_long_budget_quick_run_writes_the_table(tmp_path):
    table = run_quick("ch10_long", tmp_path / "l.json")
    assert table["quick"] is True
    check_long_layout(table)


def test_stored_long_budget_is_consistent(baselines):
    table = experiment_results("ch10_long", start=ROOT)
    assert table["quick"] is False
    check_long_layout(table)
    assert table["budget_cpu_seconds"] >= 10 * baselines["budget_cpu_seconds"]
    # the same validation text as the short runs: the refitted counts score it the same
    assert table["data"]["n_valid_chars"] == baselines["data"]["n_valid_chars"]
    assert math.isclose(
        table["ngram"]["bpc"], baselines["ngram"]["7"]["bpc"], rel_tol=1e-9
    )
