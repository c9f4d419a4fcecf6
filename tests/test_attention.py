"""Tests for transformer.attention: agreement with PyTorch, invariants, errors,
caching."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.testing import assert_close

from transformer.attention import (
    AdditiveAttention,
    DotProductAttention,
    NadarayaWatson,
    dot_product_scores,
    masked_softmax,
    nadaraya_watson,
    scaled_dot_product_attention,
)
from transformer.kv_cache import KVCache
from transformer.multihead import MultiHeadAttention

TOL = {"atol": 1e-5, "rtol": 1e-4}


def _qkv(B=2, H=3, T=5, S=7, D=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, H, T, D, generator=g)
    k = torch.randn(B, H, S, D, generator=g)
    v = torch.randn(B, H, S, D, generator=g)
    return q, k, v


def _random_mask(shape, seed=0, p=0.3):
    """Random bool mask with at least one allowed key per query row."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(shape, generator=g) > p
    mask[..., 0] = True
    return mask


# ---------------------------------------------------------------------------
# scaled_dot_product_attention against torch
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("T,S", [(5, 5), (4, 9), (9, 3)])
def test_sdpa_matches_torch_without_mask(T, S):
    q, k, v = _qkv(T=T, S=S)
    out, w = scaled_dot_product_attention(q, k, v)
    assert out.shape == (2, 3, T, 8) and w.shape == (2, 3, T, S)
    assert_close(out, F.scaled_dot_product_attention(q, k, v), **TOL)


@pytest.mark.parametrize(
    "mask_shape", [(5, 7), (2, 1, 1, 7), (2, 3, 5, 7), (1, 1, 5, 7)]
)
def test_sdpa_matches_torch_with_bool_mask(mask_shape):
    q, k, v = _qkv()
    mask = _random_mask(mask_shape)
    out, w = scaled_dot_product_attention(q, k, v, mask)
    assert_close(out, F.scaled_dot_product_attention(q, k, v, attn_mask=mask), **TOL)
    assert torch.all(w.masked_select(~mask.expand_as(w)) == 0)


def test_sdpa_matches_torch_causal():
    q, k, v = _qkv(T=6, S=6)
    causal = torch.ones(6, 6, dtype=torch.bool).tril()
    out, w = scaled_dot_product_attention(q, k, v, causal)
    assert_close(out, F.scaled_dot_product_attention(q, k, v, is_causal=True), **TOL)
    assert torch.all(w.triu(1) == 0)


def test_sdpa_gradients_match_torch():
    q, k, v = (t.requires_grad_() for t in _qkv())
    mask = _random_mask((2, 1, 5, 7))
    out, _ = scaled_dot_product_attention(q, k, v, mask)
    grads = torch.autograd.grad(out.square().sum(), (q, k, v))
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    ref_grads = torch.autograd.grad(ref.square().sum(), (q, k, v))
    for a, b in zip(grads, ref_grads):
        assert_close(a, b, **TOL)


def test_sdpa_scale_and_bias_match_torch_float_mask():
    q, k, v = _qkv()
    bias = torch.randn(1, 3, 5, 7)
    out, _ = scaled_dot_product_attention(q, k, v, bias=bias, scale=0.3)
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=0.3)
    assert_close(out, ref, **TOL)


def test_sdpa_dropout_only_in_training():
    q, k, v = _qkv()
    torch.manual_seed(0)
    out_train, w = scaled_dot_product_attention(q, k, v, dropout_p=0.5, training=True)
    out_eval, w_eval = scaled_dot_product_attention(
        q, k, v, dropout_p=0.5, training=False
    )
    assert not torch.allclose(out_train, out_eval)
    # the returned weights are before dropout, so the two calls agree on them
    assert_close(w, w_eval)
    assert_close(out_eval, F.scaled_dot_product_attention(q, k, v), **TOL)


