"""Generation on the fast path for chapter 11's blocks, kept apart from the code the
book teaches.

:class:`FastModernLM` is a :class:`~transformer.fast_lm.FastLM` that also runs
chapter 11's pre-norm blocks (RMSNorm, SwiGLU, grouped-query attention, RoPE) in
``start``/``step``, so ``generate(FastModernLM(model), prompt, n)`` gives the
model's greedy tokens in fewer operations. At batch 1 a step's time is mostly the
cost of launching small operations from Python, so a step launches as few as it can:

* the weights are gathered once per prompt: per block one stacked product for the
  queries, the keys, the keys and queries with their pairs swapped (below) and the
  values, and one stacked (2F, C) product for SwiGLU's gate and up projections;
* RoPE is folded into that product: rotating a pair ``(a, b)`` by an angle gives
  ``(a, b) cos + (-b, a) sin``, and ``(-b, a)`` is one more set of rows of the weight
  matrix, so the rotation costs one multiplication and one ``addcmul`` with cos and
  sin tables built once (per position, repeated over the pairs and heads);
* RMSNorm is ``F.rms_norm`` without its gain, which is folded into the weight
  matrix that follows (``(g * x) W^T = x (W g)^T``);
* the residual additions after the attention's output projection and the
  feed-forward network are each one ``addmm``, not a product and a sum;
* each block's keys and values go into its own preallocated buffer with only the
  G shared heads; at a step, the H / G query heads of a group attend as queries of
  one head (no repeated keys, no mask), for the prompt ``enable_gqa`` shares them;
* token ids are checked by the embedding lookup itself; only a lookup that fails
  goes through the model's check, which explains what is wrong.

Other models and inputs (padding, post-norm blocks, attention hooks other than
RoPE) go to :class:`~transformer.fast_lm.FastLM`, which runs them or passes them
on to the model's own methods.

Shape letters: B batch, T length, t tokens fed so far, C model size, H query heads,
G key/value heads, D head size, F feed-forward size, V vocabulary, L layers,
N = (H + G) D the rotated query and key features.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import NamedTuple, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from transformer.fast_lm import FastLM, FastLMState
from transformer.gpt import DecoderOnlyTransformer, LMState
from transformer.layers import EncoderLayer
from transformer.modern import RMSNorm, SwiGLUFeedForward
from transformer.relative import RotaryEmbedding

__all__ = ["FastModernLM", "GeneralState", "ModernWeights", "modern_weights"]


class ModernWeights(NamedTuple):
    """One pre-norm block's weights, stacked for a decoding step.

    ``w_in`` stacks the query and key rows, the same rows with each pair ``(a, b)``
    turned into ``(-b, a)`` (absent without RoPE) and the value rows; ``w_ffn`` the
    gate and up projections of SwiGLU (only the first layer for a plain network);
    ``w_out_t`` and ``w2_t`` are transposed views, as ``addmm`` takes them.
    A norm is ``(weight, bias, eps, is_rms)``.
    """

    norm1: tuple[Tensor, Tensor | None, float, bool]
    w_in: Tensor
    b_in: Tensor | None
    w_out_t: Tensor
    b_out: Tensor | None
    norm2: tuple[Tensor, Tensor | None, float, bool]
    w_ffn: Tensor
    b_ffn: Tensor | None
    w2_t: Tensor
    b2: Tensor | None
    gated: bool
    act: Callable[[Tensor], Tensor]


def _norm_spec(norm: nn.Module) -> tuple[Tensor, Tensor | None, float, bool]:
    n = cast(nn.LayerNorm, norm)
    return n.weight, n.bias, n.eps, isinstance(norm, RMSNorm)


def _fold(w: Tensor, spec: tuple[Tensor, Tensor | None, float, bool]) -> Tensor:
    """The weight (out, C) that follows a norm, times an RMSNorm's gain (C,).

    ``(g * x) W^T = x (W g)^T``: the gain's multiplication moves into the weight,
    once per prompt instead of once per step.
    """
    return w * spec[0] if spec[3] else w


def _swap_pairs(w: Tensor) -> Tensor:
    """Rows (or entries) ``(a, b)`` of every pair become ``(-b, a)``."""
    pairs = w.reshape(w.shape[0] // 2, 2, *w.shape[1:])
    return torch.stack((-pairs[:, 1], pairs[:, 0]), dim=1).reshape(w.shape)


def modern_weights(layer: EncoderLayer, rope: bool) -> ModernWeights:
    """``layer``'s weights for :class:`FastModernLM`'s generation (copies, no autograd).

    Shape:
        w_in: (2 N + G D, C) with RoPE, (N + G D, C) without.
    """
    a, f = layer.self_attn, layer.ffn
    qk_w = torch.cat([a.q_proj.weight, a.k_proj.weight])  # (N, C)
    parts_w = (
        [qk_w, _swap_pairs(qk_w), a.v_proj.weight] if rope else [qk_w, a.v_proj.weight]
    )
    b_in = None
    if a.q_proj.bias is not None:
        qk_b = torch.cat([a.q_proj.bias, a.k_proj.bias])  # (N,)
        b_in = torch.cat(
            [qk_b, _swap_pairs(qk_b), a.v_proj.bias] if rope else [qk_b, a.v_proj.bias]
        )
    gated = isinstance(f, SwiGLUFeedForward)
    if gated:
        sw = cast(SwiGLUFeedForward, f)
        w_ffn = torch.cat([sw.linear1.weight, sw.linear_up.weight])  # (2F, C)
        b_ffn = (
            None
            if sw.linear1.bias is None
            else torch.cat([sw.linear1.bias, sw.linear_up.bias])
        )
    else:
        w_ffn, b_ffn = f.linear1.weight, f.linear1.bias
    n1, n2 = _norm_spec(layer.norm1), _norm_spec(layer.norm2)
    act: Callable[[Tensor], Tensor] = (
        F.silu if isinstance(f.activation, nn.SiLU) else f.activation
    )
    return ModernWeights(
        n1,
        _fold(torch.cat(parts_w), n1),
        b_in,
        a.out_proj.weight.t(),
        a.out_proj.bias,
        n2,
        _fold(w_ffn, n2),
        b_ffn,
        f.linear2.weight.t(),
        f.linear2.bias,
        gated,
        act,
    )


def _residual(x: Tensor, h: Tensor, w_t: Tensor, b: Tensor | None) -> Tensor:
    """``x + h w_t + b`` for rows x, in one ``addmm`` when there is no bias."""
    if b is None:
        return torch.addmm(x, h, w_t)
    return torch.addmm(x + b, h, w_t)


def _norm(x: Tensor, spec: tuple[Tensor, Tensor | None, float, bool]) -> Tensor:
    """A LayerNorm, or an RMSNorm without its gain (folded into the next weight)."""
    w, b, eps, rms = spec
    if rms:
        return F.rms_norm(x, w.shape, None, eps)
    return F.layer_norm(x, w.shape, w, b, eps)


@dataclass
class GeneralState:
    """What :meth:`FastModernLM.step` carries from one token to the next.

    Attributes:
        k, v: (L, B, G, capacity, D) every block's cached keys and values for its
            G key/value heads; the first ``length`` positions are filled.
        length: tokens fed so far.
        logits: (B, V) the prediction after the last fed token.
        weights: every block's :class:`ModernWeights`, gathered at ``start``.
        cos, sin: (capacity, N) RoPE's tables, ``None`` without RoPE.
    """

    k: Tensor
    v: Tensor
    length: int
    logits: Tensor
    weights: list[ModernWeights]
    cos: Tensor | None
    sin: Tensor | None


class FastModernLM(FastLM):
    """:class:`~transformer.fast_lm.FastLM` with generation for chapter 11's blocks.

    Args:
        model: the model to run.

    Shape:
        prompt: (B, T) long -> state with logits (B, V); prev: (B,) long -> logits (B,
            V)
    """

    def __init__(self, model: DecoderOnlyTransformer) -> None:
        super().__init__(model)
        self.rope = type(model.positional) is RotaryEmbedding
        self.modern = model.config.norm_first and (self.rope or not model._use_hooks)

    def _tables(self, n: int, like: Tensor) -> tuple[Tensor | None, Tensor | None]:
        """RoPE's cos and sin (n, N) for positions 0..n-1, or ``(None, None)``."""
        pos = self.model.positional
        if not isinstance(pos, RotaryEmbedding):
            return None, None
        a = cast(EncoderLayer, self.model.layers[0]).self_attn
        heads = a.n_heads + getattr(a, "n_kv_heads", a.n_heads)
        # (n, D), float64
        angles = pos.angles(torch.arange(n)).repeat_interleave(2, dim=1)
        return angles.cos().to(like).repeat(1, heads), angles.sin().to(like).repeat(
            1, heads
        )

    def _blocks(self, x: Tensor, st: GeneralState, t: int) -> Tensor:
        """Run positions t.. of x (B, T, C) through every block, caching keys and
        values.

        Shape:
            x: (B, T, C) -> (B T, C)
        """
        B, T, C = x.shape
        x = x.reshape(B * T, C)  # rows, so that residuals are one ``addmm`` each
        G, D = st.k.shape[2], st.k.shape[4]
        n = st.cos.shape[1] if st.cos is not None else 0
        cos = st.cos[t : t + T] if st.cos is not None else None  # (T, N)
        sin = st.sin[t : t + T] if st.sin is not None else None
        rows = slice(t, t + T)
        for w, kc, vc in zip(st.weights, st.k.unbind(0), st.v.unbind(0)):
            # (B, T, 2N + G D)
            y = F.linear(_norm(x, w.norm1), w.w_in, w.b_in).view(B, T, -1)
            if cos is not None and sin is not None:
                # (B, T, N)
                qk = torch.addcmul(y[..., :n] * cos, y[..., n : 2 * n], sin)
                v = y[..., 2 * n :]
            else:
                qk, v = y[..., : -G * D], y[..., -G * D :]
            H = qk.shape[-1] // D - G
            qk = qk.view(B, T, H + G, D).transpose(1, 2)  # (B, H + G, T, D)
            kc[:, :, rows] = qk[:, H:]
            vc[:, :, rows] = v.view(B, T, G, D).transpose(1, 2)
            att = F.scaled_dot_product_attention(
                qk[:, :H],
                kc[:, :, : t + T],
                vc[:, :, : t + T],
                is_causal=T > 1,
                enable_gqa=G != H,
            )  # (B, H, T, D)
            x = _residual(x, att.transpose(1, 2).reshape(B * T, C), w.w_out_t, w.b_out)
            h = F.linear(_norm(x, w.norm2), w.w_ffn, w.b_ffn)  # (B T, 2F) or (B T, F)
            act = w.act
            if w.gated:
                g, u = h.chunk(2, dim=-1)
                h = act(g).mul_(u)  # (B T, F)
            else:
                h = act(h)
            x = _residual(x, h, w.w2_t, w.b2)
        return x

    def _one(self, x: Tensor, st: GeneralState, t: int) -> Tensor:
        """:meth:`_blocks` for one new position, its query heads grouped by key head.

        With one query per row, the r = H / G query heads that share a key/value
        head are r queries of one head: attention needs no mask, no repeated keys,
        and its output (B, G, r, D) is already in the (B, C) order.

        Shape:
            x: (B, C) -> (B, C)
        """
        B, C = x.shape
        G, D = st.k.shape[2], st.k.shape[4]
        cos = st.cos[t] if st.cos is not None else None  # (N,)
        sin = st.sin[t] if st.sin is not None else None
        HD = st.weights[0].w_out_t.shape[0]  # H D query features
        n = HD + G * D
        for w, kc, vc in zip(st.weights, st.k.unbind(0), st.v.unbind(0)):
            # (B, 2N + G D) or (B, N + G D)
            y = F.linear(_norm(x, w.norm1), w.w_in, w.b_in)
            if cos is not None and sin is not None:
                qk = torch.addcmul(y[:, :n] * cos, y[:, n : 2 * n], sin)  # (B, N)
                v = y[:, 2 * n :]
            else:
                qk, v = y[:, :n], y[:, n:]
            kc[:, :, t] = qk[:, HD:].view(B, G, D)
            vc[:, :, t] = v.view(B, G, D)
            q = qk[:, :HD].view(B, G, HD // (G * D), D)  # (B, G, r, D)
            att = F.scaled_dot_product_attention(
                q, kc[:, :, : t + 1], vc[:, :, : t + 1]
            )
            x = _residual(x, att.view(B, HD), w.w_out_t, w.b_out)
            h = F.linear(_norm(x, w.norm2), w.w_ffn, w.b_ffn)  # (B, 2F) or (B, F)
            if w.gated:
                g, u = h.chunk(2, dim=-1)
                h = w.act(g).mul_(u)  # (B, F)
            else:
                h = w.act(h)
            x = _residual(x, h, w.w2_t, w.b2)
        return x

    def _head(self, x: Tensor) -> Tensor:
        """The final norm and the output layer, (B, C) -> (B, V)."""
        m = self.model
        if isinstance(m.norm, RMSNorm):
            x = F.rms_norm(x, m.norm.weight.shape, m.norm.weight, m.norm.eps)
        elif m.norm is not None:
            x = m.norm(x)
        out = m.output
        return F.linear(x, out.weight, out.bias) if type(out) is nn.Linear else out(x)

    def _layers_list(self) -> list[EncoderLayer]:
        return list(cast("Iterable[EncoderLayer]", self.model.layers))

    @torch.no_grad()
    def start(  # type: ignore[override]  # one more kind of state, for step only
        self, prompt: Tensor, attention_mask: Tensor | None = None
    ) -> FastLMState | GeneralState | LMState:
        """Run the prompt (B, T) once, filling the key/value buffers; as
        ``model.start``."""
        m = self.model
        if self.covered or not self.modern or m.training:
            return super().start(prompt, attention_mask)
        if m.key_mask(prompt, attention_mask) is not None:
            return m.start(prompt, attention_mask)
        m._check(prompt, 0)
        (B, T), layers = prompt.shape, self._layers_list()
        weights = [modern_weights(layer, self.rope) for layer in layers]
        a = layers[0].self_attn
        G, capacity = getattr(a, "n_kv_heads", a.n_heads), max(2 * T, 16)
        emb = m.embedding.weight
        k = emb.new_empty((len(layers), B, G, capacity, a.head_dim))
        st = GeneralState(
            k,
            torch.empty_like(k),
            0,
            emb.new_empty(0),
            weights,
            *self._tables(capacity, emb),
        )
        x = self._blocks(self._embed(prompt, 0), st, 0).view(B, T, -1)
        st.length, st.logits = T, self._head(x[:, -1])  # (B, V)
        return st

    @torch.no_grad()
    def step(  # type: ignore[override]  # as start
        self, prev: Tensor, state: FastLMState | GeneralState | LMState
    ) -> tuple[Tensor, FastLMState | GeneralState | LMState]:
        """Feed one token per row (B,); return the next logits (B, V) and the state."""
        if not isinstance(state, GeneralState):
            return super().step(prev, state)
        m, st = self.model, state
        B, t = st.k.shape[1], st.length
        if not isinstance(prev, Tensor) or prev.shape != (B,):
            raise ValueError(
                f"prev must have shape ({B},), got {getattr(prev, 'shape', prev)}"
            )
        limit = getattr(m.positional, "max_len", None)
        if limit is not None and t + 1 > limit:
            m._check(prev[:, None], t)  # raises, naming config.max_len
        try:
            x = self._embed(prev[:, None], t)  # (B, 1, C)
        except (IndexError, RuntimeError):
            m._check(prev[:, None], t)  # says what is wrong with the ids
            raise
        k, v, cos, sin = st.k, st.v, st.cos, st.sin
        if t == k.shape[3]:  # full: move to buffers twice as large
            k, v = (torch.cat([c, torch.empty_like(c)], dim=3) for c in (k, v))
            cos, sin = self._tables(2 * t, k)
        # the caller's is kept
        st = GeneralState(k, v, t, st.logits, st.weights, cos, sin)
        x = self._one(x[:, 0], st, t)  # (B, C)
        st.length, st.logits = t + 1, self._head(x)  # (B, V)
        return st.logits, st
