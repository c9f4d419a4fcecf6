"""Positional encodings: telling a permutation-equivariant layer where each token sits.

Self-attention treats its input as a set: permute the tokens and the outputs are
permuted the same way. Every scheme of chapter 7 puts order back in, at one of three
places, through the hooks of :class:`PositionalScheme`:

* ``embed``: add a vector per absolute position to the token embeddings
  (:class:`SinusoidalPositionalEncoding`, :class:`LearnedPositionalEmbedding`, here);
* ``rotate``: rotate queries and keys by an angle proportional to their position, so
  that their dot product depends only on the offset (RoPE, :mod:`transformer.relative`);
* ``score_bias``: add a term that depends on the offset to the attention scores
  (Shaw et al., T5, ALiBi, :mod:`transformer.relative`).

:class:`~transformer.multihead.MultiHeadAttention` calls ``rotate`` and ``score_bias``
when it is given ``positional=scheme``; the model calls ``embed`` on the scaled token
embeddings. :func:`transformer.relative.make_positional` builds any scheme by name.

Shape letters: B batch, T query length, S key length, H heads, D head size,
C model size (d_model).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = [
    "LearnedPositionalEmbedding",
    "NoPositionalEncoding",
    "PositionalScheme",
    "relative_distances",
    "sinusoidal_shift_matrix",
    "sinusoidal_table",
    "SinusoidalPositionalEncoding",
]


# --------------------------------------------------------------------------------------
# Input checks shared by the schemes
# --------------------------------------------------------------------------------------


def _check_positions(
    positions: torch.Tensor | None, length: int | None, name: str
) -> torch.Tensor:
    """Return ``positions`` as a (length,) long tensor, or ``arange(length)`` when None.

    ``length=None`` accepts any 1-D tensor of positions.
    """
    if positions is None:
        if length is None:
            raise ValueError(f"{name} is required here")
        return torch.arange(length)
    if not isinstance(positions, torch.Tensor):
        raise TypeError(
            f"{name} must be a torch.Tensor of integer positions, got "
            f"{type(positions).__name__}"
        )
    if positions.dtype not in (
        torch.int64,
        torch.int32,
        torch.int16,
        torch.int8,
        torch.uint8,
    ):
        raise TypeError(
            f"{name} must hold integer positions, got dtype {positions.dtype}"
        )
    if positions.dim() != 1 or (length is not None and positions.shape[0] != length):
        expected = "(P,)" if length is None else f"({length},)"
        raise ValueError(
            f"{name} must have shape {expected} to match the sequence, got "
            f"{tuple(positions.shape)}"
        )
    return positions.long()


def _check_heads(q: torch.Tensor, name: str = "q") -> None:
    if not isinstance(q, torch.Tensor) or q.dim() != 4:
        shape = tuple(q.shape) if isinstance(q, torch.Tensor) else type(q)
        raise ValueError(f"{name} must have shape (B, H, T, D), got {shape}")
    if not q.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {q.dtype}")


def _check_positive_int(value: object, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def _per_head_bias_positions(
    q: torch.Tensor,
    n_heads: int,
    what: str,
    q_pos: torch.Tensor | None,
    k_pos: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Checks shared by the per-head score biases (T5, ALiBi); returns (q_pos,
    k_pos)."""
    _check_heads(q)
    if q.shape[1] != n_heads:
        raise ValueError(
            f"queries have {q.shape[1]} heads but {what} was built for "
            f"n_heads={n_heads}"
        )
    q_pos = _check_positions(q_pos, q.shape[2], "q_pos")
    # Without key positions this is self-attention: the keys are the queries' tokens.
    k_pos = q_pos if k_pos is None else _check_positions(k_pos, None, "k_pos")
    return q_pos, k_pos


