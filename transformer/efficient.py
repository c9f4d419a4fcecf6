"""Efficient attention (chapter 13): one interface, exact attention in tiles.

Every implementation in this chapter takes queries, keys and values already split
into heads, a ``causal`` flag and, where the method allows, a key padding mask,
and returns the attention output::

    fn(q, k, v, *, causal=False, key_mask=None, **options) -> output

This module holds the interface's checks, the reference (chapter 6's formula,
which builds the whole (T, S) matrix of scores), PyTorch's fused kernel, and
exact attention computed in tiles with the online softmax (Milakov & Gimelshein
2018; the idea of FlashAttention, Dao et al. 2022), which never holds more than
one tile of scores. The approximations are in :mod:`transformer.sparse_attention`
and :mod:`transformer.linear_attention`; the registry that names them all, the
layer that plugs them into chapter 6's multi-head attention, and the cost
measurements are in :mod:`transformer.efficient_layer`.

Mask convention (the whole book): bool, ``True`` = may attend. ``key_mask`` is a
padding mask over the keys, (B, S) or chapter 6's (B, 1, 1, S) from
:func:`transformer.masks.padding_mask`. A query with nothing to attend to returns
zeros. Causal masks are aligned bottom-right, as in
:func:`~transformer.masks.causal_mask`.

Shape letters: B batch, H heads, T query length, S key length, D head size,
Dv value size.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from transformer.attention import _check_mask, scaled_dot_product_attention
from transformer.masks import causal_mask
from transformer.multihead import fused_attention

__all__ = [
    "check_qkv",
    "full_attention",
    "fused_full_attention",
    "key_mask_of",
    "tiled_attention",
]


def check_qkv(q: Tensor, k: Tensor, v: Tensor, *, same_length: bool = False) -> None:
    """Raise a clear error unless q, k, v are (B, H, T|S, D) tensors that fit."""
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, Tensor) or t.dim() != 4:
            got = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
            raise ValueError(f"{name} must have shape (B, H, T, D), got {got}")
        if not t.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got {t.dtype}")
    if q.shape[:2] != k.shape[:2] or k.shape[:2] != v.shape[:2]:
        raise ValueError(
            "q, k and v must share batch and heads (B, H), got "
            f"{tuple(q.shape[:2])}, {tuple(k.shape[:2])}, {tuple(v.shape[:2])}"
        )
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"queries have {q.shape[-1]} features but keys {k.shape[-1]}")
    if k.shape[2] != v.shape[2]:
        raise ValueError(f"got {k.shape[2]} keys but {v.shape[2]} values")
    if same_length and q.shape[2] != k.shape[2]:
        raise ValueError(
            f"this method is self-attention over one sequence: got {q.shape[2]} "
            f"queries but {k.shape[2]} keys"
        )


def key_mask_of(key_mask: Tensor | None, B: int, S: int) -> Tensor | None:
    """A key padding mask as (B, S) bool, from (B, S) or (B, 1, 1, S), or None."""
    if key_mask is None:
        return None
    if not isinstance(key_mask, Tensor) or key_mask.dtype != torch.bool:
        got = (
            key_mask.dtype if isinstance(key_mask, Tensor) else type(key_mask).__name__
        )
        raise TypeError(
            f"key_mask must be a bool tensor (True = may attend), got {got}"
        )
    if key_mask.dim() == 4 and key_mask.shape[1:3] == (1, 1):
        key_mask = key_mask[:, 0, 0, :]  # (B, S)
    if key_mask.dim() != 2 or key_mask.shape[1] != S or key_mask.shape[0] not in (1, B):
        raise ValueError(
            f"key_mask must be a padding mask of shape ({B}, {S}) or ({B}, 1, 1, {S}), "
            f"got {tuple(key_mask.shape)}; this method cannot take a general (T, S) "
            "mask"
        )
    return key_mask.expand(B, S)


def _combined_mask(
    T: int, S: int, causal: bool, key_mask: Tensor | None, mask: Tensor | None, device
) -> Tensor | None:
    """causal & key padding & any other mask, broadcastable to (B, H, T, S)."""
    out = mask
    if causal:
        c = causal_mask(T, S, device=device)  # (T, S)
        out = c if out is None else out & c
    if key_mask is not None:
        km = key_mask[:, None, None, :]  # (B, 1, 1, S)
        out = km if out is None else out & km
    return out


def full_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    causal: bool = False,
    key_mask: Tensor | None = None,
    mask: Tensor | None = None,
) -> Tensor:
    """The reference: softmax(Q K^T / sqrt(D)) V with the whole (T, S) score matrix.

    Chapter 6's :func:`~transformer.attention.scaled_dot_product_attention`; its
    time and memory grow with T * S.

    Args:
        q, k, v: queries, keys, values.
        causal: query t sees only keys up to t (aligned bottom-right).
        key_mask: bool padding mask over the keys, (B, S) or (B, 1, 1, S).
        mask: any other bool mask broadcastable to (B, H, T, S).

    Shape:
        q (B, H, T, D), k (B, H, S, D), v (B, H, S, Dv) -> (B, H, T, Dv).
    """
    check_qkv(q, k, v)
    B, _, T, _ = q.shape
    S = k.shape[2]
    km = key_mask_of(key_mask, B, S)
    allowed = _combined_mask(T, S, causal, km, mask, q.device)
    return scaled_dot_product_attention(q, k, v, allowed)[0]  # (B, H, T, Dv)


def fused_full_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    causal: bool = False,
    key_mask: Tensor | None = None,
    mask: Tensor | None = None,
) -> Tensor:
    """Full attention by PyTorch's fused kernel (``F.scaled_dot_product_attention``).

    On a GPU this dispatches to a FlashAttention kernel; on a CPU to a fused C++
    kernel that also works in tiles. Same arguments as :func:`full_attention`.

    Shape:
        q (B, H, T, D), k (B, H, S, D), v (B, H, S, Dv) -> (B, H, T, Dv).
    """
    check_qkv(q, k, v)
    B, _, T, _ = q.shape
    S = k.shape[2]
    km = key_mask_of(key_mask, B, S)
    if causal and km is None and mask is None and T == S:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    allowed = _combined_mask(T, S, causal, km, mask, q.device)
    return fused_attention(q, k, v, allowed, None, 0.0)  # (B, H, T, Dv)


def tiled_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    causal: bool = False,
    key_mask: Tensor | None = None,
    mask: Tensor | None = None,
    block_q: int = 128,
    block_k: int = 128,
) -> Tensor:
    """Exact attention in tiles with the online softmax: never the whole score matrix.

    For each block of queries, the blocks of keys are visited in turn. A running
    maximum ``m``, a running sum of exponentials ``l`` and a running weighted sum
    ``acc`` are kept per query; a new block with a larger maximum rescales the
    old ``l`` and ``acc`` by exp(m_old - m_new), so at the end ``acc / l`` is the
    softmax-weighted average, exactly. Memory: one (block_q, block_k) tile of
    scores instead of (T, S). Milakov & Gimelshein (2018), "Online normalizer
    calculation for softmax"; Dao et al. (2022), FlashAttention, algorithm 1.

    Args:
        q, k, v, causal, key_mask, mask: as :func:`full_attention`.
        block_q, block_k: tile sizes (any positive ints; the result does not depend
            on them beyond rounding).

    Shape:
        q (B, H, T, D), k (B, H, S, D), v (B, H, S, Dv) -> (B, H, T, Dv).
    """
    check_qkv(q, k, v)
    for name, size in (("block_q", block_q), ("block_k", block_k)):
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise ValueError(f"{name} must be a positive int, got {size!r}")
    B, H, T, D = q.shape
    S = k.shape[2]
    km = key_mask_of(key_mask, B, S)
    if mask is not None:
        _check_mask(mask, torch.Size((B, H, T, S)))
        mask = torch.broadcast_to(mask, mask.shape[:-2] + (T, S))  # a view, no copy
    scale = 1.0 / math.sqrt(D)
    out = q.new_zeros(B, H, T, v.shape[-1])
    for i0 in range(0, T, block_q):
        i1 = min(i0 + block_q, T)
        qi = q[:, :, i0:i1] * scale  # (B, H, bq, D)
        m = q.new_full((B, H, i1 - i0, 1), -math.inf)  # running maximum
        total = q.new_zeros(B, H, i1 - i0, 1)  # running sum of exp(score - m)
        acc = q.new_zeros(B, H, i1 - i0, v.shape[-1])  # running sum of exp(...) v
        # causal: keys after the last query of this block are never needed
        last_key = min(S, i1 + S - T) if causal else S
        for j0 in range(0, last_key, block_k):
            j1 = min(j0 + block_k, last_key)
            s = qi @ k[:, :, j0:j1].transpose(-2, -1)  # (B, H, bq, bk)
            allowed = _tile_mask(i0, i1, j0, j1, T, S, causal, km, mask, q.device)
            if allowed is not None:
                s = s.masked_fill(~allowed, -math.inf)
            m_new = torch.maximum(m, s.amax(dim=-1, keepdim=True))  # (B, H, bq, 1)
            # rows that have seen no allowed key yet keep m = -inf; use 0 as the base
            base = m_new.masked_fill(torch.isinf(m_new), 0.0)
            p = torch.exp(s - base)  # (B, H, bq, bk), masked entries exactly 0
            correction = torch.exp(m - base)  # (B, H, bq, 1), 0 while m = -inf
            total = total * correction + p.sum(dim=-1, keepdim=True)
            acc = acc * correction + p @ v[:, :, j0:j1]  # (B, H, bq, Dv)
            m = m_new
        # a row that saw no allowed key has total = 0 and acc = 0: output zeros
        out[:, :, i0:i1] = acc / total.clamp_min(torch.finfo(total.dtype).tiny)
    return out


def _tile_mask(
    i0: int,
    i1: int,
    j0: int,
    j1: int,
    T: int,
    S: int,
    causal: bool,
    km: Tensor | None,
    mask: Tensor | None,
    device,
) -> Tensor | None:
    """The (.., bq, bk) slice of causal & key padding & mask for one tile."""
    out = None if mask is None else mask[..., i0:i1, j0:j1]
    if causal and j1 - 1 > i0 + S - T:  # some key of the tile is after some query
        rows = torch.arange(i0, i1, device=device)[:, None] + (S - T)  # (bq, 1)
        c = torch.arange(j0, j1, device=device)[None, :] <= rows  # (bq, bk)
        out = c if out is None else out & c
    if km is not None:
        tile = km[:, None, None, j0:j1]  # (B, 1, 1, bk)
        out = tile if out is None else out & tile
    return out
