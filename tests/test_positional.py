"""Tests for transformer.positional: each scheme's defining property, its errors, and
its behaviour inside MultiHeadAttention (masks, batches, fused vs explicit path,
caches)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from transformer.kv_cache import KVCache
from transformer.multihead import MultiHeadAttention
from transformer.positional import (
    LearnedPositionalEmbedding,
    NoPositionalEncoding,
    PositionalScheme,
    SinusoidalPositionalEncoding,
    relative_distances,
    sinusoidal_shift_matrix,
    sinusoidal_table,
)
from transformer.relative import (
    POSITIONAL_SCHEMES,
    ALiBi,
    RelativePositionRepresentations,
    RotaryEmbedding,
    T5RelativeBias,
    alibi_slopes,
    make_positional,
    t5_bucket,
)

ALL_NAMES = ["none", "sinusoidal", "learned", "relative", "rope", "t5", "alibi"]
C, H = 16, 4
D = C // H


def build(name: str, **options: object) -> PositionalScheme:
    torch.manual_seed(0)
    scheme = make_positional(name, d_model=C, n_heads=H, max_len=64, **options)
    # Give learned parameters visible values so a missing term changes the outputs.
    with torch.no_grad():
        for p in scheme.parameters():
            p.normal_(0.0, 0.5)
    return scheme


# --------------------------------------------------------------------------------------
# Sinusoidal
# --------------------------------------------------------------------------------------


def test_sinusoidal_table_matches_formula() -> None:
    table = sinusoidal_table(50, 8)
    assert table.shape == (50, 8)
    for p in (0, 1, 7, 49):
        for i in range(4):
            angle = p / 10000 ** (2 * i / 8)
            assert table[p, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-6)
            assert table[p, 2 * i + 1].item() == pytest.approx(
                math.cos(angle), abs=1e-6
            )
    # Bounded: every entry in [-1, 1], every row has norm sqrt(C / 2).
    assert table.abs().max() <= 1.0
    torch.testing.assert_close(table.norm(dim=1), torch.full((50,), 2.0))


@pytest.mark.parametrize("offset", [1, 3, 17])
def test_sinusoidal_shift_is_one_linear_map(offset: int) -> None:
    table = sinusoidal_table(100 + offset, 16)  # (P, C)
    m = sinusoidal_shift_matrix(offset, 16)  # (C, C)
    # The same matrix maps every position p to p + offset.
    torch.testing.assert_close(table[:100] @ m.T, table[offset:], atol=1e-5, rtol=0)
    # It is a rotation: orthogonal, determinant 1.
    torch.testing.assert_close(m @ m.T, torch.eye(16), atol=1e-6, rtol=0)
    assert torch.linalg.det(m).item() == pytest.approx(1.0, abs=1e-5)
    # And it is not the identity (a shift changes the encoding).
    assert (m - torch.eye(16)).abs().max() > 1e-3


def test_sinusoidal_embed_grows_on_demand_and_is_not_saved() -> None:
    pe = SinusoidalPositionalEncoding(8, initial_len=4)
    assert pe.table.shape[0] == 4
    x = torch.zeros(2, 3, 8)
    positions = torch.tensor([0, 40, 1000])
    out = pe.embed(x, positions)
    assert pe.table.shape[0] >= 1001
    torch.testing.assert_close(out[0], sinusoidal_table(1001, 8)[positions])
    torch.testing.assert_close(out[0], out[1])
    assert pe.state_dict() == {}  # a non-persistent buffer
    assert "table" in dict(pe.named_buffers())
    # Default positions are 0..T-1.
    torch.testing.assert_close(
        pe.embed(torch.zeros(1, 5, 8))[0], sinusoidal_table(5, 8)
    )


def test_sinusoidal_errors() -> None:
    with pytest.raises(ValueError, match="even"):
        SinusoidalPositionalEncoding(7)
    pe = SinusoidalPositionalEncoding(8)
    with pytest.raises(ValueError, match=r"\(B, T, 8\)"):
        pe.embed(torch.zeros(2, 3, 6))
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        pe.embed(torch.zeros(2, 3, 8), torch.arange(4))
    with pytest.raises(TypeError, match="integer"):
        pe.embed(torch.zeros(2, 3, 8), torch.arange(3.0))
    with pytest.raises(ValueError, match="non-negative"):
        pe.embed(torch.zeros(1, 2, 8), torch.tensor([-1, 0]))


# --------------------------------------------------------------------------------------
# Learned absolute
# --------------------------------------------------------------------------------------


def test_learned_adds_its_rows_and_learns() -> None:
    emb = LearnedPositionalEmbedding(10, 4)
    x = torch.randn(3, 6, 4)
    out = emb.embed(x)
    torch.testing.assert_close(out - x, emb.weight[:6].expand(3, -1, -1))
    out.sum().backward()
    assert emb.weight.grad is not None
    assert emb.weight.grad[:6].abs().sum() > 0 and emb.weight.grad[6:].abs().sum() == 0


def test_learned_past_max_len_is_a_clear_error() -> None:
    emb = LearnedPositionalEmbedding(10, 4)
    emb.embed(torch.zeros(1, 10, 4))  # exactly max_len is fine
    with pytest.raises(ValueError, match=r"position 10 is beyond .* max_len=10"):
        emb.embed(torch.zeros(1, 11, 4))
    with pytest.raises(ValueError, match=r"position 12 is beyond"):
        emb.embed(torch.zeros(1, 2, 4), torch.tensor([3, 12]))


# --------------------------------------------------------------------------------------
# RoPE
# --------------------------------------------------------------------------------------


def rope_matrix(position: int, dim: int, base: float = 10000.0) -> torch.Tensor:
    """RoFormer's block-diagonal rotation matrix R_m (Su et al., 2021, eq. 15), built
    densely."""
    r = torch.zeros(dim, dim, dtype=torch.float64)
    for i in range(dim // 2):
        t = position * base ** (-2 * i / dim)
        r[2 * i, 2 * i], r[2 * i, 2 * i + 1] = math.cos(t), -math.sin(t)
        r[2 * i + 1, 2 * i], r[2 * i + 1, 2 * i + 1] = math.sin(t), math.cos(t)
    return r


def test_rope_matches_the_rotation_matrix_of_the_paper() -> None:
    rope = RotaryEmbedding(8)
    q = torch.randn(2, 3, 5, 8, dtype=torch.float64)
    pos = torch.tensor([0, 1, 4, 9, 100])
    q_rot, k_rot = rope.rotate(q, q, pos, pos)
    for t, p in enumerate(pos.tolist()):
        expected = q[:, :, t] @ rope_matrix(p, 8).T  # (B, H, D)
        torch.testing.assert_close(q_rot[:, :, t], expected)
    torch.testing.assert_close(q_rot, k_rot)


@settings(max_examples=25, deadline=None)
@given(
    m=st.integers(0, 500),
    n=st.integers(0, 500),
    shift=st.integers(0, 1000),
)
def test_rope_score_depends_only_on_offset(m: int, n: int, shift: int) -> None:
    rope = RotaryEmbedding(16)
    g = torch.Generator().manual_seed(m * 1009 + n)
    q = torch.randn(1, 1, 1, 16, generator=g, dtype=torch.float64)
    k = torch.randn(1, 1, 1, 16, generator=g, dtype=torch.float64)

    def score(a: int, b: int) -> torch.Tensor:
        q_rot, k_rot = rope.rotate(q, k, torch.tensor([a]), torch.tensor([b]))
        return (q_rot * k_rot).sum()

    torch.testing.assert_close(score(m, n), score(m + shift, n + shift))
    # Rotations keep norms.
    q_rot, k_rot = rope.rotate(q, k, torch.tensor([m]), torch.tensor([n]))
    torch.testing.assert_close(q_rot.norm(), q.norm())
    torch.testing.assert_close(k_rot.norm(), k.norm())


def test_rope_changes_scores_with_offset() -> None:
    rope = RotaryEmbedding(8)
    q = torch.randn(1, 1, 1, 8, dtype=torch.float64)
    scores = []
    for offset in range(4):
        q_rot, k_rot = rope.rotate(q, q, torch.tensor([offset]), torch.tensor([0]))
        scores.append((q_rot * k_rot).sum().item())
    # different offsets, different scores
    assert len({round(s, 6) for s in scores}) == 4


def test_rope_errors() -> None:
    with pytest.raises(ValueError, match="even"):
        RotaryEmbedding(7)
    with pytest.raises(ValueError, match="even"):
        make_positional("rope", d_model=12, n_heads=4)  # head size 3
    rope = RotaryEmbedding(8)
    with pytest.raises(ValueError, match="head_dim=8"):
        rope.rotate(torch.randn(1, 2, 3, 4), torch.randn(1, 2, 3, 4))
    with pytest.raises(ValueError, match=r"\(B, H, T, D\)"):
        rope.rotate(torch.randn(2, 3, 8), torch.randn(2, 3, 8))
    with pytest.raises(ValueError, match="k_pos"):
        rope.rotate(
            torch.randn(1, 1, 3, 8), torch.randn(1, 1, 3, 8), None, torch.arange(4)
        )


# --------------------------------------------------------------------------------------
# ALiBi
# --------------------------------------------------------------------------------------


def test_alibi_slopes_eight_heads_geometric() -> None:
    torch.testing.assert_close(
        alibi_slopes(8), torch.tensor([2.0 ** -(i + 1) for i in range(8)])
    )
    # 16 heads: start and ratio 2^-0.5.
    torch.testing.assert_close(
        alibi_slopes(16), torch.tensor([2.0 ** (-0.5 * (i + 1)) for i in range(16)])
    )


@pytest.mark.parametrize(
    ("n", "expected_exponents"),
    [
        # closest power of 2 below (4: exponents 2, 4, 6, 8), then every other slope of
        # the sequence for 8 heads (exponents 1, 3, ...), as many as needed.
        (6, [2, 4, 6, 8, 1, 3]),
        (5, [2, 4, 6, 8, 1]),
        (3, [4, 8, 2]),
        (12, [1, 2, 3, 4, 5, 6, 7, 8, 0.5, 1.5, 2.5, 3.5]),
        (1, [8]),
    ],
)
def test_alibi_slopes_non_power_of_two(n: int, expected_exponents: list[float]) -> None:
    expected = torch.tensor([2.0**-e for e in expected_exponents])
    torch.testing.assert_close(alibi_slopes(n), expected)


def test_alibi_bias_is_minus_slope_times_distance() -> None:
    alibi = ALiBi(4)
    q = torch.zeros(1, 4, 5, 2)
    bias = alibi.score_bias(q, torch.arange(5), torch.arange(7))
    assert bias.shape == (1, 4, 5, 7)
    slopes = alibi_slopes(4)
    for i in range(5):
        for j in range(7):
            torch.testing.assert_close(bias[0, :, i, j], -slopes * abs(j - i))
    assert alibi.state_dict() == {}
    with pytest.raises(ValueError, match="n_heads=4"):
        alibi.score_bias(torch.zeros(1, 3, 5, 2))


# --------------------------------------------------------------------------------------
# T5 buckets
# --------------------------------------------------------------------------------------


def t5_bucket_reference(
    d: int, num_buckets: int, max_distance: int, bidirectional: bool
) -> int:
    """T5's bucketing of one distance ``d = j - i``, written with Python scalars."""
    bucket = 0
    if bidirectional:
        num_buckets //= 2
        if d > 0:
            bucket = num_buckets
        n = abs(d)
    else:
        n = max(-d, 0)
    exact = num_buckets // 2
    if n < exact:
        return bucket + n
    log_ratio = math.log(n / exact) / math.log(max_distance / exact)
    return bucket + min(num_buckets - 1, exact + int(log_ratio * (num_buckets - exact)))


