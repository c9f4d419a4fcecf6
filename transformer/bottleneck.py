"""The bottleneck experiment: one footing for every sequence-to-sequence model (chapter
4).

One task, data, hidden size, training budget and seed (:class:`BottleneckSetup`),
so that any model (chapter 4's recurrent encoder-decoder, or chapter 5's
attention model) can be trained and measured on exactly the same footing:
:func:`run_bottleneck` trains it and :func:`exact_match_by_length` measures
exact match against the source length, where the single context vector of
chapter 4 runs out.

Shape letters: B batch, S source length, L generated length.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from transformer.data import Vocab, pad_sequences
from transformer.decoding import greedy_decode
from transformer.seq2seq import Seq2Seq
from transformer.tasks import TaskData, load_task
from transformer.training import History, train
from transformer.utils import get_device, seed_everything

__all__ = [
    "BOTTLENECK",
    "BottleneckResult",
    "BottleneckSetup",
    "exact_match_by_length",
    "LengthAccuracy",
    "run_bottleneck",
]


# --------------------------------------------------------------------------- bottleneck
# experiment


@dataclass(frozen=True)
class BottleneckSetup:
    """The bottleneck experiment: everything but the model, so models compare fairly.

    One model is trained once on sources of mixed lengths (uniform between
    ``min_len`` and ``max_len``), then its exact-match accuracy is measured for
    each source length on held-out test sources. With the context-vector
    :class:`~transformer.seq2seq.Seq2Seq` at a fixed ``hidden_size`` accuracy is high
    for short sources and collapses for long ones; chapter 5 passes an attention model
    of the same hidden size through the same setup.

    Attributes:
        task: a digit task of :func:`transformer.tasks.load_task` (``copy`` makes the
            decoder reproduce the whole source from the context vector).
        min_len, max_len: range of source lengths.
        n_train, n_val, n_test: split sizes (test sources are spread over all lengths).
        hidden_size: H, the size of the context vector (and of every recurrent state).
        emb_size: E.
        cell: the recurrent layer of the baseline.
        batch_size: training batch size.
        steps: the training budget in optimizer steps.
        lr: Adam learning rate.
        clip_norm: gradient clipping threshold.
        seed: seeds the data, the initialisation and the shuffling.
    """

    task: str = "copy"
    min_len: int = 3
    max_len: int = 16
    n_train: int = 12000
    n_val: int = 300
    n_test: int = 3000
    hidden_size: int = 64
    emb_size: int = 32
    cell: str = "gru"
    batch_size: int = 64
    steps: int = 1000
    lr: float = 3e-3
    clip_norm: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.task not in ("copy", "reverse", "sort"):
            raise ValueError(
                f"task must be 'copy', 'reverse' or 'sort', got {self.task!r}"
            )
        if not 1 <= self.min_len <= self.max_len:
            raise ValueError(
                f"need 1 <= min_len <= max_len, got {self.min_len}, {self.max_len}"
            )
        for name in (
            "n_train",
            "n_test",
            "hidden_size",
            "emb_size",
            "batch_size",
            "steps",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")

    def data(self) -> TaskData:
        """The task's splits (the same for every model, given the seed)."""
        return load_task(
            self.task,
            n_train=self.n_train,
            n_val=self.n_val,
            n_test=self.n_test,
            seed=self.seed,
            min_len=self.min_len,
            max_len=self.max_len,
        )

    def baseline(self, data: TaskData) -> Seq2Seq:
        """The context-vector model of this chapter at this setup's sizes."""
        return Seq2Seq(
            len(data.src_vocab),
            len(data.tgt_vocab),
            emb_size=self.emb_size,
            hidden_size=self.hidden_size,
            cell=self.cell,
            pad_id=data.tgt_vocab.pad_id,
        )


#: The setup the book uses in chapters 4 and 5.
BOTTLENECK = BottleneckSetup()


@dataclass
class LengthAccuracy:
    """Exact-match accuracy for each source length.

    Attributes:
        lengths: the source lengths present, ascending.
        exact_match: fraction of sequences of that length decoded exactly.
        token_accuracy: fraction of target positions (eos included) right in the
            free-running output.
        counts: number of test sequences of that length.
    """

    lengths: list[int] = field(default_factory=list)
    exact_match: list[float] = field(default_factory=list)
    token_accuracy: list[float] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[int, float]:
        """``{length: exact-match accuracy}``."""
        return dict(zip(self.lengths, self.exact_match))


