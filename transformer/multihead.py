"""Scaled dot-product and multi-head attention (chapter 6).

:func:`~transformer.attention.scaled_dot_product_attention` is the equation of Vaswani
et al. (2017), written out in plain operations so that its weights can be plotted;
:func:`fused_attention` is PyTorch's fused kernel, made safe for rows that may
attend to nothing. :class:`MultiHeadAttention` projects queries, keys and values,
splits them into H heads, attends in each and mixes the heads back together. It
serves as self-attention (``mha(x)``) and cross-attention (``mha(x, memory)``),
takes the positional schemes of chapter 7 through two hooks, and the key/value
cache of chapter 9 through ``cache=``.

Mask convention (the whole book): a boolean tensor, ``True`` = may attend.

Shape letters: B batch, T query (target) length, S key (source) length,
H heads, D head size, C model size (d_model).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from transformer.attention import _check_mask, scaled_dot_product_attention

__all__ = [
    "AttentionCache",
    "fused_attention",
    "MultiHeadAttention",
    "PositionalHooks",
]


def fused_attention(
    q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, bias: Tensor | None, p: float
) -> Tensor:
    """PyTorch's fused kernel, made safe for query rows with nothing to attend to.

    Shape:
        q, k, v: (B, H, T, D), (B, H, S, D), (B, H, S, D); mask (bool) and bias
            (float) broadcastable to (B, H, T, S) -> (B, H, T, D).
    """
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


class PositionalHooks(Protocol):
    """What :class:`MultiHeadAttention` needs from a positional scheme (chapter 7)."""

    def rotate(
        self, q: Tensor, k: Tensor, q_pos: Tensor, k_pos: Tensor
    ) -> tuple[Tensor, Tensor]:
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


class AttentionCache(Protocol):
    """What :class:`MultiHeadAttention` needs from a key/value cache (chapter 9).

    A *growing* cache (``static=False``) keeps the keys and values of every position
    fed so far; a *static* one holds the projected encoder memory.
    """

    static: bool
    k: Tensor | None
    v: Tensor | None

    @property
    def is_empty(self) -> bool: ...

    def __len__(self) -> int: ...

    def append(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]: ...


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
        fused: use :func:`torch.nn.functional.scaled_dot_product_attention` (fast)
            unless the weights are requested, in which case the explicit path runs.

    Shape:
        forward: query (B, T, C), key (B, S, kdim), value (B, S, vdim), mask bool
        broadcastable to (B, H, T, S) (a 3-D mask is read as (B, T, S)) ->
        output (B, T, C), weights (B, T, S) averaged over heads or (B, H, T, S), or
        None.
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
            raise ValueError(
                f"d_model and n_heads must be positive, got {d_model}, {n_heads}"
            )
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
            f"d_model={self.d_model}, n_heads={self.n_heads}, "
            f"head_dim={self.head_dim}, dropout={self.dropout}, fused={self.fused}"
        )

    # -- helpers -----------------------------------------------------------

    def _split_heads(self, x: Tensor) -> Tensor:
        B, L, _ = x.shape
        # -1: H heads for queries, fewer for shared keys/values (chapter 11's GQA)
        return x.view(B, L, -1, self.head_dim).transpose(1, 2)  # (B, H, L, D)

    def _check_inputs(
        self, query: Tensor, key: Tensor | None, value: Tensor | None
    ) -> None:
        if not isinstance(query, Tensor) or query.dim() != 3:
            shape = (
                tuple(query.shape)
                if isinstance(query, Tensor)
                else type(query).__name__
            )
            raise ValueError(
                f"query must have shape (B, T, C={self.d_model}), got {shape}"
            )
        if query.shape[-1] != self.d_model:
            raise ValueError(
                f"query has {query.shape[-1]} features but the layer expects "
                f"{self.d_model}"
            )
        for name, t, size in (("key", key, self.kdim), ("value", value, self.vdim)):
            if t is None:
                continue
            if t.dim() != 3:
                raise ValueError(
                    f"{name} must have shape (B, S, {size}), got {tuple(t.shape)}"
                )
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

    def _prepare_mask(
        self, mask: Tensor | None, B: int, T: int, S: int
    ) -> Tensor | None:
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
                f"{tuple(mask.shape)}: it looks like a (batch, keys) padding mask; "
                "pass mask[:, None, None, :] or transformer.masks.padding_mask(ids, "
                "pad_id)"
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
        cache: AttentionCache | None = None,
        need_weights: bool = False,
        average_weights: bool = True,
        is_causal: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """Attend from ``query`` to ``key``/``value`` (default: ``query`` itself).

        Args:
            query: (B, T, C).
            key, value: (B, S, kdim), (B, S, vdim); ``None`` means self-attention
                (``value`` defaults to ``key``). With a filled static cache they are
                ignored.
            mask: bool, ``True`` = may attend, broadcastable to (B, H, T, S) over the
                whole key sequence (cached positions included).
            positional: a scheme with ``rotate`` and ``score_bias`` hooks (chapter 7).
            q_pos, k_pos: (T,), (S,) long positions; default ``arange``, continuing
                after the cached positions when a growing cache is used.
            cache: a key/value cache (chapter 9,
                :class:`~transformer.kv_cache.KVCache`): new keys/values are appended
                (growing) or the memory is projected once (static).
            need_weights: also return the attention weights (runs the explicit path).
            average_weights: average the weights over heads (B, T, S) or keep
                (B, H, T, S).
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
        assert value is not None  # value defaults to key, and both to query
        B, T, _ = query.shape
        reused = cache is not None and cache.static and not cache.is_empty
        q, k, v, past = self._project(query, key, value, cache)  # (B, H, T|S, D)
        if positional is not None:
            q, k, q_pos = self._rotate(positional, q, k, q_pos, k_pos, past, reused)
        if cache is not None and not reused:
            k, v = self._store(k, v, cache)  # every cached key and value (B, H, S, D)
        k, v = self._heads_of_queries(k, v)  # (B, H, S, D)
        S = k.shape[2]
        bias = None
        if positional is not None:
            if k_pos is None:
                k_pos = torch.arange(S, device=query.device)  # (S,)
            assert q_pos is not None  # _rotate gave the query positions
            # broadcastable to (B, H, T, S)
            bias = positional.score_bias(q, q_pos, k_pos)
        mask = self._prepare_mask(mask, B, T, S)
        p = self.dropout if self.training else 0.0
        # Shaw et al. (2018) also add relative vectors to the values; that term needs
        # the weights themselves, so it always takes the explicit path.
        value_term = _value_term_of(positional)
        fused = self.fused and not need_weights and value_term is None
        # With nothing else to mask, the fused kernel applies the causal mask itself
        # (T == S); one new query after a cache sees every key and needs none.
        kernel_causal = fused and is_causal and mask is None and bias is None and T == S
        if is_causal and not kernel_causal and T > 1:
            causal = torch.ones(T, S, dtype=torch.bool, device=query.device).tril(S - T)
            mask = causal if mask is None else mask & causal  # (B|1, H|1, T, S)
        weights = None
        if kernel_causal:
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)
        elif fused:
            out = fused_attention(q, k, v, mask, bias, p)  # (B, H, T, D)
        else:
            out, weights = self._explicit(
                q, k, v, mask, bias, p, value_term, q_pos, k_pos
            )
            if average_weights:
                weights = weights.mean(dim=1)  # (B, T, S)
        out = out.transpose(1, 2).reshape(B, T, self.d_model)  # (B, T, C)
        return self.out_proj(out), weights

    def _project(
        self, query: Tensor, key: Tensor, value: Tensor, cache: AttentionCache | None
    ) -> tuple[Tensor, Tensor, Tensor, int]:
        """Queries, and the keys/values of the new positions (or a static cache's).

        Three separate products: packing them into one (3C, C) product measured no
        faster here, because its backward must stack the three gradients.
        """
        q = self._split_heads(self.q_proj(query))  # (B, H, T, D)
        if cache is not None and cache.static and not cache.is_empty:
            assert cache.k is not None and cache.v is not None
            return q, cache.k, cache.v, 0  # (B, H, S, D), projected on the first call
        k = self._split_heads(self.k_proj(key))  # (B, H, S_new, D)
        v = self._split_heads(self.v_proj(value))  # (B, H, S_new, D)
        past = len(cache) if cache is not None and not cache.static else 0
        return q, k, v, past

    @staticmethod
    def _rotate(
        positional: PositionalHooks,
        q: Tensor,
        k: Tensor,
        q_pos: Tensor | None,
        k_pos: Tensor | None,
        past: int,
        reused: bool,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Rotate the new queries and keys (RoPE); keys from a static cache stay."""
        dev = q.device
        T, S_new = q.shape[2], k.shape[2]
        if q_pos is None:
            q_pos = torch.arange(past, past + T, device=dev)  # (T,)
        if reused:
            q, _ = positional.rotate(q, k[:, :, :0], q_pos, q_pos[:0])
            return q, k, q_pos
        new_pos = torch.arange(past, past + S_new, device=dev)  # (S_new,)
        kp = new_pos if k_pos is None else k_pos[-S_new:]
        q, k = positional.rotate(q, k, q_pos, kp)  # (B, H, T, D), (B, H, S_new, D)
        return q, k, q_pos

    def _heads_of_queries(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """The keys and values each query head reads: its own here, shared in GQA."""
        return k, v

    @staticmethod
    def _store(k: Tensor, v: Tensor, cache: AttentionCache) -> tuple[Tensor, Tensor]:
        """Put the new keys/values in the cache; return every cached one."""
        if cache.static:
            cache.k, cache.v = k, v  # the memory, projected once
            return k, v
        return cache.append(k, v)  # (B, H, S, D)

    def _explicit(
        self,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        mask: Tensor | None,
        bias: Tensor | None,
        p: float,
        value_term: Callable[[Tensor, Tensor, Tensor], Tensor] | None,
        q_pos: Tensor | None,
        k_pos: Tensor | None,
    ) -> tuple[Tensor, Tensor]:
        """The plain-operations path, which also returns the weights (B, H, T, S)."""
        if value_term is None:
            return scaled_dot_product_attention(
                q, k, v, mask, dropout_p=p, training=self.training, bias=bias
            )  # (B, H, T, D), (B, H, T, S)
        # one dropout mask for both value parts: sum_j drop(w_ij) (v_j + a_ij)
        _, weights = scaled_dot_product_attention(q, k, v, mask, bias=bias)
        used = F.dropout(weights, p) if p > 0 else weights
        assert q_pos is not None and k_pos is not None
        out = used @ v + value_term(used, q_pos, k_pos)  # (B, H, T, D)
        return out, weights

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
            for lin, b in zip(
                (self.q_proj, self.k_proj, self.v_proj), mha.in_proj_bias.chunk(3)
            ):
                lin.bias.copy_(b)
            self.out_proj.bias.copy_(mha.out_proj.bias)
        return self

    @torch.no_grad()
    def copy_to_torch(self, mha: nn.MultiheadAttention) -> nn.MultiheadAttention:
        """Copy these weights into a ``torch.nn.MultiheadAttention`` of the same
        shape."""
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
