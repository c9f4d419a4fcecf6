"""The encoder-decoder with attention: the bottleneck removed (chapter 5).

Chapter 4's decoder starts from one context vector. Here the decoder looks
back at every encoder state at every step: its previous state s_{t-1} is the
query, the encoder outputs are keys and values, and the context c_t is fresh
at every step (Bahdanau, Cho and Bengio, 2014; dot-product scores as Luong et
al., 2015)::

    a_t = softmax_s(score(s_{t-1}, h_s));   c_t = sum_s a_ts h_s
    s_t = cell([embed(y_{t-1}); c_t], s_{t-1});   logits_t = W_o [s_t; c_t]

Shape letters: B batch, S source length, T target length, E embedding size,
H hidden size, A additive-scorer size, V vocabulary.
"""

from __future__ import annotations

from typing import NamedTuple, cast

import torch
from torch import Tensor, nn

from transformer.attention import AdditiveAttention, DotProductAttention
from transformer.gated import GRUCell, LSTMCell
from transformer.rnn import RNNCell
from transformer.seq2seq import Encoder

__all__ = [
    "AttentionDecoder",
    "AttentionSeq2Seq",
    "AttentionState",
]


RecurrentState = Tensor | tuple[Tensor, Tensor]


class AttentionState(NamedTuple):
    """What the attention decoder carries from one step to the next.

    Attributes:
        hidden: decoder state s_{t-1}, (B, H) (a pair (h, c) for an LSTM).
        memory: encoder outputs, the keys and values, (B, S, H).
        memory_keys: keys prepared once per source: W_k h_s (B, S, A) for additive
            scores, the encoder outputs themselves (B, S, H) for dot-product scores.
        src_mask: (B, 1, S) bool, ``True`` at real source tokens.
        weights: attention weights of the latest step (B, S), for plots.
    """

    hidden: RecurrentState
    memory: Tensor
    memory_keys: Tensor
    src_mask: Tensor
    weights: Tensor | None = None


class AttentionDecoder(nn.Module):
    """A recurrent decoder that looks back at all encoder states at every step.

    At step t the previous decoder state s_{t-1} is the query, the encoder
    outputs h_1..h_S are keys and values; the context c_t = sum_s a_ts h_s is
    fresh at every step (no single vector has to hold the whole source). Then
    s_t = cell([embed(y_{t-1}); c_t], s_{t-1}) and the next-token scores come
    from [s_t; c_t]. Bahdanau, Cho and Bengio (2014), section 3.1; dot-product
    scoring as in Luong, Pham and Manning (2015).

    Args:
        vocab_size: V, target vocabulary size.
        emb_size: E.
        hidden_size: H, the size of decoder and encoder states.
        cell: ``"rnn"``, ``"lstm"`` or ``"gru"``: a cell of chapter 2.
        score: ``"additive"`` (Bahdanau) or ``"dot"`` (scaled dot product).
        attn_size: A, hidden size of the additive scorer (default H).
        pad_id: the target padding id.

    Shape:
        step: prev (B,) long, state -> logits (B, V), new state.
    """

    def __init__(
        self,
        vocab_size: int,
        emb_size: int,
        hidden_size: int,
        cell: str = "gru",
        score: str = "additive",
        attn_size: int | None = None,
        pad_id: int = 0,
    ) -> None:
        super().__init__()
        cells = {"rnn": RNNCell, "lstm": LSTMCell, "gru": GRUCell}
        if cell not in cells:
            raise ValueError(f"cell must be one of {sorted(cells)}, got {cell!r}")
        if score not in ("additive", "dot"):
            raise ValueError(f"score must be 'additive' or 'dot', got {score!r}")
        self.vocab_size, self.hidden_size, self.pad_id, self.score = (
            vocab_size,
            hidden_size,
            pad_id,
            score,
        )
        self.embedding = nn.Embedding(vocab_size, emb_size, padding_idx=pad_id)
        self.cell = cells[cell](emb_size + hidden_size, hidden_size)
        self.attention: nn.Module
        if score == "additive":
            self.attention = AdditiveAttention(
                hidden_size, hidden_size, attn_size or hidden_size
            )
        else:
            self.attention = DotProductAttention()
        self.out = nn.Linear(2 * hidden_size, vocab_size)

    def prepare_keys(self, memory: Tensor) -> Tensor:
        """Keys computed once per source sentence, reused at every decoding step."""
        if self.score == "additive":
            # (B, S, A)
            return cast(AdditiveAttention, self.attention).project_keys(memory)
        return memory  # (B, S, H)

    def step(
        self, prev: Tensor, state: AttentionState
    ) -> tuple[Tensor, AttentionState]:
        hidden = state.hidden
        s_prev = hidden[0] if isinstance(hidden, tuple) else hidden  # (B, H)
        query = s_prev.unsqueeze(1)  # (B, 1, H)
        if self.score == "additive":
            context, w = self.attention(
                query,
                state.memory,
                state.memory,
                state.src_mask,
                key_h=state.memory_keys,
            )  # (B, 1, H), (B, 1, S)
        else:
            context, w = self.attention(
                query, state.memory_keys, state.memory, state.src_mask
            )
        context = context.squeeze(1)  # (B, H)
        x = torch.cat([self.embedding(prev), context], dim=-1)  # (B, E + H)
        hidden = self.cell(x, hidden)  # (B, H)
        s_t = hidden[0] if isinstance(hidden, tuple) else hidden  # (B, H)
        logits = self.out(torch.cat([s_t, context], dim=-1))  # (B, V)
        return logits, state._replace(hidden=hidden, weights=w.squeeze(1))  # w: (B, S)


