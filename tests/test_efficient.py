"""Chapter 13: efficient attention, exact and approximate, against the reference."""

from __future__ import annotations

import pytest
import torch

from transformer.efficient import full_attention, fused_full_attention, tiled_attention
from transformer.efficient_layer import (
    CAUSAL_METHODS,
    METHODS,
    EfficientSelfAttention,
    efficient_attention,
    peak_memory,
    use_efficient_attention,
)
from transformer.gpt import DecoderOnlyConfig, DecoderOnlyTransformer
from transformer.linear_attention import (
    linear_attention,
    linear_attention_recurrent,
    linformer_attention,
    orthogonal_random_features,
    performer_attention,
)
from transformer.multihead import MultiHeadAttention
from transformer.sparse_attention import (
    dilated_attention,
    global_local_attention,
    sliding_window_attention,
)

B, H, T, D = 2, 3, 29, 8
TOL = dict(atol=1e-5, rtol=1e-5)


def qkv(T: int = T, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(B, H, T, D, generator=g) for _ in range(3))


def padding(T: int = T) -> torch.Tensor:
    km = torch.ones(B, T, dtype=torch.bool)
    km[1, T - 7 :] = False  # the second sequence is 7 shorter
    return km


def offsets(T: int = T) -> torch.Tensor:
    t = torch.arange(T)
    return t[:, None] - t[None, :]  # (T, T): query position minus key position


# -- exact attention in tiles --------------------------------------------------


@pytest.mark.parametrize(
    "block_q, block_k", [(1, 1), (4, 7), (8, 8), (13, 3), (64, 64)]
)
@pytest.mark.parametrize("causal", [False, True])
def test_tiled_equals_full_for_any_block_size_with_masks(block_q, block_k, causal):
    q, k, v = qkv()
    km = padding()
    other = torch.rand(B, 1, T, T, generator=torch.Generator().manual_seed(1)) > 0.3
    ref = full_attention(q, k, v, causal=causal, key_mask=km, mask=other)
    got = tiled_attention(
        q,
        k,
        v,
        causal=causal,
        key_mask=km,
        mask=other,
        block_q=block_q,
        block_k=block_k,
    )
    torch.testing.assert_close(got, ref, **TOL)


def test_tiled_handles_more_keys_than_queries_and_empty_rows():
    g = torch.Generator().manual_seed(2)
    q = torch.randn(1, 2, 5, D, generator=g)
    k, v = torch.randn(1, 2, 11, D, generator=g), torch.randn(1, 2, 11, 4, generator=g)
    mask = torch.ones(5, 11, dtype=torch.bool)
    mask[2] = False  # a query with nothing to attend to
    for causal in (False, True):
        ref = full_attention(q, k, v, causal=causal, mask=mask)
        got = tiled_attention(q, k, v, causal=causal, mask=mask, block_q=2, block_k=3)
        torch.testing.assert_close(got, ref, **TOL)
        assert got[:, :, 2].abs().max() == 0  # zeros, not NaN


def test_fused_equals_full():
    q, k, v = qkv()
    for causal in (False, True):
        for km in (None, padding()):
            ref = full_attention(q, k, v, causal=causal, key_mask=km)
            got = fused_full_attention(q, k, v, causal=causal, key_mask=km)
            torch.testing.assert_close(got, ref, **TOL)


# -- sparse patterns -----------------------------------------------------------


@pytest.mark.parametrize("window", [T, T + 1, 3 * T])
@pytest.mark.parametrize("causal", [False, True])
def test_window_at_least_the_sequence_is_full_attention(window, causal):
    q, k, v = qkv()
    km = padding()
    ref = full_attention(q, k, v, causal=causal, key_mask=km)
    got = sliding_window_attention(q, k, v, window=window, causal=causal, key_mask=km)
    torch.testing.assert_close(got, ref, **TOL)


@pytest.mark.parametrize("window", [1, 2, 5, 10, 16])
@pytest.mark.parametrize("causal", [False, True])
def test_window_equals_full_attention_with_the_band_mask(window, causal):
    q, k, v = qkv()
    off = offsets()
    band = (off.abs() < window) & ((off >= 0) | (not causal))
    ref = full_attention(q, k, v, key_mask=padding(), mask=band)
    got = sliding_window_attention(
        q, k, v, window=window, causal=causal, key_mask=padding()
    )
    torch.testing.assert_close(got, ref, **TOL)