@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize(("num_buckets", "max_distance"), [(32, 128), (8, 20)])
def test_t5_bucket_matches_scalar_reference(
    bidirectional: bool, num_buckets: int, max_distance: int
) -> None:
    d = torch.arange(-300, 301)
    got = t5_bucket(d, num_buckets, max_distance, bidirectional)
    expected = [
        t5_bucket_reference(x, num_buckets, max_distance, bidirectional) for x in d
    ]
    assert got.tolist() == expected
    assert 0 <= got.min() and got.max() < num_buckets


def test_t5_bucket_properties() -> None:
    d = torch.arange(0, 400)
    past = t5_bucket(-d, 32, 128, bidirectional=True)
    future = t5_bucket(d[1:], 32, 128, bidirectional=True)
    assert past[:8].tolist() == list(range(8))  # small distances: one bucket each
    assert (past.diff() >= 0).all()  # farther never maps to a closer bucket
    # everything beyond max_distance shares the last bucket
    assert (past[128:] == 15).all()
    assert set(future.tolist()).isdisjoint(past.tolist())  # direction is distinguished


# --------------------------------------------------------------------------------------
# Shaw et al. relative representations
# --------------------------------------------------------------------------------------


def test_relative_score_bias_matches_loop_with_clipping() -> None:
    rel = build("relative", max_distance=2, values=True)
    assert isinstance(rel, RelativePositionRepresentations)
    q = torch.randn(2, H, 5, D)
    q_pos, k_pos = torch.arange(3, 8), torch.arange(0, 9)
    bias = rel.score_bias(q, q_pos, k_pos)
    assert bias.shape == (2, H, 5, 9)
    for i, pi in enumerate(q_pos.tolist()):
        for j, pj in enumerate(k_pos.tolist()):
            a = rel.keys[max(-2, min(2, pj - pi)) + 2]
            torch.testing.assert_close(bias[:, :, i, j], q[:, :, i] @ a / math.sqrt(D))


