"""Attention: a soft, differentiable dictionary lookup (chapter 5).

A *query* is compared with every *key*; the comparison scores become weights
through a softmax; the output is the weighted average of the *values*::

    output = sum_s softmax_s(score(q, k_s)) v_s

This module holds chapter 5's attention pooling: Nadaraya-Watson kernel
regression (attention with a fixed similarity), additive (Bahdanau) and
dot-product scoring, and the masked softmax every later attention uses. The
recurrent decoder that attends is in :mod:`transformer.attention_seq2seq`;
multi-head attention (chapter 6) is in :mod:`transformer.multihead`.

Mask convention (the whole book): a boolean tensor, ``True`` = may attend,
the same as :func:`torch.nn.functional.scaled_dot_product_attention`. A query
row that may attend to nothing returns zeros, never NaN.

Shape letters: B batch, T query (target) length, S key (source) length,
D query/key size, Dv value size, I input features.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "additive_scores",
    "AdditiveAttention",
    "dot_product_scores",
    "DotProductAttention",
    "masked_softmax",
    "nadaraya_watson",
    "NadarayaWatson",
    "scaled_dot_product_attention",
]


# ---------------------------------------------------------------------------
# Chapter 5: attention pooling
# ---------------------------------------------------------------------------


def _check_mask(
    mask: Tensor | None, scores_shape: torch.Size, name: str = "mask"
) -> None:
    """Raise a clear error if ``mask`` is not a bool tensor broadcastable to the
    scores."""
    if mask is None:
        return
    if not isinstance(mask, Tensor):
        raise TypeError(
            f"{name} must be a torch.Tensor of dtype bool, got {type(mask).__name__}"
        )
    if mask.dtype != torch.bool:
        raise TypeError(
            f"{name} must have dtype torch.bool (True = may attend), got {mask.dtype}; "
            "build it with transformer.masks or compare, e.g. ids != pad_id"
        )
    if mask.dim() > len(scores_shape):
        raise ValueError(
            f"{name} has {mask.dim()} dimensions {tuple(mask.shape)} but the scores "
            f"have {len(scores_shape)} {tuple(scores_shape)}"
        )
    for m, s in zip(reversed(mask.shape), reversed(scores_shape)):
        if m != 1 and m != s:
            raise ValueError(
                f"{name} of shape {tuple(mask.shape)} does not broadcast to the "
                f"attention scores of shape {tuple(scores_shape)} (each trailing size "
                "must be 1 or equal)"
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
    """Nadaraya-Watson kernel regression with a Gaussian kernel: attention with no
    weights.

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
        queries: (T,); keys: (S,); values: (S,) or (S, Cv) -> prediction (T,) or (T,
            Cv),
        weights (T, S).
    """
    if queries.dim() != 1 or keys.dim() != 1:
        raise ValueError(
            "queries and keys must be 1-D positions, got shapes "
            f"{tuple(queries.shape)} and {tuple(keys.shape)}"
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
            f"key {tuple(key.shape)} and value {tuple(value.shape)} must agree in "
            "every dimension but the last (one value per key)"
        )
    if query.shape[:-2] != key.shape[:-2]:
        raise ValueError(
            f"query {tuple(query.shape)} and key {tuple(key.shape)} must have the same "
            "leading (batch/head) dimensions"
        )


def dot_product_scores(
    query: Tensor, key: Tensor, scale: bool | float = True
) -> Tensor:
    """Dot-product scores ``q . k = |q| |k| cos(angle)``, optionally divided by sqrt(D).

    Cheap (one matrix product for all pairs) and a similarity: large when q and
    k point the same way. Luong et al. (2015) use it unscaled ("dot");
    Vaswani et al. (2017) divide by sqrt(D) to keep the variance at 1.

    Args:
        query, key: same feature size D.
        scale: ``True`` divides by sqrt(D), ``False`` does not, a float multiplies by
            it.

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
    """Additive scores w_v . tanh(W_q q + W_k k) from already projected queries and
    keys.

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
    """Additive (Bahdanau) attention: a one-hidden-layer network scores each (q, k)
    pair.

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
        """W_k k: compute once per source sentence and pass as ``key_h`` at every
        step."""
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
                f"query has {query.shape[-1]} features but the layer expects "
                f"{self.query_size}"
            )
        if key.shape[-1] != self.key_size:
            raise ValueError(
                f"key has {key.shape[-1]} features but the layer expects "
                f"{self.key_size}"
            )
        if key_h is None:
            key_h = self.W_k(key)  # (B, S, A)
        # (B, T, S)
        scores = additive_scores(self.W_q(query), key_h, self.w_v.weight[0])
        weights = masked_softmax(scores, mask)  # (B, T, S)
        return self.dropout(weights) @ value, weights  # (B, T, Cv)


class DotProductAttention(nn.Module):
    """Scaled dot-product attention as a module (no parameters): see the function.

    Args:
        dropout: dropout on the attention weights during training.

    Shape:
        query (..., T, D), key (..., S, D), value (..., S, Dv) -> (..., T, Dv), (..., T,
        S).
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

    The reference implementation the book reads and plots;
    :class:`~transformer.multihead.MultiHeadAttention` can switch to PyTorch's fused
    kernel, and the tests prove the two agree.
    From Vaswani et al. (2017), "Attention Is All You Need", equation (1).

    Args:
        q, k, v: queries, keys and values (keys and values have the same length S).
        mask: bool, ``True`` = may attend, broadcastable to (..., T, S). A query row
            with nothing to attend to returns zeros.
        dropout_p: probability of dropping an attention weight (only when ``training``).
        training: apply dropout or not (pass ``module.training``).
        scale: multiply the scores by this instead of 1/sqrt(D).
        bias: float tensor added to the scores before masking (relative positions,
            ALiBi).

    Returns:
        ``(output, weights)``; the weights are before dropout (for plots).

    Shape:
        q (..., T, D), k (..., S, D), v (..., S, Dv) -> output (..., T, Dv), weights
        (..., T, S).
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