def test_fully_masked_row_gives_zeros_and_finite_gradients():
    q, k, v = (t.requires_grad_() for t in _qkv())
    mask = _random_mask((2, 3, 5, 7))
    mask[0, 1, 2] = False
    mask[1, :, 4] = False
    out, w = scaled_dot_product_attention(q, k, v, mask)
    assert torch.isfinite(out).all()
    assert torch.all(out[0, 1, 2] == 0) and torch.all(out[1, :, 4] == 0)
    assert torch.all(w[0, 1, 2] == 0)
    out.sum().backward()
    assert all(torch.isfinite(t.grad).all() for t in (q, k, v))


def test_masked_softmax_rows():
    scores = torch.randn(3, 4)
    mask = torch.tensor([[1, 1, 0, 0], [0, 0, 0, 0], [1, 1, 1, 1]], dtype=torch.bool)
    w = masked_softmax(scores, mask)
    assert_close(w[0, :2], torch.softmax(scores[0, :2], -1))
    assert torch.all(w[0, 2:] == 0) and torch.all(w[1] == 0)
    assert_close(w[2], torch.softmax(scores[2], -1))


# ---------------------------------------------------------------------------
# Property tests
# ---------------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(
    T=st.integers(1, 6),
    S=st.integers(1, 6),
    D=st.integers(1, 8),
    seed=st.integers(0, 10_000),
    scale=st.floats(0.1, 10.0),
)
def test_property_weights_are_a_distribution_with_zeros_where_masked(
    T, S, D, seed, scale
):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(2, T, D, generator=g) * scale
    k = torch.randn(2, S, D, generator=g) * scale
    v = torch.randn(2, S, 3, generator=g)
    mask = torch.rand(2, T, S, generator=g) > 0.4
    out, w = scaled_dot_product_attention(q, k, v, mask)
    assert torch.all(w >= 0)
    assert torch.all(w[~mask] == 0)  # exactly zero, not just small
    has_key = mask.any(-1)
    assert_close(w.sum(-1)[has_key], torch.ones(int(has_key.sum())), atol=1e-5, rtol=0)
    assert torch.all(w.sum(-1)[~has_key] == 0)
    assert torch.all(out[~has_key] == 0)
    assert torch.isfinite(out).all()


@settings(max_examples=25, deadline=None)
@given(T=st.integers(2, 8), seed=st.integers(0, 10_000), fused=st.booleans())
def test_property_self_attention_is_permutation_equivariant(T, seed, fused):
    torch.manual_seed(seed)
    mha = MultiHeadAttention(8, 2, fused=fused)
    x = torch.randn(2, T, 8)
    perm = torch.randperm(T)
    out, _ = mha(x)
    out_perm, _ = mha(x[:, perm])
    assert_close(out_perm, out[:, perm], **TOL)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    fused=st.booleans(),
    T=st.integers(1, 5),
    S=st.integers(1, 5),
)
def test_property_fully_masked_rows_give_zeros_in_mha(seed, fused, T, S):
    torch.manual_seed(seed)
    # no bias: zero in, zero out
    mha = MultiHeadAttention(8, 2, fused=fused, bias=False)
    x, mem = torch.randn(2, T, 8), torch.randn(2, S, 8)
    mask = torch.rand(2, 1, T, S) > 0.5
    out, _ = mha(x, mem, mask=mask)
    dead = ~mask.any(-1).squeeze(1)  # (B, T)
    assert torch.isfinite(out).all()
    assert torch.all(out[dead] == 0)


# ---------------------------------------------------------------------------
# MultiHeadAttention against nn.MultiheadAttention
# ---------------------------------------------------------------------------


def _pair(C=16, H=4, kdim=None, vdim=None, seed=0, fused=True, bias=True):
    torch.manual_seed(seed)
    theirs = nn.MultiheadAttention(
        C, H, batch_first=True, kdim=kdim, vdim=vdim, bias=bias
    )
    ours = MultiHeadAttention(C, H, kdim=kdim, vdim=vdim, fused=fused, bias=bias)
    ours.copy_from_torch(theirs)
    return ours, theirs


