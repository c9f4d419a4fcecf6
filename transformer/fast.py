"""The speed-ups, kept apart from the code the book teaches (chapter 9).

Nothing in the teaching modules imports this one. Each speed-up computes the
same numbers as the plain path (the tests compare them) in less time:

* :class:`FastDecoding` wraps a :class:`~transformer.model.Transformer` for
  cached inference. At batch 1 a decoding step is a few dozen tiny operations,
  each costing microseconds of bookkeeping whatever its size, so this path
  gathers every weight once per decode (one stacked (3C, C) projection for the
  queries, keys and values of each self-attention) and runs one position through
  the layers with plain functional calls, skipping the general methods' checks,
  reshapes and branches. Use it wherever a decoder takes the model::

      greedy_decode(FastDecoding(model), src)

* :class:`FastDropout` draws its random mask from 15-bit integers, two per 32-bit
  draw, instead of one Bernoulli sample per element; :func:`use_fast_dropout`
  swaps it into a model in place. On a CPU, dropout's sampling took a fifth to a
  third of a Transformer training step.

Shape letters: B batch, S source length, t tokens fed so far, C model size,
H heads, D head size, V vocabulary.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from transformer.kv_cache import KVCache
from transformer.layers import DecoderLayer
from transformer.model import DecoderState, Transformer
from transformer.multihead import MultiHeadAttention, _value_term_of, fused_attention

__all__ = [
    "FastDecoding",
    "LayerWeights",
    "attention_weights",
    "decoder_layer_step",
    "fill_cross_cache",
    "layer_weights",
    "FastDecodingState",
    "FastDropout",
    "StepWeights",
    "attention_step",
    "use_fast_dropout",
]


# ------------------------------------------------------------------- dropout
class FastDropout(nn.Dropout):
    """Inverted dropout whose random mask costs one integer draw per two elements.

    Same semantics as ``nn.Dropout(p)`` (it is one: ``isinstance(m, nn.Dropout)``
    holds, and ``m.p`` may be changed at any time): in training each element is
    zeroed with probability ``p`` and the survivors are scaled by ``1 / (1 - p)``;
    in eval mode it is the identity. One call to ``random_`` fills 32-bit integers;
    each supplies two 15-bit uniform numbers, compared with ``round(p * 2**15)``.
    The drop probability is therefore ``p`` rounded to a multiple of 2**-15 (0.1
    becomes 0.100006); a ``p`` that rounds to 1 drops everything, as
    ``nn.Dropout(1.0)`` does.

    Shape:
        x: any -> same shape.
    """

    def __init__(self, p: float = 0.1) -> None:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability must be in [0, 1], got {p}")
        super().__init__(p)

    def forward(self, x: Tensor) -> Tensor:
        p = float(self.p)  # read at every call, so that setting .p takes effect
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability must be in [0, 1], got {p}")
        threshold = round(p * 2**15)
        if not self.training or threshold == 0:
            return x
        if threshold >= 2**15:  # every 15-bit number is below it: drop everything
            return x * 0.0
        n = x.numel()
        bits = torch.empty((n + 1) // 2, dtype=torch.int32, device=x.device).random_()
        # random_() fills [0, 2**31): both 16-bit halves have 15 uniform low bits.
        r = bits.view(torch.int16)[:n].view(x.shape) & 0x7FFF
        keep = (r >= threshold).to(x.dtype) * (1.0 / (1.0 - p))
        return x * keep


def use_fast_dropout(model: nn.Module) -> int:
    """Replace every ``nn.Dropout`` in ``model`` by a :class:`FastDropout`, in place.

    The probabilities and the module names stay, so the state dict and the
    checkpoints do not change. Returns how many modules were replaced.
    """
    replaced = 0
    for module in model.modules():
        for name, child in list(module.named_children()):
            if type(child) is nn.Dropout:
                setattr(module, name, FastDropout(child.p))
                replaced += 1
    return replaced


# -------------------------------------------------------- one-position decoding
class StepWeights(NamedTuple):
    """One attention layer's weights arranged for :func:`attention_step`.

    Attributes:
        w_in, b_in: (3C, C) and (3C,) stacked query/key/value projection for
            self-attention; (C, C) and (C,) query projection for cross-attention.
        w_out, b_out: output projection (C, C), (C,).
    """

    w_in: Tensor
    b_in: Tensor | None
    w_out: Tensor
    b_out: Tensor | None


def attention_weights(mha: MultiHeadAttention, cross: bool = False) -> StepWeights:
    """``mha``'s weights for :func:`attention_step`, gathered once per decode.

    For self-attention the query, key and value matrices are stacked into one
    (3C, C) matrix, so a step projects the new position with one product instead
    of three. The stacked matrix is a copy: gather again after changing weights.
    """
    b_in: Tensor | None
    if cross:
        w_in, b_in = mha.q_proj.weight, mha.q_proj.bias  # keys/values are cached
    else:
        if mha.kdim != mha.d_model or mha.vdim != mha.d_model:
            raise ValueError("self-attention steps need kdim == vdim == d_model")
        lins = (mha.q_proj, mha.k_proj, mha.v_proj)
        with torch.no_grad():
            w_in = torch.cat([lin.weight for lin in lins])  # (3C, C)
            b_in = None
            if mha.q_proj.bias is not None:
                b_in = torch.cat([lin.bias for lin in lins])  # (3C,)
    return StepWeights(w_in, b_in, mha.out_proj.weight, mha.out_proj.bias)


def fill_cross_cache(mha: MultiHeadAttention, cache: KVCache, memory: Tensor) -> None:
    """Project the encoder memory (B, S, C) into a static cache's keys and values."""
    B, S, _ = memory.shape
    H, D = mha.n_heads, mha.head_dim
    cache.k = mha.k_proj(memory).view(B, S, H, D).transpose(1, 2)  # (B, H, S, D)
    cache.v = mha.v_proj(memory).view(B, S, H, D).transpose(1, 2)  # (B, H, S, D)