@torch.no_grad()
def exact_match_by_length(
    model: nn.Module,
    pairs: Sequence[tuple[str, str]],
    src_vocab: Vocab,
    tgt_vocab: Vocab,
    *,
    batch_size: int = 500,
    device: torch.device | str | None = None,
    max_extra: int = 5,
) -> LengthAccuracy:
    """Greedy-decode every source and score the outputs, grouped by source length.

    Sources of one length are decoded together, so every batch is free of
    padding and the numbers for one length do not depend on the others.

    Args:
        model: any model of the book's seq2seq protocol.
        pairs: (source, target) strings, e.g. ``data.test``.
        src_vocab, tgt_vocab: the vocabularies the model was trained with.
        batch_size: sequences decoded at once.
        device: ``None`` uses the model's device.
        max_extra: decoding budget beyond the longest target of the group.

    Returns:
        A :class:`LengthAccuracy`.
    """
    if len(pairs) == 0:
        raise ValueError("pairs is empty: nothing to measure")
    if device is None:
        device = next(model.parameters()).device
    groups: dict[int, list[tuple[str, str]]] = {}
    for src_text, tgt_text in pairs:
        groups.setdefault(len(src_vocab.encode(src_text)), []).append(
            (src_text, tgt_text)
        )
    result = LengthAccuracy()
    pad = tgt_vocab.pad_id
    for length in sorted(groups):
        group = groups[length]
        exact = tokens_right = tokens_total = 0
        for i in range(0, len(group), batch_size):
            chunk = group[i : i + batch_size]
            # (B, S)
            src, _ = pad_sequences([src_vocab.encode(s) for s, _ in chunk], pad)
            tgt, _ = pad_sequences(
                [tgt_vocab.encode(t, add_eos=True) for _, t in chunk], pad
            )
            src, tgt = src.to(device), tgt.to(device)  # tgt: (B, T) targets + eos
            out = greedy_decode(
                model,
                src,
                tgt.size(1) + max_extra,
                tgt_vocab.bos_id,
                tgt_vocab.eos_id,
                pad,
            )  # (B, L)
            width = max(out.size(1), tgt.size(1))
            out = nn.functional.pad(out, (0, width - out.size(1)), value=pad)  # (B, W)
            tgt = nn.functional.pad(tgt, (0, width - tgt.size(1)), value=pad)  # (B, W)
            real = tgt != pad  # (B, W)
            exact += int((out == tgt).all(dim=1).sum())
            tokens_right += int(((out == tgt) & real).sum())
            tokens_total += int(real.sum())
        result.lengths.append(length)
        result.exact_match.append(exact / len(group))
        result.token_accuracy.append(tokens_right / tokens_total)
        result.counts.append(len(group))
    return result


@dataclass
class BottleneckResult:
    """What :func:`run_bottleneck` measured, and the trained model."""

    model: nn.Module
    setup: BottleneckSetup
    history: History
    by_length: LengthAccuracy
    train_seconds: float
    n_parameters: int


def run_bottleneck(
    model: nn.Module | None = None,
    setup: BottleneckSetup = BOTTLENECK,
    *,
    data: TaskData | None = None,
    device: torch.device | str | None = None,
    progress: bool = False,
) -> BottleneckResult:
    """Train a model with the setup's data and budget, then measure accuracy by length.

    Args:
        model: the model to train (it must be built for ``setup.data()``'s
            vocabularies); ``None`` builds :meth:`BottleneckSetup.baseline`,
            seeding the initialisation with ``setup.seed``. Pass your own model
            created right after ``seed_everything(setup.seed)`` to compare fairly.
        setup: the experiment (task, lengths, budget, seed).
        data: the splits, if already loaded with ``setup.data()``.
        device: ``None`` picks :func:`~transformer.utils.get_device`.
        progress: show a progress bar while training.

    Returns:
        A :class:`BottleneckResult` with the training history and the
        per-length accuracy on ``data.test``.
    """
    data = setup.data() if data is None else data
    device = get_device() if device is None else torch.device(device)
    if model is None:
        seed_everything(setup.seed)
        model = setup.baseline(data)
    model.to(device)
    seed_everything(setup.seed)  # the same batches and coin flips for every model
    start = time.perf_counter()
    history = train(
        model,
        data.loader("train", batch_size=setup.batch_size, seed=setup.seed),
        steps=setup.steps,
        lr=setup.lr,
        clip_norm=setup.clip_norm,
        device=device,
        progress=progress,
        log_every=20,
    )
    seconds = time.perf_counter() - start
    by_length = exact_match_by_length(
        model, data.test, data.src_vocab, data.tgt_vocab, device=device
    )
    n_parameters = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return BottleneckResult(model, setup, history, by_length, seconds, n_parameters)
