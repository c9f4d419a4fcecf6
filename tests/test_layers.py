"""Tests of transformer.layers: equivalence with PyTorch's Transformer layers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from transformer.layers import DecoderLayer, EncoderLayer, PositionwiseFeedForward
from transformer.masks import causal_mask, padding_mask

C, H, F_, B, S, T = 16, 4, 32, 3, 7, 5


def _src_ids() -> torch.Tensor:
    ids = torch.randint(1, 9, (B, S))
    ids[0, 4:] = 0  # padding at the end of row 0
    ids[2, 6:] = 0
    return ids


def _grads(module: nn.Module) -> dict[str, torch.Tensor]:
    return {
        n: p.grad.clone() for n, p in module.named_parameters() if p.grad is not None
    }


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_encoder_layer_matches_torch(norm_first: bool, activation: str) -> None:
    torch.manual_seed(0)
    theirs = nn.TransformerEncoderLayer(
        C,
        H,
        F_,
        dropout=0.0,
        activation=activation,
        batch_first=True,
        norm_first=norm_first,
    )
    ours = EncoderLayer(C, H, F_, activation=activation, norm_first=norm_first)
    ours.copy_from_torch(theirs)
    ids = _src_ids()
    x1 = torch.randn(B, S, C, requires_grad=True)
    x2 = x1.detach().clone().requires_grad_(True)
    keep = padding_mask(ids, 0)  # (B, 1, 1, S), True = real
    out_ours = ours(x1, keep)
    out_theirs = theirs(x2, src_key_padding_mask=ids == 0)  # torch: True = ignore
    real = (ids != 0)[..., None]
    # torch's fast path may zero padded rows; compare the real positions
    torch.testing.assert_close(out_ours * real, out_theirs * real, atol=1e-5, rtol=1e-5)
    (out_ours * real).pow(2).sum().backward()
    (out_theirs * real).pow(2).sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad, atol=1e-5, rtol=1e-4)
    g_theirs = _grads(theirs)
    g_ours = _grads(ours)
    torch.testing.assert_close(g_ours["ffn.linear1.weight"], g_theirs["linear1.weight"])
    torch.testing.assert_close(g_ours["norm2.weight"], g_theirs["norm2.weight"])
    torch.testing.assert_close(
        g_ours["self_attn.out_proj.weight"], g_theirs["self_attn.out_proj.weight"]
    )
    q_grad = g_theirs["self_attn.in_proj_weight"][:C]
    torch.testing.assert_close(
        g_ours["self_attn.q_proj.weight"], q_grad, atol=1e-5, rtol=1e-4
    )


@pytest.mark.parametrize("norm_first", [False, True])
def test_encoder_layer_matches_torch_in_eval_mode_with_dropout(
    norm_first: bool,
) -> None:
    torch.manual_seed(1)
    theirs = nn.TransformerEncoderLayer(
        C, H, F_, dropout=0.3, batch_first=True, norm_first=norm_first
    ).eval()
    ours = EncoderLayer(C, H, F_, dropout=0.3, norm_first=norm_first).eval()
    ours.copy_from_torch(theirs)
    x = torch.randn(B, S, C)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("norm_first", [False, True])
def test_decoder_layer_matches_torch(norm_first: bool) -> None:
    torch.manual_seed(2)
    theirs = nn.TransformerDecoderLayer(
        C, H, F_, dropout=0.0, batch_first=True, norm_first=norm_first
    )
    ours = DecoderLayer(C, H, F_, norm_first=norm_first)
    ours.copy_from_torch(theirs)
    src = _src_ids()
    x1 = torch.randn(B, T, C, requires_grad=True)
    x2 = x1.detach().clone().requires_grad_(True)
    mem1 = torch.randn(B, S, C, requires_grad=True)
    mem2 = mem1.detach().clone().requires_grad_(True)
    out_ours = ours(x1, mem1, causal_mask(T), padding_mask(src, 0))
    out_theirs = theirs(
        x2,
        mem2,
        tgt_mask=~causal_mask(T),
        memory_key_padding_mask=src == 0,
    )
    torch.testing.assert_close(out_ours, out_theirs, atol=1e-5, rtol=1e-5)
    out_ours.pow(2).sum().backward()
    out_theirs.pow(2).sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(mem1.grad, mem2.grad, atol=1e-5, rtol=1e-4)
    g_ours, g_theirs = _grads(ours), _grads(theirs)
    torch.testing.assert_close(
        g_ours["multihead_attn.k_proj.weight"],
        g_theirs["multihead_attn.in_proj_weight"][C : 2 * C],
        atol=1e-5,
        rtol=1e-4,
    )
    torch.testing.assert_close(g_ours["norm3.bias"], g_theirs["norm3.bias"])


def test_decoder_layer_is_causal() -> None:
    """Changing a later target position must not change earlier outputs."""
    torch.manual_seed(3)
    layer = DecoderLayer(C, H, F_).eval()
    x = torch.randn(1, T, C)
    mem = torch.randn(1, S, C)
    y = x.clone()
    y[:, -1] += 1.0
    a = layer(x, mem, causal_mask(T))
    b = layer(y, mem, causal_mask(T))
    torch.testing.assert_close(a[:, :-1], b[:, :-1])
    assert not torch.allclose(a[:, -1], b[:, -1])


@pytest.mark.parametrize("norm_first", [False, True])
def test_decoder_layer_cache_matches_full_pass(norm_first: bool) -> None:
    from transformer.kv_cache import KVCache

    torch.manual_seed(4)
    layer = DecoderLayer(C, H, F_, norm_first=norm_first).eval()
    x = torch.randn(B, T, C)
    mem = torch.randn(B, S, C)
    mmask = padding_mask(_src_ids(), 0)
    full = layer(x, mem, causal_mask(T), mmask)
    cache = (KVCache(), KVCache(static=True))
    steps = [layer(x[:, t : t + 1], mem, None, mmask, cache=cache) for t in range(T)]
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=1e-5)
    assert len(cache[0]) == T and len(cache[1]) == S


def test_need_weights_returns_per_head_maps() -> None:
    enc = EncoderLayer(C, H, F_)
    dec = DecoderLayer(C, H, F_)
    x, w = enc(torch.randn(B, S, C), need_weights=True)
    assert x.shape == (B, S, C) and w.shape == (B, H, S, S)
    torch.testing.assert_close(w.sum(-1), torch.ones(B, H, S))
    y, (ws, wc) = dec(torch.randn(B, T, C), x, causal_mask(T), need_weights=True)
    assert ws.shape == (B, H, T, T) and wc.shape == (B, H, T, S)
    assert float(ws.detach().triu(1).abs().max()) == 0.0  # no weight on the future


def test_feed_forward_is_position_wise() -> None:
    """Each position is transformed on its own with shared weights."""
    torch.manual_seed(5)
    ffn = PositionwiseFeedForward(C, F_)
    x = torch.randn(B, T, C)
    out = ffn(x)
    single = ffn(x[:, 2:3])
    torch.testing.assert_close(out[:, 2:3], single)
    perm = torch.randperm(T)
    torch.testing.assert_close(ffn(x[:, perm]), out[:, perm])


def test_clear_errors() -> None:
    layer = EncoderLayer(C, H, F_)
    with pytest.raises(ValueError, match="features but the layer expects 16"):
        layer(torch.randn(B, S, C + 1))
    with pytest.raises(ValueError, match="batch, length, d_model"):
        layer(torch.randn(S, C))
    with pytest.raises(ValueError, match="unknown activation"):
        PositionwiseFeedForward(C, F_, activation="swish")
    with pytest.raises(ValueError, match="divisible"):
        EncoderLayer(C, 3, F_)
    dec = DecoderLayer(C, H, F_)
    with pytest.raises(ValueError, match="batch size"):
        dec(torch.randn(2, T, C), torch.randn(3, S, C))


def test_fast_dropout_statistics_and_gradient() -> None:
    from transformer.fast import FastDropout

    torch.manual_seed(6)
    drop = FastDropout(0.1)
    x = torch.ones(200, 500, requires_grad=True)
    y = drop(x)
    dropped = float((y == 0).float().mean())
    assert abs(dropped - 0.1) < 0.005  # 100,000 draws: about 5 standard errors
    kept = y[y != 0]
    torch.testing.assert_close(kept, torch.full_like(kept, 1 / 0.9))
    assert abs(float(y.mean()) - 1.0) < 0.01  # inverted dropout keeps the expectation
    y.sum().backward()
    # gradient through the mask
    torch.testing.assert_close(x.grad, (y != 0).float() / 0.9)
    assert not torch.equal(drop(x), drop(x))  # a fresh mask per call
    drop.eval()
    assert drop(x) is x
    assert FastDropout(0.0).train()(x) is x
    with pytest.raises(ValueError, match="dropout probability"):
        FastDropout(1.5)
    odd = FastDropout(0.5)(torch.ones(3, 7))  # odd number of elements
    assert odd.shape == (3, 7) and set(odd.unique().tolist()) <= {0.0, 2.0}


def test_fast_dropout_is_a_dropout_that_reads_p_at_call_time() -> None:
    from torch import nn

    from transformer.fast import FastDropout

    drop = FastDropout(0.1)
    assert isinstance(drop, nn.Dropout)
    x = torch.ones(400, 500)
    torch.manual_seed(0)
    drop.p = 0.5  # changed after construction: both the rate and the scale follow
    y = drop(x)
    assert abs(float((y == 0).float().mean()) - 0.5) < 0.01
    assert abs(float(y.mean()) - 1.0) < 0.02
    assert set(y.unique().tolist()) <= {0.0, 2.0}


@pytest.mark.parametrize("p", [0.999985, 0.99999, 1.0])
def test_fast_dropout_near_one_drops_everything(p) -> None:
    from transformer.fast import FastDropout

    y = FastDropout(p)(torch.ones(100, 100))
    assert torch.isfinite(y).all()
    assert float(y.abs().max()) == 0.0  # nothing survives, nothing is scaled by 1e5


def test_fast_dropout_mask_unchanged_at_the_book_rates() -> None:
    # The chapters' stored results depend on the exact mask at p = 0.1.
    from transformer.fast import FastDropout

    x = torch.ones(64, 33)
    torch.manual_seed(3)
    y = FastDropout(0.1)(x)
    torch.manual_seed(3)
    bits = torch.empty((x.numel() + 1) // 2, dtype=torch.int32).random_()
    r = bits.view(torch.int16)[: x.numel()].view(x.shape) & 0x7FFF
    torch.testing.assert_close(y, (r >= round(0.1 * 2**15)).float() / 0.9)