def test_relative_value_term_matches_loop() -> None:
    rel = build("relative", max_distance=1, values=True)
    w = torch.softmax(torch.randn(2, H, 4, 6), dim=-1)
    out = rel.value_term(w, torch.arange(4), torch.arange(6))
    expected = torch.zeros(2, H, 4, D)
    for i in range(4):
        for j in range(6):
            a = rel.values[max(-1, min(1, j - i)) + 1]
            expected[:, :, i] += w[:, :, i, j, None] * a
    torch.testing.assert_close(out, expected)
    with pytest.raises(ValueError, match="values=True"):
        build("relative").value_term(w)


def test_relative_errors() -> None:
    rel = RelativePositionRepresentations(head_dim=4)
    with pytest.raises(ValueError, match="head_dim=4"):
        rel.score_bias(torch.randn(1, 2, 3, 8))
    with pytest.raises(ValueError, match="max_distance"):
        RelativePositionRepresentations(4, max_distance=0)


# --------------------------------------------------------------------------------------
# Properties shared by the relative schemes
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["relative", "t5", "alibi"])
def test_relative_biases_equal_for_equal_offsets(name: str) -> None:
    scheme = build(name)
    # Same query content at every position, so only the offset can change the bias.
    q = torch.randn(1, H, 1, D).expand(1, H, 40, D)
    bias = scheme.score_bias(q, torch.arange(40), torch.arange(40)).expand(1, H, 40, 40)
    offsets = relative_distances(torch.arange(40), torch.arange(40))
    for off in (-39, -20, -3, -1, 0, 1, 5, 39):
        values = bias[..., offsets == off]  # (1, H, count)
        torch.testing.assert_close(values, values[..., :1].expand_as(values))
    # The bias does change with the offset (not a constant).
    assert not torch.allclose(bias[..., 0, 1], bias[..., 0, 5])
    # And a translated sequence gets the same bias.
    shifted = scheme.score_bias(q, torch.arange(40) + 1000, torch.arange(40) + 1000)
    torch.testing.assert_close(shifted.expand(1, H, 40, 40), bias)


