"""Relative positions: Shaw et al.'s vectors, rotary embeddings, T5 buckets, ALiBi
(chapter 7).

Absolute schemes (:mod:`transformer.positional`) tell each token where it is; these
schemes tell attention how far apart two tokens are, inside the attention layer:

* :class:`RelativePositionRepresentations` (Shaw et al., 2018) learns a vector per
  clipped distance, added to the keys (and optionally the values);
* :class:`RotaryEmbedding` (Su et al., 2021) rotates queries and keys by their
  positions, so their dot product depends only on the offset;
* :class:`T5RelativeBias` (Raffel et al., 2020) learns one scalar per head and
  log-spaced distance bucket, added to the scores;
* :class:`ALiBi` (Press et al., 2022) adds a fixed, head-specific linear penalty.

:func:`make_positional` builds any scheme of chapter 7 from its name.

Shape letters: B batch, T query length, S key length, H heads, D head size,
C model size (d_model), R number of relative distances or buckets.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from transformer.alibi import ALiBi, alibi_slopes
from transformer.positional import (
    LearnedPositionalEmbedding,
    NoPositionalEncoding,
    PositionalScheme,
    SinusoidalPositionalEncoding,
    _check_heads,
    _check_positions,
    _check_positive_int,
    _per_head_bias_positions,
    relative_distances,
)

__all__ = [
    "ALiBi",
    "alibi_slopes",
    "make_positional",
    "POSITIONAL_SCHEMES",
    "RelativePositionRepresentations",
    "RotaryEmbedding",
    "rotate_pairs",
    "t5_bucket",
    "T5RelativeBias",
]


# --------------------------------------------------------------------------------------
# Relative position representations (Shaw et al., 2018)
# --------------------------------------------------------------------------------------


class RelativePositionRepresentations(PositionalScheme):
    """Learned vectors for clipped relative distances (Shaw, Uszkoreit and Vaswani,
    2018).

    The key term changes the score of query ``i`` against key ``j`` to
    ``q_i . (k_j + a^K_{clip(j - i)}) / sqrt(D)``; the extra part
    ``q_i . a^K_{clip(j-i)} / sqrt(D)`` is returned by ``score_bias``, so it depends on
    the query's content as well as on the distance. Distances beyond ``max_distance``
    share the vector of ``+-max_distance``, which is what lets the scheme run at any
    length. As in the paper, the vectors are shared across heads.

    The optional value term adds ``sum_j w_ij a^V_{clip(j - i)}`` to each head's output;
    :meth:`value_term` computes it from the attention weights; the score hooks cannot
    express it, so :class:`~transformer.multihead.MultiHeadAttention` calls it itself
    (on its explicit path) whenever the scheme has value vectors.

    Args:
        head_dim: size D of one head.
        max_distance: clipping distance k (Shaw et al. found k >= 2 enough for
            translation).
        values: also learn the value vectors ``a^V``.
        init_std: standard deviation of the initial vectors.

    Shape:
        score_bias: q (B, H, T, D), q_pos (T,), k_pos (S,) -> (B, H, T, S).
        value_term: weights (B, H, T, S), q_pos (T,), k_pos (S,) -> (B, H, T, D).
    """

    name = "relative"

    def __init__(
        self,
        head_dim: int,
        max_distance: int = 16,
        values: bool = False,
        init_std: float = 0.02,
    ) -> None:
        super().__init__()
        self.head_dim = _check_positive_int(head_dim, "head_dim")
        self.max_distance = _check_positive_int(max_distance, "max_distance")
        n_rel = 2 * max_distance + 1
        self.keys = nn.Parameter(torch.randn(n_rel, head_dim) * init_std)  # (R, D)
        self.values = (
            nn.Parameter(torch.randn(n_rel, head_dim) * init_std) if values else None
        )

    def relative_index(self, q_pos: torch.Tensor, k_pos: torch.Tensor) -> torch.Tensor:
        """Row of the table used by each (query, key) pair: ``clip(j - i) +
        max_distance``."""
        dist = relative_distances(q_pos, k_pos)  # (T, S)
        # (T, S)
        return dist.clamp(-self.max_distance, self.max_distance) + self.max_distance

    def _check_q(self, q: torch.Tensor) -> None:
        _check_heads(q)
        if q.shape[-1] != self.head_dim:
            raise ValueError(
                f"queries have head size {q.shape[-1]} but these relative "
                f"representations were built for head_dim={self.head_dim}"
            )

    def score_bias(
        self,
        q: torch.Tensor,
        q_pos: torch.Tensor | None = None,
        k_pos: torch.Tensor | None = None,
    ) -> torch.Tensor:
        self._check_q(q)
        B, H, T, D = q.shape
        q_pos = _check_positions(q_pos, T, "q_pos").to(q.device)
        # Without key positions this is self-attention: the keys are the queries'
        # tokens.
        k_pos = (
            q_pos
            if k_pos is None
            else _check_positions(k_pos, None, "k_pos").to(q.device)
        )
        # Score every query against all R distance vectors once, then pick per key:
        # cheaper than building a (T, S, D) tensor of vectors.
        rel_scores = q @ self.keys.to(q.dtype).t() / math.sqrt(D)  # (B, H, T, R)
        index = self.relative_index(q_pos, k_pos)  # (T, S)
        index = index.expand(B, H, -1, -1)  # (B, H, T, S)
        return torch.gather(rel_scores, -1, index)  # (B, H, T, S)

    def value_term(
        self,
        weights: torch.Tensor,
        q_pos: torch.Tensor | None = None,
        k_pos: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The value part ``sum_j weights[..., i, j] * a^V_{clip(j - i)}`` to add to
        each head.

        Args:
            weights: attention weights (after softmax and mask).
        """
        if self.values is None:
            raise ValueError(
                "this scheme has no value vectors; build it with values=True"
            )
        _check_heads(weights, "weights")
        B, H, T, S = weights.shape
        q_pos = _check_positions(q_pos, T, "q_pos").to(weights.device)
        k_pos = _check_positions(k_pos, S, "k_pos").to(weights.device)
        index = self.relative_index(q_pos, k_pos).expand(B, H, -1, -1)  # (B, H, T, S)
        n_rel = self.values.shape[0]
        # Sum the weights that fall on the same clipped distance, then mix the R
        # vectors.
        per_distance = weights.new_zeros(B, H, T, n_rel)  # (B, H, T, R)
        per_distance.scatter_add_(-1, index, weights)
        return per_distance @ self.values.to(weights.dtype)  # (B, H, T, D)

    def extra_repr(self) -> str:
        return (
            f"head_dim={self.head_dim}, max_distance={self.max_distance}, "
            f"values={self.values is not None}"
        )