def attention_step(
    mha: MultiHeadAttention,
    x: Tensor,
    cache: KVCache,
    weights: StepWeights,
    mask: Tensor | None = None,
    *,
    positional: Any = None,
    pos: int = 0,
) -> Tensor:
    """Attention for one new position per row: what ``mha(x[:, None], cache=...)``
    computes, in fewer operations. Inference only: no dropout, no weights returned.

    Args:
        mha: the layer whose weights ``weights`` holds.
        x: the new position, (B, C).
        cache: a growing cache (self-attention) or a filled static one
            (cross-attention).
        weights: from :func:`attention_weights`.
        mask: bool, True = may attend, broadcastable to (B, H, 1, S).
        positional: a scheme with ``rotate``/``score_bias`` hooks (self-attention).
        pos: position of the new token (the number of positions cached before it).

    Shape:
        x: (B, C) -> (B, C)
    """
    B, C = x.shape
    H, D = mha.n_heads, mha.head_dim
    bias = None
    if cache.static:
        q = F.linear(x, weights.w_in, weights.b_in).view(B, H, 1, D)  # (B, H, 1, D)
        k, v = cache.k, cache.v  # (B, H, S, D)
        assert k is not None and v is not None
    else:
        qkv = F.linear(x, weights.w_in, weights.b_in).view(B, 3, H, 1, D)
        q, k, v = qkv.unbind(1)  # each (B, H, 1, D)
        if positional is not None:
            q_pos = torch.tensor([pos], device=x.device)  # (1,)
            q, k = positional.rotate(q, k, q_pos, q_pos)
            k, v = cache.append(k, v)  # (B, H, S, D)
            k_pos = torch.arange(k.shape[2], device=x.device)  # (S,)
            # broadcastable to (B, H, 1, S)
            bias = positional.score_bias(q, q_pos, k_pos)
        else:
            k, v = cache.append(k, v)  # (B, H, S, D)
    if mask is not None and mask.dim() == 3:
        mask = mask.unsqueeze(1)  # (B, 1, 1, S)
    out = fused_attention(q, k, v, mask, bias, 0.0)  # (B, H, 1, D)
    return F.linear(out.view(B, C), weights.w_out, weights.b_out)  # (B, C)