class AttentionSeq2Seq(nn.Module):
    """Chapter 4's recurrent encoder with an attention decoder: the bottleneck removed.

    Implements the book's sequence-to-sequence protocol (``pad_id``,
    ``forward(src, tgt_in)``, ``start(src)``, ``step(prev, state)``,
    ``reorder_state``), so chapter 4's ``train``, ``greedy_decode`` and the
    bottleneck experiment work unchanged.

    Args:
        src_vocab_size, tgt_vocab_size: vocabulary sizes.
        emb_size: E.
        hidden_size: H, the size of every recurrent state (as the chapter 4 baseline).
        cell: ``"rnn"``, ``"lstm"`` or ``"gru"``.
        score: ``"additive"`` (Bahdanau et al., 2014) or ``"dot"`` (Luong et al., 2015).
        attn_size: hidden size of the additive scorer (default H).
        pad_id: padding id, shared by both vocabularies.

    Shape:
        src (B, S), tgt_in (B, T) -> logits (B, T, V) (and weights (B, T, S) if asked).
    """

    def __init__(
        self,
        src_vocab_size: int,
        tgt_vocab_size: int,
        *,
        emb_size: int = 32,
        hidden_size: int = 64,
        cell: str = "gru",
        score: str = "additive",
        attn_size: int | None = None,
        pad_id: int = 0,
    ) -> None:
        super().__init__()
        self.pad_id = pad_id
        self.tgt_vocab_size = tgt_vocab_size
        self.encoder = Encoder(
            src_vocab_size, emb_size, hidden_size, cell, pad_id=pad_id
        )
        self.decoder = AttentionDecoder(
            tgt_vocab_size, emb_size, hidden_size, cell, score, attn_size, pad_id
        )

    def start(self, src: Tensor) -> AttentionState:
        """Encode the source once: keys, values and the decoder's first state.

        Shape:
            src (B, S) -> state with memory (B, S, H), hidden (B, H).
        """
        memory, final = self.encoder(src)  # (B, S, H), (L, B, H)
        hidden = tuple(s[-1] for s in final) if isinstance(final, tuple) else final[-1]
        src_mask = (src != self.pad_id).unsqueeze(1)  # (B, 1, S)
        keys = self.decoder.prepare_keys(memory)  # (B, S, A)
        return AttentionState(hidden, memory, keys, src_mask)

    def step(
        self, prev: Tensor, state: AttentionState
    ) -> tuple[Tensor, AttentionState]:
        """One decoding step. Shape: prev (B,) long -> logits (B, V), new state."""
        if not isinstance(prev, Tensor) or prev.dim() != 1 or prev.dtype != torch.long:
            got = (
                f"{tuple(prev.shape)} {prev.dtype}"
                if isinstance(prev, Tensor)
                else type(prev).__name__
            )
            raise ValueError(f"prev must be a (B,) long tensor of token ids, got {got}")
        return self.decoder.step(prev, state)

    def forward(
        self, src: Tensor, tgt_in: Tensor, need_weights: bool = False
    ) -> Tensor | tuple[Tensor, Tensor]:
        """Teacher-forced scores for every target position (one step at a time inside).

        The query of step t depends on the state after step t - 1, so unlike the
        chapter 4 decoder this one cannot process the target in one call.

        Shape:
            src (B, S), tgt_in (B, T) -> logits (B, T, V), weights (B, T, S) if asked.
        """
        if tgt_in.dim() != 2 or src.dim() != 2 or tgt_in.shape[0] != src.shape[0]:
            raise ValueError(
                f"src and tgt_in must be (B, S) and (B, T) with the same B, got "
                f"{tuple(src.shape)} and {tuple(tgt_in.shape)}"
            )
        state = self.start(src)
        logits, weights = [], []
        for t in range(tgt_in.shape[1]):
            step_logits, state = self.decoder.step(tgt_in[:, t], state)  # (B, V)
            logits.append(step_logits)
            weights.append(cast(Tensor, state.weights))  # every step sets them
        out = torch.stack(logits, dim=1)  # (B, T, V)
        if need_weights:
            return out, torch.stack(weights, dim=1)  # (B, T, S)
        return out

    def reorder_state(self, state: AttentionState, index: Tensor) -> AttentionState:
        """Select (and repeat) batch rows of a state, for beam search. index: (B',)."""
        hidden = state.hidden
        if isinstance(hidden, tuple):
            hidden = cast(
                RecurrentState, tuple(h.index_select(0, index) for h in hidden)
            )
        else:
            hidden = hidden.index_select(0, index)  # (B', H)
        memory, keys, src_mask = (t.index_select(0, index) for t in state[1:4])
        w = None if state.weights is None else state.weights.index_select(0, index)
        return AttentionState(hidden, memory, keys, src_mask, weights=w)