@pytest.mark.parametrize("name", ["t5", "alibi"])
def test_per_head_biases_reject_wrong_head_count(name: str) -> None:
    scheme = build(name)
    with pytest.raises(ValueError, match=f"n_heads={H}"):
        scheme.score_bias(torch.randn(1, H + 1, 3, D))
    mha = MultiHeadAttention(C, 2)  # 2 heads, scheme built for 4
    with pytest.raises(ValueError, match=f"n_heads={H}"):
        mha(torch.randn(1, 3, C), positional=scheme)


# --------------------------------------------------------------------------------------
# Inside MultiHeadAttention
# --------------------------------------------------------------------------------------


def padding_and_causal_mask(lengths: list[int], T: int) -> torch.Tensor:
    keys = torch.arange(T)[None, :] < torch.tensor(lengths)[:, None]  # (B, S)
    causal = torch.ones(T, T, dtype=torch.bool).tril()  # (T, S)
    return keys[:, None, None, :] & causal  # (B, 1, T, S)


@pytest.mark.parametrize("name", ALL_NAMES)
@pytest.mark.parametrize("masked", [False, True])
def test_fused_and_explicit_paths_agree(name: str, masked: bool) -> None:
    scheme = build(name)
    torch.manual_seed(1)
    mha = MultiHeadAttention(C, H)
    x = scheme.embed(torch.randn(3, 7, C))
    mask = padding_and_causal_mask([7, 4, 1], 7) if masked else None
    fused, _ = mha(x, mask=mask, positional=scheme)
    explicit, w = mha(
        x, mask=mask, positional=scheme, need_weights=True, average_weights=False
    )
    torch.testing.assert_close(fused, explicit, atol=1e-5, rtol=1e-5)
    assert torch.isfinite(fused).all()
    if masked:
        assert (w.masked_select(~mask.expand_as(w)) == 0).all()
    # Each batch row is processed as if alone.
    alone, _ = mha(x[1:2], mask=None if mask is None else mask[1:2], positional=scheme)
    torch.testing.assert_close(fused[1:2], alone, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["relative", "t5", "alibi", "rope"])