Norm = tuple[tuple[int, ...], Tensor, Tensor, float]


class LayerWeights(NamedTuple):
    """A decoder layer's weights for :func:`decoder_layer_step`."""

    self_attn: StepWeights
    cross_attn: StepWeights
    ffn: tuple[Tensor, Tensor | None, Tensor, Tensor | None, Callable[[Tensor], Tensor]]
    norms: tuple[Norm, Norm, Norm]


def _norm(n: nn.LayerNorm) -> Norm:
    return (tuple(n.normalized_shape), n.weight, n.bias, n.eps)


def layer_weights(layer: DecoderLayer) -> LayerWeights:
    """Every weight of ``layer`` that :func:`decoder_layer_step` needs."""
    f = layer.ffn
    return LayerWeights(
        attention_weights(layer.self_attn),
        attention_weights(layer.multihead_attn, cross=True),
        (
            f.linear1.weight,
            f.linear1.bias,
            f.linear2.weight,
            f.linear2.bias,
            f.activation,
        ),
        (_norm(layer.norm1), _norm(layer.norm2), _norm(layer.norm3)),
    )


def decoder_layer_step(
    layer: DecoderLayer,
    x: Tensor,
    caches: tuple[KVCache, KVCache],
    w: LayerWeights,
    self_mask: Tensor | None,
    memory_mask: Tensor | None,
    positional: Any,
    pos: int,
) -> Tensor:
    """One new position per row through ``layer``: (B, C) -> (B, C)."""
    self_cache, cross_cache = caches
    sa, ca = layer.self_attn, layer.multihead_attn
    n1, n2, n3 = w.norms
    w1, b1, w2, b2, act = w.ffn
    ws, wc = w.self_attn, w.cross_attn
    if layer.norm_first:
        h = F.layer_norm(x, *n1)
        x = x + attention_step(
            sa, h, self_cache, ws, self_mask, positional=positional, pos=pos
        )
        h = F.layer_norm(x, *n2)
        x = x + attention_step(ca, h, cross_cache, wc, memory_mask)
        return x + F.linear(act(F.linear(F.layer_norm(x, *n3), w1, b1)), w2, b2)
    h = attention_step(sa, x, self_cache, ws, self_mask, positional=positional, pos=pos)
    x = F.layer_norm(x + h, *n1)
    h = attention_step(ca, x, cross_cache, wc, memory_mask)
    x = F.layer_norm(x + h, *n2)
    return F.layer_norm(x + F.linear(act(F.linear(x, w1, b1)), w2, b2), *n3)


@dataclass
class FastDecodingState:
    """A :class:`~transformer.model.DecoderState` plus what every step reuses.

    Attributes:
        inner: the model's own state (memory, caches, tokens fed so far).
        layers: each decoder layer's gathered weights.
        norm: the final LayerNorm's weights, or None.
        keys: (B, t) True at fed tokens that are not padding, or None while no
            padding has been fed (the common case: then no mask is built at all).
    """

    inner: DecoderState
    layers: list[LayerWeights]
    norm: Norm | None
    keys: Tensor | None = None


