"""The training entry point (chapter 14): accumulation, resume, precision, flags."""

from __future__ import annotations

import json
import random
from dataclasses import replace

import numpy as np
import pytest
import torch

from transformer.lm import lm_loss
from transformer.resume import get_rng_state, set_rng_state
from transformer.train import (
    TrainConfig,
    build_model,
    enable_activation_checkpointing,
    main,
    parse_args,
    run,
)

TINY = TrainConfig(
    d_model=32,
    n_heads=2,
    n_layers=2,
    d_ff=64,
    block_size=16,
    batch_size=4,
    accum=1,
    steps=4,
    warmup=2,
    lr=1e-3,
    eval_blocks=2,
    log_every=100,
    device="cpu",
)


def _max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    return max(float((a[k] - b[k]).abs().max()) for k in a)


@pytest.mark.timeout(60)
def test_k_micro_batches_of_b_equal_one_batch_of_kb():
    exact = replace(TINY, precision="fp64")
    one = run(replace(exact, batch_size=8, accum=1))
    four = run(replace(exact, batch_size=2, accum=4))
    assert _max_diff(one["params"], four["params"]) < 1e-6
    assert max(abs(a - b) for a, b in zip(one["losses"], four["losses"])) < 1e-9
    two = run(replace(exact, batch_size=4, accum=1))  # half the batch: another step
    assert _max_diff(one["params"], two["params"]) > 1e-4


def test_accumulated_gradients_equal_the_big_batch_in_float32():
    torch.manual_seed(0)
    model = build_model(TINY)
    x = torch.randint(256, (8, 16))
    y = torch.randint(256, (8, 16))
    lm_loss(model(x), y).backward()
    full = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    for i in range(4):
        part = slice(2 * i, 2 * i + 2)
        (lm_loss(model(x[part]), y[part]) / 4).backward()
    for g, p in zip(full, model.parameters()):
        torch.testing.assert_close(p.grad, g, atol=1e-6, rtol=1e-5)


@pytest.mark.timeout(90)
def test_resume_gives_the_same_loss_curve_bitwise(tmp_path):
    noisy = replace(TINY, dropout=0.1, steps=6, accum=2)  # dropout: the RNG matters
    whole = run(replace(noisy, out=str(tmp_path / "whole")))
    stopped = run(replace(noisy, out=str(tmp_path / "cut"), stop_after=3))
    assert len(stopped["losses"]) == 3 and stopped["valid_loss"] is None
    resumed = run(replace(noisy, out=str(tmp_path / "cut"), resume=True))
    assert resumed["losses"] == whole["losses"]  # floats, compared exactly
    assert all(torch.equal(resumed["params"][k], v) for k, v in whole["params"].items())
    assert resumed["valid_loss"] == whole["valid_loss"]
    # without the saved random states the curve would differ: dropout draws again
    state = torch.load(tmp_path / "cut" / "state.pt", weights_only=True)
    assert state["step"] == 6 and len(state["rng"]) == 1
    assert not [p.name for p in (tmp_path / "cut").iterdir() if p.suffix == ".tmp"]


@pytest.mark.timeout(90)
def test_resume_without_the_rng_state_differs(tmp_path, monkeypatch):
    noisy = replace(TINY, dropout=0.1, steps=4)
    whole = run(replace(noisy, out=str(tmp_path / "whole")))
    run(replace(noisy, out=str(tmp_path / "cut"), stop_after=2))
    monkeypatch.setattr("transformer.train.set_rng_state", lambda state: None)
    forgetful = run(replace(noisy, out=str(tmp_path / "cut"), resume=True))
    assert forgetful["losses"][:2] == whole["losses"][:2]
    assert forgetful["losses"][2:] != whole["losses"][2:]


def test_resume_refuses_other_settings(tmp_path):
    run(replace(TINY, out=str(tmp_path), stop_after=1))
    with pytest.raises(ValueError, match="other settings"):
        run(replace(TINY, out=str(tmp_path), resume=True, d_model=16))