@pytest.mark.parametrize("fused", [True, False])
def test_mha_self_attention_matches_torch(fused):
    ours, theirs = _pair(fused=fused)
    x = torch.randn(3, 6, 16)
    out, _ = ours(x)
    ref, _ = theirs(x, x, x, need_weights=False)
    assert_close(out, ref, **TOL)


@pytest.mark.parametrize("kdim,vdim", [(None, None), (10, 12)])
def test_mha_cross_attention_matches_torch_with_key_padding(kdim, vdim):
    ours, theirs = _pair(kdim=kdim, vdim=vdim)
    x = torch.randn(3, 4, 16)
    mem_k = torch.randn(3, 7, kdim or 16)
    mem_v = torch.randn(3, 7, vdim or 16)
    lengths = torch.tensor([7, 3, 5])
    keep = torch.arange(7)[None, :] < lengths[:, None]  # (B, S) True = real token
    out, w = ours(x, mem_k, mem_v, mask=keep[:, None, None, :], need_weights=True)
    ref, ref_w = theirs(x, mem_k, mem_v, key_padding_mask=~keep)
    assert_close(out, ref, **TOL)
    assert_close(w, ref_w, **TOL)
    assert w.shape == (3, 4, 7)
    assert torch.all(w[1, :, 3:] == 0)


def test_mha_causal_matches_torch_with_weights_per_head_and_averaged():
    ours, theirs = _pair(fused=False)
    x = torch.randn(2, 6, 16)
    causal = torch.ones(6, 6, dtype=torch.bool).tril()
    out, w_heads = ours(x, mask=causal, need_weights=True, average_weights=False)
    ref, ref_heads = theirs(x, x, x, attn_mask=~causal, average_attn_weights=False)
    assert_close(out, ref, **TOL)
    assert w_heads.shape == (2, 4, 6, 6)
    assert_close(w_heads, ref_heads, **TOL)
    _, w_avg = ours(x, mask=causal, need_weights=True)
    assert_close(w_avg, w_heads.mean(1), **TOL)


def test_mha_fused_and_explicit_paths_agree_with_is_causal_and_padding():
    ours, _ = _pair(fused=True)
    x = torch.randn(2, 6, 16)
    pad = torch.tensor([[1] * 6, [1] * 4 + [0] * 2], dtype=torch.bool)[:, None, None, :]
    out_fused, none = ours(x, mask=pad, is_causal=True)
    out_expl, w = ours(x, mask=pad, is_causal=True, need_weights=True)
    assert none is None and w is not None
    assert_close(out_fused, out_expl, **TOL)
    assert torch.all(w.triu(1) == 0)


@pytest.mark.parametrize("fused", [True, False])
def test_mha_gradients_match_torch(fused):
    ours, theirs = _pair(fused=fused)
    x = torch.randn(2, 5, 16, requires_grad=True)
    mem = torch.randn(2, 7, 16, requires_grad=True)
    causal = torch.ones(5, 7, dtype=torch.bool).tril(2)
    out, _ = ours(x, mem, mask=causal)
    ref, _ = theirs(x, mem, mem, attn_mask=~causal, need_weights=False)
    g_ours = torch.autograd.grad(out.square().sum(), [x, mem, *ours.parameters()])
    g_ref = torch.autograd.grad(ref.square().sum(), [x, mem, *theirs.parameters()])
    assert_close(g_ours[0], g_ref[0], **TOL)
    assert_close(g_ours[1], g_ref[1], **TOL)
    params = dict(zip([n for n, _ in ours.named_parameters()], g_ours[2:]))
    ref_params = dict(zip([n for n, _ in theirs.named_parameters()], g_ref[2:]))
    in_w = torch.cat([params[f"{p}_proj.weight"] for p in "qkv"])
    in_b = torch.cat([params[f"{p}_proj.bias"] for p in "qkv"])
    assert_close(in_w, ref_params["in_proj_weight"], **TOL)
    assert_close(in_b, ref_params["in_proj_bias"], **TOL)
    assert_close(params["out_proj.weight"], ref_params["out_proj.weight"], **TOL)


