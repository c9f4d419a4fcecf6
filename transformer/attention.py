"""Attention: a soft, differentiable dictionary lookup (chapters 5 and 6).

A *query* is compared with every *key*; the comparison scores become weights
through a softmax; the output is the weighted average of the *values*:

    output = sum_s softmax_s(score(q, k_s)) v_s

The module grows in reading order:

* chapter 5: Nadaraya-Watson kernel regression (attention with a fixed
  similarity), additive (Bahdanau) and dot-product scoring, the masked softmax,
  and an attention decoder for the chapter 4 sequence-to-sequence model;
* chapter 6: :func:`scaled_dot_product_attention` in plain operations,
  :class:`MultiHeadAttention` (self- and cross-attention, masks, an optional
  fused kernel, hooks for positional schemes) and :class:`KVCache` for
  incremental decoding.

Mask convention (the whole book): a boolean tensor, ``True`` = may attend,
the same as :func:`torch.nn.functional.scaled_dot_product_attention`. A query
row that may attend to nothing returns zeros, never NaN.

Shape letters: B batch, T query (target) length, S key (source) length,
H heads, D head size, C model size (d_model), I input features.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from transformer.rnn import GRUCell, LSTMCell, RNNCell
from transformer.seq2seq import Encoder

__all__ = [
    "AdditiveAttention",
    "AttentionDecoder",
    "AttentionSeq2Seq",
    "AttentionState",
    "DotProductAttention",
    "KVCache",
    "MultiHeadAttention",
    "NadarayaWatson",
    "StepWeights",
    "additive_scores",
    "dot_product_scores",
    "masked_softmax",
    "nadaraya_watson",
    "scaled_dot_product_attention",
]


# ---------------------------------------------------------------------------
# Chapter 5: attention pooling
# ---------------------------------------------------------------------------


def _check_mask(mask: Tensor | None, scores_shape: torch.Size, name: str = "mask") -> None:
    """Raise a clear error if ``mask`` is not a bool tensor broadcastable to the scores."""
    if mask is None:
        return
    if not isinstance(mask, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of dtype bool, got {type(mask).__name__}")
    if mask.dtype != torch.bool:
        raise TypeError(
            f"{name} must have dtype torch.bool (True = may attend), got {mask.dtype}; "
            "build it with transformer.masks or compare, e.g. ids != pad_id"
        )
    if mask.dim() > len(scores_shape):
        raise ValueError(
            f"{name} has {mask.dim()} dimensions {tuple(mask.shape)} but the scores have "
            f"{len(scores_shape)} {tuple(scores_shape)}"
        )
    for m, s in zip(reversed(mask.shape), reversed(scores_shape)):
        if m != 1 and m != s:
            raise ValueError(
                f"{name} of shape {tuple(mask.shape)} does not broadcast to the attention "
                f"scores of shape {tuple(scores_shape)} (each trailing size must be 1 or equal)"
            )


def masked_softmax(scores: Tensor, mask: Tensor | None = None, dim: int = -1) -> Tensor:
    """Softmax over ``dim`` that gives masked positions exactly zero weight.

    A row in which every position is masked gets all-zero weights (not NaN):
    masked scores are set to the most negative finite number, so such a row is a
    harmless uniform softmax, and then the masked weights are zeroed.

    Args:
        scores: attention scores, any shape.
        mask: bool, ``True`` = may attend, broadcastable to ``scores``.
        dim: the dimension to normalise over (the keys).

    Shape:
        scores: (..., T, S); mask: broadcastable to (..., T, S); output: same as scores.
    """
    if mask is None:
        return torch.softmax(scores, dim=dim)
    _check_mask(mask, scores.shape)
    very_negative = torch.finfo(scores.dtype).min
    weights = torch.softmax(scores.masked_fill(~mask, very_negative), dim=dim)
    # Zero the masked entries: exp(min - max) already underflows to 0 in rows
    # with at least one real score, but a fully masked row would be uniform.
    return weights.masked_fill(~mask, 0.0)


def nadaraya_watson(
    queries: Tensor,
    keys: Tensor,
    values: Tensor,
    width: float | Tensor = 1.0,
    mask: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Nadaraya-Watson kernel regression with a Gaussian kernel: attention with no weights.

    The prediction at ``x`` is the average of the observed ``y_s``, each weighted by
    how close its ``x_s`` is to ``x``:

        f(x) = sum_s softmax_s(-(x - x_s)^2 / (2 width^2)) y_s

    ``x`` is the query, the ``x_s`` are keys and the ``y_s`` values. Proposed
    independently by Nadaraya (1964) and Watson (1964).

    Args:
        queries: positions where to predict.
        keys: positions of the observations.
        values: observed values (scalars, or vectors in the last dimension).
        width: kernel width (bandwidth) > 0; small = local average, large = global mean.
        mask: bool (T, S), ``True`` = may use; e.g. ``~torch.eye(S, dtype=bool)`` for
            leave-one-out predictions at the observations themselves.

    Shape:
        queries: (T,); keys: (S,); values: (S,) or (S, Cv) -> prediction (T,) or (T, Cv),
        weights (T, S).
    """
    if queries.dim() != 1 or keys.dim() != 1:
        raise ValueError(
            f"queries and keys must be 1-D positions, got shapes {tuple(queries.shape)} "
            f"and {tuple(keys.shape)}"
        )
    if values.shape[0] != keys.shape[0]:
        raise ValueError(f"got {keys.shape[0]} keys but {values.shape[0]} values")
    width_t = torch.as_tensor(width, dtype=queries.dtype, device=queries.device)
    if bool((width_t <= 0).any()):
        raise ValueError(f"the kernel width must be positive, got {float(width_t)}")
    distance = queries[:, None] - keys[None, :]  # (T, S)
    scores = -(distance**2) / (2 * width_t**2)  # (T, S)
    weights = masked_softmax(scores, mask)  # (T, S)
    return weights @ values, weights  # (T,) or (T, Cv)