def test_rng_state_round_trips_through_a_weights_only_file(tmp_path):
    torch.save(get_rng_state(), tmp_path / "rng.pt")
    first = (random.random(), float(np.random.rand()), float(torch.rand(())))
    set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    again = (random.random(), float(np.random.rand()), float(torch.rand(())))
    assert first == again


def _saved_bytes(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> int:
    sizes = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        sizes.append(t.numel() * t.element_size())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = lm_loss(model(x), y)
    loss.backward()
    return sum(sizes)


def test_activation_checkpointing_gives_the_same_gradients_with_less_saved():
    config = replace(TINY, dropout=0.1)
    x, y = torch.randint(256, (4, 16)), torch.randint(256, (4, 16))
    grads, saved = [], []
    for checkpointed in (False, True):
        torch.manual_seed(0)
        model = build_model(config)
        if checkpointed:
            enable_activation_checkpointing(model)
        torch.manual_seed(1)  # the same dropout masks
        saved.append(_saved_bytes(model, x, y))
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    assert _max_diff(grads[0], grads[1]) < 1e-6
    assert saved[1] < 0.6 * saved[0]
    assert list(grads[0]) == list(grads[1])  # the weights keep their names


@pytest.mark.timeout(60)
def test_bf16_trains_close_to_fp32():
    fp32 = run(replace(TINY, steps=6))
    bf16 = run(replace(TINY, steps=6, precision="bf16"))
    assert abs(fp32["losses"][-1] - bf16["losses"][-1]) < 0.05
    assert fp32["losses"] != bf16["losses"]  # it did compute in another precision


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (dict(precision="fp8"), "precision must be one of"),
        (dict(batch_size=0), "batch_size must be a positive int"),
        (dict(stop_after=2), "need an out folder"),
        (dict(stop_after=9, out="x"), "stop_after must be in"),
        (dict(dropout=1.0), "dropout must be in"),
    ],
)
def test_bad_settings_are_refused(fields, message):
    with pytest.raises(ValueError, match=message):
        replace(TINY, **fields)


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU fp16 is allowed")
def test_fp16_needs_cuda():
    with pytest.raises(ValueError, match="needs CUDA"):
        run(replace(TINY, precision="fp16"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="fp16 scaling needs CUDA")
@pytest.mark.timeout(120)
def test_fp16_with_the_scaler_resumes_exactly_on_cuda(tmp_path):
    gpu = replace(TINY, precision="fp16", device="cuda", steps=4)
    whole = run(replace(gpu, out=str(tmp_path / "a")))
    run(replace(gpu, out=str(tmp_path / "b"), stop_after=2))
    resumed = run(replace(gpu, out=str(tmp_path / "b"), resume=True))
    assert resumed["losses"] == whole["losses"]
    state = torch.load(tmp_path / "b" / "state.pt", weights_only=True)
    assert state["scaler"]["scale"] > 0


def test_flags_override_the_config_file(tmp_path):
    path = tmp_path / "run.json"
    path.write_text(json.dumps(dict(d_model=48, steps=7, compile=True)))
    config = parse_args(["--config", str(path), "--steps", "9", "--no-compile"])
    assert (config.d_model, config.steps, config.compile) == (48, 9, False)
    path.write_text(json.dumps(dict(d_modle=48)))
    with pytest.raises(SystemExit):
        parse_args(["--config", str(path)])
    with pytest.raises(SystemExit):
        parse_args(["--precision", "fp8"])


@pytest.mark.timeout(60)
def test_the_command_line_logs_and_saves(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["--d-model", "32", "--n-heads", "2", "--d-ff", "64", "--block-size", "16"]
    argv += ["--steps", "4", "--log-every", "2", "--device", "cpu", "--out", str(out)]
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("1 process(es), fp32")
    assert [line.split()[1] for line in lines if line.startswith("step")] == [
        "2/4",
        "4/4",
    ]
    logged = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged] == [1, 2, 3, 4]
    assert {p.name for p in out.iterdir()} == {"log.jsonl", "model.pt", "state.pt"}