def test_mha_copy_to_torch_round_trip():
    torch.manual_seed(1)
    ours = MultiHeadAttention(16, 2)
    theirs = ours.copy_to_torch(nn.MultiheadAttention(16, 2, batch_first=True))
    x = torch.randn(2, 5, 16)
    assert_close(ours(x)[0], theirs(x, x, x)[0], **TOL)


def test_mha_three_dim_mask_is_per_sequence():
    ours, _ = _pair()
    x = torch.randn(3, 5, 16)
    mask3 = _random_mask((3, 5, 5), seed=3)
    assert_close(ours(x, mask=mask3)[0], ours(x, mask=mask3[:, None])[0])


def test_mha_dropout_train_vs_eval():
    torch.manual_seed(0)
    mha = MultiHeadAttention(16, 4, dropout=0.5)
    x = torch.randn(2, 6, 16)
    mha.eval()
    a, b = mha(x)[0], mha(x)[0]
    assert_close(a, b)
    mha.train()
    assert not torch.allclose(mha(x)[0], a)


# ---------------------------------------------------------------------------
# Errors a learner can act on
# ---------------------------------------------------------------------------


def test_error_non_divisible_heads():
    with pytest.raises(ValueError, match="not divisible"):
        MultiHeadAttention(10, 3)


def test_error_wrong_feature_size():
    mha = MultiHeadAttention(16, 4)
    with pytest.raises(
        ValueError, match="query has 12 features but the layer expects 16"
    ):
        mha(torch.randn(2, 5, 12))
    with pytest.raises(ValueError, match="key has 8 features"):
        mha(torch.randn(2, 5, 16), torch.randn(2, 3, 8))
    with pytest.raises(ValueError, match="one value per key"):
        mha(torch.randn(2, 5, 16), torch.randn(2, 3, 16), torch.randn(2, 4, 16))
    with pytest.raises(ValueError, match="batch size"):
        mha(torch.randn(2, 5, 16), torch.randn(3, 3, 16))
    with pytest.raises(ValueError, match="queries have 4 features but keys have 5"):
        scaled_dot_product_attention(
            torch.randn(3, 4), torch.randn(2, 5), torch.randn(2, 5)
        )


