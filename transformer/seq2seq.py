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

The experiment that measures the bottleneck, on the same footing for every
model, is in :mod:`transformer.bottleneck`.

Shape letters: B batch, S source length, T target length, E embedding size,
H hidden size, L layers, V vocabulary.
"""

from __future__ import annotations

from typing import NamedTuple, cast

import torch
from torch import Tensor, nn

from transformer.data import Vocab
from transformer.gated import GRU, LSTM
from transformer.rnn import RNN

__all__ = [
    "CELLS",
    "Encoder",
    "Decoder",
    "Seq2Seq",
    "Seq2SeqState",
    "context_vector",
]

#: The recurrent layers of chapter 2 an encoder or decoder can be built from.
CELLS: dict[str, type[nn.Module]] = {"rnn": RNN, "lstm": LSTM, "gru": GRU}

RecurrentState = Tensor | tuple[Tensor, Tensor]


def _recurrent_layer(
    cell: str, input_size: int, hidden_size: int, num_layers: int, dropout: float
):
    if not isinstance(cell, str) or cell.lower() not in CELLS:
        raise ValueError(f"cell must be one of {sorted(CELLS)}, got {cell!r}")
    return CELLS[cell.lower()](
        input_size, hidden_size, num_layers=num_layers, dropout=dropout
    )


def _check_ids(name: str, ids: object, vocab_size: int, what: str) -> Tensor:
    """Validate a batch of token ids, naming the expected and actual values."""
    if not isinstance(ids, Tensor):
        raise TypeError(
            f"{name} must be a torch.Tensor of token ids, got {type(ids).__name__}"
        )
    if ids.dim() != 2:
        hint = " (a single sequence? use .unsqueeze(0))" if ids.dim() == 1 else ""
        raise ValueError(
            f"{name} must have shape (B, length), got {tuple(ids.shape)}{hint}"
        )
    if ids.dtype != torch.long:
        raise TypeError(f"{name} must hold token ids as torch.long, got {ids.dtype}")
    if ids.numel() == 0 or ids.size(1) == 0:
        raise ValueError(f"{name} is empty (shape {tuple(ids.shape)})")
    low, high = torch.stack(torch.aminmax(ids)).tolist()  # one device sync, not two
    if low < 0 or high >= vocab_size:
        bad = high if high >= vocab_size else low
        raise ValueError(
            f"{name} holds token id {bad}, but the {what} vocabulary has {vocab_size} "
            f"ids (0..{vocab_size - 1}); build the model with the data's vocabulary "
            "size"
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
            tgt_vocab_size,
            emb_size,
            hidden_size,
            cell,
            num_layers,
            dropout,
            pad_id,
            feed_context,
        )

    @property
    def teacher_forcing_ratio(self) -> float:
        return self._teacher_forcing_ratio

    @teacher_forcing_ratio.setter
    def teacher_forcing_ratio(self, value: float) -> None:
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not 0 <= value <= 1
        ):
            raise ValueError(
                f"teacher_forcing_ratio must be a number in [0, 1], got {value!r}"
            )
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
            shape = (
                tuple(prev.shape) if isinstance(prev, Tensor) else type(prev).__name__
            )
            raise ValueError(f"prev must be a (B,) tensor of token ids, got {shape}")
        _check_ids("prev", prev[:, None], self.tgt_vocab_size, "target")
        # (B, 1, V)
        logits, hidden = self.decoder(prev[:, None], state.hidden, state.context)
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
                use_truth = (
                    torch.rand(prev.shape, device=prev.device)
                    < self.teacher_forcing_ratio
                )
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
        if isinstance(hidden, tuple):  # 2 x (L, B', H)
            hidden = cast(
                RecurrentState, tuple(h.index_select(1, index) for h in hidden)
            )
        else:
            hidden = hidden.index_select(1, index)  # (L, B', H)
        return Seq2SeqState(hidden, state.context.index_select(0, index))  # (B', H)
