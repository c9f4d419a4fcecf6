"""A reusable training loop and evaluation for sequence-to-sequence models.

Every sequence-to-sequence model of the book (the recurrent encoder-decoder of
chapter 4, its attention version in chapter 5, the Transformer of chapter 9)
trains with the same loop: teacher forcing (the decoder reads the true previous
token, Williams & Zipser, 1989), a cross-entropy that ignores padding, gradient
clipping (Pascanu et al., 2013) and an optional learning-rate schedule. The loop
only assumes the model protocol of the book:

- ``model.pad_id``: the padding id of the target vocabulary;
- ``model(src (B, S), tgt_in (B, T)) -> logits (B, T, V)``;
- ``model.start(src)`` and ``model.step(prev, state)`` for greedy decoding
  (used by :func:`evaluate` for exact-match accuracy).

Batches are objects with ``src``, ``tgt_in``, ``tgt_out`` and ``to(device)``,
as :class:`transformer.data.Batch`.

Shape letters: B batch, S source length, T target length, V vocabulary.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from transformer.data import Vocab
from transformer.decoding import greedy_decode

__all__ = ["History", "sequence_cross_entropy", "train", "evaluate"]

#: The end-of-sequence id of every :class:`transformer.data.Vocab` (its fixed layout).
DEFAULT_EOS_ID = Vocab.eos_id

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class History:
    """What happened during :func:`train`, as plain lists that are easy to plot.

    Attributes:
        steps: optimizer step at which each ``train_loss`` entry was logged.
        train_loss: mean training loss (per token) over the steps since the last log.
        learning_rate: learning rate of the first parameter group at each log.
        grad_norm: gradient norm before clipping, averaged like ``train_loss``.
        eval_steps: optimizer step of each evaluation.
        val_loss, val_token_accuracy, val_exact_match: :func:`evaluate` results.
        seconds: wall time of the whole call, evaluation included.
        total_steps: number of optimizer steps taken.
    """

    steps: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    learning_rate: list[float] = field(default_factory=list)
    grad_norm: list[float] = field(default_factory=list)
    eval_steps: list[int] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_token_accuracy: list[float] = field(default_factory=list)
    val_exact_match: list[float] = field(default_factory=list)
    seconds: float = 0.0
    total_steps: int = 0

    def as_dict(self) -> dict[str, Any]:
        """The history as a dictionary (for ``json.dump`` or a DataFrame)."""
        return asdict(self)


def sequence_cross_entropy(
    logits: torch.Tensor,
    targets: torch.Tensor,
    pad_id: int,
    reduction: str = "mean",
) -> torch.Tensor:
    """Cross-entropy over the real tokens of a padded batch.

    Padding positions carry no label: they are left out of both the sum and
    the count, so a batch's loss does not depend on how much padding it holds
    and the logits at padding positions receive no gradient.

    Args:
        logits: unnormalised scores for every target position.
        targets: the labels (``tgt_out``), ``pad_id`` where there is no token.
        pad_id: the padding id to ignore.
        reduction: ``"mean"`` (per real token), ``"sum"`` or ``"none"``
            (per position, zero at padding).

    Shape:
        logits: (B, T, V), targets: (B, T) long -> scalar, or (B, T) for "none".
    """
    if logits.dim() != 3:
        raise ValueError(f"logits must have shape (B, T, V), got {tuple(logits.shape)}")
    if targets.shape != logits.shape[:2]:
        raise ValueError(
            f"targets must have shape (B, T) = {tuple(logits.shape[:2])} to match the "
            f"logits, got {tuple(targets.shape)}"
        )
    if targets.dtype != torch.long:
        raise TypeError(
            f"targets must be token ids of dtype torch.long, got {targets.dtype}"
        )
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(
            f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}"
        )
    vocab = logits.size(-1)
    per_token = F.cross_entropy(
        logits.reshape(-1, vocab),  # (B*T, V)
        targets.reshape(-1),  # (B*T,)
        ignore_index=pad_id,
        reduction="none",
    ).view_as(targets)  # (B, T); zero at padding
    if reduction == "none":
        return per_token
    total = per_token.sum()
    if reduction == "sum":
        return total
    # Dividing by the tensor count avoids a device sync; clamp keeps an
    # all-padding batch at 0 instead of NaN.
    n_real = (targets != pad_id).sum().clamp(min=1)
    return total / n_real


def _model_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def _check_batch_fits(model: nn.Module, batch: Any, logits: torch.Tensor) -> None:
    """Catch a vocabulary mismatch once, on the first batch, with a clear message."""
    vocab = logits.size(-1)
    top = int(batch.tgt_out.max())
    if top >= vocab:
        raise ValueError(
            f"target token id {top} does not fit the model's output vocabulary of size "
            f"{vocab}; build the model with the vocabulary of the data "
            "(len(task.tgt_vocab))"
        )


def _infinite(loader: Iterable[Any]) -> Iterator[Any]:
    while True:
        empty = True
        for batch in loader:
            empty = False
            yield batch
        if empty:
            raise ValueError("train_loader yielded no batches")


def train(
    model: nn.Module,
    train_loader: Iterable[Any],
    *,
    val_loader: Iterable[Any] | None = None,
    steps: int | None = None,
    epochs: int | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    lr: float = 1e-3,
    scheduler: Any | None = None,
    loss_fn: LossFn | None = None,
    clip_norm: float | None = 1.0,
    eval_every: int | None = None,
    eval_batches: int | None = None,
    eval_exact_match: bool = True,
    log_every: int = 10,
    device: torch.device | str | None = None,
    progress: bool = True,
) -> History:
    """Train a sequence-to-sequence model with teacher forcing.

    Each step: ``logits = model(batch.src, batch.tgt_in)``, ``loss =
    loss_fn(logits, batch.tgt_out)``, backward, clip the gradient norm, optimizer
    step, then scheduler step (the schedule advances per optimizer step, not per
    epoch). The loss is only copied to the host every ``log_every`` steps, so the
    loop does not wait on the device more than logging needs.

    Args:
        model: follows the book's seq2seq protocol (``pad_id``, ``forward``,
            ``start``, ``step``).
        train_loader: iterable of batches (``src``, ``tgt_in``, ``tgt_out``,
            ``to``); re-iterated as often as ``steps`` needs.
        val_loader: batches for :func:`evaluate`; ``None`` skips evaluation.
        steps: number of optimizer steps. Give exactly one of ``steps`` and
            ``epochs``.
        epochs: number of passes over ``train_loader`` (needs ``len``).
        optimizer: defaults to Adam over all parameters with learning rate ``lr``.
        lr: learning rate of the default optimizer (ignored if ``optimizer`` is given).
        scheduler: anything with ``step()`` (e.g.
            ``torch.optim.lr_scheduler.LambdaLR``), stepped once per optimizer step.
        loss_fn: ``loss_fn(logits (B, T, V), tgt_out (B, T)) -> scalar``; defaults to
            :func:`sequence_cross_entropy` ignoring ``model.pad_id``.
        clip_norm: clip the global gradient norm to this value; ``None`` disables.
        eval_every: evaluate every this many steps (and always at the end when a
            ``val_loader`` is given).
        eval_batches: evaluate on at most this many validation batches.
        eval_exact_match: also run greedy decoding for exact-match accuracy.
        log_every: record the training loss every this many steps.
        device: where to train; ``None`` keeps the model where it is.
        progress: show a ``tqdm`` progress bar.

    Returns:
        A :class:`History`.
    """
    if (steps is None) == (epochs is None):
        raise ValueError("give exactly one of steps= or epochs=")
    if epochs is not None:
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
            raise ValueError(f"epochs must be a positive int, got {epochs!r}")
        try:
            steps = epochs * len(train_loader)  # type: ignore[arg-type]  # no len(): caught
        except TypeError as err:
            raise TypeError(
                "epochs= needs a train_loader with len(); pass steps= instead"
            ) from err
    assert steps is not None
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    if log_every < 1:
        raise ValueError(f"log_every must be >= 1, got {log_every}")
    if eval_every is not None and eval_every < 1:
        raise ValueError(f"eval_every must be >= 1 or None, got {eval_every}")
    if clip_norm is not None and clip_norm <= 0:
        raise ValueError(f"clip_norm must be positive or None, got {clip_norm}")
    if loss_fn is None:
        if not hasattr(model, "pad_id"):
            raise AttributeError(
                "the model has no pad_id; give it one or pass loss_fn="
            )
        pad_id = int(cast(Any, model).pad_id)  # the protocol's, unknown to nn.Module

        def loss_fn(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
            return sequence_cross_entropy(logits, targets, pad_id)

    device = _model_device(model) if device is None else torch.device(device)
    model.to(device)
    if optimizer is None:
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)

    from tqdm.auto import tqdm  # imported here so importing the module stays light

    history = History()
    start_time = time.perf_counter()
    running_loss = torch.zeros((), device=device)
    running_norm = torch.zeros((), device=device)
    since_log = 0
    bar = tqdm(total=steps, disable=not progress, desc="training", leave=False)
    batches = _infinite(train_loader)
    model.train()
    try:
        for step in range(1, steps + 1):
            batch = next(batches).to(device)
            logits = model(batch.src, batch.tgt_in)  # (B, T, V)
            if step == 1:
                _check_batch_fits(model, batch, logits)
            loss = loss_fn(logits, batch.tgt_out)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if clip_norm is not None:
                norm = nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
                running_norm += norm.detach()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            running_loss += loss.detach()
            since_log += 1

            if step % log_every == 0 or step == steps:
                mean_loss = running_loss.item() / since_log  # the one sync per log
                if not math.isfinite(mean_loss):
                    raise FloatingPointError(
                        f"training loss became {mean_loss} at step {step}; "
                        "try a smaller learning rate or a smaller clip_norm"
                    )
                history.steps.append(step)
                history.train_loss.append(mean_loss)
                history.grad_norm.append(
                    running_norm.item() / since_log
                    if clip_norm is not None
                    else float("nan")
                )
                history.learning_rate.append(float(optimizer.param_groups[0]["lr"]))
                running_loss.zero_()
                running_norm.zero_()
                since_log = 0
                bar.set_postfix(loss=f"{mean_loss:.3f}")

            at_eval = eval_every is not None and step % eval_every == 0
            if val_loader is not None and (at_eval or step == steps):
                metrics = evaluate(
                    model,
                    val_loader,
                    loss_fn=loss_fn,
                    device=device,
                    max_batches=eval_batches,
                    exact_match=eval_exact_match,
                )
                history.eval_steps.append(step)
                history.val_loss.append(metrics["loss"])
                history.val_token_accuracy.append(metrics["token_accuracy"])
                history.val_exact_match.append(metrics["exact_match"])
                model.train()
            bar.update(1)
    finally:
        bar.close()
    history.total_steps = steps
    history.seconds = time.perf_counter() - start_time
    return history


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Iterable[Any],
    *,
    loss_fn: LossFn | None = None,
    device: torch.device | str | None = None,
    max_batches: int | None = None,
    exact_match: bool = True,
    bos_id: int | None = None,
    eos_id: int | None = None,
    max_len: int | None = None,
) -> dict[str, float]:
    """Loss, token accuracy and exact-match accuracy of a model on a loader.

    Token accuracy is measured with teacher forcing: each position sees the true
    prefix, so it says how good single next-token predictions are. Exact match is
    measured free-running: :func:`~transformer.decoding.greedy_decode` writes the
    whole output from the source alone and a sequence counts only if every token
    and the end-of-sequence token are right. The gap between the two numbers is
    the price of feeding the model its own predictions.

    Args:
        model: follows the book's seq2seq protocol.
        loader: batches with ``src``, ``tgt`` (bos + target + eos), ``tgt_in``,
            ``tgt_out``.
        loss_fn: as in :func:`train`; defaults to :func:`sequence_cross_entropy`.
        device: ``None`` uses the model's device.
        max_batches: stop after this many batches.
        exact_match: run greedy decoding (the slower part); if False the result's
            ``exact_match`` is NaN.
        bos_id: start token for decoding; ``None`` reads it from ``batch.tgt[:, 0]``.
        eos_id: end-of-sequence id (default: the model's ``eos_id``, else the
            :class:`~transformer.data.Vocab` layout), as the decoders do.
        max_len: decoding budget; ``None`` allows the target length (eos included),
            enough for every correct answer.

    Returns:
        ``{"loss", "token_accuracy", "exact_match", "n_sequences", "n_tokens"}``.
    """
    if max_batches is not None and max_batches < 1:
        raise ValueError(f"max_batches must be >= 1 or None, got {max_batches}")
    # the seq2seq protocol's, unknown to nn.Module
    pad_id = int(cast(Any, model).pad_id)
    if eos_id is None:
        eos_id = int(getattr(model, "eos_id", DEFAULT_EOS_ID))
    if loss_fn is None:

        def loss_fn(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
            return sequence_cross_entropy(logits, targets, pad_id)

    device = _model_device(model) if device is None else torch.device(device)
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=device)
    correct_tokens = torch.zeros((), dtype=torch.long, device=device)
    correct_seqs = torch.zeros((), dtype=torch.long, device=device)
    n_tokens = 0
    n_seqs = 0
    try:
        for i, batch in enumerate(loader):
            if max_batches is not None and i >= max_batches:
                break
            batch = batch.to(device)
            tgt_out = batch.tgt_out  # (B, T)
            real = tgt_out != pad_id  # (B, T)
            n_real = int(real.sum())
            logits = model(batch.src, batch.tgt_in)  # (B, T, V)
            loss_sum += loss_fn(logits, tgt_out) * n_real
            correct_tokens += ((logits.argmax(dim=-1) == tgt_out) & real).sum()
            n_tokens += n_real
            n_seqs += tgt_out.size(0)
            if exact_match:
                start = int(batch.tgt[0, 0]) if bos_id is None else bos_id
                budget = tgt_out.size(1) if max_len is None else max_len
                # (B, L)
                out = greedy_decode(model, batch.src, budget, start, eos_id, pad_id)
                correct_seqs += _rows_equal(out, tgt_out, pad_id).sum()
    finally:
        model.train(was_training)
    if n_seqs == 0:
        raise ValueError("the evaluation loader yielded no batches")
    return {
        "loss": loss_sum.item() / max(n_tokens, 1),
        "token_accuracy": correct_tokens.item() / max(n_tokens, 1),
        "exact_match": correct_seqs.item() / n_seqs if exact_match else float("nan"),
        "n_sequences": n_seqs,
        "n_tokens": n_tokens,
    }


def _rows_equal(
    generated: torch.Tensor, target: torch.Tensor, pad_id: int
) -> torch.Tensor:
    """Which rows of two padded id matrices hold the same sequence.

    Shape:
        generated: (B, L), target: (B, T) -> (B,) bool.
    """
    width = max(generated.size(1), target.size(1))
    generated = F.pad(generated, (0, width - generated.size(1)), value=pad_id)  # (B, W)
    target = F.pad(target, (0, width - target.size(1)), value=pad_id)  # (B, W)
    return (generated == target).all(dim=1)  # (B,)