def test_error_wrong_mask_dtype_and_shape():
    mha = MultiHeadAttention(16, 4)
    x = torch.randn(2, 5, 16)
    with pytest.raises(TypeError, match="bool"):
        mha(x, mask=torch.ones(5, 5))
    with pytest.raises(ValueError, match="does not broadcast"):
        mha(x, mask=torch.ones(5, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="does not broadcast"):
        mha(x, mask=torch.ones(3, 1, 1, 5, dtype=torch.bool))
    with pytest.raises(TypeError, match="bool"):
        masked_softmax(torch.randn(3, 3), torch.ones(3, 3, dtype=torch.long))


# ---------------------------------------------------------------------------
# KV cache and positional hooks
# ---------------------------------------------------------------------------


class ToyRotary(nn.Module):
    """Rotate feature pairs by position-dependent angles, and add a distance penalty."""

    def rotate(self, q, k, q_pos, k_pos):
        return self._rot(q, q_pos), self._rot(k, k_pos)

    @staticmethod
    def _rot(x, pos):
        half = x.shape[-1] // 2
        freq = 1.0 / (10.0 ** (torch.arange(half) / half))
        ang = pos[:, None].float() * freq  # (L, D/2)
        x1, x2 = x[..., :half], x[..., half:]
        return torch.cat(
            [x1 * ang.cos() - x2 * ang.sin(), x1 * ang.sin() + x2 * ang.cos()], -1
        )

    def score_bias(self, q, q_pos, k_pos):
        return -0.3 * (q_pos[:, None] - k_pos[None, :]).abs().float()  # (T, S)


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("positional", [None, ToyRotary()])
def test_kv_cache_one_token_at_a_time_matches_full_causal_pass(fused, positional):
    torch.manual_seed(0)
    mha = MultiHeadAttention(16, 4, fused=fused).eval()
    x = torch.randn(2, 7, 16)
    causal = torch.ones(7, 7, dtype=torch.bool).tril()
    full, _ = mha(x, mask=causal, positional=positional)
    cache = KVCache()
    steps = [
        mha(x[:, t : t + 1], cache=cache, positional=positional)[0] for t in range(7)
    ]
    assert len(cache) == 7 and cache.k.shape == (2, 4, 7, 4)
    assert_close(torch.cat(steps, dim=1), full, **TOL)


def test_kv_cache_chunks_with_is_causal_match_full_pass():
    torch.manual_seed(0)
    mha = MultiHeadAttention(16, 4).eval()
    x = torch.randn(2, 7, 16)
    full, _ = mha(x, is_causal=True)
    cache = KVCache()
    a, _ = mha(x[:, :4], cache=cache, is_causal=True)
    b, _ = mha(x[:, 4:], cache=cache, is_causal=True)
    assert_close(torch.cat([a, b], 1), full, **TOL)


def test_static_cache_for_cross_attention():
    ours, _ = _pair(kdim=10, vdim=10)
    mem = torch.randn(2, 6, 10)
    x = torch.randn(2, 3, 16)
    full, _ = ours(x, mem)
    cache = KVCache(static=True)
    first, _ = ours(x[:, :1], mem, cache=cache)
    rest = [ours(x[:, t : t + 1], None, cache=cache)[0] for t in (1, 2)]
    assert len(cache) == 6
    assert_close(torch.cat([first, *rest], 1), full, **TOL)


def test_kv_cache_reorder_selects_batch_rows():
    cache = KVCache()
    k = torch.arange(3.0)[:, None, None, None].expand(3, 2, 4, 5)
    cache.append(k, k)
    cache.reorder(torch.tensor([2, 2, 0]))
    assert cache.k[:, 0, 0, 0].tolist() == [2.0, 2.0, 0.0]
    with pytest.raises(ValueError, match="do not match"):
        cache.append(torch.zeros(2, 2, 1, 5), torch.zeros(2, 2, 1, 5))


def test_positional_bias_fused_matches_explicit():
    torch.manual_seed(0)
    mha = MultiHeadAttention(16, 4)
    x = torch.randn(2, 6, 16)
    pad = torch.tensor([[1] * 6, [1] * 3 + [0] * 3], dtype=torch.bool)[:, None, None, :]
    a, _ = mha(x, mask=pad, positional=ToyRotary())
    b, _ = mha(x, mask=pad, positional=ToyRotary(), need_weights=True)
    assert_close(a, b, **TOL)
    # the hooks really act: without them the output differs
    assert not torch.allclose(a, mha(x, mask=pad)[0], atol=1e-3)


# ---------------------------------------------------------------------------
# Chapter 5 pieces
# ---------------------------------------------------------------------------


def test_nadaraya_watson_limits_of_the_width():
    x_train = torch.linspace(0, 5, 20)
    y_train = torch.sin(x_train)
    pred_narrow, w = nadaraya_watson(x_train, x_train, y_train, width=1e-3)
    assert_close(pred_narrow, y_train)  # each point sees only itself
    assert_close(w.sum(-1), torch.ones(20))
    pred_wide, _ = nadaraya_watson(
        torch.tensor([0.0, 5.0]), x_train, y_train, width=1e4
    )
    assert_close(pred_wide, y_train.mean().expand(2), atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match="positive"):
        nadaraya_watson(x_train, x_train, y_train, width=0.0)


def test_nadaraya_watson_module_learns_the_width_by_gradient():
    model = NadarayaWatson(width=2.0)
    x = torch.linspace(0, 5, 30)
    y = torch.sin(x)
    loo = ~torch.eye(30, dtype=torch.bool)
    pred, w = model(x, x, y, mask=loo)
    assert torch.all(w.diagonal() == 0)
    first = F.mse_loss(pred, y)
    first.backward()
    assert model.log_width.grad > 0  # a width of 2 over-smooths: narrower is better
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    for _ in range(40):
        opt.zero_grad()
        loss = F.mse_loss(model(x, x, y, mask=loo)[0], y)
        loss.backward()
        opt.step()
    assert loss < first / 20
    assert 0.05 < model.width < 1.0


def test_additive_attention_matches_a_loop():
    torch.manual_seed(0)
    att = AdditiveAttention(query_size=5, key_size=3, hidden_size=7)
    q, k, v = torch.randn(2, 4, 5), torch.randn(2, 6, 3), torch.randn(2, 6, 2)
    mask = _random_mask((2, 1, 6))
    out, w = att(q, k, v, mask)
    scores = torch.empty(2, 4, 6)
    for b in range(2):
        for t in range(4):
            for s in range(6):
                h = torch.tanh(att.W_q.weight @ q[b, t] + att.W_k.weight @ k[b, s])
                scores[b, t, s] = att.w_v.weight[0] @ h
    scores = scores.masked_fill(~mask, -math.inf)
    assert_close(w, torch.softmax(scores, -1), **TOL)
    assert_close(out, torch.softmax(scores, -1) @ v, **TOL)
    out2, _ = att(q, k, v, mask, key_h=att.project_keys(k))
    assert_close(out2, out)
    with pytest.raises(
        ValueError, match="query has 3 features but the layer expects 5"
    ):
        att(k, k, v)


def test_dot_product_scores_and_module():
    q, k, v = _qkv(D=4)
    assert_close(dot_product_scores(q, k, scale=False), q @ k.transpose(-2, -1))
    assert_close(dot_product_scores(q, k), q @ k.transpose(-2, -1) / 2.0)
    out, _ = DotProductAttention()(q, k, v)
    assert_close(out, F.scaled_dot_product_attention(q, k, v), **TOL)
    with pytest.raises(ValueError, match="equal feature sizes"):
        dot_product_scores(torch.randn(2, 3), torch.randn(2, 4))


def test_fused_path_with_bias_and_fully_masked_row_gives_zeros():
    torch.manual_seed(0)
    mha = MultiHeadAttention(16, 4, bias=False)
    x = torch.randn(2, 5, 16, requires_grad=True)
    mask = torch.ones(2, 1, 5, 5, dtype=torch.bool)
    mask[1, 0, 3] = False  # query 3 of sequence 1 may attend to nothing
    out, _ = mha(x, mask=mask, positional=ToyRotary())
    assert torch.isfinite(out).all() and torch.all(out[1, 3] == 0)
    out.sum().backward()
    assert torch.isfinite(x.grad).all()


# ---------------------------------------------------------------------------
# The attention encoder-decoder of chapter 5
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cell,score", [("gru", "additive"), ("lstm", "dot"), ("rnn", "additive")]
)
def test_attention_seq2seq_step_by_step_matches_forward(cell, score):
    from transformer.attention_seq2seq import AttentionSeq2Seq

    torch.manual_seed(0)
    model = AttentionSeq2Seq(
        11, 9, emb_size=8, hidden_size=12, cell=cell, score=score
    ).eval()
    src = torch.randint(4, 11, (3, 6))
    src[1, 4:] = 0  # padding
    tgt_in = torch.randint(4, 9, (3, 5))
    logits, w = model(src, tgt_in, need_weights=True)
    assert logits.shape == (3, 5, 9) and w.shape == (3, 5, 6)
    assert torch.all(w[1, :, 4:] == 0)  # never attends to padding
    assert_close(w.sum(-1), torch.ones(3, 5))
    state = model.start(src)
    for t in range(5):
        step_logits, state = model.step(tgt_in[:, t], state)
        assert_close(step_logits, logits[:, t], **TOL)
        assert_close(state.weights, w[:, t], **TOL)