class NadarayaWatson(nn.Module):
    """Nadaraya-Watson regression whose kernel width is learned by gradient descent.

    The width is stored as its logarithm so it stays positive while training.
    Train it with leave-one-out predictions (``mask=~eye``): with each point
    allowed to see itself, the best width would shrink to zero and the model
    would just memorise the data.

    Args:
        width: initial kernel width.

    Shape:
        see :func:`nadaraya_watson`.
    """

    def __init__(self, width: float = 1.0) -> None:
        super().__init__()
        if width <= 0:
            raise ValueError(f"the kernel width must be positive, got {width}")
        self.log_width = nn.Parameter(torch.tensor(math.log(width)))

    @property
    def width(self) -> Tensor:
        """The current kernel width, exp(log_width)."""
        return self.log_width.exp()

    def forward(
        self, queries: Tensor, keys: Tensor, values: Tensor, mask: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        return nadaraya_watson(queries, keys, values, self.width, mask)


def _check_qkv(query: Tensor, key: Tensor, value: Tensor) -> None:
    """Validate batch-first (..., T, Cq), (..., S, Ck), (..., S, Cv) tensors."""
    for name, t in (("query", query), ("key", key), ("value", value)):
        if not isinstance(t, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() < 2:
            raise ValueError(
                f"{name} must have shape (..., length, features), got {tuple(t.shape)}"
            )
        if not t.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got {t.dtype}")
    if key.shape[:-1] != value.shape[:-1]:
        raise ValueError(
            f"key {tuple(key.shape)} and value {tuple(value.shape)} must agree in every "
            "dimension but the last (one value per key)"
        )
    if query.shape[:-2] != key.shape[:-2]:
        raise ValueError(
            f"query {tuple(query.shape)} and key {tuple(key.shape)} must have the same "
            "leading (batch/head) dimensions"
        )


def dot_product_scores(query: Tensor, key: Tensor, scale: bool | float = True) -> Tensor:
    """Dot-product scores q . k = |q| |k| cos(angle), optionally divided by sqrt(D).

    Cheap (one matrix product for all pairs) and a similarity: large when q and
    k point the same way. Luong et al. (2015) use it unscaled ("dot");
    Vaswani et al. (2017) divide by sqrt(D) to keep the variance at 1.

    Args:
        query, key: same feature size D.
        scale: ``True`` divides by sqrt(D), ``False`` does not, a float multiplies by it.

    Shape:
        query (..., T, D), key (..., S, D) -> scores (..., T, S).
    """
    if query.shape[-1] != key.shape[-1]:
        raise ValueError(
            f"dot-product scores need equal feature sizes, got query {query.shape[-1]} "
            f"and key {key.shape[-1]}; use AdditiveAttention or project them first"
        )
    scores = query @ key.transpose(-2, -1)  # (..., T, S)
    if scale is True:
        return scores / math.sqrt(query.shape[-1])
    if scale is False:
        return scores
    return scores * scale


def additive_scores(query_h: Tensor, key_h: Tensor, w_v: Tensor) -> Tensor:
    """Additive scores w_v . tanh(W_q q + W_k k) from already projected queries and keys.

    Args:
        query_h: W_q q, the projected queries.
        key_h: W_k k, the projected keys (project once, reuse for every query).
        w_v: the scoring vector.

    Shape:
        query_h (B, T, A), key_h (B, S, A), w_v (A,) -> scores (B, T, S).
    """
    features = torch.tanh(query_h.unsqueeze(-2) + key_h.unsqueeze(-3))  # (B, T, S, A)
    return features @ w_v  # (B, T, S)


class AdditiveAttention(nn.Module):
    """Additive (Bahdanau) attention: a one-hidden-layer network scores each (q, k) pair.

    score(q, k) = w_v . tanh(W_q q + W_k k). Queries and keys may have different
    sizes, which is how Bahdanau et al. (2014) compare a decoder state with
    encoder states.

    Args:
        query_size: features of a query (Cq).
        key_size: features of a key (Ck).
        hidden_size: size A of the scoring layer.
        dropout: dropout on the attention weights during training.

    Shape:
        forward: query (B, T, Cq), key (B, S, Ck), value (B, S, Cv), mask broadcastable
        to (B, T, S) -> output (B, T, Cv), weights (B, T, S).
    """

    def __init__(
        self, query_size: int, key_size: int, hidden_size: int, dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.query_size, self.key_size = query_size, key_size
        self.W_q = nn.Linear(query_size, hidden_size, bias=False)
        self.W_k = nn.Linear(key_size, hidden_size, bias=False)
        self.w_v = nn.Linear(hidden_size, 1, bias=False)
        self.dropout = nn.Dropout(dropout)

    def project_keys(self, key: Tensor) -> Tensor:
        """W_k k: compute once per source sentence and pass as ``key_h`` at every step."""
        return self.W_k(key)  # (B, S, A)

    def forward(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        mask: Tensor | None = None,
        *,
        key_h: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        _check_qkv(query, key, value)
        if query.shape[-1] != self.query_size:
            raise ValueError(
                f"query has {query.shape[-1]} features but the layer expects {self.query_size}"
            )
        if key.shape[-1] != self.key_size:
            raise ValueError(
                f"key has {key.shape[-1]} features but the layer expects {self.key_size}"
            )
        if key_h is None:
            key_h = self.W_k(key)  # (B, S, A)
        scores = additive_scores(self.W_q(query), key_h, self.w_v.weight[0])  # (B, T, S)
        weights = masked_softmax(scores, mask)  # (B, T, S)
        return self.dropout(weights) @ value, weights  # (B, T, Cv)


class DotProductAttention(nn.Module):
    """Scaled dot-product attention as a module (no parameters): see the function.

    Args:
        dropout: dropout on the attention weights during training.

    Shape:
        query (..., T, D), key (..., S, D), value (..., S, Dv) -> (..., T, Dv), (..., T, S).
    """

    def __init__(self, dropout: float = 0.0) -> None:
        super().__init__()
        self.dropout = dropout

    def forward(
        self, query: Tensor, key: Tensor, value: Tensor, mask: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        return scaled_dot_product_attention(
            query, key, value, mask, dropout_p=self.dropout, training=self.training
        )


# ---------------------------------------------------------------------------
# Chapter 6: scaled dot-product and multi-head attention
# ---------------------------------------------------------------------------


def scaled_dot_product_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    mask: Tensor | None = None,
    dropout_p: float = 0.0,
    training: bool = True,
    *,
    scale: float | None = None,
    bias: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """softmax(Q K^T / sqrt(D) + bias, masked) V, written out in plain operations.

    The reference implementation the book reads and plots; :class:`MultiHeadAttention`
    can switch to PyTorch's fused kernel, and the tests prove the two agree.
    From Vaswani et al. (2017), "Attention Is All You Need", equation (1).

    Args:
        q, k, v: queries, keys and values (keys and values have the same length S).
        mask: bool, ``True`` = may attend, broadcastable to (..., T, S). A query row with
            nothing to attend to returns zeros.
        dropout_p: probability of dropping an attention weight (only when ``training``).
        training: apply dropout or not (pass ``module.training``).
        scale: multiply the scores by this instead of 1/sqrt(D).
        bias: float tensor added to the scores before masking (relative positions, ALiBi).

    Returns:
        ``(output, weights)``; the weights are before dropout (for plots).

    Shape:
        q (..., T, D), k (..., S, D), v (..., S, Dv) -> output (..., T, Dv), weights (..., T, S).
    """
    _check_qkv(q, k, v)
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(
            f"queries have {q.shape[-1]} features but keys have {k.shape[-1]}; "
            "dot-product attention needs them equal"
        )
    if not 0.0 <= dropout_p < 1.0:
        raise ValueError(f"dropout_p must be in [0, 1), got {dropout_p}")
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    scores = (q @ k.transpose(-2, -1)) * scale  # (..., T, S)
    if bias is not None:
        scores = scores + bias  # (..., T, S)
    weights = masked_softmax(scores, mask)  # (..., T, S)
    dropped = F.dropout(weights, dropout_p) if (training and dropout_p > 0) else weights
    return dropped @ v, weights  # (..., T, Dv)


class PositionalHooks(Protocol):
    """What :class:`MultiHeadAttention` needs from a positional scheme (chapter 7)."""

    def rotate(self, q: Tensor, k: Tensor, q_pos: Tensor, k_pos: Tensor) -> tuple[Tensor, Tensor]:
        """Return rotated (q, k), shapes (B, H, T, D) and (B, H, S, D)."""
        ...

    def score_bias(self, q: Tensor, q_pos: Tensor, k_pos: Tensor) -> Tensor | None:
        """Return None or a float tensor broadcastable to (B, H, T, S)."""
        ...


def _value_term_of(positional: object | None):
    """The scheme's ``value_term`` method if it has learned value vectors, else None."""
    if positional is None or getattr(positional, "values", None) is None:
        return None
    return getattr(positional, "value_term", None)


class StepWeights(NamedTuple):
    """One attention layer's weights arranged for :meth:`MultiHeadAttention.step`.

    Attributes:
        w_in, b_in: (3C, C) and (3C,) stacked query/key/value projection for
            self-attention; (C, C) and (C,) query projection for cross-attention.
        w_out, b_out: output projection (C, C), (C,).
    """

    w_in: Tensor
    b_in: Tensor | None
    w_out: Tensor
    b_out: Tensor | None


class KVCache:
    """Keys and values kept between decoding steps, so each step projects only new tokens.

    * A growing cache (``static=False``, self-attention in a decoder): every call of
      :class:`MultiHeadAttention` appends the keys and values of the new tokens and
      attends over everything cached so far.
    * A static cache (``static=True``, cross-attention): the encoder memory is
      projected into keys and values on the first call and reused afterwards.

    A growing cache writes into preallocated storage whose capacity doubles when it
    fills up (as a Python list does), so appending one position copies one position,
    not the whole history: ``torch.cat`` at every step would copy O(T) values per step
    and O(T^2) over a sequence.

    Attributes:
        k, v: cached projected keys and values, or ``None`` before the first call
            (for a growing cache, views of the filled part of the storage).
        capacity: positions the storage holds before it must grow.

    Shape:
        k, v: (B, H, S, D) with S the number of cached positions.
    """

    def __init__(self, static: bool = False) -> None:
        self.static = static
        self._k: Tensor | None = None  # (B, H, capacity, D)
        self._v: Tensor | None = None
        self._len = 0

    @property
    def k(self) -> Tensor | None:
        return None if self._k is None else self._k[:, :, : self._len]

    @k.setter
    def k(self, value: Tensor | None) -> None:
        self._k = value
        self._len = 0 if value is None else value.shape[-2]

    @property
    def v(self) -> Tensor | None:
        return None if self._v is None else self._v[:, :, : self._len]

    @v.setter
    def v(self, value: Tensor | None) -> None:
        self._v = value

    @property
    def capacity(self) -> int:
        return 0 if self._k is None else self._k.shape[-2]

    def __len__(self) -> int:
        return self._len

    def __repr__(self) -> str:
        kind = "static" if self.static else "growing"
        k = self.k
        shape = None if k is None else tuple(k.shape)
        return f"KVCache({kind}, k={shape})"

    @property
    def is_empty(self) -> bool:
        return self._k is None

    def append(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Add new keys/values (B, H, S_new, D) and return all of them (B, H, S, D).

        When autograd records the new keys or values (training through a cache, e.g.
        a loss over several cached steps), the cache concatenates instead of writing
        in place, so backward sees every step's tensors unchanged: the same numbers
        as ``torch.cat``, at ``torch.cat``'s cost. Inference writes in place.
        """
        n = k.shape[2]
        if torch.is_grad_enabled() and (k.requires_grad or v.requires_grad):
            return self._append_for_autograd(k, v)
        if self._k is None or self._v is None:
            self._k = k.new_empty(k.shape[0], k.shape[1], max(16, 2 * n), k.shape[3])
            self._v = v.new_empty(v.shape[0], v.shape[1], max(16, 2 * n), v.shape[3])
        elif k.shape[:2] != self._k.shape[:2] or k.shape[3] != self._k.shape[3]:
            raise ValueError(
                f"new keys {tuple(k.shape)} do not match the cached {tuple(self._k.shape)} "
                "in batch, heads or head size"
            )
        start, end = self._len, self._len + n
        if end > self._k.shape[2]:  # full: move to storage twice as large
            self._k = self._grown(self._k, end)
            self._v = self._grown(self._v, end)
        self._k.narrow(2, start, n).copy_(k)
        self._v.narrow(2, start, n).copy_(v)
        self._len = end
        return self._k.narrow(2, 0, end), self._v.narrow(2, 0, end)  # (B, H, S, D)

    def _append_for_autograd(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        if self._k is not None and self._v is not None:
            if k.shape[:2] != self._k.shape[:2] or k.shape[3] != self._k.shape[3]:
                raise ValueError(
                    f"new keys {tuple(k.shape)} do not match the cached "
                    f"{tuple(self._k.shape)} in batch, heads or head size"
                )
            k = torch.cat([self._k.narrow(2, 0, self._len), k], dim=2)  # (B, H, S, D)
            v = torch.cat([self._v.narrow(2, 0, self._len), v], dim=2)
        self._k, self._v, self._len = k, v, k.shape[2]  # exactly full: next append grows
        return k, v

    def _grown(self, storage: Tensor, needed: int) -> Tensor:
        B, H, capacity, D = storage.shape
        grown = storage.new_empty(B, H, max(needed, 2 * capacity), D)
        grown.narrow(2, 0, self._len).copy_(storage.narrow(2, 0, self._len))
        return grown

    def reorder(self, index: Tensor) -> None:
        """Keep batch rows ``index`` (B',) long, in place (see :meth:`select`)."""
        picked = self.select(index)
        self._k, self._v = picked._k, picked._v

    def select(self, index: Tensor) -> KVCache:
        """A new cache holding rows ``index`` (B',) of this one, which is left untouched."""
        new = KVCache(static=self.static)
        if self._k is not None and self._v is not None:
            new._k = self._k.index_select(0, index)  # (B', H, capacity, D)
            new._v = self._v.index_select(0, index)
            new._len = self._len
        return new

    def reset(self) -> None:
        self._k = self._v = None
        self._len = 0


class MultiHeadAttention(nn.Module):
    """Multi-head attention: H scaled dot-product attentions side by side, then mixed.

    Queries, keys and values are projected to C features, split into H heads of
    D = C / H features, attended independently (each head may learn a different
    notion of relevance), concatenated back to C and mixed by an output
    projection. Vaswani et al. (2017), section 3.2.2.

    Self-attention: ``mha(x)``. Cross-attention: ``mha(x, memory)``.

    Args:
        d_model: model size C (features of queries and of the output).
        n_heads: number of heads H; must divide ``d_model``.
        dropout: dropout on the attention weights during training.
        bias: whether the four projections have biases.
        kdim, vdim: features of keys and values when they differ from ``d_model``.
        fused: use :func:`torch.nn.functional.scaled_dot_product_attention` (fast) unless
            the weights are requested, in which case the explicit path runs.

    Shape:
        forward: query (B, T, C), key (B, S, kdim), value (B, S, vdim), mask bool
        broadcastable to (B, H, T, S) (a 3-D mask is read as (B, T, S)) ->
        output (B, T, C), weights (B, T, S) averaged over heads or (B, H, T, S), or None.
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        dropout: float = 0.0,
        bias: bool = True,
        kdim: int | None = None,
        vdim: int | None = None,
        fused: bool = True,
    ) -> None:
        super().__init__()
        if d_model <= 0 or n_heads <= 0:
            raise ValueError(f"d_model and n_heads must be positive, got {d_model}, {n_heads}")
        if d_model % n_heads != 0:
            raise ValueError(
                f"d_model={d_model} is not divisible by n_heads={n_heads}; "
                f"each head gets d_model / n_heads features (try n_heads in "
                f"{[h for h in range(1, min(d_model, 16) + 1) if d_model % h == 0]})"
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.d_model, self.n_heads = d_model, n_heads
        self.head_dim = d_model // n_heads
        self.kdim = d_model if kdim is None else kdim
        self.vdim = d_model if vdim is None else vdim
        self.dropout = dropout
        self.fused = fused
        self.q_proj = nn.Linear(d_model, d_model, bias=bias)
        self.k_proj = nn.Linear(self.kdim, d_model, bias=bias)
        self.v_proj = nn.Linear(self.vdim, d_model, bias=bias)
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Glorot-uniform projections and zero biases (as nn.MultiheadAttention)."""
        for lin in (self.q_proj, self.k_proj, self.v_proj):
            # nn.MultiheadAttention draws the packed (3C, C) matrix at once; same bound.
            bound = math.sqrt(6.0 / (lin.in_features + 3 * self.d_model))
            if lin.in_features == self.d_model:
                nn.init.uniform_(lin.weight, -bound, bound)
            else:
                nn.init.xavier_uniform_(lin.weight)
            if lin.bias is not None:
                nn.init.zeros_(lin.bias)
        if self.out_proj.bias is not None:
            nn.init.zeros_(self.out_proj.bias)

    def extra_repr(self) -> str:
        return (
            f"d_model={self.d_model}, n_heads={self.n_heads}, head_dim={self.head_dim}, "
            f"dropout={self.dropout}, fused={self.fused}"
        )

    # -- helpers -----------------------------------------------------------

    def _split_heads(self, x: Tensor) -> Tensor:
        B, L, _ = x.shape
        return x.view(B, L, self.n_heads, self.head_dim).transpose(1, 2)  # (B, H, L, D)

    def _check_inputs(self, query: Tensor, key: Tensor | None, value: Tensor | None) -> None:
        if not isinstance(query, Tensor) or query.dim() != 3:
            shape = tuple(query.shape) if isinstance(query, Tensor) else type(query).__name__
            raise ValueError(f"query must have shape (B, T, C={self.d_model}), got {shape}")
        if query.shape[-1] != self.d_model:
            raise ValueError(
                f"query has {query.shape[-1]} features but the layer expects {self.d_model}"
            )
        for name, t, size in (("key", key, self.kdim), ("value", value, self.vdim)):
            if t is None:
                continue
            if t.dim() != 3:
                raise ValueError(f"{name} must have shape (B, S, {size}), got {tuple(t.shape)}")
            if t.shape[-1] != size:
                raise ValueError(
                    f"{name} has {t.shape[-1]} features but the layer expects {size} "
                    f"(set {name[0]}dim= when building the layer)"
                )
            if t.shape[0] != query.shape[0]:
                raise ValueError(
                    f"{name} has batch size {t.shape[0]} but query has {query.shape[0]}"
                )
        if key is not None and value is not None and key.shape[1] != value.shape[1]:
            raise ValueError(
                f"key has {key.shape[1]} positions but value has {value.shape[1]}; "
                "there must be one value per key"
            )

    def _prepare_mask(self, mask: Tensor | None, B: int, T: int, S: int) -> Tensor | None:
        if mask is None:
            return None
        if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
            got = mask.dtype if isinstance(mask, Tensor) else type(mask).__name__
            raise TypeError(
                f"mask must be a bool tensor (True = may attend), got {got}; "
                "nn.MultiheadAttention masks mean the opposite, flip them with ~"
            )
        if mask.dim() == 2 and tuple(mask.shape) == (B, S) and B != T:
            raise ValueError(
                f"a 2-D mask is read as (queries, keys) = ({T}, {S}), but this one is "
                f"{tuple(mask.shape)}: it looks like a (batch, keys) padding mask; pass "
                "mask[:, None, None, :] or transformer.masks.padding_mask(ids, pad_id)"
            )
        if mask.dim() == 3:  # (B, T, S): one mask per sequence, shared by the heads
            mask = mask.unsqueeze(1)  # (B, 1, T, S)
        _check_mask(mask, torch.Size((B, self.n_heads, T, S)))
        return mask

    # -- forward -------------------------------------------------------------

    def forward(
        self,
        query: Tensor,
        key: Tensor | None = None,
        value: Tensor | None = None,
        mask: Tensor | None = None,
        *,
        positional: PositionalHooks | None = None,
        q_pos: Tensor | None = None,
        k_pos: Tensor | None = None,
        cache: KVCache | None = None,
        need_weights: bool = False,
        average_weights: bool = True,
        is_causal: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """Attend from ``query`` to ``key``/``value`` (default: ``query`` itself).

        Args:
            query: (B, T, C).
            key, value: (B, S, kdim), (B, S, vdim); ``None`` means self-attention
                (``value`` defaults to ``key``). With a filled static cache they are ignored.
            mask: bool, ``True`` = may attend, broadcastable to (B, H, T, S) over the
                whole key sequence (cached positions included).
            positional: a scheme with ``rotate`` and ``score_bias`` hooks (chapter 7).
            q_pos, k_pos: (T,), (S,) long positions; default ``arange``, continuing after
                the cached positions when a growing cache is used.
            cache: a :class:`KVCache`; new keys/values are appended (growing) or the
                memory is projected once (static).
            need_weights: also return the attention weights (runs the explicit path).
            average_weights: average the weights over heads (B, T, S) or keep (B, H, T, S).
            is_causal: also forbid attending to later positions (aligned so the last
                query sees the last key, which is what a cache needs).

        Returns:
            ``(output (B, T, C), weights or None)``.
        """
        if value is None:
            value = key
        self._check_inputs(query, key, value)
        if key is None:
            key = value = query
        B, T, _ = query.shape

        past = 0
        if cache is not None and cache.static and not cache.is_empty:
            q = self._split_heads(self.q_proj(query))  # (B, H, T, D)
            k, v = cache.k, cache.v  # (B, H, S, D), projected on the first call
            assert k is not None and v is not None
        else:
            # Three separate products; packing them into one (3C, C) product measured
            # no faster here, because its backward must stack the three gradients.
            q = self._split_heads(self.q_proj(query))  # (B, H, T, D)
            k = self._split_heads(self.k_proj(key))  # (B, H, S_new, D)
            v = self._split_heads(self.v_proj(value))  # (B, H, S_new, D)
            if cache is not None and not cache.static:
                past = len(cache)
        S_new = k.shape[2]

        bias = None
        if positional is not None:
            dev = query.device
            if q_pos is None:
                q_pos = torch.arange(past, past + T, device=dev)  # (T,)
            k_new_pos = torch.arange(past, past + S_new, device=dev)  # (S_new,)
            if cache is not None and cache.static and not cache.is_empty:
                q, _ = positional.rotate(q, k[:, :, :0], q_pos, k_new_pos[:0])
            else:
                kp = k_new_pos if k_pos is None else k_pos[-S_new:]
                q, k = positional.rotate(q, k, q_pos, kp)  # (B, H, T, D), (B, H, S_new, D)
        if cache is not None:
            if cache.static:
                if cache.is_empty:
                    cache.k, cache.v = k, v
            else:
                k, v = cache.append(k, v)  # (B, H, S, D)
        S = k.shape[2]
        if positional is not None:
            if k_pos is None:
                k_pos = torch.arange(S, device=query.device)  # (S,)
            bias = positional.score_bias(q, q_pos, k_pos)  # broadcastable to (B, H, T, S)

        mask = self._prepare_mask(mask, B, T, S)
        if is_causal:
            causal = torch.ones(T, S, dtype=torch.bool, device=query.device).tril(S - T)
            mask = causal if mask is None else mask & causal  # (B|1, H|1, T, S)

        p = self.dropout if self.training else 0.0
        weights = None
        # Shaw et al. (2018) also add relative vectors to the values; that term needs the
        # weights themselves, so it always takes the explicit path.
        value_term = _value_term_of(positional)
        if self.fused and not need_weights and value_term is None:
            out = self._fused(q, k, v, mask, bias, p)  # (B, H, T, D)
        else:
            if value_term is not None and p > 0:
                # one dropout mask for both value parts: sum_j drop(w_ij) (v_j + a_ij)
                out, weights = scaled_dot_product_attention(
                    q, k, v, mask, dropout_p=0.0, training=False, bias=bias
                )  # (B, H, T, D), (B, H, T, S)
                used = F.dropout(weights, p)
                out = used @ v  # (B, H, T, D)
            else:
                out, weights = scaled_dot_product_attention(
                    q, k, v, mask, dropout_p=p, training=self.training, bias=bias
                )  # (B, H, T, D), (B, H, T, S)
                used = weights
            if value_term is not None:
                assert q_pos is not None and k_pos is not None
                out = out + value_term(used, q_pos, k_pos)  # (B, H, T, D)
            if average_weights:
                weights = weights.mean(dim=1)  # (B, T, S)
        out = out.transpose(1, 2).reshape(B, T, self.d_model)  # (B, T, C)
        return self.out_proj(out), weights

    def step_weights(self, cross: bool = False) -> StepWeights:
        """This layer's weights arranged for :meth:`step`, gathered once per decode.

        For self-attention the query, key and value matrices are stacked into one
        (3C, C) matrix, so a step projects the new position with one product instead
        of three. The stacked matrix is a copy: gather again after changing weights.
        """
        if cross:
            w_in, b_in = self.q_proj.weight, self.q_proj.bias  # keys/values are cached
        else:
            if self.kdim != self.d_model or self.vdim != self.d_model:
                raise ValueError("self-attention steps need kdim == vdim == d_model")
            lins = (self.q_proj, self.k_proj, self.v_proj)
            with torch.no_grad():
                w_in = torch.cat([lin.weight for lin in lins])  # (3C, C)
                b_in = None
                if self.q_proj.bias is not None:
                    b_in = torch.cat([lin.bias for lin in lins])  # (3C,)
        return StepWeights(w_in, b_in, self.out_proj.weight, self.out_proj.bias)

    def fill_cache(self, cache: KVCache, memory: Tensor) -> None:
        """Project the encoder memory (B, S, kdim) into a static cache's keys and values."""
        cache.k = self._split_heads(self.k_proj(memory))  # (B, H, S, D)
        cache.v = self._split_heads(self.v_proj(memory))  # (B, H, S, D)

    def step(
        self,
        x: Tensor,
        cache: KVCache,
        mask: Tensor | None = None,
        *,
        weights: StepWeights | None = None,
        memory: Tensor | None = None,
        positional: PositionalHooks | None = None,
        pos: int = 0,
    ) -> Tensor:
        """Attention for one new position per row: the inner loop of cached decoding.

        Computes what :meth:`forward` computes for a single query with a cache, in
        fewer operations. At batch 1 a decoding step is a few dozen tiny operations,
        each of which costs microseconds of bookkeeping whatever its size, so the step
        uses weights gathered once per decode (:meth:`step_weights`: one stacked
        projection for queries, keys and values) and skips the general method's
        checks, reshapes and branches. Inference only: no dropout, no weights returned.

        Args:
            x: the new position, (B, C).
            cache: a growing cache (self-attention) or a static one (cross-attention;
                filled from ``memory`` on the first call if empty).
            mask: bool, True = may attend, broadcastable to (B, H, 1, S).
            weights: from :meth:`step_weights` (gathered here when omitted).
            memory: (B, S, kdim), only needed to fill an empty static cache.
            positional: a scheme with ``rotate``/``score_bias`` hooks (self-attention).
            pos: position of the new token (the number of positions cached before it).

        Returns:
            (B, C).
        """
        if self.training:
            raise RuntimeError("MultiHeadAttention.step is for inference; call .eval() first")
        B, C = x.shape
        H, D = self.n_heads, self.head_dim
        bias = None
        if cache.static:
            if weights is None:
                weights = self.step_weights(cross=True)
            if cache.is_empty:
                if memory is None:
                    raise ValueError("the first cross-attention step needs memory=")
                self.fill_cache(cache, memory)
            q = F.linear(x, weights.w_in, weights.b_in).view(B, H, 1, D)  # (B, H, 1, D)
            k, v = cache.k, cache.v  # (B, H, S, D)
            assert k is not None and v is not None
        else:
            if _value_term_of(positional) is not None:
                raise ValueError("schemes with value vectors need forward(), not step()")
            if weights is None:
                weights = self.step_weights()
            qkv = F.linear(x, weights.w_in, weights.b_in).view(B, 3, H, 1, D)
            q, k, v = qkv.unbind(1)  # each (B, H, 1, D)
            if positional is not None:
                q_pos = torch.tensor([pos], device=x.device)  # (1,)
                q, k = positional.rotate(q, k, q_pos, q_pos)
                k, v = cache.append(k, v)  # (B, H, S, D)
                k_pos = torch.arange(k.shape[2], device=x.device)  # (S,)
                bias = positional.score_bias(q, q_pos, k_pos)  # broadcastable to (B, H, 1, S)
            else:
                k, v = cache.append(k, v)  # (B, H, S, D)
        if mask is not None and mask.dim() == 3:
            mask = mask.unsqueeze(1)  # (B, 1, 1, S)
        out = self._fused(q, k, v, mask, bias, 0.0)  # (B, H, 1, D)
        return F.linear(out.view(B, C), weights.w_out, weights.b_out)  # (B, C)

    @staticmethod
    def _fused(
        q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, bias: Tensor | None, p: float
    ) -> Tensor:
        """PyTorch's fused kernel, made safe for query rows with nothing to attend to."""
        if mask is None and bias is None:
            return F.scaled_dot_product_attention(q, k, v, dropout_p=p)  # (B, H, T, D)
        keep = None
        if mask is not None:
            # A fully masked row would be -inf everywhere: NaN on some backends and
            # with float masks. Let such rows attend to everything, then zero them.
            keep = mask.any(dim=-1, keepdim=True)  # (..., T, 1)
            mask = mask | ~keep
        attn_mask: Tensor | None = mask
        if bias is not None:
            attn_mask = bias.to(q.dtype)
            if mask is not None:
                attn_mask = attn_mask.masked_fill(~mask, float("-inf"))  # (.., T, S)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=p)
        if keep is not None:
            out = out.masked_fill(~keep, 0.0)  # (B, H, T, D)
        return out

    # -- interoperability with torch.nn.MultiheadAttention --------------------

    @torch.no_grad()
    def copy_from_torch(self, mha: nn.MultiheadAttention) -> MultiHeadAttention:
        """Copy the weights of a ``torch.nn.MultiheadAttention`` of the same shape."""
        if mha.embed_dim != self.d_model or mha.num_heads != self.n_heads:
            raise ValueError(
                f"shapes differ: torch module has embed_dim={mha.embed_dim}, "
                f"num_heads={mha.num_heads}; this one d_model={self.d_model}, "
                f"n_heads={self.n_heads}"
            )
        if mha.in_proj_weight is not None:
            wq, wk, wv = mha.in_proj_weight.chunk(3)
        else:
            wq, wk, wv = mha.q_proj_weight, mha.k_proj_weight, mha.v_proj_weight
        for lin, w in ((self.q_proj, wq), (self.k_proj, wk), (self.v_proj, wv)):
            lin.weight.copy_(w)
        self.out_proj.weight.copy_(mha.out_proj.weight)
        if mha.in_proj_bias is not None:
            for lin, b in zip((self.q_proj, self.k_proj, self.v_proj), mha.in_proj_bias.chunk(3)):
                lin.bias.copy_(b)
            self.out_proj.bias.copy_(mha.out_proj.bias)
        return self

    @torch.no_grad()
    def copy_to_torch(self, mha: nn.MultiheadAttention) -> nn.MultiheadAttention:
        """Copy these weights into a ``torch.nn.MultiheadAttention`` of the same shape."""
        if mha.embed_dim != self.d_model or mha.num_heads != self.n_heads:
            raise ValueError(
                f"shapes differ: torch module has embed_dim={mha.embed_dim}, "
                f"num_heads={mha.num_heads}; this one d_model={self.d_model}, "
                f"n_heads={self.n_heads}"
            )
        ws = (self.q_proj.weight, self.k_proj.weight, self.v_proj.weight)
        if mha.in_proj_weight is not None:
            mha.in_proj_weight.copy_(torch.cat(ws))
        else:
            mha.q_proj_weight.copy_(ws[0])
            mha.k_proj_weight.copy_(ws[1])
            mha.v_proj_weight.copy_(ws[2])
        mha.out_proj.weight.copy_(self.out_proj.weight)
        if mha.in_proj_bias is not None and self.q_proj.bias is not None:
            mha.in_proj_bias.copy_(
                torch.cat([self.q_proj.bias, self.k_proj.bias, self.v_proj.bias])
            )
            mha.out_proj.bias.copy_(self.out_proj.bias)
        return mha


# ---------------------------------------------------------------------------
# Chapter 5: the encoder-decoder with attention
# ---------------------------------------------------------------------------

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
            self.attention = AdditiveAttention(hidden_size, hidden_size, attn_size or hidden_size)
        else:
            self.attention = DotProductAttention()
        self.out = nn.Linear(2 * hidden_size, vocab_size)

    def prepare_keys(self, memory: Tensor) -> Tensor:
        """Keys computed once per source sentence, reused at every decoding step."""
        if self.score == "additive":
            return self.attention.project_keys(memory)  # (B, S, A)
        return memory  # (B, S, H)

    def step(self, prev: Tensor, state: AttentionState) -> tuple[Tensor, AttentionState]:
        hidden = state.hidden
        s_prev = hidden[0] if isinstance(hidden, tuple) else hidden  # (B, H)
        query = s_prev.unsqueeze(1)  # (B, 1, H)
        if self.score == "additive":
            context, w = self.attention(
                query, state.memory, state.memory, state.src_mask, key_h=state.memory_keys
            )  # (B, 1, H), (B, 1, S)
        else:
            context, w = self.attention(query, state.memory_keys, state.memory, state.src_mask)
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
        self.encoder = Encoder(src_vocab_size, emb_size, hidden_size, cell, pad_id=pad_id)
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

    def step(self, prev: Tensor, state: AttentionState) -> tuple[Tensor, AttentionState]:
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
            weights.append(state.weights)
        out = torch.stack(logits, dim=1)  # (B, T, V)
        if need_weights:
            return out, torch.stack(weights, dim=1)  # (B, T, S)
        return out

    def reorder_state(self, state: AttentionState, index: Tensor) -> AttentionState:
        """Select (and repeat) batch rows of a state, for beam search. index: (B',)."""
        hidden = state.hidden
        if isinstance(hidden, tuple):
            hidden = tuple(h.index_select(0, index) for h in hidden)
        else:
            hidden = hidden.index_select(0, index)  # (B', H)
        pick = [t.index_select(0, index) for t in state[1:4]]
        w = None if state.weights is None else state.weights.index_select(0, index)
        return AttentionState(hidden, *pick, weights=w)
