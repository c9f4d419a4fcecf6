import math

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from transformer.sampling import (
    next_token_probs,
    sample_next,
    temperature_scale,
    top_k_filter,
    top_p_filter,
)

# rows of logits; small integers make ties common, floats make them rare
rows = st.one_of(
    st.lists(st.integers(-4, 4).map(float), min_size=1, max_size=12),
    st.lists(st.floats(-10, 10, width=32), min_size=1, max_size=12),
)


def kept(filtered: torch.Tensor) -> set[int]:
    return set(torch.isfinite(filtered[0]).nonzero().flatten().tolist())


def brute_top_k(row: list[float], k: int) -> set[int]:
    kth = sorted(row, reverse=True)[min(k, len(row)) - 1]
    return {i for i, x in enumerate(row) if x >= kth}


def brute_top_p(row: list[float], p: float) -> tuple[set[int], float]:
    """Smallest prefix of the sorted row with mass >= p, plus its ties; float64."""
    x = np.array(row, dtype=np.float64)
    probs = np.exp(x - x.max())
    probs /= probs.sum()
    order = np.argsort(-x, kind="stable")
    cum = np.cumsum(probs[order])
    m = int(np.searchsorted(cum, p)) + 1  # first prefix reaching p
    m = min(m, len(row))
    last = x[order[m - 1]]
    # distance of p from the cumulative masses, where float32 rounding may flip
    margin = float(np.min(np.abs(cum - p)))
    return {i for i, v in enumerate(row) if v >= last}, margin


# --------------------------------------------------------------- the filters
@settings(max_examples=200, deadline=None)
@given(row=rows, k=st.integers(1, 15))
def test_top_k_matches_brute_force_and_keeps_the_argmax(row, k):
    logits = torch.tensor([row])
    got = kept(top_k_filter(logits, k))
    assert got == brute_top_k(row, k)
    assert len(got) >= min(k, len(row))
    assert int(logits.argmax()) in got
    # kept logits are untouched
    out = top_k_filter(logits, k)
    assert all(out[0, i] == logits[0, i] for i in got)


@settings(max_examples=200, deadline=None)
@given(row=rows, p=st.floats(0.01, 1.0))
def test_top_p_matches_brute_force_and_is_minimal(row, p):
    expected, margin = brute_top_p(row, p)
    assume(margin > 1e-5)
    logits = torch.tensor([row])
    got = kept(top_p_filter(logits, p))
    assert got == expected
    assert int(logits.argmax()) in got
    probs = logits.softmax(-1)[0]
    mass = float(probs[list(got)].sum())
    assert mass >= p - 1e-6
    # minimal: dropping every token tied with the least likely kept one goes below p
    least = min(row[i] for i in got)
    rest = [i for i in got if row[i] > least]
    assert float(probs[rest].sum()) < p


def test_top_p_of_one_keeps_everything_and_tiny_p_keeps_the_best():
    logits = torch.tensor([[2.0, 1.0, 0.5, -3.0], [0.0, 4.0, 0.0, 1.0]])
    assert torch.isfinite(top_p_filter(logits, 1.0)).all()
    only = top_p_filter(logits, 1e-6)
    assert torch.isfinite(only).sum(-1).tolist() == [1, 1]
    assert only.argmax(-1).tolist() == [0, 1]
    # p = 0.7 on probabilities about (0.63, 0.23, 0.14, 0.00): two tokens
    assert kept(top_p_filter(logits[:1], 0.7)) == {0, 1}


def test_top_k_keeps_ties_with_the_kth_value():
    logits = torch.tensor([[3.0, 1.0, 2.0, 2.0, 0.0]])
    assert kept(top_k_filter(logits, 2)) == {0, 2, 3}
    assert kept(top_k_filter(logits, 1)) == {0}
    assert kept(top_k_filter(logits, 99)) == {0, 1, 2, 3, 4}


def test_temperature_sharpens_and_flattens():
    logits = torch.tensor([[2.0, 1.0, 0.0]])
    torch.testing.assert_close(temperature_scale(logits, 0.5), logits * 2)
    cold = next_token_probs(logits, temperature=0.01)
    hot = next_token_probs(logits, temperature=1000.0)
    assert float(cold[0, 0]) > 0.999
    torch.testing.assert_close(hot, torch.full((1, 3), 1 / 3), atol=1e-3, rtol=0)
    greedy = next_token_probs(logits, temperature=0.0)
    assert greedy.tolist() == [[1.0, 0.0, 0.0]]


