"""The recurrent encoder-decoder: two RNNs joined by one context vector.

The encoder reads the source and compresses all of it into its final hidden
state, the *context vector*; the decoder starts from that state and writes the
target one token at a time (Sutskever et al., 2014; Cho et al., 2014). Whatever
the decoder needs to know about the source must squeeze through this one
fixed-size vector, whatever the source length: the *bottleneck* that attention
(chapter 5) removes.

Training uses teacher forcing (Williams & Zipser, 1989): the decoder reads the
true previous token rather than its own guess. :class:`Seq2Seq` can also feed
its own predictions back during training with probability
``1 - teacher_forcing_ratio`` (the coin flip of scheduled sampling, Bengio et
al., 2015, with a fixed ratio).

The module also holds the reusable *bottleneck experiment*
(:class:`BottleneckSetup`, :func:`run_bottleneck`, :func:`exact_match_by_length`):
one task, data, hidden size, training budget and seed, so that any model (this
one, or the attention model of chapter 5) can be trained and measured on exactly
the same footing.

Shape letters: B batch, S source length, T target length, E embedding size,
H hidden size, L layers, V vocabulary.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import torch
from torch import Tensor, nn

from transformer.data import TaskData, Vocab, load_task, pad_sequences
from transformer.decoding import greedy_decode
from transformer.rnn import GRU, LSTM, RNN
from transformer.training import History, train
from transformer.utils import get_device, seed_everything

__all__ = [
    "CELLS",
    "Encoder",
    "Decoder",
    "Seq2Seq",
    "Seq2SeqState",
    "context_vector",
    "BottleneckSetup",
    "BOTTLENECK",
    "LengthAccuracy",
    "BottleneckResult",
    "exact_match_by_length",
    "run_bottleneck",
]

#: The recurrent layers of chapter 2 an encoder or decoder can be built from.
CELLS: dict[str, type[nn.Module]] = {"rnn": RNN, "lstm": LSTM, "gru": GRU}

RecurrentState = Tensor | tuple[Tensor, Tensor]


def _recurrent_layer(cell: str, input_size: int, hidden_size: int, num_layers: int, dropout: float):
    if not isinstance(cell, str) or cell.lower() not in CELLS:
        raise ValueError(f"cell must be one of {sorted(CELLS)}, got {cell!r}")
    return CELLS[cell.lower()](input_size, hidden_size, num_layers=num_layers, dropout=dropout)


def _check_ids(name: str, ids: object, vocab_size: int, what: str) -> Tensor:
    """Validate a batch of token ids, naming the expected and actual values."""
    if not isinstance(ids, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of token ids, got {type(ids).__name__}")
    if ids.dim() != 2:
        hint = " (a single sequence? use .unsqueeze(0))" if ids.dim() == 1 else ""
        raise ValueError(f"{name} must have shape (B, length), got {tuple(ids.shape)}{hint}")
    if ids.dtype != torch.long:
        raise TypeError(f"{name} must hold token ids as torch.long, got {ids.dtype}")
    if ids.numel() == 0 or ids.size(1) == 0:
        raise ValueError(f"{name} is empty (shape {tuple(ids.shape)})")
    low, high = torch.stack(torch.aminmax(ids)).tolist()  # one device sync, not two
    if low < 0 or high >= vocab_size:
        bad = high if high >= vocab_size else low
        raise ValueError(
            f"{name} holds token id {bad}, but the {what} vocabulary has {vocab_size} ids "
            f"(0..{vocab_size - 1}); build the model with the data's vocabulary size"
        )
    return ids


def context_vector(state: RecurrentState) -> Tensor:
    """The context vector: the top layer's final hidden state of the encoder.

    For an LSTM the state is ``(h, c)``; the context is ``h`` (the cell state
    ``c`` still travels to the decoder as part of its initial state).

    Shape:
        state: (L, B, H) or a pair of them -> (B, H)
    """
    h = state[0] if isinstance(state, tuple) else state
    return h[-1]  # (B, H)


class Encoder(nn.Module):
    """Embed the source and run a recurrent layer over it.

    Padding is derived from ``pad_id``: every row's final state is taken at its
    last real token, so a row's context vector does not depend on how much
    padding the batch gave it.

    Args:
        vocab_size: V, the source vocabulary size.
        emb_size: E, size of the token embeddings.
        hidden_size: H, size of the hidden state (and so of the context vector).
        cell: ``"rnn"``, ``"lstm"`` or ``"gru"`` (the layers of chapter 2).
        num_layers: L, stacked recurrent layers.
        dropout: dropout between stacked layers (training only).
        pad_id: the source padding id.

    Shape:
        src: (B, S) long -> outputs (B, S, H) (zero at padding), state (L, B, H)
        (a pair for the LSTM).

    Reference: Sutskever et al., 2014; Cho et al., 2014.
    """

    def __init__(
        self,
        vocab_size: int,
        emb_size: int,
        hidden_size: int,
        cell: str = "gru",
        num_layers: int = 1,
        dropout: float = 0.0,
        pad_id: int = Vocab.pad_id,
    ) -> None:
        super().__init__()
        self.vocab_size, self.hidden_size, self.pad_id = vocab_size, hidden_size, pad_id
        self.cell = cell.lower() if isinstance(cell, str) else cell
        self.embedding = nn.Embedding(vocab_size, emb_size, padding_idx=pad_id)
        self.rnn = _recurrent_layer(cell, emb_size, hidden_size, num_layers, dropout)

    def forward(self, src: Tensor) -> tuple[Tensor, RecurrentState]:
        _check_ids("src", src, self.vocab_size, "source")
        lengths = (src != self.pad_id).sum(dim=1)  # (B,)
        embedded = self.embedding(src)  # (B, S, E)
        outputs, state = self.rnn(embedded, lengths=lengths)  # (B, S, H), (L, B, H)
        return outputs, state


class Decoder(nn.Module):
    """A recurrent language model over the target, conditioned on the context vector.

    The decoder's initial state is the encoder's final state (Sutskever et al.,
    2014). With ``feed_context`` the context vector is also concatenated to the
    input at every step (Cho et al., 2014), so the decoder need not carry the
    source in its own state all the way to the last token.

    Args:
        vocab_size: V, the target vocabulary size.
        emb_size: E.
        hidden_size: H, equal to the encoder's.
        cell, num_layers, dropout: as the encoder's (the states must fit).
        pad_id: the target padding id.
        feed_context: concatenate the context vector to every input.

    Shape:
        tgt_in: (B, T), state: (L, B, H), context: (B, H) -> logits (B, T, V), state.
    """

    def __init__(
        self,
        vocab_size: int,
        emb_size: int,
        hidden_size: int,
        cell: str = "gru",
        num_layers: int = 1,
        dropout: float = 0.0,
        pad_id: int = Vocab.pad_id,
        feed_context: bool = True,
    ) -> None:
        super().__init__()
        self.vocab_size, self.hidden_size, self.pad_id = vocab_size, hidden_size, pad_id
        self.feed_context = feed_context
        self.embedding = nn.Embedding(vocab_size, emb_size, padding_idx=pad_id)
        input_size = emb_size + (hidden_size if feed_context else 0)
        self.rnn = _recurrent_layer(cell, input_size, hidden_size, num_layers, dropout)
        self.out = nn.Linear(hidden_size, vocab_size)

    def forward(
        self, tgt_in: Tensor, state: RecurrentState, context: Tensor
    ) -> tuple[Tensor, RecurrentState]:
        x = self.embedding(tgt_in)  # (B, T, E)
        if self.feed_context:
            ctx = context.unsqueeze(1).expand(-1, x.size(1), -1)  # (B, T, H)
            x = torch.cat([x, ctx], dim=-1)  # (B, T, E + H)
        outputs, state = self.rnn(x, state)  # (B, T, H)
        return self.out(outputs), state  # (B, T, V)


class Seq2SeqState(NamedTuple):
    """What the decoder carries from one step to the next.

    Attributes:
        hidden: the decoder's recurrent state, (L, B, H) (a pair for the LSTM).
        context: the encoder's context vector, fixed for the whole output, (B, H).
    """

    hidden: RecurrentState
    context: Tensor


class Seq2Seq(nn.Module):
    """Encoder-decoder with a single context vector between them.

    Implements the book's sequence-to-sequence protocol: ``pad_id``,
    ``forward(src, tgt_in)`` (all target positions at once, teacher forced),
    ``start(src)`` and ``step(prev, state)`` (one token at a time, for
    :func:`~transformer.decoding.greedy_decode`), and ``reorder_state`` (beam search).

    Args:
        src_vocab_size: source vocabulary size.
        tgt_vocab_size: target vocabulary size.
        emb_size: E, embedding size of both sides.
        hidden_size: H, the size of the context vector.
        cell: ``"rnn"``, ``"lstm"`` or ``"gru"``.
        num_layers: L, stacked layers in encoder and decoder.
        dropout: between stacked layers.
        pad_id: padding id, shared by both vocabularies.
        teacher_forcing_ratio: probability that the decoder reads the true
            previous token during training (1.0: always, the default and the
            fast path; 0.0: always its own previous prediction, i.e. free running).
            Outside training, ``forward`` always teacher-forces.
        feed_context: also feed the context vector to every decoder step.

    Shape:
        src: (B, S), tgt_in: (B, T) -> logits (B, T, V).

    References: Sutskever et al., 2014; Cho et al., 2014; Williams & Zipser, 1989;
    Bengio et al., 2015.
    """

    def __init__(
        self,
        src_vocab_size: int,
        tgt_vocab_size: int,
        *,
        emb_size: int = 32,
        hidden_size: int = 64,
        cell: str = "gru",
        num_layers: int = 1,
        dropout: float = 0.0,
        pad_id: int = Vocab.pad_id,
        teacher_forcing_ratio: float = 1.0,
        feed_context: bool = True,
    ) -> None:
        super().__init__()
        for name, value in (
            ("src_vocab_size", src_vocab_size),
            ("tgt_vocab_size", tgt_vocab_size),
            ("emb_size", emb_size),
            ("hidden_size", hidden_size),
            ("num_layers", num_layers),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        self.pad_id = pad_id
        self.src_vocab_size, self.tgt_vocab_size = src_vocab_size, tgt_vocab_size
        self.cell = cell.lower() if isinstance(cell, str) else cell
        self.teacher_forcing_ratio = teacher_forcing_ratio
        self.encoder = Encoder(
            src_vocab_size, emb_size, hidden_size, cell, num_layers, dropout, pad_id
        )
        self.decoder = Decoder(
            tgt_vocab_size, emb_size, hidden_size, cell, num_layers, dropout, pad_id, feed_context
        )

    @property
    def teacher_forcing_ratio(self) -> float:
        return self._teacher_forcing_ratio

    @teacher_forcing_ratio.setter
    def teacher_forcing_ratio(self, value: float) -> None:
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
            raise ValueError(f"teacher_forcing_ratio must be a number in [0, 1], got {value!r}")
        self._teacher_forcing_ratio = float(value)

    def start(self, src: Tensor) -> Seq2SeqState:
        """Encode the source: the decoder's initial state and the context vector.

        Shape:
            src: (B, S) -> Seq2SeqState(hidden (L, B, H), context (B, H))
        """
        _, state = self.encoder(src)  # (L, B, H)
        return Seq2SeqState(state, context_vector(state))

    def step(self, prev: Tensor, state: Seq2SeqState) -> tuple[Tensor, Seq2SeqState]:
        """One decoder step: the previous token in, scores for the next token out.

        Shape:
            prev: (B,) long -> logits (B, V), new state.
        """
        if not isinstance(prev, Tensor) or prev.dim() != 1:
            shape = tuple(prev.shape) if isinstance(prev, Tensor) else type(prev).__name__
            raise ValueError(f"prev must be a (B,) tensor of token ids, got {shape}")
        _check_ids("prev", prev[:, None], self.tgt_vocab_size, "target")
        logits, hidden = self.decoder(prev[:, None], state.hidden, state.context)  # (B, 1, V)
        return logits[:, 0], Seq2SeqState(hidden, state.context)  # (B, V)

    def forward(self, src: Tensor, tgt_in: Tensor) -> Tensor:
        """Scores for every target position given the source and the decoder inputs.

        In training mode with ``teacher_forcing_ratio < 1`` each row, at each step
        after the first, reads the true token with that probability and otherwise
        its own previous prediction (argmax, no gradient through the choice); this
        runs step by step. Otherwise all of ``tgt_in`` is fed at once.

        Shape:
            src: (B, S), tgt_in: (B, T) -> logits (B, T, V)
        """
        _check_ids("tgt_in", tgt_in, self.tgt_vocab_size, "target")
        if src.dim() == 2 and tgt_in.size(0) != src.size(0):
            raise ValueError(
                f"src and tgt_in must have the same batch size, got {src.size(0)} "
                f"and {tgt_in.size(0)}"
            )
        state = self.start(src)
        if not self.training or self.teacher_forcing_ratio >= 1.0:
            logits, _ = self.decoder(tgt_in, state.hidden, state.context)  # (B, T, V)
            return logits
        # Step by step: the input at step t > 0 depends on the prediction at t - 1.
        prev = tgt_in[:, 0]  # (B,) the <bos> tokens
        steps: list[Tensor] = []
        for t in range(tgt_in.size(1)):
            if t > 0:
                guess = steps[-1].argmax(dim=-1)  # (B,)
                use_truth = torch.rand(prev.shape, device=prev.device) < self.teacher_forcing_ratio
                prev = torch.where(use_truth, tgt_in[:, t], guess)  # (B,)
            step_logits, state = self.step(prev, state)  # (B, V)
            steps.append(step_logits)
        return torch.stack(steps, dim=1)  # (B, T, V)

    def reorder_state(self, state: Seq2SeqState, index: Tensor) -> Seq2SeqState:
        """Select (and repeat) batch rows of a decoding state, for beam search.

        Shape:
            index: (B',) long -> a state of batch size B'.
        """
        hidden = state.hidden
        if isinstance(hidden, tuple):
            hidden = tuple(h.index_select(1, index) for h in hidden)  # 2 x (L, B', H)
        else:
            hidden = hidden.index_select(1, index)  # (L, B', H)
        return Seq2SeqState(hidden, state.context.index_select(0, index))  # (B', H)


# --------------------------------------------------------------------------- bottleneck experiment


@dataclass(frozen=True)
class BottleneckSetup:
    """The bottleneck experiment: everything but the model, so models compare fairly.

    One model is trained once on sources of mixed lengths (uniform between
    ``min_len`` and ``max_len``), then its exact-match accuracy is measured for
    each source length on held-out test sources. With the context-vector
    :class:`Seq2Seq` at a fixed ``hidden_size`` accuracy is high for short
    sources and collapses for long ones; chapter 5 passes an attention model
    of the same hidden size through the same setup.

    Attributes:
        task: a digit task of :func:`transformer.data.load_task` (``copy`` makes the
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
            raise ValueError(f"task must be 'copy', 'reverse' or 'sort', got {self.task!r}")
        if not 1 <= self.min_len <= self.max_len:
            raise ValueError(f"need 1 <= min_len <= max_len, got {self.min_len}, {self.max_len}")
        for name in ("n_train", "n_test", "hidden_size", "emb_size", "batch_size", "steps"):
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
    for src, tgt in pairs:
        groups.setdefault(len(src_vocab.encode(src)), []).append((src, tgt))
    result = LengthAccuracy()
    pad = tgt_vocab.pad_id
    for length in sorted(groups):
        group = groups[length]
        exact = tokens_right = tokens_total = 0
        for i in range(0, len(group), batch_size):
            chunk = group[i : i + batch_size]
            src, _ = pad_sequences([src_vocab.encode(s) for s, _ in chunk], pad)  # (B, S)
            tgt, _ = pad_sequences([tgt_vocab.encode(t, add_eos=True) for _, t in chunk], pad)
            src, tgt = src.to(device), tgt.to(device)  # tgt: (B, T) targets + eos
            out = greedy_decode(
                model, src, tgt.size(1) + max_extra, tgt_vocab.bos_id, tgt_vocab.eos_id, pad
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
