import datetime as dt
import re

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from transformer.data import Batch, Vocab, collate_pairs, lengths_to_mask, pad_sequences
from transformer.tasks import (
    DATE_LANGUAGES,
    TASKS,
    date_formats,
    load_task,
    make_pairs,
    text_corpus,
)


# ------------------------------------------------------------------ vocabulary
def test_vocab_special_ids_and_round_trip():
    v = Vocab("abc")
    assert (v.pad_id, v.bos_id, v.eos_id, v.unk_id) == (0, 1, 2, 3)
    assert len(v) == 7
    ids = v.encode("cab", add_bos=True, add_eos=True)
    assert ids == [1, 6, 4, 5, 2]
    assert v.decode(ids) == "cab"
    assert v.decode(ids, strip_special=False) == "<bos>cab<eos>"


def test_vocab_unknown_symbols_and_decode_stops_at_eos():
    v = Vocab("ab")
    assert v.encode("axb") == [4, v.unk_id, 5]
    assert v.decode([4, 2, 5, 5]) == "a"  # everything after <eos> is dropped
    assert v.decode(torch.tensor([1, 5, 0, 0])) == "b"


def test_vocab_word_level():
    v = Vocab(["hello", "world"])
    assert v.decode(v.encode("hello world")) == "hello world"
    # one-letter words stay words when the vocabulary is built from split text
    w = Vocab.from_texts(["a b c"], tokenize=str.split)
    assert w.encode("c a") == [6, 4] and w.decode([6, 4]) == "c a"
    assert Vocab("ab", sep=" ").decode([4, 5]) == "a b"
    with pytest.raises(ValueError, match="sep must be"):
        Vocab("ab", sep="-")


def test_vocab_rejects_bad_symbols_and_ids():
    with pytest.raises(ValueError, match="duplicate"):
        Vocab("aba")
    with pytest.raises(ValueError, match="reserved"):
        Vocab(["a", "<pad>"])
    with pytest.raises(ValueError, match="outside this vocabulary"):
        Vocab("ab").decode([99])
    with pytest.raises(ValueError, match="1-D"):
        Vocab("ab").decode(torch.zeros(2, 2, dtype=torch.long))


@settings(max_examples=50, deadline=None)
@given(st.text(alphabet="0123456789xyz", max_size=30))
def test_vocab_round_trip_property(text):
    v = Vocab.from_texts(["0123456789xyz"])
    assert v.decode(v.encode(text, add_bos=True, add_eos=True)) == text


# ------------------------------------------------------------------ batching
def test_pad_sequences_and_mask():
    padded, lengths = pad_sequences([[5, 6, 7], [8], [9, 9]], pad_id=0)
    assert padded.tolist() == [[5, 6, 7], [8, 0, 0], [9, 9, 0]]
    assert lengths.tolist() == [3, 1, 2]
    mask = lengths_to_mask(lengths)
    assert mask.tolist() == [[True] * 3, [True, False, False], [True, True, False]]
    assert torch.equal(mask, padded != 0)
    assert lengths_to_mask(lengths, max_len=5).shape == (3, 5)
    with pytest.raises(ValueError, match="shorter than the longest"):
        lengths_to_mask(lengths, max_len=2)
    with pytest.raises(ValueError, match="at least one"):
        pad_sequences([])


def test_collate_shifts_targets_for_teacher_forcing():
    v = Vocab("abc")
    batch = collate_pairs(
        [
            (v.encode("ab"), v.encode("ba", True, True)),
            (v.encode("c"), v.encode("c", True, True)),
        ]
    )
    assert isinstance(batch, Batch)
    assert batch.src.shape == (2, 2) and batch.tgt.shape == (2, 4)
    assert batch.tgt_in[:, 0].tolist() == [v.bos_id, v.bos_id]
    assert torch.equal(batch.tgt_in[:, 1:], batch.tgt_out[:, :-1])
    assert batch.tgt_out[1].tolist() == [v.stoi["c"], v.eos_id, v.pad_id]
    assert batch.src_key_mask.shape == (2, 1, 1, 2)  # broadcasts to (B, H, T, S)
    assert batch.src_key_mask[:, 0, 0].tolist() == [[True, True], [True, False]]
    assert batch.n_tokens == 3 + 2
    assert batch.to("cpu").src.device.type == "cpu"


# ------------------------------------------------------------------ tasks
@pytest.mark.parametrize(
    "name, kwargs, check",
    [
        ("copy", {"max_len": 8}, lambda s, t: s == t),
        ("reverse", {"max_len": 8}, lambda s, t: t == s[::-1]),
        ("sort", {"max_len": 8}, lambda s, t: t == "".join(sorted(s))),
        ("recall", {"gap": 6}, lambda s, t: s[0] == t and s[-1] == "?" and len(s) == 8),
    ],
)
def test_tasks_are_correct(name, kwargs, check):
    data = load_task(name, n_train=300, n_val=50, n_test=50, **kwargs)
    for src, tgt in data.train + data.val + data.test:
        assert check(src, tgt), (src, tgt)