def relative_distances(q_pos: torch.Tensor, k_pos: torch.Tensor) -> torch.Tensor:
    """Signed distance from every query to every key, ``k_pos[j] - q_pos[i]``.

    Negative values are keys in the past of the query, positive values keys in its
    future.

    Shape:
        q_pos (T,), k_pos (S,) -> (T, S) long.
    """
    return k_pos.long()[None, :] - q_pos.long()[:, None]  # (T, S)


# --------------------------------------------------------------------------------------
# The interface
# --------------------------------------------------------------------------------------


class PositionalScheme(nn.Module):
    """Base class of every positional scheme: three hooks that by default do nothing.

    * ``embed(x, positions)`` returns token embeddings with position information added.
    * ``rotate(q, k, q_pos, k_pos)`` returns queries and keys after a position-dependent
      transformation (called by attention after the heads are split).
    * ``score_bias(q, q_pos, k_pos)`` returns ``None`` or an additive term for the
      attention scores, broadcastable to (B, H, T, S), in the units of the *scaled*
      scores ``q.k / sqrt(D)`` (it is added after the scaling, before the mask and the
      softmax).

    A subclass overrides the hooks it needs; the others stay the identity, so a model
    can call all three unconditionally.

    Shape:
        x (B, T, C); positions (T,) long; q (B, H, T, D); k (B, H, S, D);
        q_pos (T,) long; k_pos (S,) long.
    """

    #: Name used by :func:`~transformer.relative.make_positional`.
    name: str = "none"

    def embed(
        self, x: torch.Tensor, positions: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Add absolute position information to embeddings ``x`` (B, T, C). Default:
        none."""
        return x

    def embed_range(self, x: torch.Tensor, start: int = 0) -> torch.Tensor:
        """``embed`` for the positions ``start, ..., start + T - 1``, the usual case.

        Models always number a sequence consecutively (from 0, or from the length of the
        cache when decoding), so a scheme can slice its table instead of indexing it.
        """
        if type(self).embed is PositionalScheme.embed:  # the scheme adds nothing
            return x
        length = x.shape[1] if x.dim() >= 2 else 0  # embed() rejects a wrong shape
        positions = torch.arange(start, start + length, device=x.device)  # (T,)
        return self.embed(x, positions)

    def rotate(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        q_pos: torch.Tensor | None = None,
        k_pos: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Transform queries (B, H, T, D) and keys (B, H, S, D). Default: unchanged."""
        return q, k

    def score_bias(
        self,
        q: torch.Tensor,
        q_pos: torch.Tensor | None = None,
        k_pos: torch.Tensor | None = None,
    ) -> torch.Tensor | None:
        """Additive score term broadcastable to (B, H, T, S), or None. Default: None."""
        return None

    def forward(
        self, x: torch.Tensor, positions: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Calling a scheme on embeddings is the same as ``embed``."""
        return self.embed(x, positions)


class NoPositionalEncoding(PositionalScheme):
    """No position information at all: attention stays permutation-equivariant.

    Useful as the baseline of every experiment in chapter 7.
    """

    name = "none"


# --------------------------------------------------------------------------------------
# Absolute encodings, added to the embeddings
# --------------------------------------------------------------------------------------


def sinusoidal_table(
    n_positions: int, d_model: int, base: float = 10000.0, offset: int = 0
) -> torch.Tensor:
    """The fixed sinusoidal encoding of Vaswani et al. (2017), section 3.5.

    ``PE[p, 2i] = sin(p / base^(2i/C))`` and ``PE[p, 2i+1] = cos(p / base^(2i/C))``:
    each pair of dimensions is a clock turning at its own frequency, fast for small
    ``i`` (fine position), slow for large ``i`` (coarse position).

    Args:
        n_positions: number of rows (positions ``offset .. offset + n_positions - 1``).
        d_model: encoding size C; must be even so that sines and cosines pair up.
        base: the wavelength scale (10000 in the paper).
        offset: first position of the table.

    Shape:
        returns (n_positions, C) float32.
    """
    if not isinstance(n_positions, int) or n_positions < 0:
        raise ValueError(f"n_positions must be a non-negative int, got {n_positions!r}")
    _check_positive_int(d_model, "d_model")
    if d_model % 2:
        raise ValueError(f"d_model must be even (sin/cos pairs), got {d_model}")
    # float64 keeps p * frequency exact enough for positions in the tens of thousands.
    positions = torch.arange(offset, offset + n_positions, dtype=torch.float64)  # (P,)
    # (C/2,)
    freqs = base ** (-torch.arange(0, d_model, 2, dtype=torch.float64) / d_model)
    angles = positions[:, None] * freqs[None, :]  # (P, C/2)
    table = torch.empty(n_positions, d_model, dtype=torch.float64)  # (P, C)
    table[:, 0::2] = torch.sin(angles)
    table[:, 1::2] = torch.cos(angles)
    return table.float()


def sinusoidal_shift_matrix(
    offset: int, d_model: int, base: float = 10000.0
) -> torch.Tensor:
    """The matrix ``M`` with ``PE[p + offset] = M @ PE[p]`` for every position ``p``.

    It is block diagonal: one 2x2 rotation by ``offset * frequency_i`` per (sin, cos)
    pair, and it does not depend on ``p``. This is why Vaswani et al. (2017) expected
    the model to "easily learn to attend by relative positions".

    Shape:
        returns (C, C) float32.
    """
    _check_positive_int(d_model, "d_model")
    if d_model % 2:
        raise ValueError(f"d_model must be even (sin/cos pairs), got {d_model}")
    # (C/2,)
    freqs = base ** (-torch.arange(0, d_model, 2, dtype=torch.float64) / d_model)
    cos, sin = torch.cos(offset * freqs), torch.sin(offset * freqs)  # (C/2,)
    m = torch.zeros(d_model, d_model, dtype=torch.float64)  # (C, C)
    idx = torch.arange(0, d_model, 2)
    # sin(a + b) = sin a cos b + cos a sin b ; cos(a + b) = cos a cos b - sin a sin b
    m[idx, idx] = cos
    m[idx, idx + 1] = sin
    m[idx + 1, idx] = -sin
    m[idx + 1, idx + 1] = cos
    return m.float()


class SinusoidalPositionalEncoding(PositionalScheme):
    """Fixed sine/cosine encoding added to the token embeddings (Vaswani et al., 2017).

    The table is a non-persistent buffer (it follows ``.to(device)`` and is not saved in
    the state dict) that grows on demand, so any position can be encoded. Dropout on the
    sum, as in the paper, belongs to the model that calls ``embed``.

    Args:
        d_model: embedding size C (even).
        base: wavelength scale, 10000 in the paper.
        initial_len: rows computed up front; more are added when a longer input arrives.

    Shape:
        embed: x (B, T, C), positions (T,) long -> (B, T, C).
    """

    name = "sinusoidal"
    table: torch.Tensor  # a buffer, registered in __init__

    def __init__(
        self, d_model: int, base: float = 10000.0, initial_len: int = 512
    ) -> None:
        super().__init__()
        _check_positive_int(d_model, "d_model")
        if d_model % 2:
            raise ValueError(
                f"d_model must be even for the sinusoidal encoding, got {d_model}"
            )
        self.d_model = d_model
        self.base = float(base)
        table = sinusoidal_table(initial_len, d_model, base)  # (initial_len, C)
        self.register_buffer("table", table, persistent=False)

    def _grow(self, n_positions: int) -> None:
        # Double the table so that a stream of slightly longer inputs costs few
        # rebuilds.
        new_len = max(n_positions, 2 * self.table.shape[0])
        table = sinusoidal_table(new_len, self.d_model, self.base)
        self.table = table.to(device=self.table.device, dtype=self.table.dtype)

    def encodings(self, positions: torch.Tensor) -> torch.Tensor:
        """The encoding vectors of ``positions`` (P,) -> (P, C)."""
        if positions.numel() and int(positions.min()) < 0:
            raise ValueError(
                f"positions must be non-negative, got min {int(positions.min())}"
            )
        needed = int(positions.max()) + 1 if positions.numel() else 0
        if needed > self.table.shape[0]:
            self._grow(needed)
        return self.table[positions.to(self.table.device)]  # (P, C)

    def embed(
        self, x: torch.Tensor, positions: torch.Tensor | None = None
    ) -> torch.Tensor:
        if x.dim() != 3 or x.shape[-1] != self.d_model:
            raise ValueError(
                f"embeddings must have shape (B, T, {self.d_model}), got "
                f"{tuple(x.shape)}"
            )
        positions = _check_positions(positions, x.shape[1], "positions")
        return x + self.encodings(positions).to(x.dtype)  # (B, T, C)

    def embed_range(self, x: torch.Tensor, start: int = 0) -> torch.Tensor:
        if x.dim() != 3 or x.shape[-1] != self.d_model or start < 0:
            return super().embed_range(x, start)  # embed() explains what is wrong
        end = start + x.shape[1]
        if end > self.table.shape[0]:
            self._grow(end)
        return x + self.table[start:end].to(x.dtype)  # (B, T, C)

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, base={self.base:g}"


class LearnedPositionalEmbedding(PositionalScheme):
    """One trainable vector per absolute position, added to the token embeddings.

    Used by Gehring et al. (2017), compared with sinusoids by Vaswani et al. (2017)
    (same quality), and by BERT and GPT. It cannot encode a position it has no row for:
    asking for one raises a ValueError instead of an index error deep inside
    ``nn.Embedding``.

    Args:
        max_len: number of positions with a learned vector (0 .. max_len - 1).
        d_model: embedding size C.
        init_std: standard deviation of the initial vectors.

    Shape:
        embed: x (B, T, C), positions (T,) long -> (B, T, C).
    """

    name = "learned"

    def __init__(self, max_len: int, d_model: int, init_std: float = 0.02) -> None:
        super().__init__()
        self.max_len = _check_positive_int(max_len, "max_len")
        self.d_model = _check_positive_int(d_model, "d_model")
        # (max_len, C)
        self.weight = nn.Parameter(torch.randn(max_len, d_model) * init_std)

    def embed(
        self, x: torch.Tensor, positions: torch.Tensor | None = None
    ) -> torch.Tensor:
        if x.dim() != 3 or x.shape[-1] != self.d_model:
            raise ValueError(
                f"embeddings must have shape (B, T, {self.d_model}), got "
                f"{tuple(x.shape)}"
            )
        positions = _check_positions(positions, x.shape[1], "positions")
        if positions.numel():
            lo, hi = int(positions.min()), int(positions.max())
            if lo < 0:
                raise ValueError(f"positions must be non-negative, got min {lo}")
            if hi >= self.max_len:
                raise ValueError(
                    f"position {hi} is beyond the learned table: this embedding has "
                    f"max_len={self.max_len} rows (positions 0..{self.max_len - 1}). A "
                    "learned absolute embedding cannot encode unseen positions; use a "
                    "shorter input or a scheme that extrapolates (sinusoidal, "
                    "relative, rope, t5, alibi)."
                )
        # (B, T, C)
        return x + self.weight[positions.to(self.weight.device)].to(x.dtype)

    def embed_range(self, x: torch.Tensor, start: int = 0) -> torch.Tensor:
        bad_shape = x.dim() != 3 or x.shape[-1] != self.d_model
        if bad_shape or start < 0 or start + x.shape[1] > self.max_len:
            return super().embed_range(x, start)  # embed() explains what is wrong
        return x + self.weight[start : start + x.shape[1]].to(x.dtype)  # (B, T, C)

    def extra_repr(self) -> str:
        return f"max_len={self.max_len}, d_model={self.d_model}"