# --------------------------------------------------------------------------------------
# Rotary position embedding (Su et al., 2021)
# --------------------------------------------------------------------------------------


def rotate_pairs(x: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Rotate each pair of features ``(x[2i], x[2i+1])`` by ``angles[..., i]``.

    This is the rotation matrix of RoFormer (Su et al., 2021, eq. 15) applied without
    building it: ``(a, b) -> (a cos t - b sin t, a sin t + b cos t)``.

    Shape:
        x (..., T, D), angles (T, D/2) -> (..., T, D).
    """
    a, b = x[..., 0::2], x[..., 1::2]  # (..., T, D/2) each
    cos = torch.cos(angles).to(device=x.device, dtype=x.dtype)  # (T, D/2)
    sin = torch.sin(angles).to(device=x.device, dtype=x.dtype)
    # (..., T, D/2, 2)
    out = torch.stack((a * cos - b * sin, a * sin + b * cos), dim=-1)
    return out.flatten(-2)  # (..., T, D)


class RotaryEmbedding(PositionalScheme):
    """Rotary position embedding, RoPE (Su et al., 2021).

    Rotates the pair ``(2i, 2i+1)`` of every query and key by ``position * theta_i``
    with ``theta_i = base^(-2i/D)``. A rotation by ``m theta`` followed by one by ``-n
    theta`` is a rotation by ``(m - n) theta``, so ``rot(q, m) . rot(k, n)`` depends on
    the positions only through the offset ``m - n``, and rotations keep the vectors'
    norms. Nothing is learned and nothing is added to the embeddings; angles are
    computed on the fly, so any position works.

    Args:
        head_dim: size D of one head (even).
        base: 10000 in the paper.

    Shape:
        rotate: q (B, H, T, D), k (B, H, S, D), q_pos (T,), k_pos (S,) -> same shapes.
    """

    name = "rope"

    def __init__(self, head_dim: int, base: float = 10000.0) -> None:
        super().__init__()
        _check_positive_int(head_dim, "head_dim")
        if head_dim % 2:
            raise ValueError(
                "RoPE rotates pairs of features, so head_dim must be even, got "
                f"{head_dim}"
            )
        self.head_dim = head_dim
        self.base = float(base)
        # A plain float64 CPU tensor, deliberately not a buffer: ``model.to(bfloat16)``
        # would round a buffer (angle errors of 0.2 rad by position 500), and float64
        # does not exist on every device (MPS). Angles are exact here and only their
        # cosines and sines are cast to the model's dtype and device.
        self.inv_freq = base ** (
            -torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim
        )

    def angles(self, positions: torch.Tensor) -> torch.Tensor:
        """Rotation angle of every pair at every position: (P,) -> (P, D/2), float64 on
        CPU."""
        pos = positions.to(device="cpu", dtype=torch.float64)
        return pos[:, None] * self.inv_freq[None, :]  # (P, D/2)

    def _check(self, x: torch.Tensor, name: str) -> None:
        _check_heads(x, name)
        if x.shape[-1] != self.head_dim:
            raise ValueError(
                f"{name} has head size {x.shape[-1]} but this RoPE was built for "
                f"head_dim={self.head_dim}"
            )

    def rotate(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        q_pos: torch.Tensor | None = None,
        k_pos: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        self._check(q, "q")
        self._check(k, "k")
        q_pos = _check_positions(q_pos, q.shape[2], "q_pos")
        k_pos = _check_positions(k_pos, k.shape[2], "k_pos")
        q_rot = rotate_pairs(q, self.angles(q_pos))  # (B, H, T, D)
        k_rot = rotate_pairs(k, self.angles(k_pos))  # (B, H, S, D)
        return q_rot, k_rot

    def extra_repr(self) -> str:
        return f"head_dim={self.head_dim}, base={self.base:g}"


# --------------------------------------------------------------------------------------
# Learned biases on the scores: T5 buckets (ALiBi's fixed ones: transformer.alibi)
# --------------------------------------------------------------------------------------


def t5_bucket(
    distance: torch.Tensor,
    num_buckets: int = 32,
    max_distance: int = 128,
    bidirectional: bool = True,
) -> torch.Tensor:
    """Map signed distances ``j - i`` to bucket ids as in T5 (Raffel et al., 2020).

    Small distances get a bucket each; larger ones share logarithmically wider buckets
    up to ``max_distance``, beyond which everything falls into the last bucket. With
    ``bidirectional`` half of the buckets are for keys after the query. Without it (a
    causal decoder) only the past is distinguished and every future key is treated as
    distance 0 (the causal mask hides those keys anyway).

    Shape:
        distance (...) long -> (...) long in [0, num_buckets).
    """
    _check_positive_int(num_buckets, "num_buckets")
    _check_positive_int(max_distance, "max_distance")
    if bidirectional:
        if num_buckets < 4:
            msg = f"bidirectional T5 buckets need num_buckets >= 4, got {num_buckets}"
            raise ValueError(msg)
        num_buckets //= 2
        bucket = (distance > 0).long() * num_buckets  # future keys use the upper half
        n = distance.abs()
    else:
        if num_buckets < 2:
            raise ValueError(f"T5 buckets need num_buckets >= 2, got {num_buckets}")
        bucket = torch.zeros_like(distance)
        n = (-distance).clamp(min=0)  # how far in the past
    max_exact = num_buckets // 2
    if max_distance <= max_exact:
        raise ValueError(
            f"max_distance ({max_distance}) must exceed the exact range "
            f"({max_exact} distances) of {num_buckets} buckets"
        )
    is_small = n < max_exact
    # clamp(min=1) only avoids log(0) for the small distances that the where() discards.
    log_ratio = torch.log(n.float().clamp(min=1) / max_exact)
    scaled = log_ratio / math.log(max_distance / max_exact)  # 0 at max_exact, 1 at max
    large = max_exact + (scaled * (num_buckets - max_exact)).long()
    large = large.clamp(max=num_buckets - 1)
    return bucket + torch.where(is_small, n, large)


class T5RelativeBias(PositionalScheme):
    """A learned scalar per (head, distance bucket) added to the scores (Raffel et al.,
    2020).

    Unlike Shaw et al. the bias does not look at the query's content: it is one number
    per head and bucket. T5 computes it once and shares it across layers; share the
    module to do the same.

    Args:
        n_heads: number of heads H (each head learns its own biases).
        num_buckets: number of distance buckets (32 in T5).
        max_distance: distance from which all keys share the last bucket (128 in T5).
        bidirectional: encoder-style buckets for both directions (False in a decoder).

    Shape:
        score_bias: q (B, H, T, D), q_pos (T,), k_pos (S,) -> (1, H, T, S).
    """

    name = "t5"

    def __init__(
        self,
        n_heads: int,
        num_buckets: int = 32,
        max_distance: int = 128,
        bidirectional: bool = True,
    ) -> None:
        super().__init__()
        self.n_heads = _check_positive_int(n_heads, "n_heads")
        self.num_buckets = num_buckets
        self.max_distance = max_distance
        self.bidirectional = bidirectional
        t5_bucket(
            torch.zeros(1, dtype=torch.long), num_buckets, max_distance, bidirectional
        )
        # T5 starts the biases at zero-mean noise; a small std keeps the first steps
        # stable.
        self.bias = nn.Parameter(torch.randn(num_buckets, n_heads) * 0.02)  # (R, H)

    def score_bias(
        self,
        q: torch.Tensor,
        q_pos: torch.Tensor | None = None,
        k_pos: torch.Tensor | None = None,
    ) -> torch.Tensor:
        q_pos, k_pos = _per_head_bias_positions(
            q, self.n_heads, "this T5 bias", q_pos, k_pos
        )
        buckets = t5_bucket(
            relative_distances(q_pos, k_pos),
            self.num_buckets,
            self.max_distance,
            self.bidirectional,
        ).to(self.bias.device)  # (T, S)
        bias = self.bias[buckets]  # (T, S, H)
        return bias.permute(2, 0, 1).unsqueeze(0).to(q.dtype)  # (1, H, T, S)

    def extra_repr(self) -> str:
        return (
            f"n_heads={self.n_heads}, num_buckets={self.num_buckets}, "
            f"max_distance={self.max_distance}, bidirectional={self.bidirectional}"
        )


# --------------------------------------------------------------------------------------
# Factory
# --------------------------------------------------------------------------------------

#: Names accepted by :func:`make_positional`, mapped to their classes.
POSITIONAL_SCHEMES: dict[str, type[PositionalScheme]] = {
    "none": NoPositionalEncoding,
    "sinusoidal": SinusoidalPositionalEncoding,
    "learned": LearnedPositionalEmbedding,
    "relative": RelativePositionRepresentations,
    "rope": RotaryEmbedding,
    "t5": T5RelativeBias,
    "alibi": ALiBi,
}


def make_positional(
    name: str,
    *,
    d_model: int | None = None,
    n_heads: int | None = None,
    max_len: int | None = None,
    **options: Any,
) -> PositionalScheme:
    """Build a positional scheme from its name, so a model config can name it by string.

    Give the sizes the model has (``d_model``, ``n_heads``, ``max_len``); each scheme
    takes what it needs (the head size is ``d_model // n_heads``) and ignores the rest.
    Extra keyword ``options`` go to the scheme's constructor (e.g. ``max_distance=8``
    for "relative", ``bidirectional=False`` for "t5", ``base=500000`` for "rope").

    Args:
        name: one of "none", "sinusoidal", "learned", "relative", "rope", "t5", "alibi".

    Example:
        >>> make_positional("alibi", d_model=64, n_heads=4)
        ALiBi(n_heads=4)
    """
    if not isinstance(name, str) or name.lower() not in POSITIONAL_SCHEMES:
        raise ValueError(
            f"unknown positional scheme {name!r}; choose one of "
            f"{sorted(POSITIONAL_SCHEMES)}"
        )
    name = name.lower()

    def need(value: int | None, what: str) -> int:
        if value is None:
            raise ValueError(f"the {name!r} positional scheme needs {what}=...")
        return _check_positive_int(value, what)

    def head_dim() -> int:
        c, h = need(d_model, "d_model"), need(n_heads, "n_heads")
        if c % h:
            raise ValueError(f"d_model={c} is not divisible by n_heads={h}")
        return c // h

    if name == "none":
        return NoPositionalEncoding(**options)
    if name == "sinusoidal":
        return SinusoidalPositionalEncoding(need(d_model, "d_model"), **options)
    if name == "learned":
        n_positions, size = need(max_len, "max_len"), need(d_model, "d_model")
        return LearnedPositionalEmbedding(n_positions, size, **options)
    if name == "relative":
        return RelativePositionRepresentations(head_dim(), **options)
    if name == "rope":
        return RotaryEmbedding(head_dim(), **options)
    if name == "t5":
        return T5RelativeBias(need(n_heads, "n_heads"), **options)
    return ALiBi(need(n_heads, "n_heads"), **options)
