"""RMSNorm, SwiGLU, grouped-query attention and the config that chooses them (chapter
11)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.testing import assert_close

from transformer.gpt import DecoderOnlyConfig, DecoderOnlyTransformer, generate
from transformer.modern import (
    GroupedQueryAttention,
    ModernDecoder,
    ModernDecoderConfig,
    RMSNorm,
    SwiGLUFeedForward,
    kv_cache_bytes,
)
from transformer.multihead import MultiHeadAttention
from transformer.relative import RotaryEmbedding

TOL = dict(atol=1e-6, rtol=1e-5)


def _config(**fields):
    base = dict(vocab_size=50, d_model=32, n_heads=4, d_ff=48, n_layers=2, max_len=64)
    return ModernDecoderConfig(**{**base, **fields})


def test_rmsnorm_equals_torch_rmsnorm_and_has_no_bias():
    torch.manual_seed(0)
    ours, theirs = RMSNorm(16, eps=1e-5), nn.RMSNorm(16, eps=1e-5)
    with torch.no_grad():
        ours.weight.uniform_(0.5, 1.5)
        theirs.weight.copy_(ours.weight)
    x = 3.0 * torch.randn(2, 5, 16) + 1.0
    assert_close(ours(x), theirs(x), **TOL)
    assert [name for name, _ in ours.named_parameters()] == ["weight"]
    # unlike LayerNorm it keeps the mean: a constant row stays non-zero
    row = torch.full((1, 16), 2.0)
    assert_close(RMSNorm(16)(row), torch.ones(1, 16), atol=1e-5, rtol=0)
    assert RMSNorm(16)(x.double()).dtype == torch.float64


def test_swiglu_by_hand():
    torch.manual_seed(1)
    ffn = SwiGLUFeedForward(8, 12, bias=True)
    x = torch.randn(2, 3, 8)
    W, V, W2 = ffn.linear1, ffn.linear_up, ffn.linear2
    gate = x @ W.weight.T + W.bias
    want = (
        (gate * torch.sigmoid(gate)) * (x @ V.weight.T + V.bias)
    ) @ W2.weight.T + W2.bias
    assert_close(ffn(x), want, **TOL)
    assert sum(p.numel() for p in SwiGLUFeedForward(8, 12).parameters()) == 3 * 8 * 12


def test_gqa_with_as_many_kv_heads_as_heads_is_multi_head_attention():
    torch.manual_seed(2)
    mha = MultiHeadAttention(32, 4, bias=False)
    gqa = GroupedQueryAttention(32, 4, n_kv_heads=4, bias=False)
    gqa.load_state_dict(mha.state_dict())
    x = torch.randn(2, 7, 32)
    rope = RotaryEmbedding(8)
    assert_close(gqa(x, is_causal=True)[0], mha(x, is_causal=True)[0], **TOL)
    assert_close(gqa(x, positional=rope)[0], mha(x, positional=rope)[0], **TOL)


@pytest.mark.parametrize("n_kv_heads", [1, 2])
def test_gqa_equals_multi_head_attention_with_repeated_kv_weights(n_kv_heads):
    """Sharing a key/value head is the same as H heads whose K/V weights are copies."""
    torch.manual_seed(3)
    gqa = GroupedQueryAttention(32, 4, n_kv_heads=n_kv_heads, bias=True)
    mha = MultiHeadAttention(32, 4, bias=True)
    group, D = 4 // n_kv_heads, 8
    with torch.no_grad():
        for name in ("q_proj", "out_proj"):
            getattr(mha, name).load_state_dict(getattr(gqa, name).state_dict())
        for name in ("k_proj", "v_proj"):
            src, dst = getattr(gqa, name), getattr(mha, name)
            # (H, D, C)
            w = src.weight.view(n_kv_heads, D, 32).repeat_interleave(group, 0)
            dst.weight.copy_(w.reshape(32, 32))
            dst.bias.copy_(
                src.bias.view(n_kv_heads, D).repeat_interleave(group, 0).flatten()
            )
    x = torch.randn(2, 6, 32)
    mask = torch.rand(2, 1, 6, 6) > 0.3
    got, w_got = gqa(x, mask=mask, need_weights=True)
    want, w_want = mha(x, mask=mask, need_weights=True)
    assert_close(got, want, **TOL)
    assert_close(w_got, w_want, **TOL)
    assert_close(gqa(x, mask=mask)[0], want, **TOL)  # fused path too


def test_repeated_heads_match_torch_enable_gqa():
    torch.manual_seed(4)
    gqa = GroupedQueryAttention(32, 4, n_kv_heads=2)
    q, k, v = torch.randn(2, 4, 5, 8), torch.randn(2, 2, 5, 8), torch.randn(2, 2, 5, 8)
    k4, v4 = gqa._heads_of_queries(k, v)
    assert k4.shape == (2, 4, 5, 8)
    ours = F.scaled_dot_product_attention(q, k4, v4, is_causal=True)
    assert_close(
        ours, F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
    )


def test_cache_holds_only_the_shared_heads():
    torch.manual_seed(5)
    sizes = {}
    for g in (4, 2, 1):
        model = DecoderOnlyTransformer(_config(n_kv_heads=g)).eval()
        state = model.start(torch.randint(3, 50, (3, 9)))
        assert all(tuple(c.k.shape) == (3, g, 9, 8) for c in state.caches)
        sizes[g] = kv_cache_bytes(state.caches)
    assert sizes[4] == 2 * sizes[2] == 4 * sizes[1] == 2 * 2 * 3 * 4 * 9 * 8 * 4


@pytest.mark.parametrize("n_kv_heads", [1, 2, 4])
def test_cached_generation_equals_rerunning_the_model(n_kv_heads):
    torch.manual_seed(6)
    model = DecoderOnlyTransformer(_config(n_kv_heads=n_kv_heads)).eval()
    prompt = torch.randint(3, 50, (2, 5))
    fast = generate(model, prompt, 8, temperature=0.0)
    slow = generate(model, prompt, 8, temperature=0.0, use_cache=False)
    assert torch.equal(fast, slow)
    with torch.no_grad():
        state = model.start(prompt)
        logits, _ = model.step(fast[:, 5], state)
        assert_close(logits, model(fast[:, :6])[:, -1], atol=1e-5, rtol=1e-5)


def test_the_config_picks_each_part_and_the_gpt2_block_is_unchanged():
    model = DecoderOnlyTransformer(_config(n_kv_heads=2))
    block = model.layers[0]
    assert isinstance(block.norm1, RMSNorm) and isinstance(model.norm, RMSNorm)
    assert isinstance(block.ffn, SwiGLUFeedForward)
    assert isinstance(block.self_attn, GroupedQueryAttention)
    assert block.self_attn.k_proj.weight.shape == (16, 32)
    assert all("bias" not in name for name, _ in model.named_parameters())
    assert isinstance(model.positional, RotaryEmbedding)
    gpt2ish = _config(
        norm="layer", ffn="mlp", positional="learned", bias=True, activation="gelu"
    )
    fields = {
        f.name: getattr(gpt2ish, f.name) for f in dataclasses.fields(DecoderOnlyConfig)
    }
    plain = DecoderOnlyConfig(**{k: v for k, v in fields.items() if k[0] != "_"})
    # after building the configs: a learned table's check draws numbers
    torch.manual_seed(7)
    a = DecoderOnlyTransformer(gpt2ish)
    torch.manual_seed(7)
    b = DecoderOnlyTransformer(plain)
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)  # the same names, the same initial numbers
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_modern_decoder_round_trips_through_a_checkpoint(tmp_path):
    from transformer.checkpoint import load_checkpoint, save_checkpoint

    model = ModernDecoder(_config(n_kv_heads=1)).eval()
    save_checkpoint(model, tmp_path / "m.pt")
    back = load_checkpoint(tmp_path / "m.pt")
    assert back.config == model.config
    ids = torch.randint(3, 50, (1, 6))
    with torch.no_grad():
        assert torch.equal(back(ids), model(ids))
    with pytest.raises(TypeError, match="ModernDecoderConfig"):
        ModernDecoder(DecoderOnlyConfig(vocab_size=50))


def test_bad_configs_are_refused_clearly():
    with pytest.raises(ValueError, match=r"divisible by n_kv_heads \(3\).*\[1, 2, 4\]"):
        _config(n_kv_heads=3)
    with pytest.raises(ValueError, match="n_kv_heads must be a positive int"):
        _config(n_kv_heads=0)
    with pytest.raises(ValueError, match="n_kv_heads must be a positive int"):
        GroupedQueryAttention(32, 4, n_kv_heads=True)
    with pytest.raises(ValueError, match="divisible by n_kv_heads"):
        GroupedQueryAttention(32, 4, n_kv_heads=3)
    with pytest.raises(ValueError, match="norm must be one of"):
        _config(norm="batch")
    with pytest.raises(ValueError, match="ffn must be one of"):
        _config(ffn="moe")
    with pytest.raises(ValueError, match="activation must be one of"):
        _config(activation="swish")
    with pytest.raises(ValueError, match="d_model must be a positive int"):
        RMSNorm(0)
    with pytest.raises(ValueError, match="eps must be positive"):
        RMSNorm(8, eps=0.0)
