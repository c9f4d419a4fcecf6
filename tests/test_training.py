"""The training loop and evaluation, on models small or scripted enough to reason
about."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from transformer.tasks import load_task
from transformer.training import History, evaluate, sequence_cross_entropy, train

PAD = 0


def test_cross_entropy_is_the_mean_over_real_tokens_only() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 5)
    targets = torch.tensor([[3, 4, 2, PAD], [4, PAD, PAD, PAD]])
    real = [(0, 0), (0, 1), (0, 2), (1, 0)]
    by_hand = (
        -sum(torch.log_softmax(logits[b, t], -1)[targets[b, t]] for b, t in real) / 4
    )
    torch.testing.assert_close(sequence_cross_entropy(logits, targets, PAD), by_hand)
    torch.testing.assert_close(
        sequence_cross_entropy(logits, targets, PAD, "sum"), by_hand * 4
    )
    per_token = sequence_cross_entropy(logits, targets, PAD, "none")
    assert per_token.shape == (2, 4) and bool((per_token[targets == PAD] == 0).all())


def test_logits_at_padding_change_neither_loss_nor_gradients() -> None:
    torch.manual_seed(0)
    targets = torch.tensor([[3, 4, 2, PAD, PAD], [4, 2, PAD, PAD, PAD]])
    logits = torch.randn(2, 5, 6, requires_grad=True)
    loss = sequence_cross_entropy(logits, targets, PAD)
    loss.backward()
    grad = logits.grad.clone()
    assert bool((grad[targets == PAD] == 0).all())
    assert bool((grad[targets != PAD].abs().sum(-1) > 0).all())

    wild = logits.detach().clone()
    wild[targets == PAD] = 100 * torch.randn(int((targets == PAD).sum()), 6)
    wild.requires_grad_(True)
    wild_loss = sequence_cross_entropy(wild, targets, PAD)
    wild_loss.backward()
    torch.testing.assert_close(wild_loss, loss)
    torch.testing.assert_close(wild.grad, grad)


def test_all_padding_batch_gives_zero_not_nan() -> None:
    loss = sequence_cross_entropy(
        torch.randn(1, 3, 4), torch.zeros(1, 3, dtype=torch.long), PAD
    )
    assert loss.item() == 0.0


def test_cross_entropy_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="targets must have shape"):
        sequence_cross_entropy(
            torch.randn(2, 4, 5), torch.zeros(2, 3, dtype=torch.long), PAD
        )
    with pytest.raises(ValueError, match=r"\(B, T, V\)"):
        sequence_cross_entropy(torch.randn(8, 5), torch.zeros(8, dtype=torch.long), PAD)


class PadProbe(nn.Module):
    """A tiny decoder-only model with one extra parameter used only at padding
    positions.

    If the training loss counted padding, ``pad_logits`` would receive gradient
    and move; with a padding-aware loss it must stay exactly where it started.
    """

    pad_id = PAD

    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, 16)
        self.out = nn.Linear(16, vocab)
        self.pad_logits = nn.Parameter(torch.randn(vocab))

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        logits = self.out(self.embed(tgt_in))  # (B, T, V)
        # tgt_in is padding exactly where tgt_out is padding (both are right-padded).
        at_pad = (tgt_in == PAD)[..., None]  # (B, T, 1)
        return torch.where(at_pad, self.pad_logits.expand_as(logits), logits)

    def start(self, src: torch.Tensor) -> None:
        return None

    def step(self, prev: torch.Tensor, state: None) -> tuple[torch.Tensor, None]:
        return self.out(self.embed(prev)), None  # (B, V)


@pytest.fixture(scope="module")
def copy_data():
    return load_task(
        "copy", n_train=96, n_val=32, n_test=8, min_len=1, max_len=6, seed=3
    )


def test_train_never_updates_what_only_padding_sees(copy_data) -> None:
    torch.manual_seed(0)
    model = PadProbe(len(copy_data.tgt_vocab))
    before = model.pad_logits.detach().clone()
    out_before = model.out.weight.detach().clone()
    history = train(
        model, copy_data.loader("train", batch_size=32), steps=6, progress=False
    )
    assert torch.equal(model.pad_logits.detach(), before)
    assert not torch.equal(model.out.weight.detach(), out_before)  # the rest did train
    assert history.total_steps == 6


def test_history_logging_scheduler_and_evaluation(copy_data) -> None:
    torch.manual_seed(0)
    model = PadProbe(len(copy_data.tgt_vocab))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 1.0 / (step + 1)
    )
    history = train(
        model,
        copy_data.loader("train", batch_size=32),
        val_loader=copy_data.loader("val", batch_size=16),
        steps=7,
        optimizer=optimizer,
        scheduler=scheduler,
        log_every=3,
        eval_every=5,
        progress=False,
    )
    assert isinstance(history, History)
    assert history.steps == [3, 6, 7]
    # The scheduler advanced once per optimizer step: after step s the factor is
    # 1/(s+1).
    assert history.learning_rate == pytest.approx([0.5 / 4, 0.5 / 7, 0.5 / 8])
    assert history.eval_steps == [5, 7]
    assert len(history.val_loss) == len(history.val_exact_match) == 2
    assert all(math.isfinite(x) for x in history.train_loss + history.grad_norm)
    assert history.seconds > 0
    assert set(history.as_dict()) >= {"train_loss", "val_exact_match"}


def test_epochs_count_passes_over_the_loader(copy_data) -> None:
    model = PadProbe(len(copy_data.tgt_vocab))
    history = train(
        model, copy_data.loader("train", batch_size=32), epochs=2, progress=False
    )
    assert history.total_steps == 2 * math.ceil(96 / 32)


def test_train_argument_errors(copy_data) -> None:
    model = PadProbe(len(copy_data.tgt_vocab))
    loader = copy_data.loader("train", batch_size=32)
    with pytest.raises(ValueError, match="exactly one of steps= or epochs="):
        train(model, loader, progress=False)
    with pytest.raises(ValueError, match="exactly one of steps= or epochs="):
        train(model, loader, steps=3, epochs=1, progress=False)
    with pytest.raises(ValueError, match="steps must be a positive int"):
        train(model, loader, steps=0, progress=False)


def test_vocabulary_mismatch_is_reported_before_training(copy_data) -> None:
    small = PadProbe(len(copy_data.tgt_vocab) - 3)  # digits 7, 8, 9 do not fit
    # so the forward pass itself runs
    small.embed = nn.Embedding(len(copy_data.tgt_vocab), 16)
    with pytest.raises(ValueError, match="does not fit the model's output vocabulary"):
        train(small, copy_data.loader("train", batch_size=32), steps=1, progress=False)


def test_non_finite_loss_stops_training_with_advice(copy_data) -> None:
    class Exploding(PadProbe):
        def forward(self, src, tgt_in):
            return super().forward(src, tgt_in) * float("nan")

    with pytest.raises(FloatingPointError, match="smaller learning rate"):
        train(
            Exploding(len(copy_data.tgt_vocab)),
            copy_data.loader("train", batch_size=32),
            steps=2,
            log_every=1,
            clip_norm=None,
            progress=False,
        )


class CopyOracle(nn.Module):
    """Answers the copy task perfectly, except that it writes ``wrong`` at
    position ``err_at`` of every source at least ``err_at + 1`` long."""

    pad_id = PAD

    def __init__(
        self, vocab: int, eos_id: int, err_at: int | None = None, wrong: int = 4
    ):
        super().__init__()
        self.vocab, self.eos_id, self.err_at, self.wrong = vocab, eos_id, err_at, wrong
        self.dummy = nn.Parameter(torch.zeros(1))

    def _answer(self, src: torch.Tensor, t: int) -> torch.Tensor:
        lengths = (src != PAD).sum(1)  # (B,)
        token = src[:, t] if t < src.size(1) else torch.full_like(lengths, PAD)
        token = torch.where(lengths == t, torch.full_like(token, self.eos_id), token)
        if self.err_at is not None and t == self.err_at:
            token = torch.where(lengths > t, torch.full_like(token, self.wrong), token)
        return torch.nn.functional.one_hot(token, self.vocab).float() * 10  # (B, V)

    def forward(self, src, tgt_in):
        return torch.stack([self._answer(src, t) for t in range(tgt_in.size(1))], 1)

    def start(self, src):
        return src, 0

    def step(self, prev, state):
        src, t = state
        return self._answer(src, t), (src, t + 1)


def test_evaluate_counts_tokens_and_whole_sequences(copy_data) -> None:
    vocab = copy_data.tgt_vocab
    loader = copy_data.loader("val", batch_size=10)
    perfect = evaluate(CopyOracle(len(vocab), vocab.eos_id), loader)
    assert perfect["token_accuracy"] == 1.0 and perfect["exact_match"] == 1.0
    assert perfect["n_sequences"] == 32
    assert perfect["n_tokens"] == sum(len(t) + 1 for _, t in copy_data.val)

    # Wrong third token: every target of 3+ digits is lost, and exactly one token of it.
    # Digit "0" (id 4) is the wrong answer; sources whose third digit is "0" stay right.
    flawed = evaluate(CopyOracle(len(vocab), vocab.eos_id, err_at=2, wrong=4), loader)
    spoiled = [t for _, t in copy_data.val if len(t) >= 3 and t[2] != "0"]
    assert len(spoiled) > 0
    assert flawed["exact_match"] == pytest.approx(1 - len(spoiled) / 32)
    assert flawed["token_accuracy"] == pytest.approx(
        1 - len(spoiled) / perfect["n_tokens"]
    )
    assert math.isnan(
        evaluate(CopyOracle(len(vocab), 2), loader, exact_match=False)["exact_match"]
    )
