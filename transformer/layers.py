"""The Transformer block: feed-forward network, encoder layer and decoder layer.

A Transformer layer mixes information in two ways. Attention moves information
*across time* (between positions); the position-wise feed-forward network then
processes every position *on its own*, with the same weights everywhere. Each
of these sub-layers is wrapped in a residual connection (He et al., 2016) and a
layer normalisation (Ba et al., 2016). The original paper (Vaswani et al.,
2017) normalises *after* the residual sum ("post-LN"); most later models
normalise the sub-layer's *input* instead ("pre-LN", Xiong et al., 2020), which
keeps an identity path from the output of the stack back to its input::

    post-LN:  x = LayerNorm(x + Dropout(Sublayer(x)))
    pre-LN:   x = x + Dropout(Sublayer(LayerNorm(x)))

Shape letters: B batch, T target (query) length, S source (key) length,
H heads, D head size, C model size (d_model), F feed-forward size.
Masks are boolean with ``True`` = may attend, broadcastable to (B, H, T, S).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from transformer.multihead import AttentionCache, MultiHeadAttention

__all__ = [
    "ACTIVATIONS",
    "DecoderLayer",
    "EncoderLayer",
    "PositionwiseFeedForward",
]

#: Activations the feed-forward network accepts by name.
ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "relu": F.relu,
    "gelu": F.gelu,
    # GPT-2's GELU: the tanh approximation of Hendrycks & Gimpel (2016)
    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),
    # Swish (Ramachandran et al., 2017), the gate of SwiGLU (chapter 11)
    "silu": F.silu,
}


def _activation(name: str) -> Callable[[Tensor], Tensor]:
    if name not in ACTIVATIONS:
        raise ValueError(
            f"unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}"
        )
    return ACTIVATIONS[name]


def _check_model_input(x: Tensor, d_model: int, name: str) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 3:
        raise ValueError(
            f"{name} must have shape (batch, length, d_model), got {tuple(x.shape)} "
            f"({x.dim()} dimensions instead of 3)"
        )
    if x.shape[-1] != d_model:
        raise ValueError(
            f"{name} has {x.shape[-1]} features but the layer expects {d_model}"
        )
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {x.dtype}")


def _check_like(x: Tensor, weight: Tensor, name: str) -> None:
    """Same dtype and device as the layer's weights, or an error saying how to fix
    it."""
    if x.dtype != weight.dtype or x.device != weight.device:
        raise TypeError(
            f"{name} is {x.dtype} on {x.device} but the layer's weights are "
            f"{weight.dtype} on {weight.device}; move one of them, e.g. "
            f"{name}.to(dtype={weight.dtype}, device='{weight.device}') or "
            "layer.to(...)"
        )


@torch.no_grad()
def _copy_common(
    ours: EncoderLayer | DecoderLayer,
    theirs: nn.TransformerEncoderLayer | nn.TransformerDecoderLayer,
    norms: int,
) -> None:
    """Copy FFN and LayerNorm weights from a torch Transformer layer of the same
    shape."""
    for mine, other in (
        (ours.ffn.linear1, theirs.linear1),
        (ours.ffn.linear2, theirs.linear2),
    ):
        if mine.weight.shape != other.weight.shape:
            raise ValueError(
                f"feed-forward shapes differ: ours {tuple(mine.weight.shape)}, "
                f"torch {tuple(other.weight.shape)}"
            )
        mine.weight.copy_(other.weight)
        if mine.bias is not None and other.bias is not None:
            mine.bias.copy_(other.bias)
    for i in range(1, norms + 1):
        mine, other = getattr(ours, f"norm{i}"), getattr(theirs, f"norm{i}")
        mine.weight.copy_(other.weight)
        mine.bias.copy_(other.bias)


class PositionwiseFeedForward(nn.Module):
    """Two linear maps with a non-linearity between them, applied at every position.

    ``FFN(x) = W2 · act(W1 · x + b1) + b2`` (Vaswani et al., 2017, eq. 2). The same
    weights are used at every position, so it is a 1x1 convolution over time: it
    never mixes positions, it transforms what attention gathered. The hidden size
    ``d_ff`` is usually four times ``d_model`` (2048 vs 512 in the paper).

    Args:
        d_model: model size C.
        d_ff: hidden size F.
        dropout: dropout on the hidden activations (as ``nn.TransformerEncoderLayer``).
        activation: ``"relu"`` (the paper) or ``"gelu"``.
        bias: whether the linear layers have biases.

    Shape:
        x: (B, T, C) -> (B, T, C)
    """

    def __init__(
        self,
        d_model: int,
        d_ff: int,
        dropout: float = 0.0,
        activation: str = "relu",
        bias: bool = True,
    ) -> None:
        super().__init__()
        if d_model <= 0 or d_ff <= 0:
            raise ValueError(
                f"d_model and d_ff must be positive, got {d_model} and {d_ff}"
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.d_model = d_model
        self.activation = _activation(activation)
        self.linear1 = nn.Linear(d_model, d_ff, bias=bias)
        self.linear2 = nn.Linear(d_ff, d_model, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        """Apply the network to every position of ``x`` (B, T, C)."""
        h = self.activation(self.linear1(x))  # (B, T, F)
        return self.linear2(self.dropout(h))  # (B, T, C)


class EncoderLayer(nn.Module):
    """One encoder layer: self-attention then feed-forward, each with residual and
    LayerNorm.

    Post-LN (paper, ``norm_first=False``)::

        Z = LayerNorm(X + MHA(X, X, X));   E = LayerNorm(Z + FFN(Z))

    Pre-LN (``norm_first=True``, Xiong et al., 2020)::

        Z = X + MHA(LN(X), LN(X), LN(X));  E = Z + FFN(LN(Z))

    Parameter names follow ``torch.nn.TransformerEncoderLayer`` (``self_attn``,
    ``norm1``, ``norm2``, ``dropout1``, ``dropout2``; the FFN lives in ``ffn``) so that
    weights can be copied across for testing.

    Args:
        d_model: model size C.
        n_heads: number of attention heads H (must divide C).
        d_ff: feed-forward hidden size F.
        dropout: dropout on each sub-layer's output (before the residual sum), on the
            attention weights and on the FFN hidden layer, as in the paper.
        activation: ``"relu"`` or ``"gelu"``.
        norm_first: ``False`` for post-LN (paper), ``True`` for pre-LN.
        layer_norm_eps: epsilon of the LayerNorms.
        bias: biases in the linear layers.
        self_attn, ffn, norm: ready-made attention and feed-forward modules and a
            maker of norms, in place of the ones the sizes above would build.

    Shape:
        x: (B, S, C); mask: bool broadcastable to (B, H, S, S) -> (B, S, C)
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        d_ff: int,
        dropout: float = 0.0,
        activation: str = "relu",
        norm_first: bool = False,
        layer_norm_eps: float = 1e-5,
        bias: bool = True,
        *,
        self_attn: MultiHeadAttention | None = None,
        ffn: PositionwiseFeedForward | None = None,
        norm: Callable[[], nn.LayerNorm] | None = None,
    ) -> None:
        super().__init__()
        self.d_model = d_model
        self.norm_first = norm_first
        if self_attn is None:
            self_attn = MultiHeadAttention(d_model, n_heads, dropout=dropout, bias=bias)
        self.self_attn = self_attn
        self.ffn = ffn or PositionwiseFeedForward(
            d_model, d_ff, dropout, activation, bias
        )
        norm = norm or (lambda: nn.LayerNorm(d_model, eps=layer_norm_eps))
        self.norm1, self.norm2 = norm(), norm()
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)

    @classmethod
    def from_config(cls, config: Any) -> EncoderLayer:
        """A layer of a model config, which makes its attention, FFN and norms (chapter
        9; chapter 11's config makes grouped-query attention, SwiGLU and RMSNorm)."""
        c = config
        return cls(
            c.d_model,
            c.n_heads,
            c.d_ff,
            c.dropout,
            c.activation,
            c.norm_first,
            c.layer_norm_eps,
            c.bias,
            self_attn=c.make_attention(),
            ffn=c.make_ffn(),
            norm=c.make_norm,
        )

    def copy_from_torch(self, layer: nn.TransformerEncoderLayer) -> EncoderLayer:
        """Copy the weights of a ``torch.nn.TransformerEncoderLayer`` of the same
        shape."""
        if layer.norm_first != self.norm_first:
            raise ValueError(
                f"norm_first differs: torch layer {layer.norm_first}, this one "
                f"{self.norm_first}"
            )
        self.self_attn.copy_from_torch(layer.self_attn)
        _copy_common(self, layer, norms=2)
        return self

    def _sa(
        self,
        x: Tensor,
        mask: Tensor | None,
        positional: nn.Module | None,
        need_weights: bool,
        q_pos: Tensor | None,
        cache: AttentionCache | None,
        is_causal: bool,
    ) -> tuple[Tensor, Tensor | None]:
        out, weights = self.self_attn(
            x,
            mask=mask,
            positional=positional,
            q_pos=q_pos,
            cache=cache,
            need_weights=need_weights,
            average_weights=False,
            is_causal=is_causal,
        )
        return self.dropout1(out), weights

    def forward(
        self,
        x: Tensor,
        mask: Tensor | None = None,
        *,
        positional: nn.Module | None = None,
        q_pos: Tensor | None = None,
        cache: AttentionCache | None = None,
        need_weights: bool = False,
        is_causal: bool = False,
    ) -> Tensor | tuple[Tensor, Tensor]:
        """Run the layer.

        Args:
            x: input (B, S, C).
            mask: bool, True = may attend, broadcastable to (B, H, S, S); usually the
                source padding mask of shape (B, 1, 1, S). Under a causal mask this
                layer is the block of a decoder-only model (chapter 10).
            positional: a positional scheme whose ``rotate``/``score_bias`` hooks the
                self-attention applies (RoPE, relative biases); ``None`` for none.
            q_pos: positions (S,) of the inputs (default: continue after the cache).
            cache: a growing key/value cache (chapter 9), for decoding one new
                position at a time through a decoder-only stack.
            need_weights: also return the attention weights (B, H, S, S).
            is_causal: also hide later positions from each position (on top of
                ``mask``), without building a mask when nothing else is masked.

        Returns:
            The output (B, S, C), or ``(output, weights)`` if ``need_weights``.
        """
        _check_model_input(x, self.d_model, "x")
        _check_like(x, self.ffn.linear1.weight, "x")
        args = (mask, positional, need_weights, q_pos, cache, is_causal)
        if self.norm_first:
            sa, w = self._sa(self.norm1(x), *args)
            x = x + sa  # (B, S, C)
            x = x + self.dropout2(self.ffn(self.norm2(x)))
        else:
            sa, w = self._sa(x, *args)
            x = self.norm1(x + sa)
            x = self.norm2(x + self.dropout2(self.ffn(x)))
        if need_weights:
            assert w is not None  # asked for, so the attention returned them
            return x, w
        return x


