import math

import numpy as np
import pytest

from transformer.lm import documents, split_documents
from transformer.ngram import KneserNeyLM


@pytest.fixture(scope="module")
def split() -> tuple[list[str], list[str]]:
    train, valid = split_documents(documents(), valid_fraction=0.1, seed=0)
    return [t for _, t in train], [t for _, t in valid]


@pytest.fixture(scope="module")
def models(split) -> dict[int, KneserNeyLM]:
    return {n: KneserNeyLM.fit(split[0], order=n) for n in (1, 3, 5)}


def test_tiny_example_worked_by_hand():
    # "abab" padded as [<s>, a, b, a, b]. Bigrams: (<s>,a) 1, (a,b) 2, (b,a) 1,
    # so D2 = n1 / (n1 + 2 n2) = 2 / 4. Unigram continuation counts: a follows
    # two distinct symbols (<s>, b), b one (a): D1 = 1 / 3, total 3, 2 types.
    m = KneserNeyLM.fit(["abab"], order=2)
    assert m.symbols == ["a", "b"] and m.vocab_size == 3
    assert m.discounts[1:] == [pytest.approx(1 / 3), pytest.approx(0.5)]
    d1, uniform = 1 / 3, 1 / 3
    p1 = {
        "a": (2 - d1 + d1 * 2 * uniform) / 3,
        "b": (1 - d1 + d1 * 2 * uniform) / 3,
        "unk": d1 * 2 * uniform / 3,
    }
    assert p1 == pytest.approx({"a": 17 / 27, "b": 8 / 27, "unk": 2 / 27})
    # after "a": seen "b" twice, one type, total 2
    d2 = 0.5
    expected_after_a = [
        d2 * p1["a"] / 2,
        (2 - d2 + d2 * p1["b"]) / 2,
        d2 * p1["unk"] / 2,
    ]
    np.testing.assert_allclose(m.next_distribution("a"), expected_after_a)
    # after an unseen symbol: the unigram level alone
    np.testing.assert_allclose(m.next_distribution("z"), list(p1.values()))
    assert m.log_prob("ab") == pytest.approx(
        math.log(m.next_distribution("")[0]) + math.log(expected_after_a[1])
    )


@pytest.mark.parametrize("order", [1, 3, 5])
def test_every_context_gets_a_proper_distribution(models, split, order):
    model = models[order]
    rng = np.random.default_rng(order)
    text = split[1][0]
    contexts = ["", "the ", "qzxj", "\u2603\u2603\u2603", "def f(x):\n    return"]
    for start in rng.integers(0, len(text) - 10, size=20):
        contexts.append(text[start : start + int(rng.integers(0, 8))])
    for context in contexts:
        p = model.next_distribution(context)
        assert p.shape == (model.vocab_size,)
        assert (p > 0).all()
        assert p.sum() == pytest.approx(1.0, abs=1e-9)


def test_scores_agree_with_the_distribution(models):
    model = models[5]
    doc = "A loop runs\u2603 its body."
    steps = []
    for i, c in enumerate(doc):
        steps.append(model.next_distribution(doc[:i])[model.index.get(c, model.unk)])
    assert model.log_prob(doc) == pytest.approx(sum(math.log(p) for p in steps))


def test_unseen_symbols_have_a_small_finite_probability(models):
    model = models[3]
    assert "\u2603" not in model.index
    lp = model.log_prob("\u2603")
    assert math.isfinite(lp) and lp < math.log(1 / model.vocab_size)
    assert math.isfinite(model.cross_entropy("snow\u2603man"))


def test_longer_contexts_predict_held_out_text_better(models, split):
    # measured on this split: 4.75, 2.63, 1.76 bits per character for orders
    # 1, 3, 5 (and still falling, more slowly, to 1.56 at order 8)
    valid = split[1]
    bpc = {n: models[n].bits_per_char(valid) for n in (1, 3, 5)}
    assert bpc[1] > bpc[3] + 1.0 > bpc[5] + 1.5, bpc
    assert 1.0 < bpc[5] < 2.5
    # a uniform guess over the vocabulary is far worse than even order 1
    assert bpc[1] < math.log2(models[1].vocab_size)


def test_the_gap_between_training_and_held_out_text_grows_with_order(models, split):
    train, valid = split
    seen = [d[:3000] for d in train[:10]]
    gap = {}
    for n in (1, 3, 5):
        gap[n] = models[n].bits_per_char(valid) - models[n].bits_per_char(seen)
    assert gap[5] > gap[3] > gap[1], gap


def test_token_ids_work_too():
    docs = [[5, 7, 5, 7, 9], [7, 9, 9]]
    model = KneserNeyLM.fit(docs, order=3)
    assert model.symbols == [5, 7, 9]
    for context in ([], [5], [5, 7], [42, 42]):
        assert model.next_distribution(context).sum() == pytest.approx(1.0)
    sample = model.sample(20, seed=0)
    assert isinstance(sample, list) and len(sample) == 20 and set(sample) <= {5, 7, 9}


def test_sampling_is_seeded_and_uses_training_symbols(models):
    model = models[5]
    a = model.sample(300, seed=1)
    assert isinstance(a, str) and len(a) == 300
    assert set(a) <= set(model.symbols)
    assert model.sample(300, seed=1) == a and model.sample(300, seed=2) != a
    # samples of a 5-gram model read like the corpus: mostly known 4-grams
    seen = {ctx for ctx in model.counts[5] if all(i < model.unk for i in ctx)}
    grams = [tuple(model.index[c] for c in a[i : i + 4]) for i in range(len(a) - 4)]
    assert sum(g in seen for g in grams) / len(grams) > 0.9


def test_errors():
    with pytest.raises(ValueError, match="order"):
        KneserNeyLM.fit(["abc"], order=0)
    with pytest.raises(ValueError, match="without training symbols"):
        KneserNeyLM.fit(["", ""])
    with pytest.raises(ValueError, match="list of documents"):
        KneserNeyLM.fit("abc")
    model = KneserNeyLM.fit(["abc"], order=2)
    with pytest.raises(ValueError, match="empty"):
        model.cross_entropy("")
    with pytest.raises(ValueError, match="n must be"):
        model.sample(-1)