# ---------------------------------------------------------------- sampling
def test_temperature_zero_is_argmax_and_small_temperature_agrees():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(64, 50, generator=g) * 3
    best = logits.argmax(-1)
    assert torch.equal(sample_next(logits, temperature=0.0), best)
    assert torch.equal(sample_next(logits, temperature=0.0, top_k=5, top_p=0.5), best)
    # the gap between the two best logits here is far above 1e-4
    assert torch.equal(sample_next(logits, temperature=1e-4, generator=g), best)


FILTERS = [
    dict(),
    dict(top_k=4),
    dict(top_p=0.8),
    dict(temperature=0.7, top_k=6),
]


@pytest.mark.parametrize("settings_", FILTERS)
def test_sampling_frequencies_match_the_filtered_softmax(settings_):
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(1, 10, generator=g)
    probs = next_token_probs(logits, **settings_)[0]
    n = 40_000
    draws = sample_next(logits.expand(n, 10), generator=g, **settings_)
    counts = torch.bincount(draws, minlength=10).double()
    support = probs > 0
    assert counts[~support].sum() == 0  # filtered tokens are never drawn
    expected = n * probs[support].double()
    chi2 = float(((counts[support] - expected) ** 2 / expected).sum())
    dof = int(support.sum()) - 1
    # 99.9th percentile of chi-square (Wilson-Hilferty); a bug that ignores a
    # filter or the temperature shifts frequencies by far more
    z = 3.09
    limit = dof * (1 - 2 / (9 * dof) + z * math.sqrt(2 / (9 * dof))) ** 3
    assert chi2 < limit, (chi2, limit, settings_)


def test_sampling_is_reproducible_with_a_generator():
    logits = torch.randn(8, 30, generator=torch.Generator().manual_seed(2))
    a = sample_next(logits, top_p=0.9, generator=torch.Generator().manual_seed(5))
    b = sample_next(logits, top_p=0.9, generator=torch.Generator().manual_seed(5))
    assert a.shape == (8,) and a.dtype == torch.int64 and torch.equal(a, b)


def test_errors():
    logits = torch.randn(2, 5)
    with pytest.raises(ValueError, match="temperature"):
        sample_next(logits, temperature=-1.0)
    with pytest.raises(ValueError, match="0 means greedy"):
        temperature_scale(logits, 0.0)
    with pytest.raises(ValueError, match="top_k"):
        top_k_filter(logits, 0)
    with pytest.raises(ValueError, match="top_k"):
        sample_next(logits, temperature=0.0, top_k=0)
    for p in (0.0, 1.5, -0.1):
        with pytest.raises(ValueError, match="top_p"):
            top_p_filter(logits, p)
    with pytest.raises(ValueError, match="floating-point"):
        sample_next(torch.ones(2, 5, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\(B, V\)"):
        top_k_filter(torch.randn(2, 3, 5), 2)
    with pytest.raises(ValueError, match="finite"):
        sample_next(torch.full((1, 4), float("-inf")))


# ----------------------------------------------- against Hugging Face's
def test_same_kept_sets_as_hugging_face_warpers():
    from transformers.generation.logits_process import (
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    g = torch.Generator().manual_seed(3)
    logits = torch.randn(256, 40, generator=g) * 2
    logits[:32] = logits[:32].round()  # rows with ties
    ids = torch.zeros(256, 1, dtype=torch.long)
    for k in (1, 3, 10, 40, 50):
        theirs = TopKLogitsWarper(top_k=k)(ids, logits)
        ours = top_k_filter(logits, k)
        assert torch.equal(torch.isfinite(ours), torch.isfinite(theirs))
    floats = logits[32:]  # ties are broken by sort order in their top-p
    for p in (0.05, 0.3, 0.9, 0.99, 1.0):
        theirs = TopPLogitsWarper(top_p=p)(ids[32:], floats)
        ours = top_p_filter(floats, p)
        assert torch.equal(torch.isfinite(ours), torch.isfinite(theirs)), p
        torch.testing.assert_close(ours, theirs)