class DecoderLayer(nn.Module):
    """One decoder layer: masked self-attention, cross-attention, feed-forward.

    Each of the three sub-layers has a residual connection and a LayerNorm (post-LN
    or pre-LN as in :class:`EncoderLayer`). The self-attention is causal (a position
    sees only itself and earlier positions, so teacher forcing can predict every
    target position in parallel); the cross-attention lets every target position
    read the encoder output ("memory"). Parameter names follow
    ``torch.nn.TransformerDecoderLayer`` (``self_attn``, ``multihead_attn``,
    ``norm1..3``, ``dropout1..3``).

    For incremental decoding pass ``cache=(self_cache, cross_cache)``: the new
    keys/values of the self-attention are appended to ``self_cache``, and the
    cross-attention reuses the projected memory stored in ``cross_cache`` (a static
    cache, filled on the first call), so a step costs O(T) instead of O(T^2).

    Args:
        d_model, n_heads, d_ff, dropout, activation, norm_first, layer_norm_eps, bias:
            as in :class:`EncoderLayer`.

    Shape:
        x: (B, T, C); memory: (B, S, C); tgt_mask: (B, H, T, T)-broadcastable;
        memory_mask: (B, H, T, S)-broadcastable -> (B, T, C)
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        d_ff: int,
        dropout: float = 0.0,
        activation: str = "relu",
        norm_first: bool = False,
        layer_norm_eps: float = 1e-5,
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.d_model = d_model
        self.norm_first = norm_first
        self.self_attn = MultiHeadAttention(
            d_model, n_heads, dropout=dropout, bias=bias
        )
        self.multihead_attn = MultiHeadAttention(
            d_model, n_heads, dropout=dropout, bias=bias
        )
        self.ffn = PositionwiseFeedForward(d_model, d_ff, dropout, activation, bias)
        self.norm1 = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.norm2 = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.norm3 = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.dropout3 = nn.Dropout(dropout)

    @classmethod
    def from_config(cls, config: Any) -> DecoderLayer:
        """A layer with the sizes and options of a model config (chapter 9's family)."""
        c = config
        return cls(
            c.d_model,
            c.n_heads,
            c.d_ff,
            c.dropout,
            c.activation,
            c.norm_first,
            c.layer_norm_eps,
            c.bias,
        )

    def copy_from_torch(self, layer: nn.TransformerDecoderLayer) -> DecoderLayer:
        """Copy the weights of a ``torch.nn.TransformerDecoderLayer`` of the same
        shape."""
        if layer.norm_first != self.norm_first:
            raise ValueError(
                f"norm_first differs: torch layer {layer.norm_first}, this one "
                f"{self.norm_first}"
            )
        self.self_attn.copy_from_torch(layer.self_attn)
        self.multihead_attn.copy_from_torch(layer.multihead_attn)
        _copy_common(self, layer, norms=3)
        return self

    def forward(
        self,
        x: Tensor,
        memory: Tensor,
        tgt_mask: Tensor | None = None,
        memory_mask: Tensor | None = None,
        *,
        positional: nn.Module | None = None,
        q_pos: Tensor | None = None,
        cache: tuple[AttentionCache, AttentionCache] | None = None,
        need_weights: bool = False,
    ) -> Tensor | tuple[Tensor, tuple[Tensor, Tensor]]:
        """Run the layer.

        Args:
            x: decoder input (B, T, C).
            memory: encoder output (B, S, C).
            tgt_mask: bool self-attention mask, usually causal & target padding.
                With a cache and one new token per step it can be ``None``: the new
                position may see every cached one.
            memory_mask: bool cross-attention mask, usually the source padding mask
                (B, 1, 1, S).
            positional: positional scheme applied in the *self*-attention only.
            q_pos: positions (T,) of the queries (defaults continue from the cache).
            cache: ``(self_cache, cross_cache)`` for incremental decoding.
            need_weights: also return ``(self_weights, cross_weights)``, each (B, H, T,
                T) and (B, H, T, S).

        Returns:
            The output (B, T, C), or ``(output, (self_weights, cross_weights))``.
        """
        _check_model_input(x, self.d_model, "x")
        _check_model_input(memory, self.d_model, "memory")
        _check_like(x, self.norm1.weight, "x")
        _check_like(memory, self.norm1.weight, "memory")
        if x.shape[0] != memory.shape[0]:
            raise ValueError(
                f"x has batch size {x.shape[0]} but memory has batch size "
                f"{memory.shape[0]}"
            )
        self_cache, cross_cache = cache if cache is not None else (None, None)

        def sa(h: Tensor) -> tuple[Tensor, Tensor | None]:
            out, w = self.self_attn(
                h,
                mask=tgt_mask,
                positional=positional,
                q_pos=q_pos,
                k_pos=None,
                cache=self_cache,
                need_weights=need_weights,
                average_weights=False,
            )
            return self.dropout1(out), w

        def ca(h: Tensor) -> tuple[Tensor, Tensor | None]:
            out, w = self.multihead_attn(
                h,
                memory,
                memory,
                mask=memory_mask,
                cache=cross_cache,
                need_weights=need_weights,
                average_weights=False,
            )
            return self.dropout2(out), w

        if self.norm_first:
            s, ws = sa(self.norm1(x))
            x = x + s
            c, wc = ca(self.norm2(x))
            x = x + c
            x = x + self.dropout3(self.ffn(self.norm3(x)))
        else:
            s, ws = sa(x)
            x = self.norm1(x + s)
            c, wc = ca(x)
            x = self.norm2(x + c)
            x = self.norm3(x + self.dropout3(self.ffn(x)))
        if need_weights:
            assert ws is not None and wc is not None  # asked for, so returned
            return x, (ws, wc)
        return x
