"""The decoder-only model's speed-ups, kept apart from the code the book teaches
(chapter 10).

:class:`FastLM` wraps a :class:`~transformer.gpt.DecoderOnlyTransformer` and runs the
same model, with the same parameters, in fewer operations. Nothing in the teaching
modules imports this one; the tests compare its logits, gradients and greedy tokens
with the model's own.

* Training and scoring (``FastLM(model)(ids)``): one stacked (3C, C) product for
  the queries, keys and values of each block instead of three; no mask at all when
  nothing is padded (the causal structure is the kernel's ``is_causal``); and in
  training, dropout whose random mask costs one 64-bit draw per four elements (the
  rule of :class:`transformer.fast.FastDropout`), written by the comparison into a
  float mask, its 1 / (1 - p) folded into the next weight matrix. The attention
  weights, where PyTorch's kernel would draw one Bernoulli sample per weight, go
  through :class:`CausalDropoutAttention`, which skips most scores above the
  diagonal and computes its gradient by hand, in place.
* Generation (``start``, ``step``, so :func:`transformer.gpt.generate` takes a
  ``FastLM``): the weights are gathered once per prompt, every block's keys and
  values live in one preallocated buffer, and a step runs one position through the
  blocks with plain functional calls, checked once per call instead of once per
  layer, with no mask to build.

Inputs the fast path does not cover (padding, attention hooks such as RoPE or ALiBi,
post-LN blocks, chapter 11's blocks) go to the model's own methods: a ``FastLM`` is
always correct. Chapter 11's blocks have their own generation path,
:class:`transformer.fast_modern.FastModernLM`, a subclass of this one.

Shape letters: B batch, T length, t tokens fed so far, C model size, H heads,
D head size, F feed-forward size, V vocabulary, L layers.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple, cast, overload

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from transformer.embedding import check_ids
from transformer.gpt import DecoderOnlyTransformer, LMState
from transformer.layers import EncoderLayer, PositionwiseFeedForward
from transformer.multihead import MultiHeadAttention

__all__ = [
    "BlockWeights",
    "CausalDropoutAttention",
    "FastLM",
    "FastLMState",
    "block_weights",
    "causal_attention",
    "fast_dropout",
    "keep_mask",
]


# ------------------------------------------------------------------- dropout
def keep_mask(x: Tensor, p: float) -> Tensor:
    """Dropout's mask for ``x``: 1.0 where it keeps an element, 0.0 where it drops it.

    The rule of :class:`transformer.fast.FastDropout`: each element gets a 15-bit
    uniform number and is dropped when the number is below ``round(p * 2**15)``
    (p = 0.1 becomes 0.100006). The numbers come four from each 64-bit random
    integer (drawing them cost a third less than two from each 32-bit one). The mask is
    written in ``x``'s dtype by the comparison itself: a bool mask would be
    converted at every multiplication, forward and backward. The survivors'
    1 / (1 - p) is left to the caller, who can often fold it into a weight matrix
    instead of paying one more pass over a large tensor.

    Shape:
        x: any -> same shape.
    """
    n = x.numel()
    bits = torch.empty((n + 3) // 4, dtype=torch.int64, device=x.device).random_()
    r = bits.view(torch.int16)[:n].view(x.shape)  # 16-bit quarters of 63 random bits
    r &= 0x7FFF  # in place: 15 uniform bits in each quarter
    keep = torch.empty_like(x, memory_format=torch.contiguous_format)
    return torch.ge(r, round(p * 2**15), out=keep)


def _drop(x: Tensor, p: float, training: bool) -> tuple[Tensor | None, float]:
    """Dropout's mask for ``x`` and its scale 1 / (1 - p), or (None, 1.0) for none."""
    threshold = round(p * 2**15)
    if not training or threshold == 0:
        return None, 1.0
    if threshold >= 2**15:  # every element dropped, as nn.Dropout(1.0) does
        return torch.zeros_like(x), 0.0
    return keep_mask(x, p), 1.0 / (1.0 - p)