class FastDecoding(nn.Module):
    """A Transformer's decoding protocol (``start``, ``step``, ``reorder_state``) on the
    one-position inference path: the same logits as the model's own cached ``step``.

    Args:
        model: the :class:`~transformer.model.Transformer` to decode with (not copied;
            weights are gathered at every :meth:`start`).
    """

    def __init__(self, model: Transformer) -> None:
        super().__init__()
        if not isinstance(model, Transformer):
            raise TypeError(
                f"FastDecoding wraps a Transformer, got {type(model).__name__}"
            )
        if _value_term_of(model.decoder.positional) is not None:
            raise ValueError(
                "Shaw et al.'s value vectors need the general attention path; decode "
                "with the model itself"
            )
        self.model = model
        self.config = model.config
        self.pad_id, self.bos_id, self.eos_id = model.pad_id, model.bos_id, model.eos_id

    def forward(self, src: Tensor, tgt_in: Tensor) -> Tensor:
        return self.model(src, tgt_in)

    @torch.no_grad()
    def start(self, src: Tensor) -> FastDecodingState:
        """Encode, fill every cross-attention cache and gather the weights once."""
        if self.model.training:
            raise RuntimeError("FastDecoding is for inference; call .eval() first")
        state = self.model.start(src, use_cache=True)
        assert state.caches is not None
        dec = self.model.decoder
        dec_layers = cast("Iterable[DecoderLayer]", dec.layers)
        for layer, (_, cross) in zip(dec_layers, state.caches):
            fill_cross_cache(layer.multihead_attn, cross, state.memory)
        layers = [layer_weights(layer) for layer in dec_layers]
        norm = None if dec.norm is None else _norm(dec.norm)
        return FastDecodingState(state, layers, norm)

    @torch.no_grad()
    def step(
        self, prev_tokens: Tensor, state: FastDecodingState
    ) -> tuple[Tensor, FastDecodingState]:
        """Logits (B, V) after feeding ``prev_tokens`` (B,); as ``Transformer.step``.

        The checks are the model's, made cheap: the padding mask over the fed tokens
        is carried in the state and extended by one column per step (built only once
        a padding token has been fed), not recomputed from every token so far.
        """
        if not isinstance(state, FastDecodingState):
            raise TypeError(
                f"state must come from FastDecoding.start, got {type(state).__name__}"
            )
        model, dec, inner = self.model, self.model.decoder, state.inner
        tokens = model._check_step(prev_tokens, inner)  # (B, t+1)
        pos = inner.length
        keys = state.keys
        is_pad = prev_tokens == self.pad_id  # (B,)
        if keys is not None or bool(is_pad.any()):
            if keys is None:  # the first padding: every earlier fed token is real
                keys = torch.ones_like(inner.tokens, dtype=torch.bool)  # (B, t)
            keys = torch.cat([keys, ~is_pad[:, None]], dim=1)  # (B, t+1)
        self_mask = None if keys is None else keys[:, None, None, :]  # (B, 1, 1, t+1)
        emb = dec.embedding
        # (B, C), as TokenEmbedding
        x = F.embedding(prev_tokens, emb.weight) * emb.scale
        x = dec.positional.embed_range(x[:, None], pos)[:, 0]  # (B, C)
        hooks = dec.positional if dec._use_hooks else None
        assert inner.caches is not None
        dec_layers = cast("Iterable[DecoderLayer]", dec.layers)
        for layer, lw, caches in zip(dec_layers, state.layers, inner.caches):
            x = decoder_layer_step(
                layer, x, caches, lw, self_mask, inner.memory_mask, hooks, pos
            )  # (B, C)
        if state.norm is not None:
            x = F.layer_norm(x, *state.norm)
        logits = F.linear(x, dec.output.weight, dec.output.bias)  # (B, V)
        new = DecoderState(inner.memory, inner.memory_mask, inner.caches, tokens)
        return logits, FastDecodingState(new, state.layers, state.norm, keys)

    def reorder_state(
        self, state: FastDecodingState, index: Tensor
    ) -> FastDecodingState:
        """Select (and repeat) rows, as ``Transformer.reorder_state``."""
        inner = self.model.reorder_state(state.inner, index)
        keys = None if state.keys is None else state.keys.index_select(0, index)
        return FastDecodingState(inner, state.layers, state.norm, keys)