def test_attention_seq2seq_ignores_extra_padding_and_reorders_state():
    from transformer.attention_seq2seq import AttentionSeq2Seq

    torch.manual_seed(0)
    model = AttentionSeq2Seq(11, 9, emb_size=8, hidden_size=12).eval()
    src = torch.randint(4, 11, (2, 5))
    padded = torch.cat([src, torch.zeros(2, 3, dtype=torch.long)], dim=1)
    tgt_in = torch.randint(4, 9, (2, 4))
    assert_close(model(src, tgt_in), model(padded, tgt_in), **TOL)
    state = model.start(src)
    swapped = model.reorder_state(state, torch.tensor([1, 0]))
    a, _ = model.step(tgt_in[:, 0], state)
    b, _ = model.step(tgt_in[[1, 0], 0], swapped)
    assert_close(a[[1, 0]], b, **TOL)
    with pytest.raises(ValueError, match="same B"):
        model(src, tgt_in[:1])


def test_attention_seq2seq_learns_to_copy_a_batch():
    from transformer.attention_seq2seq import AttentionSeq2Seq

    torch.manual_seed(0)
    model = AttentionSeq2Seq(14, 14, emb_size=16, hidden_size=32)
    src = torch.randint(4, 14, (16, 6))
    tgt = torch.cat(
        [torch.ones(16, 1, dtype=torch.long), src, torch.full((16, 1), 2)], 1
    )
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices, step by step: threads only add waiting
    try:
        for _ in range(40):
            logits = model(src, tgt[:, :-1])
            loss = F.cross_entropy(logits.reshape(-1, 14), tgt[:, 1:].reshape(-1))
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
    finally:
        torch.set_num_threads(threads)
    assert losses[-1] < 0.1 * losses[0]