def fast_dropout(x: Tensor, p: float, training: bool = True) -> Tensor:
    """Inverted dropout with :func:`keep_mask`'s cheap random numbers.

    Shape:
        x: any -> same shape.
    """
    keep, scale = _drop(x, p, training)
    return x if keep is None else x * keep.mul_(scale)


@overload
def _scaled(w: Tensor, s: float) -> Tensor: ...
@overload
def _scaled(w: None, s: float) -> None: ...
def _scaled(w: Tensor | None, s: float) -> Tensor | None:
    """``w * s``, without a copy when s is 1 (a dropout scale folded into a weight)."""
    return w if w is None or s == 1.0 else w * s


def causal_attention(
    q: Tensor, k: Tensor, v: Tensor, p: float, block: int = 64
) -> Tensor:
    """Causal attention over T positions with dropout ``p`` on the weights.

    Without dropout this is PyTorch's fused kernel with ``is_causal=True``. With
    dropout the weights must exist, and PyTorch's kernel would draw a Bernoulli
    sample for each of them, the slow part: :class:`CausalDropoutAttention` forms
    them with :func:`keep_mask` instead.

    Shape:
        q, k, v: (B, H, T, D) -> (B, H, T, D)
    """
    if p == 0.0:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    B, H, T, D = q.shape
    q, k, v = (t.reshape(B * H, T, D) for t in (q, k, v))  # (BH, T, D)
    out = CausalDropoutAttention.apply(q, k, v, p, block)
    return cast(Tensor, out).view(B, H, T, D)


class CausalDropoutAttention(torch.autograd.Function):
    """softmax(q k^T / sqrt(D) + causal) with dropout, times v, and its gradient.

    The queries go in blocks of ``block``: a block attends only to the keys up to
    its last query, so most scores above the diagonal (zero weight under the
    causal mask) are never computed: a quarter of the work saved at two blocks.
    Writing the backward pass by hand, in place where autograd would allocate,
    saves three passes over the (T, T) weights. With ``w`` the softmax weights,
    ``wd = w * keep`` the dropped ones and ``g`` the output's gradient (1/(1-p)
    aside), the gradients are::

        dv = wd^T g;   t = wd * (g v^T);   ds = t - w * rowsum(t)
        dq = ds k / sqrt(D);   dk = ds^T q / sqrt(D)

    Shape:
        q, k, v: (BH, T, D) -> (BH, T, D)
    """

    @staticmethod
    def forward(
        ctx: Any, q: Tensor, k: Tensor, v: Tensor, p: float, block: int
    ) -> Tensor:
        BH, T, D = q.shape
        upper = torch.full((T, T), float("-inf"), dtype=q.dtype, device=q.device).triu(
            1
        )
        out = torch.empty_like(q)
        saved = []
        for lo in range(0, T, block):
            hi = min(T, lo + block)  # queries lo..hi-1 see keys 0..hi-1
            scores = torch.baddbmm(
                upper[lo:hi, :hi], q[:, lo:hi], k[:, :hi].transpose(1, 2), alpha=D**-0.5
            )  # (BH, hi - lo, hi)
            w = scores.softmax(dim=-1)
            wd = keep_mask(w, p).mul_(w)  # the dropped weights, in the mask's memory
            torch.bmm(wd, v[:, :hi], out=out[:, lo:hi])
            saved += [w, wd]
        ctx.save_for_backward(q, k, v, *saved)
        ctx.scale, ctx.block = 1.0 / (1.0 - p), block
        return out.mul_(ctx.scale)  # (BH, T, D)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        q, k, v, *saved = ctx.saved_tensors
        BH, T, D = q.shape
        g = grad * ctx.scale
        dq, dk, dv = torch.empty_like(q), torch.zeros_like(k), torch.zeros_like(v)
        for i, lo in enumerate(range(0, T, ctx.block)):
            hi = min(T, lo + ctx.block)
            w, wd = saved[2 * i], saved[2 * i + 1]
            gb = g[:, lo:hi]  # (BH, hi - lo, D)
            dv[:, :hi].baddbmm_(wd.transpose(1, 2), gb)
            t = torch.bmm(gb, v[:, :hi].transpose(1, 2)).mul_(wd)  # (BH, hi - lo, hi)
            ds = t.addcmul_(w, t.sum(dim=-1, keepdim=True), value=-1.0)
            torch.bmm(ds, k[:, :hi], out=dq[:, lo:hi]).mul_(D**-0.5)
            dk[:, :hi].baddbmm_(ds.transpose(1, 2), q[:, lo:hi], alpha=D**-0.5)
        return dq, dk, dv, None, None


