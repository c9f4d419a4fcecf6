"""Tests of the chapter 9 additions to transformer.training, and a copy task that
learns."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from transformer.config import TransformerConfig
from transformer.decoding import greedy_decode
from transformer.label_smoothing import (
    label_smoothed_cross_entropy,
    label_smoothing_loss,
)
from transformer.model import Transformer
from transformer.schedules import (
    noam_rate,
    warmup_inverse_sqrt,
    warmup_inverse_sqrt_scheduler,
)
from transformer.tasks import load_task
from transformer.training import evaluate, sequence_cross_entropy, train
from transformer.utils import seed_everything


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.3])
def test_label_smoothing_matches_pytorch(smoothing: float) -> None:
    torch.manual_seed(0)
    logits = torch.randn(4, 6, 11, requires_grad=True)
    targets = torch.randint(1, 11, (4, 6))
    targets[0, 3:] = 0
    targets[2, 1:] = 0
    ours = label_smoothed_cross_entropy(logits, targets, pad_id=0, smoothing=smoothing)
    ref = F.cross_entropy(
        logits.reshape(-1, 11),
        targets.reshape(-1),
        ignore_index=0,
        label_smoothing=smoothing,
    )
    torch.testing.assert_close(ours, ref)
    g_ours = torch.autograd.grad(ours, logits)[0]
    g_ref = torch.autograd.grad(ref, logits)[0]
    torch.testing.assert_close(g_ours, g_ref)
    assert float(g_ours[2, 1:].abs().max()) == 0.0  # padding gets no gradient
    if smoothing == 0.0:
        torch.testing.assert_close(ours, sequence_cross_entropy(logits, targets, 0))


def test_label_smoothing_minimum_is_entropy_of_smoothed_target() -> None:
    """A perfect one-hot prediction is *penalised*; the optimum keeps eps/V
    everywhere."""
    V, eps = 5, 0.2
    target = torch.tensor([[2]])
    q = torch.full((V,), eps / V)
    q[2] += 1 - eps
    best = label_smoothed_cross_entropy(
        q.log().view(1, 1, V), target, pad_id=0, smoothing=eps
    )
    entropy = -(q * q.log()).sum()
    torch.testing.assert_close(best, entropy)
    confident = torch.full((1, 1, V), -20.0)
    confident[0, 0, 2] = 20.0
    assert label_smoothed_cross_entropy(confident, target, 0, eps) > best + 1.0


def test_label_smoothing_errors() -> None:
    with pytest.raises(ValueError, match="smoothing"):
        label_smoothing_loss(0, smoothing=1.0)
    with pytest.raises(ValueError, match="targets must have shape"):
        label_smoothed_cross_entropy(
            torch.randn(2, 3, 4), torch.zeros(2, 4, dtype=torch.long), 0
        )


def test_schedule_values_at_known_steps() -> None:
    # the paper's base model: d_model 512, 4000 warm-up steps -> peak 7.0e-4 at step
    # 4000
    assert math.isclose(noam_rate(4000, 512, 4000), 512**-0.5 * 4000**-0.5)
    assert math.isclose(noam_rate(4000, 512, 4000), 6.9877e-4, rel_tol=1e-4)
    assert math.isclose(noam_rate(1, 512, 4000), 512**-0.5 * 4000**-1.5)
    assert math.isclose(noam_rate(16000, 512, 4000), noam_rate(4000, 512, 4000) / 2)
    assert math.isclose(noam_rate(2000, 512, 4000), noam_rate(4000, 512, 4000) / 2)
    assert warmup_inverse_sqrt(50, 100) == 0.5 and warmup_inverse_sqrt(400, 100) == 0.5
    for s in (1, 10, 4000, 9000):
        ratio = noam_rate(s, 256, 4000) * math.sqrt(256 * 4000)
        assert math.isclose(warmup_inverse_sqrt(s, 4000), ratio)


def test_scheduler_drives_optimizer_like_the_formula() -> None:
    p = torch.nn.Parameter(torch.zeros(1))
    peak = 1 / math.sqrt(64 * 10)
    opt = torch.optim.Adam([p], lr=peak)
    sched = warmup_inverse_sqrt_scheduler(opt, warmup=10)
    seen = []
    for _ in range(40):
        seen.append(opt.param_groups[0]["lr"])  # the rate this optimizer step uses
        opt.step()
        sched.step()
    expected = [noam_rate(s, 64, 10) for s in range(1, 41)]
    for a, b in zip(seen, expected):
        assert math.isclose(a, b, rel_tol=1e-9)
    assert max(seen) == seen[9]  # peak at step 10 = warmup
    with pytest.raises(ValueError, match="warmup"):
        warmup_inverse_sqrt_scheduler(opt, warmup=0)


def test_small_transformer_learns_copy_task() -> None:
    """Trains in seconds: reuses the chapter 4 loop with the chapter 9 loss and
    schedule."""
    seed_everything(0)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    task = load_task("copy", n_train=2000, n_val=100, n_test=100, min_len=2, max_len=6)
    config = TransformerConfig(
        src_vocab_size=len(task.src_vocab),
        tgt_vocab_size=len(task.tgt_vocab),
        d_model=32,
        n_heads=2,
        n_encoder_layers=1,
        n_decoder_layers=1,
        d_ff=64,
        dropout=0.0,
    )
    model = Transformer(config)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3, betas=(0.9, 0.98))
    history = train(
        model,
        task.loader("train", batch_size=64, shuffle=True),
        steps=300,
        optimizer=opt,
        scheduler=warmup_inverse_sqrt_scheduler(opt, warmup=50),
        loss_fn=label_smoothing_loss(model.pad_id, 0.05),
        progress=False,
    )
    assert history.learning_rate[4] > history.learning_rate[0]  # warming up
    assert history.train_loss[-1] < history.train_loss[0] / 3
    metrics = evaluate(model, task.loader("test", batch_size=100))
    assert metrics["exact_match"] >= 0.9, metrics
    batch = next(iter(task.loader("test", batch_size=4)))
    out = greedy_decode(
        model, batch.src, 10, task.tgt_vocab.bos_id, task.tgt_vocab.eos_id, 0
    )
    assert task.tgt_vocab.decode(out[0]) == task.src_vocab.decode(batch.src[0])