@pytest.mark.parametrize("name", sorted(TASKS))
def test_splits_are_disjoint_seeded_and_sized(name):
    kwargs = {"max_len": 12} if name in ("copy", "reverse", "sort") else {}
    a = load_task(name, n_train=400, n_val=60, n_test=70, seed=3, **kwargs)
    b = load_task(name, n_train=400, n_val=60, n_test=70, seed=3, **kwargs)
    c = load_task(name, n_train=400, n_val=60, n_test=70, seed=4, **kwargs)
    assert (len(a.train), len(a.val), len(a.test)) == (400, 60, 70)
    assert a.train == b.train and a.test == b.test  # same seed, same data
    assert a.train != c.train  # another seed, other data
    train, val, test = ({s for s, _ in split} for split in (a.train, a.val, a.test))
    assert (
        len(train) == 400
        and not (train & val)
        and not (train & test)
        and not (val & test)
    )
    # every symbol is in the vocabulary: no <unk> anywhere
    for src, tgt in a.train + a.test:
        assert a.src_vocab.unk_id not in a.src_vocab.encode(src)
        assert a.tgt_vocab.unk_id not in a.tgt_vocab.encode(tgt)


def test_length_bounds_respected():
    data = load_task("reverse", n_train=500, n_val=0, n_test=0, min_len=4, max_len=6)
    assert {len(s) for s, _ in data.train} == {4, 5, 6}


def test_dates_are_valid_iso_and_multilingual():
    data = load_task("dates", n_train=3000, n_val=100, n_test=100, seed=0)
    iso = re.compile(r"^\d{4}-\d{2}-\d{2}$")
    for src, tgt in data.train[:500]:
        assert iso.match(tgt)
        d = dt.date.fromisoformat(tgt)
        assert str(d.year) in src  # the year is always written out in full
        assert 1950 <= d.year <= 2049
    sources = " ".join(s for s, _ in data.train)
    # month names of all four languages appear
    for word in ("March", "mars", "März", "marzo"):
        assert word in sources, word
    # day-of-week names match the real weekday of the date
    for src, tgt in data.train:
        if src.startswith("Samstag"):
            assert dt.date.fromisoformat(tgt).weekday() == 5
    assert set(DATE_LANGUAGES) >= {"en", "fr", "de"}


def test_date_formats_all_mean_the_same_day():
    day = dt.date(1983, 1, 25)
    for lang in DATE_LANGUAGES:
        written = date_formats(day, lang)
        assert len(written) >= 4 and len(set(written)) == len(written)
        assert all("1983" in w for w in written)
    assert "25. Januar 1983" in date_formats(day, "de")
    # 1983-01-25 was a Tuesday
    assert "Tuesday, January 25, 1983" in date_formats(day, "en")
    with pytest.raises(ValueError, match="unsupported"):
        date_formats(day, "it")


def test_dates_language_choice():
    data = load_task("dates", n_train=200, n_val=0, n_test=0, languages=("de",))
    assert all(("." in s) for s, _ in data.train)  # every German format uses "."
    with pytest.raises(ValueError, match="unsupported date language"):
        load_task("dates", n_train=10, n_val=0, n_test=0, languages=("xx",))


def test_loader_yields_batches_that_decode_back():
    data = load_task("reverse", n_train=50, n_val=10, n_test=10, max_len=6)
    loader = data.loader("val", batch_size=4)
    seen = []
    for batch in loader:
        for i in range(len(batch)):
            seen.append(
                (
                    data.src_vocab.decode(batch.src[i]),
                    data.tgt_vocab.decode(batch.tgt_out[i]),
                )
            )
    assert seen == data.val  # val is not shuffled, and decoding inverts encoding
    order1 = [b.src.tolist() for b in data.loader("train", 8, seed=1)]
    order2 = [b.src.tolist() for b in data.loader("train", 8, seed=1)]
    order3 = [b.src.tolist() for b in data.loader("train", 8, seed=2)]
    assert order1 == order2 and order1 != order3


def test_task_errors_are_actionable():
    with pytest.raises(ValueError, match="unknown task"):
        load_task("translate")
    with pytest.raises(TypeError, match="takes"):
        load_task("copy", gap=3)
    with pytest.raises(ValueError, match="distinct sources"):
        make_pairs("copy", 5000, max_len=3)
    with pytest.raises(ValueError, match="min_len"):
        load_task("copy", min_len=5, max_len=2)
    with pytest.raises(ValueError, match="split must be"):
        load_task("copy", n_train=5, n_val=1, n_test=1).loader("dev")


def test_text_corpus_ships_with_python():
    text = text_corpus()
    assert len(text) > 300_000
    assert "\n\n\n" not in text
    assert "The " in text and "return" in text
    assert text_corpus(max_chars=100) == text[:100]
    with pytest.raises(ValueError):
        text_corpus(max_chars=0)