# ------------------------------------------------------------------ weights
class BlockWeights(NamedTuple):
    """One pre-LN block's weights, the query/key/value projections stacked.

    ``w_qkv`` (3C, C) and ``b_qkv`` (3C,) are built with ``torch.cat`` from the
    block's own parameters, so gradients flow back into them.
    """

    ln1: tuple[Tensor, Tensor, float]
    w_qkv: Tensor
    b_qkv: Tensor | None
    w_out: Tensor
    b_out: Tensor | None
    ln2: tuple[Tensor, Tensor, float]
    w1: Tensor
    b1: Tensor | None
    w2: Tensor
    b2: Tensor | None


def block_weights(layer: EncoderLayer) -> BlockWeights:
    """``layer``'s weights for the fast path (autograd sees the stacking)."""
    a, f = layer.self_attn, layer.ffn
    lins = (a.q_proj, a.k_proj, a.v_proj)
    w_qkv = torch.cat([lin.weight for lin in lins])  # (3C, C)
    b_qkv = None if a.q_proj.bias is None else torch.cat([lin.bias for lin in lins])
    n1, n2 = layer.norm1, layer.norm2
    return BlockWeights(
        (n1.weight, n1.bias, n1.eps),
        w_qkv,
        b_qkv,
        a.out_proj.weight,
        a.out_proj.bias,
        (n2.weight, n2.bias, n2.eps),
        f.linear1.weight,
        f.linear1.bias,
        f.linear2.weight,
        f.linear2.bias,
    )


@dataclass
class FastLMState:
    """What :meth:`FastLM.step` carries from one token to the next.

    Attributes:
        k, v: (L, B, H, capacity, D) every block's cached keys and values; the
            first ``length`` positions are filled.
        length: tokens fed so far.
        logits: (B, V) the prediction after the last fed token.
        weights: every block's :class:`BlockWeights`, gathered at :meth:`FastLM.start`.
    """

    k: Tensor
    v: Tensor
    length: int
    logits: Tensor
    weights: list[BlockWeights]


