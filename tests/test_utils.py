import random

import numpy as np
import pytest
import torch
from torch import nn

from transformer.utils import (
    book_seed,
    count_parameters,
    get_device,
    seed_everything,
    timer,
)


def test_get_device_returns_an_available_device():
    device = get_device()
    assert device.type in ("cpu", "cuda", "mps")
    if not torch.cuda.is_available() and device.type == "cuda":
        pytest.fail("picked CUDA without CUDA")
    torch.zeros(2, device=device)  # actually usable


def test_get_device_prefers_cuda_when_present(monkeypatch):
    monkeypatch.delenv("TRANSFORMER_DEVICE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert get_device().type == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr("transformer.utils._mps_available", lambda: True)
    assert get_device().type == "mps"
    monkeypatch.setattr("transformer.utils._mps_available", lambda: False)
    assert get_device().type == "cpu"


def test_get_device_explicit_choice_and_errors(monkeypatch):
    assert get_device("cpu") == torch.device("cpu")
    monkeypatch.setenv("TRANSFORMER_DEVICE", "cpu")
    assert get_device().type == "cpu"
    with pytest.raises(ValueError, match="unknown device"):
        get_device("tpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="CUDA was requested"):
        get_device("cuda")


def test_seed_everything_makes_all_generators_repeatable():
    def draw():
        return random.random(), np.random.rand(), torch.rand(3).tolist()

    g1 = seed_everything(123)
    first = draw()
    a = torch.rand(2, generator=g1)
    g2 = seed_everything(123)
    assert draw() == first
    assert torch.equal(torch.rand(2, generator=g2), a)
    seed_everything(124)
    assert draw() != first


@pytest.mark.parametrize("bad", [-1, 1.5, "3", True])
def test_seed_everything_rejects_bad_seeds(bad):
    with pytest.raises(ValueError):
        seed_everything(bad)


def test_count_parameters():
    model = nn.Linear(3, 4)
    assert count_parameters(model) == 3 * 4 + 4
    model.bias.requires_grad_(False)
    assert count_parameters(model) == 12
    assert count_parameters(model, trainable_only=False) == 16


def test_timer_reports_the_clock_difference(monkeypatch):
    # A fake clock, so the test checks the arithmetic and never depends on the machine's
    # load.
    ticks = iter([10.0, 12.5])
    monkeypatch.setattr("transformer.utils.time.perf_counter", lambda: next(ticks))
    with timer() as t:
        pass
    assert t == {"seconds": 2.5}


def test_book_seed_reads_the_environment(monkeypatch):
    monkeypatch.delenv("BOOK_SEED", raising=False)
    assert book_seed() == 0
    monkeypatch.setenv("BOOK_SEED", "")
    assert book_seed() == 0
    monkeypatch.setenv("BOOK_SEED", " 7 ")
    assert book_seed() == 7
    for bad in ("-1", "one", "1.5"):
        monkeypatch.setenv("BOOK_SEED", bad)
        with pytest.raises(
            ValueError, match="BOOK_SEED must be a non-negative integer"
        ):
            book_seed()


def test_experiment_results_walks_up_and_explains_a_missing_table(tmp_path):
    from transformer.utils import experiment_results, machine_summary

    results = tmp_path / "experiments" / "results"
    results.mkdir(parents=True)
    (results / "ch99_demo.json").write_text('{"seeds": [0, 1, 2]}')
    nested = tmp_path / "notebooks"
    nested.mkdir()
    assert experiment_results("ch99_demo", start=nested) == {"seeds": [0, 1, 2]}
    with pytest.raises(FileNotFoundError, match="python experiments/ch99_other.py"):
        experiment_results("ch99_other", start=nested)
    summary = machine_summary()
    assert summary["torch"] == torch.__version__ and summary["cores"] >= 1


def test_seed_spread_of_numbers_and_of_curves():
    from transformer.utils import seed_spread

    s = seed_spread([0.9, 0.8, 1.0])
    assert s["mean"] == pytest.approx(0.9) and s["std"] == pytest.approx(0.1)
    assert (s["min"], s["max"]) == (0.8, 1.0)
    assert seed_spread([0.5]) == {"mean": 0.5, "std": 0.0, "min": 0.5, "max": 0.5}
    curves = seed_spread([[1.0, 2.0], [3.0, 4.0]])
    assert curves["mean"] == [2.0, 3.0] and curves["min"] == [1.0, 2.0]
    with pytest.raises(ValueError, match="one value"):
        seed_spread([])