def test_kv_cache_grows_past_its_capacity_and_keeps_every_position():
    torch.manual_seed(0)
    cache = KVCache()
    ks = [torch.randn(2, 3, n, 4) for n in (1, 5, 20, 1, 40)]
    capacities = []
    for k in ks:
        all_k, all_v = cache.append(k, 2 * k)
        capacities.append(cache.capacity)
    expected = torch.cat(ks, dim=2)
    assert (
        len(cache) == 67
        and torch.equal(all_k, expected)
        and torch.equal(all_v, 2 * expected)
    )
    assert torch.equal(cache.k, expected)
    assert (
        capacities == sorted(capacities)
        and capacities[0] >= 16
        and capacities[-1] >= 67
    )
    assert len(set(capacities)) < len(capacities)  # not reallocated at every append


def test_kv_cache_select_leaves_the_original_alone():
    cache = KVCache()
    k = torch.arange(3.0)[:, None, None, None].expand(3, 2, 4, 5)
    cache.append(k, k)
    picked = cache.select(torch.tensor([1, 1]))
    picked.append(torch.full((2, 2, 1, 5), 7.0), torch.full((2, 2, 1, 5), 7.0))
    assert len(cache) == 4 and len(picked) == 5
    assert cache.k[:, 0, 0, 0].tolist() == [0.0, 1.0, 2.0]
    assert picked.k[:, 0, -1, 0].tolist() == [7.0, 7.0]


@pytest.mark.parametrize("positional", [None, ToyRotary()])
def test_fast_attention_step_matches_forward_with_a_cache(positional):
    """The one-position step (stacked projection, transformer.fast) = forward with a
    cache."""
    from transformer.fast import attention_step, attention_weights

    torch.manual_seed(0)
    mha = MultiHeadAttention(16, 4).eval()
    x = torch.randn(3, 6, 16)
    c1, c2 = KVCache(), KVCache()
    weights = attention_weights(mha)
    assert weights.w_in.shape == (48, 16)
    for t in range(6):
        want, _ = mha(x[:, t : t + 1], cache=c1, positional=positional)
        got = attention_step(mha, x[:, t], c2, weights, positional=positional, pos=t)
        assert_close(got, want[:, 0], **TOL)