class FastLM(nn.Module):
    """A :class:`~transformer.gpt.DecoderOnlyTransformer` on the fast path.

    ``FastLM(model)(ids)`` gives the model's logits; ``start``/``step`` follow the
    model's generation protocol, so ``generate(FastLM(model), prompt, n)`` gives its
    tokens. The model is not copied: its parameters are the ones trained.

    Args:
        model: the model to run.

    Shape:
        ids: (B, T) long, attention_mask: (B, T) -> logits (B, T, V)
    """

    def __init__(self, model: DecoderOnlyTransformer) -> None:
        super().__init__()
        if not isinstance(model, DecoderOnlyTransformer):
            raise TypeError(
                f"FastLM wraps a DecoderOnlyTransformer, got {type(model).__name__}"
            )
        self.model = model
        self.config = model.config
        self.pad_id, self.bos_id, self.eos_id = model.pad_id, model.bos_id, model.eos_id
        # The fast path knows chapter 10's pre-LN blocks (LayerNorm, two-layer FFN,
        # one key/value head per query head) and additive positions only.
        parts = (
            nn.LayerNorm,
            nn.LayerNorm,
            PositionwiseFeedForward,
            MultiHeadAttention,
        )
        blocks = cast("Iterable[EncoderLayer]", model.layers)
        plain = all(
            (type(b.norm1), type(b.norm2), type(b.ffn), type(b.self_attn)) == parts
            for b in blocks
        ) and type(model.norm) in (type(None), nn.LayerNorm)
        self.covered = model.config.norm_first and not model._use_hooks and plain
        self.train(model.training)  # the model's mode, which ``forward`` follows

    def _layers(self) -> Iterable[EncoderLayer]:
        return cast("Iterable[EncoderLayer]", self.model.layers)

    def _embed(self, ids: Tensor, start: int) -> Tensor:
        m = self.model
        x = F.embedding(ids, m.embedding.weight)  # (B, T, C)
        if m.embedding.scale != 1.0:  # GPT-2 does not scale its embeddings
            x = x * m.embedding.scale
        x = m.positional.embed_range(x, start)
        return fast_dropout(x, m.dropout.p, m.training)

    def _block(self, x: Tensor, B: int, layer: EncoderLayer, w: BlockWeights) -> Tensor:
        """One pre-LN block on (B T, C) rows, its dropout scales folded into weights.

        The rows stay 2-D so that every product is a tensor of its own, not a view:
        multiplying a view in place would cost autograd a copy of its base.
        """
        N, C = x.shape
        T, H = N // B, layer.self_attn.n_heads
        train = self.model.training
        h = F.layer_norm(x, (C,), *w.ln1)
        qkv = F.linear(h, w.w_qkv, w.b_qkv).view(B, T, 3, H, C // H)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, H, T, D)
        p = layer.self_attn.dropout if train else 0.0
        att = causal_attention(q, k, v, p).transpose(1, 2).reshape(N, C)  # (B T, C)
        # dropout(h W^T + b) = (h (sW)^T + sb) * keep with s = 1 / (1 - p); the
        # products are not kept for backward, so the masks may go in place
        keep, s = _drop(att, layer.dropout1.p, train)
        h = F.linear(att, _scaled(w.w_out, s), _scaled(w.b_out, s))
        x = x + (h if keep is None else h.mul_(keep))
        h = F.linear(F.layer_norm(x, (C,), *w.ln2), w.w1, w.b1)  # (B T, F)
        keep, s_h = _drop(h, layer.ffn.dropout.p, train)
        # act(h) * keep = act(h * keep): every activation here has act(0) = 0
        h = layer.ffn.activation(h if keep is None else h.mul_(keep))
        keep, s = _drop(x, layer.dropout2.p, train)
        h = F.linear(h, _scaled(w.w2, s_h * s), _scaled(w.b2, s))  # (B T, C)
        return x + (h if keep is None else h.mul_(keep))

    def _final(self, x: Tensor) -> Tensor:
        m = self.model
        if m.norm is not None:
            x = m.norm(x)
        return m.output(x)

    def forward(self, ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        """Next-token logits at every position, as the model's ``forward``."""
        m = self.model
        if not self.covered:
            return m(ids, attention_mask)
        m._check(ids, 0)
        if m.key_mask(ids, attention_mask) is not None:
            return m(ids, attention_mask)  # padding: the general path
        B, T = ids.shape
        x = self._embed(ids, 0).view(B * T, -1)  # (B T, C)
        for layer in self._layers():
            x = self._block(x, B, layer, block_weights(layer))
        return self._final(x).view(B, T, -1)  # (B, T, V)

    # ----------------------------------------------------------------- generation
    @torch.no_grad()
    def start(
        self, prompt: Tensor, attention_mask: Tensor | None = None
    ) -> FastLMState | LMState:
        """Run the prompt (B, T) once, filling the key/value buffer; as
        ``model.start``."""
        m = self.model
        if m.training:
            raise RuntimeError("FastLM generates in eval mode; call .eval() first")
        if m.key_mask(prompt, attention_mask) is not None or not self.covered:
            return m.start(prompt, attention_mask)
        m._check(prompt, 0)
        B, T = prompt.shape
        layers = list(self._layers())
        weights = [block_weights(layer) for layer in layers]
        a = layers[0].self_attn
        H, D = a.n_heads, a.head_dim
        capacity = max(2 * T, 16)
        buf = prompt.new_empty(
            (len(layers), B, H, capacity, D), dtype=m.embedding.weight.dtype
        )
        k_all, v_all = buf, torch.empty_like(buf)
        x = self._embed(prompt, 0)  # (B, T, C)
        C = x.shape[-1]
        for i, w in enumerate(weights):
            h = F.layer_norm(x, (C,), *w.ln1)
            qkv = F.linear(h, w.w_qkv, w.b_qkv).view(B, T, 3, H, D)
            q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, H, T, D)
            k_all[i, :, :, :T] = k
            v_all[i, :, :, :T] = v
            att = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + F.linear(att.transpose(1, 2).reshape(B, T, C), w.w_out, w.b_out)
            x = x + self._ffn(x, layers[i], w)
        logits = self._final(x[:, -1])  # (B, V)
        return FastLMState(k_all, v_all, T, logits, weights)

    @staticmethod
    def _ffn(x: Tensor, layer: EncoderLayer, w: BlockWeights) -> Tensor:
        h = F.layer_norm(x, x.shape[-1:], *w.ln2)
        return F.linear(layer.ffn.activation(F.linear(h, w.w1, w.b1)), w.w2, w.b2)

    @torch.no_grad()
    def step(
        self, prev: Tensor, state: FastLMState | LMState
    ) -> tuple[Tensor, FastLMState | LMState]:
        """Feed one token per row (B,); return the next logits (B, V) and the state."""
        m = self.model
        if isinstance(state, LMState):
            return m.step(prev, state)
        if not isinstance(state, FastLMState):
            raise TypeError(f"state must come from start(), got {type(state).__name__}")
        k_all, v_all = state.k, state.v
        L, B, H, capacity, D = k_all.shape
        if not isinstance(prev, Tensor) or prev.shape != (B,):
            got = tuple(prev.shape) if isinstance(prev, Tensor) else prev
            raise ValueError(f"prev must have shape ({B},), got {got}")
        t = state.length
        check_ids(prev[:, None], "prev", self.config.vocab_size, k_all.device)
        limit = getattr(m.positional, "max_len", None)
        if limit is not None and t + 1 > limit:
            raise ValueError(
                f"the sequence reaches length {t + 1} but the positions stop at "
                f"{limit} (config.max_len)"
            )
        if t == capacity:  # full: move to buffers twice as large
            k_all = torch.cat([k_all, torch.empty_like(k_all)], dim=3)
            v_all = torch.cat([v_all, torch.empty_like(v_all)], dim=3)
        x = self._embed(prev[:, None], t)[:, 0]  # (B, C)
        C = x.shape[-1]
        for i, (layer, w) in enumerate(zip(self._layers(), state.weights)):
            h = F.layer_norm(x, (C,), *w.ln1)
            q, k, v = F.linear(h, w.w_qkv, w.b_qkv).view(B, 3, H, 1, D).unbind(1)
            k_all[i, :, :, t : t + 1] = k
            v_all[i, :, :, t : t + 1] = v
            att = F.scaled_dot_product_attention(
                q, k_all[i, :, :, : t + 1], v_all[i, :, :, : t + 1]
            )
            x = x + F.linear(att.view(B, C), w.w_out, w.b_out)
            x = x + self._ffn(x, layer, w)
        logits = self._final(x)  # (B, V)
        return logits, FastLMState(k_all, v_all, t + 1, logits, state.weights)