def test_explicit_path_equals_manual_attention(name: str) -> None:
    scheme = build(name)
    torch.manual_seed(2)
    mha = MultiHeadAttention(C, H)
    x = torch.randn(2, 6, C)
    out, _ = mha(x, positional=scheme, need_weights=True)

    def heads(t: torch.Tensor) -> torch.Tensor:
        return t.view(2, 6, H, D).transpose(1, 2)  # (B, H, T, D)

    q, k, v = heads(mha.q_proj(x)), heads(mha.k_proj(x)), heads(mha.v_proj(x))
    pos = torch.arange(6)
    if name == "rope":
        q, k = rope_rotate_dense(q, pos), rope_rotate_dense(k, pos)
    scores = q @ k.transpose(-1, -2) / math.sqrt(D)  # (B, H, T, S)
    if name != "rope":
        scores = scores + scheme.score_bias(q, pos, pos)
    manual = torch.softmax(scores, -1) @ v  # (B, H, T, D)
    manual = mha.out_proj(manual.transpose(1, 2).reshape(2, 6, C))
    torch.testing.assert_close(out, manual, atol=1e-5, rtol=1e-5)


def rope_rotate_dense(x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    rows = [
        x[:, :, t] @ rope_matrix(int(p), x.shape[-1]).T.to(x.dtype)
        for t, p in enumerate(positions)
    ]
    return torch.stack(rows, dim=2)


@pytest.mark.parametrize("name", ["relative", "rope", "t5", "alibi"])
def test_relative_schemes_make_attention_translation_invariant(name: str) -> None:
    scheme = build(name)
    mha = MultiHeadAttention(C, H)
    x = torch.randn(2, 6, C)
    pos = torch.arange(6)
    a, _ = mha(x, positional=scheme, q_pos=pos, k_pos=pos)
    b, _ = mha(x, positional=scheme, q_pos=pos + 50, k_pos=pos + 50)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["sinusoidal", "learned"])
def test_absolute_schemes_are_not_translation_invariant(name: str) -> None:
    scheme = build(name)
    mha = MultiHeadAttention(C, H)
    x = torch.randn(2, 6, C)
    pos = torch.arange(6)
    a, _ = mha(scheme.embed(x, pos))
    b, _ = mha(scheme.embed(x, pos + 20))
    assert not torch.allclose(a, b, atol=1e-3)


@pytest.mark.parametrize("name", ALL_NAMES)
def test_permutation_equivariance_only_without_positions(name: str) -> None:
    scheme = build(name)
    mha = MultiHeadAttention(C, H)
    x = torch.randn(1, 6, C)
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    out, _ = mha(scheme.embed(x), positional=scheme)
    out_perm, _ = mha(scheme.embed(x[:, perm]), positional=scheme)
    equivariant = torch.allclose(out[:, perm], out_perm, atol=1e-5)
    assert equivariant == (name == "none")


@pytest.mark.parametrize("name", ["rope", "relative", "t5", "alibi"])
def test_incremental_decoding_with_cache_matches_full_pass(name: str) -> None:
    scheme = build(name)
    mha = MultiHeadAttention(C, H).eval()
    x = torch.randn(2, 5, C)
    full, _ = mha(x, positional=scheme, is_causal=True)
    cache = KVCache()
    steps = [mha(x[:, t : t + 1], positional=scheme, cache=cache)[0] for t in range(5)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)


# --------------------------------------------------------------------------------------
# Factory and interface
# --------------------------------------------------------------------------------------


def test_factory_builds_each_scheme() -> None:
    expected = {
        "none": NoPositionalEncoding,
        "sinusoidal": SinusoidalPositionalEncoding,
        "learned": LearnedPositionalEmbedding,
        "relative": RelativePositionRepresentations,
        "rope": RotaryEmbedding,
        "t5": T5RelativeBias,
        "alibi": ALiBi,
    }
    assert set(POSITIONAL_SCHEMES) == set(ALL_NAMES)
    for name, cls in expected.items():
        scheme = make_positional(name, d_model=C, n_heads=H, max_len=32)
        assert type(scheme) is cls and scheme.name == name
        assert isinstance(scheme, PositionalScheme)
    assert make_positional("rope", d_model=C, n_heads=H).head_dim == D
    assert (
        make_positional("relative", d_model=C, n_heads=H, max_distance=3).max_distance
        == 3
    )
    assert make_positional("t5", n_heads=H, bidirectional=False).bidirectional is False