@pytest.mark.parametrize("window, dilation", [(1, 3), (3, 2), (4, 3), (2, 7)])
@pytest.mark.parametrize("causal", [False, True])
def test_dilated_equals_full_attention_with_the_strided_mask(window, dilation, causal):
    q, k, v = qkv()
    off = offsets()
    strided = (off.abs() < window * dilation) & (off % dilation == 0)
    strided &= (off >= 0) | (not causal)
    ref = full_attention(q, k, v, key_mask=padding(), mask=strided)
    got = dilated_attention(
        q, k, v, window=window, dilation=dilation, causal=causal, key_mask=padding()
    )
    torch.testing.assert_close(got, ref, **TOL)
    one = dilated_attention(q, k, v, window=window, dilation=1, causal=causal)
    plain = sliding_window_attention(q, k, v, window=window, causal=causal)
    torch.testing.assert_close(one, plain, **TOL)


@pytest.mark.parametrize("window, n_global", [(3, 1), (4, 2), (6, 5), (2, 0)])
@pytest.mark.parametrize("causal", [False, True])
def test_global_local_equals_full_attention_with_its_mask(window, n_global, causal):
    q, k, v = qkv()
    off, t = offsets(), torch.arange(T)
    pattern = (off.abs() < window) | (t[None, :] < n_global) | (t[:, None] < n_global)
    pattern &= (off >= 0) | (not causal)
    ref = full_attention(q, k, v, key_mask=padding(), mask=pattern)
    got = global_local_attention(
        q, k, v, window=window, n_global=n_global, causal=causal, key_mask=padding()
    )
    torch.testing.assert_close(got, ref, **TOL)


def test_banded_window_saves_memory_rather_than_masking_a_full_matrix():
    q, k, v = (torch.randn(1, 1, 1024, 16) for _ in range(3))
    full = peak_memory(lambda: full_attention(q, k, v, causal=True))
    window = peak_memory(
        lambda: sliding_window_attention(q, k, v, window=16, causal=True)
    )
    tiled = peak_memory(lambda: tiled_attention(q, k, v, causal=True))
    assert full >= 1024 * 1024 * 4  # at least one float32 (T, T) matrix
    assert window < full / 10
    assert tiled < full / 4


# -- low rank and linear ---------------------------------------------------------


def test_no_peeking_for_every_causal_method():
    q, k, v = qkv()
    options = {
        "window": dict(window=4),
        "dilated": dict(window=3, dilation=2),
        "global": dict(window=4, n_global=2),
        "tiled": dict(block_q=4, block_k=5),
        "linear": dict(chunk=6),
        "performer": dict(features=orthogonal_random_features(16, D)),
    }
    g = torch.Generator().manual_seed(3)
    assert set(CAUSAL_METHODS) == set(METHODS) - {"linformer"}
    for method in CAUSAL_METHODS:
        kw = options.get(method, {})
        out = efficient_attention(q, k, v, method, causal=True, **kw)
        for t in (0, 5, 17, T - 2):
            later = [x.clone() for x in (q, k, v)]
            for x in later:
                x[:, :, t + 1 :] = torch.randn(x[:, :, t + 1 :].shape, generator=g)
            moved = efficient_attention(*later, method, causal=True, **kw)
            torch.testing.assert_close(moved[:, :, : t + 1], out[:, :, : t + 1], **TOL)
            assert (moved[:, :, t + 1 :] - out[:, :, t + 1 :]).abs().max() > 1e-3, (
                method
            )


def test_parallel_and_recurrent_linear_attention_agree():
    q, k, v = qkv()
    for km in (None, padding()):
        recurrent = linear_attention_recurrent(q, k, v, key_mask=km)
        for chunk in (1, 4, 64):
            parallel = linear_attention(q, k, v, causal=True, key_mask=km, chunk=chunk)
            torch.testing.assert_close(parallel, recurrent, **TOL)


def test_linear_attention_is_its_kernel_formula():
    q, k, v = qkv()
    fq, fk = torch.nn.functional.elu(q) + 1, torch.nn.functional.elu(k) + 1
    for causal in (False, True):
        kernel = fq @ fk.transpose(-2, -1)  # (B, H, T, T)
        if causal:
            kernel = kernel.tril()
        ref = (kernel @ v) / kernel.sum(-1, keepdim=True)
        torch.testing.assert_close(linear_attention(q, k, v, causal=causal), ref, **TOL)


def test_performer_error_falls_as_features_grow():
    q, k, v = (0.5 * x for x in qkv(T=64, seed=4))
    ref = full_attention(q, k, v)
    errors = []
    for m in (4, 16, 64, 256, 1024):
        draws = []
        for seed in range(6):
            w = orthogonal_random_features(m, D, torch.Generator().manual_seed(seed))
            out = performer_attention(q, k, v, features=w)
            draws.append((out - ref).pow(2).mean().sqrt().item())
        errors.append(sum(draws) / len(draws))
    assert all(b < a for a, b in zip(errors, errors[1:])), errors
    assert errors[-1] < errors[0] / 5