def test_fast_cross_step_reads_its_static_cache_and_masks():
    from transformer.fast import attention_step, attention_weights, fill_cross_cache

    torch.manual_seed(0)
    mha = MultiHeadAttention(16, 4, kdim=10, vdim=10).eval()
    mem = torch.randn(2, 5, 10)
    mask = torch.tensor([[True] * 5, [True, True, False, False, False]])[
        :, None, None, :
    ]
    x = torch.randn(2, 3, 16)
    want, _ = mha(x, mem, mask=mask)
    cache = KVCache(static=True)
    fill_cross_cache(mha, cache, mem)
    w = attention_weights(mha, cross=True)
    got = [attention_step(mha, x[:, t], cache, w, mask) for t in range(3)]
    assert len(cache) == 5
    assert_close(torch.stack(got, 1), want, **TOL)
    with pytest.raises(ValueError, match="kdim == vdim"):
        attention_weights(mha)  # keys of another size cannot share one stacked matrix


def test_static_cache_of_forward_projects_the_memory_once():
    torch.manual_seed(0)
    mha = MultiHeadAttention(16, 4).eval()
    mem, x = torch.randn(2, 5, 16), torch.randn(2, 3, 16)
    want, _ = mha(x, mem)
    cache = KVCache(static=True)
    got = [
        mha(x[:, t : t + 1], mem if t == 0 else None, cache=cache)[0] for t in range(3)
    ]
    assert len(cache) == 5
    assert_close(torch.cat(got, 1), want, **TOL)


@pytest.mark.parametrize("fused", [True, False])
def test_backward_through_several_cached_steps_matches_the_full_pass(fused):
    # Training through a cache (a loss over several cached steps) must not fail with
    # "modified by an inplace operation", and must give the full pass's gradients.
    torch.manual_seed(1)
    mha = MultiHeadAttention(16, 4, fused=fused)
    x = torch.randn(2, 5, 16, requires_grad=True)
    causal = torch.ones(5, 5, dtype=torch.bool).tril()
    full, _ = mha(x, mask=causal)
    full.pow(2).sum().backward()
    want_x, want_w = x.grad.clone(), mha.q_proj.weight.grad.clone()
    x.grad = None
    mha.zero_grad()
    cache = KVCache()
    steps = [mha(x[:, t : t + 1], cache=cache)[0] for t in range(5)]
    torch.cat(steps, dim=1).pow(2).sum().backward()
    assert_close(x.grad, want_x, **TOL)
    assert_close(mha.q_proj.weight.grad, want_w, **TOL)
    with torch.no_grad():  # and the same cache object still serves inference afterwards
        more, _ = mha(x[:, :1].detach(), cache=cache)
    assert len(cache) == 6 and more.shape == (2, 1, 16)


def test_a_batch_key_mask_cannot_be_mistaken_for_a_query_key_mask():
    from transformer.data import Batch

    torch.manual_seed(0)
    mha = MultiHeadAttention(8, 2).eval()
    # B = 3 = S: the ambiguous case
    src = torch.tensor([[5, 6, 0], [7, 0, 0], [5, 5, 5]])
    batch = Batch(src, src, torch.tensor([2, 1, 3]), torch.tensor([2, 1, 3]), pad_id=0)
    x = torch.randn(3, 3, 8)
    out, _ = mha(x, mask=batch.src_key_mask)  # (B, 1, 1, S): keys masked per sequence
    for b in range(3):
        n = int(batch.src_lengths[b])
        alone, _ = mha(x[b : b + 1], x[b : b + 1, :n], x[b : b + 1, :n])
        assert_close(out[b : b + 1], alone, **TOL)
    with pytest.raises(ValueError, match="looks like a \\(batch, keys\\) padding mask"):
        mha(
            torch.randn(4, 2, 8),
            torch.randn(4, 3, 8),
            torch.randn(4, 3, 8),
            mask=torch.ones(4, 3, dtype=torch.bool),
        )
