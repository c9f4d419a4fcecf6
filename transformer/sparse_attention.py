"""Sparse attention (chapter 13): each query attends to a band of keys, not all of them.

* Sliding window: query t attends to the keys within ``window`` positions of it
  (Beltagy et al. 2020, Longformer's local attention).
* Dilated (strided) window: the same over every ``dilation``-th position, so the
  same number of keys reaches ``dilation`` times further (Child et al. 2019's
  strided pattern; Longformer's dilated window).
* Global and local: a few global tokens attend to, and are attended by, every
  position; the rest attend to their window and to the global tokens
  (Longformer, BigBird of Zaheer et al. 2020).

They are computed banded, so they save work rather than masking a full matrix:
the sequence is cut into blocks of ``b`` queries, and each block is compared only
with the keys of its own and its neighbouring blocks (``Tensor.unfold`` makes
those windows of keys without a copy). Scores take T * (2n + 1) b numbers instead
of T * T, linear in T for a fixed window.

Same interface as :mod:`transformer.efficient`: (B, H, T, D) queries, keys and
values of one sequence, ``causal``, and a (B, T) key padding mask.

Shape letters: B batch, H heads, T length, D head size, N blocks, W keys per window.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from transformer.attention import masked_softmax
from transformer.efficient import check_qkv, key_mask_of

__all__ = [
    "dilated_attention",
    "global_local_attention",
    "sliding_window_attention",
]


def _check_positive(name: str, value: int, low: int = 1) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")


def _band(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    window: int,
    causal: bool,
    km: Tensor | None,
    skip_first: int = 0,
) -> tuple[Tensor, Tensor, Tensor]:
    """Scores of every query against the keys of its neighbouring blocks.

    Returns ``(scores, allowed, v_win)``: scores (B, H, N, b, W) with W = (n + 1) b
    (causal) or (2n + 1) b keys per block, the bool mask of which of those keys
    each query may use (in the window, inside the sequence, not padding, not in
    the future, not among the first ``skip_first``), and the values (B, H, N, W, Dv).
    """
    B, H, T, D = q.shape
    b = min(window, T)  # queries per block
    N = math.ceil(T / b)
    n = min(math.ceil((window - 1) / b), N - 1)  # neighbouring blocks on each side
    left, right = n * b, (0 if causal else n * b)
    W = left + b + right
    pad_end = N * b - T
    k_pad = F.pad(k, (0, 0, left, right + pad_end))  # (B, H, N b + left + right, D)
    v_pad = F.pad(v, (0, 0, left, right + pad_end))
    k_win = k_pad.unfold(2, W, b)  # (B, H, N, D, W), a view
    v_win = v_pad.unfold(2, W, b).transpose(-2, -1)  # (B, H, N, W, Dv)
    q_blocks = F.pad(q, (0, 0, 0, pad_end)).view(B, H, N, b, D)  # (B, H, N, b, D)
    scores = (q_blocks @ k_win) / math.sqrt(D)  # (B, H, N, b, W)

    device = q.device
    q_pos = torch.arange(N * b, device=device).view(N, b, 1)  # (N, b, 1)
    starts = torch.arange(N, device=device) * b - left  # first key of each window
    k_pos = (starts[:, None] + torch.arange(W, device=device)).view(
        N, 1, W
    )  # (N, 1, W)
    offset = q_pos - k_pos  # (N, b, W)
    allowed = (k_pos >= skip_first) & (k_pos < T) & (offset.abs() < window)
    if causal:
        allowed = allowed & (offset >= 0)
    allowed = allowed[None, None]  # (1, 1, N, b, W)
    if km is not None:
        km_pad = F.pad(km, (left, right + pad_end), value=False)  # (B, N b + ...)
        km_win = km_pad.unfold(1, W, b)  # (B, N, W)
        allowed = allowed & km_win[:, None, :, None, :]  # (B, 1, N, b, W)
    return scores, allowed, v_win


def sliding_window_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    window: int,
    causal: bool = False,
    key_mask: Tensor | None = None,
) -> Tensor:
    """Local attention: query t attends to the keys s with ``|t - s| < window``.

    Causal: to t - window < s <= t (the last ``window`` positions, itself included).
    With ``window`` at least T it is full attention. Beltagy et al. (2020).

    Args:
        q, k, v: queries, keys and values of one sequence.
        window: keys on each side (causal: behind), counting the query's own.
        causal: hide later positions.
        key_mask: bool padding mask over the keys, (B, T) or (B, 1, 1, T).

    Shape:
        q, k (B, H, T, D), v (B, H, T, Dv) -> (B, H, T, Dv).
    """
    check_qkv(q, k, v, same_length=True)
    _check_positive("window", window)
    B, H, T, _ = q.shape
    km = key_mask_of(key_mask, B, T)
    scores, allowed, v_win = _band(q, k, v, window, causal, km)
    weights = masked_softmax(scores, allowed)  # (B, H, N, b, W)
    out = weights @ v_win  # (B, H, N, b, Dv)
    return out.reshape(B, H, -1, v.shape[-1])[:, :, :T]  # (B, H, T, Dv)


def dilated_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    window: int,
    dilation: int,
    causal: bool = False,
    key_mask: Tensor | None = None,
) -> Tensor:
    """Strided local attention: t attends to s = t ± j * dilation for j < ``window``.

    Positions with the same remainder modulo ``dilation`` form ``dilation``
    interleaved subsequences; on each, this is a sliding window of ``window``, so
    the cost is that of a window while the reach is ``window * dilation``. With
    ``dilation=1`` it is :func:`sliding_window_attention`. Child et al. (2019)'s
    strided pattern; Beltagy et al. (2020)'s dilated window.

    Args:
        window: keys per side in the subsequence, counting the query's own.
        dilation: the stride between attended positions.
        q, k, v, causal, key_mask: as :func:`sliding_window_attention`.

    Shape:
        q, k (B, H, T, D), v (B, H, T, Dv) -> (B, H, T, Dv).
    """
    check_qkv(q, k, v, same_length=True)
    _check_positive("window", window)
    _check_positive("dilation", dilation)
    B, H, T, D = q.shape
    km = key_mask_of(key_mask, B, T)
    if km is None:
        km = torch.ones(B, T, dtype=torch.bool, device=q.device)
    L = math.ceil(T / dilation)  # length of each subsequence
    pad = L * dilation - T

    def split(x: Tensor) -> Tensor:  # (B, H, T, E) -> (B * dilation, H, L, E)
        x = F.pad(x, (0, 0, 0, pad)).view(B, H, L, dilation, -1)  # (B, H, L, d, E)
        return x.permute(0, 3, 1, 2, 4).reshape(B * dilation, H, L, -1)

    km_split = F.pad(km, (0, pad), value=False).view(B, L, dilation)  # (B, L, d)
    km_split = km_split.transpose(1, 2).reshape(B * dilation, L)  # (B d, L)
    out = sliding_window_attention(
        split(q), split(k), split(v), window=window, causal=causal, key_mask=km_split
    )  # (B d, H, L, Dv)
    out = out.view(B, dilation, H, L, -1).permute(0, 2, 3, 1, 4)  # (B, H, L, d, Dv)
    return out.reshape(B, H, L * dilation, -1)[:, :, :T]  # (B, H, T, Dv)


def global_local_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    window: int,
    n_global: int,
    causal: bool = False,
    key_mask: Tensor | None = None,
) -> Tensor:
    """A sliding window plus ``n_global`` global tokens at the start of the sequence.

    The first ``n_global`` positions attend to every position and every position
    attends to them (in a causal model, to those not in its future), on top of
    its window: a path of two steps joins any two positions. Longformer's global
    attention (Beltagy et al. 2020) and BigBird's global tokens (Zaheer et al.
    2020). The non-global queries take one softmax over their window and the
    global keys together; cost T * (W + n_global) scores.

    Args:
        window: as :func:`sliding_window_attention`.
        n_global: how many leading positions are global (0 gives a plain window).
        q, k, v, causal, key_mask: as :func:`sliding_window_attention`.

    Shape:
        q, k (B, H, T, D), v (B, H, T, Dv) -> (B, H, T, Dv).
    """
    check_qkv(q, k, v, same_length=True)
    _check_positive("window", window)
    _check_positive("n_global", n_global, low=0)
    B, H, T, D = q.shape
    g = min(n_global, T)
    km = key_mask_of(key_mask, B, T)
    scores, allowed, v_win = _band(q, k, v, window, causal, km, skip_first=g)
    _, _, N, b, _ = scores.shape
    q_pad = F.pad(q, (0, 0, 0, N * b - T))  # (B, H, N b, D)
    g_scores = (q_pad @ k[:, :, :g].transpose(-2, -1)) / math.sqrt(D)  # (B, H, N b, g)
    g_allowed = torch.ones(N * b, g, dtype=torch.bool, device=q.device)  # (N b, g)
    if causal:
        g_allowed = torch.arange(g, device=q.device) <= torch.arange(
            N * b, device=q.device
        ).unsqueeze(1)
    g_allowed = g_allowed.view(1, 1, N, b, g)
    if km is not None:
        g_allowed = g_allowed & km[:, None, None, None, :g]  # (B, 1, N, b, g)
    both = torch.cat([scores, g_scores.view(B, H, N, b, g)], dim=-1)
    lead = torch.broadcast_shapes(allowed.shape[:-1], g_allowed.shape[:-1])
    W = scores.shape[-1]
    both_allowed = torch.cat(
        [allowed.expand(*lead, W), g_allowed.expand(*lead, g)], dim=-1
    )  # (B|1, 1, N, b, W + g)
    weights = masked_softmax(both, both_allowed)
    out = weights[..., :W] @ v_win + weights[..., W:] @ v[:, :, :g].unsqueeze(2)
    out = out.reshape(B, H, N * b, -1)[:, :, :T].clone()  # (B, H, T, Dv)
    if g:  # the global queries attend to everything (not in their future)
        full = torch.ones(g, T, dtype=torch.bool, device=q.device)
        if causal:
            full = full.tril()
        if km is not None:
            full = full & km[:, None, None, :]  # (B, 1, g, T)
        w_g = masked_softmax((q[:, :, :g] @ k.transpose(-2, -1)) / math.sqrt(D), full)
        out[:, :, :g] = w_g @ v  # (B, H, g, Dv)
    return out