def test_orthogonal_features_are_orthogonal_within_a_block():
    w = orthogonal_random_features(20, 8, torch.Generator().manual_seed(0))
    assert w.shape == (20, 8)
    unit = w[:8] / w[:8].norm(dim=1, keepdim=True)
    torch.testing.assert_close(unit @ unit.T, torch.eye(8), atol=1e-5, rtol=0)


def test_linformer_ignores_padded_keys_and_refuses_causal():
    q, k, v = qkv()
    E = torch.randn(6, 40, generator=torch.Generator().manual_seed(5)) / 6**0.5
    km = padding()
    out = linformer_attention(q, k, v, proj_k=E, key_mask=km)
    short = linformer_attention(q[1:], k[1:, :, : T - 7], v[1:, :, : T - 7], proj_k=E)
    torch.testing.assert_close(out[1:], short, **TOL)
    with pytest.raises(ValueError, match="cannot be causal"):
        linformer_attention(q, k, v, proj_k=E, causal=True)
    with pytest.raises(ValueError, match="cannot be causal"):
        efficient_attention(q, k, v, "linformer", causal=True, proj_k=E)
    with pytest.raises(ValueError, match="S_max"):
        linformer_attention(q, k, v, proj_k=E[:, :10])


# -- the layer in a model ----------------------------------------------------------


def test_layer_with_exact_methods_is_chapter_6_attention():
    torch.manual_seed(0)
    mha = MultiHeadAttention(16, 4).eval()
    x = torch.randn(2, 12, 16)
    for method, opts in (
        ("full", {}),
        ("tiled", dict(block_q=5, block_k=3)),
        ("window", dict(window=12)),
    ):
        layer = EfficientSelfAttention(16, 4, method, **opts).eval()
        layer.load_state_dict(mha.state_dict())
        for causal in (False, True):
            ref, _ = mha(x, is_causal=causal)
            got, weights = layer(x, is_causal=causal)
            torch.testing.assert_close(got, ref, **TOL)
            assert weights is None


def test_swapped_model_gives_the_same_logits_with_exact_attention():
    cfg = DecoderOnlyConfig(
        vocab_size=20,
        d_model=16,
        n_heads=2,
        n_layers=2,
        d_ff=32,
        max_len=24,
        dropout=0.0,
    )
    torch.manual_seed(0)
    model = DecoderOnlyTransformer(cfg).eval()
    ids = torch.randint(3, 20, (2, 24))
    with torch.no_grad():
        ref = model(ids)
        use_efficient_attention(model, "tiled", block_q=7, block_k=5)
        assert all(
            isinstance(layer.self_attn, EfficientSelfAttention)
            for layer in model.layers
        )
        torch.testing.assert_close(model(ids), ref, **TOL)
    linformer = use_efficient_attention(
        DecoderOnlyTransformer(cfg), "linformer", max_len=24
    )
    with pytest.raises(ValueError, match="cannot be causal"):
        linformer(ids)


# -- clear errors ---------------------------------------------------------------------


def test_bad_inputs_get_clear_errors():
    q, k, v = qkv()
    with pytest.raises(ValueError, match=r"\(B, H, T, D\)"):
        full_attention(q[0], k, v)
    with pytest.raises(ValueError, match="features"):
        full_attention(q, k[..., :4], v)
    with pytest.raises(ValueError, match="one sequence"):
        sliding_window_attention(q, k[:, :, :10], v[:, :, :10], window=3)
    with pytest.raises(TypeError, match="bool"):
        full_attention(q, k, v, key_mask=padding().float())
    with pytest.raises(ValueError, match="padding mask"):
        sliding_window_attention(q, k, v, window=3, key_mask=torch.ones(T, T).bool())
    with pytest.raises(ValueError, match="window"):
        sliding_window_attention(q, k, v, window=0)
    with pytest.raises(ValueError, match="dilation"):
        dilated_attention(q, k, v, window=2, dilation=0)
    with pytest.raises(ValueError, match="block_q"):
        tiled_attention(q, k, v, block_q=0)
    with pytest.raises(ValueError, match="unknown attention method"):
        efficient_attention(q, k, v, "magic")
    with pytest.raises(ValueError, match="causal only"):
        efficient_attention(q, k, v, "linear_recurrent")
    with pytest.raises(ValueError, match="features must have shape"):
        performer_attention(q, k, v, features=torch.randn(16, D + 1))
    with pytest.raises(ValueError, match="max_len"):
        EfficientSelfAttention(16, 2, "linformer")
    with pytest.raises(ValueError, match="keeps no weights"):
        EfficientSelfAttention(16, 2, "linear")(
            torch.randn(1, 4, 16), need_weights=True
        )
    with pytest.raises(ValueError, match="no chapter 6 self-attention"):
        use_efficient_attention(torch.nn.Linear(3, 3), "linear")
