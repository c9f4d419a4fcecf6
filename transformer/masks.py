"""Attention masks (chapter 6): who may attend to whom.

One convention in the whole book: a boolean tensor, ``True`` = may attend, the
same as :func:`torch.nn.functional.scaled_dot_product_attention`. (``nn.Transformer``
and ``nn.MultiheadAttention`` use the opposite; flip with ``~`` only when calling
them.) Masks are built to broadcast against attention scores of shape
(B, H, T, S), so they combine with ``&``.

Shape letters: B batch, H heads, T query length, S key length.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["causal_mask", "combine_masks", "padding_mask", "decoder_self_mask"]


def causal_mask(
    T: int, S: int | None = None, device: torch.device | str | None = None
) -> Tensor:
    """Unidirectional mask: query t may attend to key s only if s is not in its future.

    With ``S > T`` (queries that continue after S - T cached keys) the mask is
    aligned bottom-right: the last query sees every key, as in incremental decoding.

    Args:
        T: number of queries.
        S: number of keys (default ``T``); must be at least ``T``.
        device: where to build it.

    Shape:
        output (T, S) bool, ``True`` on and below the (shifted) diagonal.
    """
    S = T if S is None else S
    for name, n in (("T", T), ("S", S)):
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise ValueError(f"{name} must be a non-negative int, got {n!r}")
    if S < T:
        raise ValueError(
            "a causal mask needs at least as many keys as queries, "
            f"got T={T} queries and S={S} keys"
        )
    # (T, S)
    return torch.ones(T, S, dtype=torch.bool, device=device).tril(diagonal=S - T)


def padding_mask(ids: Tensor, pad_id: int) -> Tensor:
    """Key-padding mask: every query may attend to the real (non-pad) tokens only.

    Args:
        ids: token ids, padded with ``pad_id``.
        pad_id: the padding id (``vocab.pad_id``).

    Shape:
        ids (B, S) long -> output (B, 1, 1, S) bool, broadcasting over heads and
        queries.
    """
    if not isinstance(ids, Tensor) or ids.dim() != 2:
        shape = tuple(ids.shape) if isinstance(ids, Tensor) else type(ids).__name__
        raise ValueError(f"ids must be a (B, S) tensor of token ids, got {shape}")
    if ids.is_floating_point() or ids.dtype == torch.bool:
        raise TypeError(f"ids must be integer token ids, got dtype {ids.dtype}")
    return (ids != pad_id)[:, None, None, :]  # (B, 1, 1, S)


def combine_masks(*masks: Tensor | None) -> Tensor | None:
    """Logical AND of masks that broadcast together (``None`` entries are skipped).

    A position may be attended to only if every mask allows it.

    Shape:
        e.g. (B, 1, 1, S) & (T, S) -> (B, 1, T, S).
    """
    result: Tensor | None = None
    for m in masks:
        if m is None:
            continue
        if not isinstance(m, Tensor) or m.dtype != torch.bool:
            got = m.dtype if isinstance(m, Tensor) else type(m).__name__
            want = "bool tensors (True = may attend)"
            raise TypeError(f"masks must be {want}, got {got}")
        if result is None:
            result = m
            continue
        try:
            torch.broadcast_shapes(result.shape, m.shape)
        except RuntimeError as err:
            a, b = tuple(result.shape), tuple(m.shape)
            raise ValueError(f"masks of shapes {a} and {b} do not broadcast") from err
        result = result & m
    return result


def decoder_self_mask(tgt_ids: Tensor, pad_id: int) -> Tensor:
    """Decoder self-attention mask: causal and ignoring padded target positions.

    Shape:
        tgt_ids (B, T) long -> output (B, 1, T, T) bool.
    """
    T = tgt_ids.shape[-1]
    mask = combine_masks(
        padding_mask(tgt_ids, pad_id), causal_mask(T, device=tgt_ids.device)
    )
    assert mask is not None
    return mask  # (B, 1, T, T)