def test_factory_errors() -> None:
    with pytest.raises(ValueError, match="choose one of"):
        make_positional("rotary", d_model=C, n_heads=H)
    with pytest.raises(ValueError, match="max_len"):
        make_positional("learned", d_model=C, n_heads=H)
    with pytest.raises(ValueError, match="n_heads"):
        make_positional("alibi", d_model=C)
    with pytest.raises(ValueError, match="not divisible"):
        make_positional("relative", d_model=10, n_heads=4)


def test_default_hooks_do_nothing() -> None:
    scheme = NoPositionalEncoding()
    x, q, k = torch.randn(2, 3, 4), torch.randn(2, 1, 3, 4), torch.randn(2, 1, 5, 4)
    assert scheme.embed(x) is x
    q2, k2 = scheme.rotate(q, k)
    assert q2 is q and k2 is k
    assert scheme.score_bias(q) is None
    assert list(scheme.parameters()) == []


def test_shaw_value_term_is_used_by_multi_head_attention() -> None:
    """With values=True each head's output gains sum_j w_ij a^V_clip(j-i) (Shaw et
    al.)."""
    torch.manual_seed(0)
    B, T, C, H = 2, 7, 16, 2
    D = C // H
    mha = MultiHeadAttention(C, H).eval()
    scheme = RelativePositionRepresentations(D, max_distance=3, values=True)
    with torch.no_grad():
        scheme.values.normal_()  # large enough to matter
    x = torch.randn(B, T, C)
    mask = torch.ones(T, T, dtype=torch.bool).tril()
    out, _ = mha(x, mask=mask, positional=scheme)
    # by hand: scores with the key term, weights, then values plus relative vectors
    q = mha.q_proj(x).view(B, T, H, D).transpose(1, 2)
    k = mha.k_proj(x).view(B, T, H, D).transpose(1, 2)
    v = mha.v_proj(x).view(B, T, H, D).transpose(1, 2)
    pos = torch.arange(T)
    scores = q @ k.transpose(-2, -1) / D**0.5 + scheme.score_bias(q, pos, pos)
    w = scores.masked_fill(~mask, float("-inf")).softmax(-1)  # (B, H, T, T)
    rel = (pos[None, :] - pos[:, None]).clamp(-3, 3) + 3  # (T, T) index of clip(j - i)
    a_v = scheme.values[rel]  # (T, T, D)
    heads = w @ v + torch.einsum("bhij,ijd->bhid", w, a_v)
    expected = mha.out_proj(heads.transpose(1, 2).reshape(B, T, C))
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    # without value vectors the output differs, so the term really was added
    plain = RelativePositionRepresentations(D, max_distance=3)
    plain.load_state_dict(scheme.state_dict(), strict=False)
    assert not torch.allclose(mha(x, mask=mask, positional=plain)[0], out)


@pytest.mark.parametrize(
    "name", ["none", "sinusoidal", "learned", "rope", "t5", "alibi"]
)
@pytest.mark.parametrize("start", [0, 5])
def test_embed_range_equals_embed_of_those_positions(name: str, start: int) -> None:
    torch.manual_seed(0)
    scheme = make_positional(name, d_model=16, n_heads=4, max_len=32)
    x = torch.randn(2, 7, 16)
    positions = torch.arange(start, start + 7)
    assert torch.equal(scheme.embed_range(x, start), scheme.embed(x, positions))


def test_embed_range_errors_and_growth() -> None:
    learned = make_positional("learned", d_model=8, max_len=10)
    with pytest.raises(ValueError, match="beyond the learned table"):
        learned.embed_range(torch.zeros(1, 4, 8), 8)
    sin = make_positional("sinusoidal", d_model=8)
    with pytest.raises(ValueError, match="non-negative"):
        sin.embed_range(torch.zeros(1, 4, 8), -1)
    with pytest.raises(ValueError, match="shape"):
        sin.embed_range(torch.zeros(4, 8), 0)
    # past the initial table: it grows
    far = sin.embed_range(torch.zeros(1, 2, 8), 5000)
    assert torch.equal(far[0], sinusoidal_table(5002, 8)[5000:])
