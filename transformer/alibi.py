"""ALiBi, attention with linear biases (Press, Smith and Lewis, 2022; chapter 7).

The fixed, head-specific penalty on distance that :mod:`transformer.relative` lists
beside Shaw et al.'s vectors, rotary embeddings and T5 buckets (it is re-exported
there, so ``from transformer.relative import ALiBi`` works as before).

Shape letters: B batch, T query length, S key length, H heads, D head size.
"""

from __future__ import annotations

import math

import torch

from transformer.positional import (
    PositionalScheme,
    _check_positive_int,
    _per_head_bias_positions,
    relative_distances,
)

__all__ = ["ALiBi", "alibi_slopes"]


def alibi_slopes(n_heads: int) -> torch.Tensor:
    """Head slopes of ALiBi (Press, Smith and Lewis, 2022, section 3).

    For ``n`` a power of two the slopes are the geometric sequence that starts at
    ``2^(-8/n)`` and has that same ratio: for 8 heads 1/2, 1/4, ..., 1/256. For other
    counts the paper takes the slopes of the closest smaller power of two ``m`` and adds
    every other slope of the sequence for ``2m`` (the ones that fall between them).

    Shape:
        returns (n_heads,) float32.
    """
    _check_positive_int(n_heads, "n_heads")

    def power_of_two(n: int) -> list[float]:
        start = 2.0 ** (-8.0 / n)
        return [start ** (i + 1) for i in range(n)]

    m = 2 ** math.floor(math.log2(n_heads))
    slopes = power_of_two(m)
    if m < n_heads:
        slopes += power_of_two(2 * m)[0::2][: n_heads - m]
    return torch.tensor(slopes, dtype=torch.float32)


class ALiBi(PositionalScheme):
    """Attention with Linear Biases (Press, Smith and Lewis, 2022).

    Adds ``-m_h * |j - i|`` to the score of query ``i`` against key ``j`` in head ``h``:
    a fixed penalty growing linearly with distance, steep in some heads (local) and
    gentle in others (long range). Nothing is learned and nothing is added to the
    embeddings. With a causal mask this equals the paper's ``m_h * (j - i)`` for the
    visible keys; without one the penalty is symmetric, so ALiBi alone does not tell
    left from right.

    Args:
        n_heads: number of heads H; slopes from :func:`alibi_slopes`.

    Shape:
        score_bias: q (B, H, T, D), q_pos (T,), k_pos (S,) -> (1, H, T, S).
    """

    name = "alibi"
    slopes: torch.Tensor  # a buffer, registered in __init__

    def __init__(self, n_heads: int) -> None:
        super().__init__()
        self.n_heads = _check_positive_int(n_heads, "n_heads")
        self.register_buffer("slopes", alibi_slopes(n_heads), persistent=False)  # (H,)

    def score_bias(
        self,
        q: torch.Tensor,
        q_pos: torch.Tensor | None = None,
        k_pos: torch.Tensor | None = None,
    ) -> torch.Tensor:
        q_pos, k_pos = _per_head_bias_positions(q, self.n_heads, "ALiBi", q_pos, k_pos)
        dist = relative_distances(q_pos, k_pos).abs().to(self.slopes.device)  # (T, S)
        bias = -self.slopes[:, None, None] * dist[None]  # (H, T, S)
        return bias.unsqueeze(0).to(device=q.device, dtype=q.dtype)  # (1, H, T, S)

    def extra_repr(self) -> str:
        return f"n_heads={self.n_heads}"
