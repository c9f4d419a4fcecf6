"""The modern decoder: RMSNorm, SwiGLU and grouped-query attention (chapter 11).

Five years after GPT-2 the decoder-only block of most open models (Llama, Touvron
et al., 2023; Mistral, Qwen, ...) differs from chapter 10's in four small ways:

* **RMSNorm** (Zhang & Sennrich, 2019) instead of LayerNorm: divide by the root
  mean square of the features, with no mean subtracted and no bias added.
* **SwiGLU** (Shazeer, 2020) instead of the two-layer GELU network: a second
  projection, multiplied in by a Swish-activated gate.
* **Grouped-query attention** (GQA, Ainslie et al., 2023): the H query heads share
  fewer key/value heads, ``n_kv_heads``; with one, it is multi-query attention
  (MQA, Shazeer, 2019). The cache keeps only the shared heads, so it shrinks by
  ``H / n_kv_heads``.
* **No biases** and **rotary positions** (RoPE, chapter 7) instead of a table.

Each piece is a subclass of what it replaces, and :class:`ModernDecoderConfig`
makes them through the factories that chapter 10's blocks already call, so
``DecoderOnlyTransformer(ModernDecoderConfig(...))`` is a Llama-style model with
the same ``forward``, ``start``, ``step`` and :func:`~transformer.gpt.generate`.

Shape letters: B batch, T query length, S key length, H query heads, G key/value
heads (``n_kv_heads``), D head size, C model size, F feed-forward size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from transformer.gpt import DecoderOnlyConfig, DecoderOnlyTransformer
from transformer.kv_cache import KVCache
from transformer.layers import PositionwiseFeedForward
from transformer.multihead import MultiHeadAttention

__all__ = [
    "FFNS",
    "NORMS",
    "GroupedQueryAttention",
    "ModernDecoder",
    "ModernDecoderConfig",
    "RMSNorm",
    "SwiGLUFeedForward",
    "kv_cache_bytes",
]

#: Names of the normalisations and feed-forward networks a config may choose.
NORMS = ("layer", "rms")
FFNS = ("mlp", "swiglu")


class RMSNorm(nn.LayerNorm):
    """Root-mean-square normalisation (Zhang & Sennrich, 2019).

    ``RMSNorm(x) = g * x / sqrt(mean(x^2) + eps)``: LayerNorm without its mean and
    its bias. The features are only rescaled, never shifted, which is cheaper and
    trains as well. It is a ``LayerNorm`` without a bias, so code that treats norms
    alike (no weight decay on them, say) treats it alike. As Hugging Face's Llama,
    the statistics are taken in float32 whatever the input's dtype.

    Args:
        d_model: features C.
        eps: added to the mean square (Llama: 1e-5 or 1e-6).

    Shape:
        x: (..., C) -> (..., C)
    """

    def __init__(self, d_model: int, eps: float = 1e-6) -> None:
        if isinstance(d_model, bool) or not isinstance(d_model, int) or d_model <= 0:
            raise ValueError(f"d_model must be a positive int, got {d_model!r}")
        if not eps > 0:
            raise ValueError(f"eps must be positive, got {eps}")
        super().__init__(d_model, eps=eps, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        h = x.float()
        # (..., 1)
        inv_rms = torch.rsqrt(h.pow(2).mean(dim=-1, keepdim=True) + self.eps)
        return self.weight * (h * inv_rms).to(x.dtype)  # (..., C)


class SwiGLUFeedForward(PositionwiseFeedForward):
    """The gated feed-forward network of Shazeer (2020), with a Swish gate.

    ``FFN(x) = W2 (silu(W1 x) * (V x))``: the hidden units of the two-layer network
    are multiplied, one by one, by a second projection ``V x``. It has three
    matrices instead of two, so Llama takes ``d_ff`` near ``8/3 C`` rather than
    ``4 C`` to keep the parameter count. Hugging Face names ``W1``, ``V``, ``W2``
    ``gate_proj``, ``up_proj``, ``down_proj``; here they are ``linear1``,
    ``linear_up`` and ``linear2``, so the first and last keep chapter 8's names.

    Args:
        d_model: model size C.
        d_ff: hidden size F.
        dropout: dropout on the hidden units.
        activation: the gate's non-linearity: ``"silu"`` (SwiGLU) or ``"gelu"`` (GEGLU).
        bias: biases in the three linear layers (Llama has none).

    Shape:
        x: (B, T, C) -> (B, T, C)
    """

    def __init__(
        self,
        d_model: int,
        d_ff: int,
        dropout: float = 0.0,
        activation: str = "silu",
        bias: bool = False,
    ) -> None:
        super().__init__(d_model, d_ff, dropout, activation, bias)
        self.linear_up = nn.Linear(d_model, d_ff, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        h = self.activation(self.linear1(x)) * self.linear_up(x)  # (B, T, F)
        return self.linear2(self.dropout(h))  # (B, T, C)


def _check_kv_heads(n_heads: int, n_kv_heads: Any, where: str) -> None:
    if (
        isinstance(n_kv_heads, bool)
        or not isinstance(n_kv_heads, int)
        or n_kv_heads <= 0
    ):
        raise ValueError(
            f"{where}n_kv_heads must be a positive int, got {n_kv_heads!r}"
        )
    if n_heads % n_kv_heads != 0:
        fits = [g for g in range(1, n_heads + 1) if n_heads % g == 0]
        raise ValueError(
            f"{where}n_heads ({n_heads}) must be divisible by n_kv_heads "
            f"({n_kv_heads}): each key/value head serves a whole group of query heads; "
            f"try one of {fits}"
        )


class GroupedQueryAttention(MultiHeadAttention):
    """Multi-head attention whose H query heads share G key/value heads (Ainslie et al.,
    2023).

    The keys and values are projected to ``G * D`` features only, G heads. Query
    head h reads key/value head ``h // (H / G)``: consecutive query heads form a
    group, as in Hugging Face's ``repeat_kv``. ``G = H`` is multi-head attention,
    ``G = 1`` multi-query attention (Shazeer, 2019). A cache stores the G heads
    (B, G, S, D), so it is ``H / G`` times smaller; the heads are repeated only for
    the product with the queries.

    Args:
        d_model: model size C.
        n_heads: query heads H; must divide C.
        n_kv_heads: key/value heads G; must divide H (default H).
        dropout: dropout on the attention weights.
        bias: biases in the four projections.

    Shape:
        as :class:`~transformer.multihead.MultiHeadAttention`: query (B, T, C) ->
        output (B, T, C); cached keys and values (B, G, S, D).
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        n_kv_heads: int | None = None,
        dropout: float = 0.0,
        bias: bool = True,
    ) -> None:
        super().__init__(d_model, n_heads, dropout=dropout, bias=bias)
        n_kv_heads = n_heads if n_kv_heads is None else n_kv_heads
        _check_kv_heads(n_heads, n_kv_heads, "")
        self.n_kv_heads = n_kv_heads
        if n_kv_heads != n_heads:  # narrower key/value projections (G = H: as drawn)
            self.k_proj = nn.Linear(d_model, n_kv_heads * self.head_dim, bias=bias)
            self.v_proj = nn.Linear(d_model, n_kv_heads * self.head_dim, bias=bias)
            self.reset_parameters()

    @property
    def group_size(self) -> int:
        """Query heads per key/value head, H / G."""
        return self.n_heads // self.n_kv_heads

    def _heads_of_queries(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Repeat each of the G key/value heads for the H / G query heads of its
        group."""
        if self.group_size == 1:
            return k, v
        k = k.repeat_interleave(self.group_size, dim=1)  # (B, G, S, D) -> (B, H, S, D)
        v = v.repeat_interleave(self.group_size, dim=1)
        return k, v

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, n_kv_heads={self.n_kv_heads}"


@dataclass(frozen=True, kw_only=True)
class ModernDecoderConfig(DecoderOnlyConfig):
    """A decoder-only config whose blocks may be Llama's: RMSNorm, SwiGLU, GQA, RoPE.

    The defaults are Llama's block (Touvron et al., 2023). Each choice can be
    switched back to chapter 10's separately, which is what an ablation needs:
    ``norm="layer", ffn="mlp", positional="learned", bias=True, activation="gelu"``
    with ``n_kv_heads=None`` is the GPT-2 block.

    Args:
        norm: ``"rms"`` (RMSNorm) or ``"layer"`` (LayerNorm), in every block and at
            the end of the stack.
        ffn: ``"swiglu"`` (gated, :class:`SwiGLUFeedForward`) or ``"mlp"``
            (chapter 8's two layers); ``activation`` is the gate's or the MLP's.
        n_kv_heads: key/value heads G of the attention; ``None`` means ``n_heads``
            (multi-head), 1 multi-query. Must divide ``n_heads``.
        **fields: those of :class:`~transformer.gpt.DecoderOnlyConfig`, with
            Llama's defaults: no biases, RoPE, SiLU, untied output, no dropout,
            ``layer_norm_eps`` (the RMSNorm's) 1e-6.
    """

    norm: str = "rms"
    ffn: str = "swiglu"
    n_kv_heads: int | None = None
    bias: bool = False
    positional: str = "rope"
    activation: str = "silu"
    tie_output: bool = False
    dropout: float = 0.0
    layer_norm_eps: float = 1e-6

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.norm not in NORMS:
            self._fail(f"norm must be one of {NORMS}, got {self.norm!r}")
        if self.ffn not in FFNS:
            self._fail(f"ffn must be one of {FFNS}, got {self.ffn!r}")
        if self.n_kv_heads is not None:
            _check_kv_heads(self.n_heads, self.n_kv_heads, f"{type(self).__name__}.")

    @property
    def kv_heads(self) -> int:
        """G, the key/value heads (resolves ``n_kv_heads=None`` to ``n_heads``)."""
        return self.n_heads if self.n_kv_heads is None else self.n_kv_heads

    def make_norm(self) -> nn.LayerNorm:
        """An RMSNorm or a LayerNorm, as ``norm`` says."""
        if self.norm == "rms":
            return RMSNorm(self.d_model, eps=self.layer_norm_eps)
        return super().make_norm()

    def make_attention(self) -> MultiHeadAttention:
        """Grouped-query attention with ``kv_heads`` key/value heads."""
        return GroupedQueryAttention(
            self.d_model,
            self.n_heads,
            self.kv_heads,
            dropout=self.dropout,
            bias=self.bias,
        )

    def make_ffn(self) -> PositionwiseFeedForward:
        """A SwiGLU network or chapter 8's MLP, as ``ffn`` says."""
        if self.ffn == "swiglu":
            return SwiGLUFeedForward(
                self.d_model, self.d_ff, self.dropout, self.activation, self.bias
            )
        return super().make_ffn()


class ModernDecoder(DecoderOnlyTransformer):
    """:class:`~transformer.gpt.DecoderOnlyTransformer` built from a
    :class:`ModernDecoderConfig`.

    The same model; the class only tells :func:`~transformer.checkpoint.load_checkpoint`
    which config its file holds.

    Shape:
        ids: (B, T) long, attention_mask: (B, T) -> logits (B, T, V)
    """

    config_class = ModernDecoderConfig

    def __init__(self, config: ModernDecoderConfig) -> None:
        if not isinstance(config, ModernDecoderConfig):
            raise TypeError(
                f"config must be a ModernDecoderConfig, got {type(config).__name__}"
            )
        super().__init__(config)


def kv_cache_bytes(caches: list[KVCache]) -> int:
    """Bytes of the keys and values held by ``caches`` (the filled part, not the
    capacity).

    Shape:
        each cache's k, v: (B, G, S, D) -> B * G * S * D * 2 * bytes per element.
    """
    total = 0
    for cache in caches:
        for t in (cache.k, cache.v):
            if t is not None:
                total += t.numel() * t.element_size()
    return total
