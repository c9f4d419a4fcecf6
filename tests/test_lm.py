import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from transformer.lm import (
    bits_per_char,
    documents,
    iter_eval_blocks,
    lm_batches,
    lm_loss,
    perplexity,
    shifted_targets,
    split_documents,
)


# ------------------------------------------------------------------ documents
def test_documents_are_the_help_topics_in_sorted_order():
    from pydoc_data.topics import topics

    docs = documents()
    names = [name for name, _ in docs]
    assert names == sorted(topics)
    assert all(text and "\n\n\n" not in text for _, text in docs)
    assert all(text == text.strip() for _, text in docs)
    # the same text as chapter 1's corpus, once joined
    joined = "\n\n".join(text for _, text in docs)
    assert 400_000 < len(joined) < 500_000


def test_split_is_by_document_disjoint_complete_and_seeded():
    docs = documents()
    train, valid = split_documents(docs, valid_fraction=0.1, seed=0)
    assert len(valid) == round(0.1 * len(docs)) and len(train) + len(valid) == len(docs)
    train_names = {n for n, _ in train}
    valid_names = {n for n, _ in valid}
    assert not train_names & valid_names
    assert train_names | valid_names == {n for n, _ in docs}
    # order of the original list is kept inside each part
    order = {n: i for i, (n, _) in enumerate(docs)}
    assert [order[n] for n, _ in valid] == sorted(order[n] for n, _ in valid)
    assert split_documents(docs, 0.1, seed=0) == (train, valid)
    other = {n for n, _ in split_documents(docs, 0.1, seed=1)[1]}
    assert other != valid_names


def test_split_errors():
    docs = [("a", "x"), ("b", "y"), ("c", "z")]
    with pytest.raises(ValueError, match="valid_fraction"):
        split_documents(docs, valid_fraction=1.0)
    with pytest.raises(ValueError, match="at least two"):
        split_documents(docs[:1])
    # a tiny fraction still validates on one document and trains on the rest
    train, valid = split_documents(docs, valid_fraction=0.01)
    assert len(valid) == 1 and len(train) == 2


# ------------------------------------------------------------ shifted targets
def test_shifted_targets_predict_the_next_token():
    ids = torch.tensor([[5, 6, 7, 8], [1, 2, 3, 4]])
    x, y = shifted_targets(ids)
    assert x.tolist() == [[5, 6, 7], [1, 2, 3]]
    assert y.tolist() == [[6, 7, 8], [2, 3, 4]]
    with pytest.raises(ValueError, match="at least 2"):
        shifted_targets(torch.tensor([3]))


def test_lm_batches_are_windows_of_the_stream_and_seeded():
    ids = torch.arange(100, 200)
    g = torch.Generator().manual_seed(0)
    stream = lm_batches(ids, block_size=8, batch_size=4, generator=g, n_batches=50)
    batches = list(stream)
    assert len(batches) == 50
    starts = set()
    for x, y in batches:
        assert x.shape == y.shape == (4, 8) and x.dtype == torch.int64
        # each row is consecutive tokens of the stream, targets one step later
        assert torch.equal(x[:, 1:], x[:, :-1] + 1)
        assert torch.equal(y, x + 1)
        starts.update((x[:, 0] - 100).tolist())
    assert min(starts) >= 0 and max(starts) <= 100 - 9
    assert len(starts) > 40  # offsets are spread, not a fixed grid
    again = lm_batches(ids, 8, 4, torch.Generator().manual_seed(0), n_batches=1)
    assert torch.equal(next(again)[0], batches[0][0])


def test_lm_batches_errors():
    with pytest.raises(ValueError, match="too short"):
        next(lm_batches(torch.arange(8), block_size=8, batch_size=2))
    with pytest.raises(ValueError, match="1-D"):
        next(lm_batches(torch.zeros(2, 20, dtype=torch.long), 4, 2))
    with pytest.raises(ValueError, match="integer"):
        next(lm_batches(torch.zeros(20), 4, 2))


@settings(max_examples=50, deadline=None)
@given(n=st.integers(2, 60), block=st.integers(1, 12), batch=st.integers(1, 5))
def test_eval_blocks_score_every_token_once(n, block, batch):
    ids = torch.randint(0, 50, (n,), generator=torch.Generator().manual_seed(n))
    xs, ys = [], []
    for x, y in iter_eval_blocks(ids, block, batch_size=batch):
        assert x.shape == y.shape and x.shape[0] <= batch and x.shape[1] <= block
        xs.append(x.reshape(-1))
        ys.append(y.reshape(-1))
    assert torch.equal(torch.cat(xs), ids[:-1])
    assert torch.equal(torch.cat(ys), ids[1:])


# -------------------------------------------------------------------- metrics
def test_lm_loss_matches_the_definition_and_ignores_padding():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, 7, generator=g)
    targets = torch.randint(0, 7, (2, 5), generator=g)
    logp = logits.log_softmax(-1).gather(-1, targets[..., None]).squeeze(-1)  # (B, T)
    torch.testing.assert_close(lm_loss(logits, targets), -logp.mean())
    padded = targets.clone()
    padded[1, 3:] = 0
    keep = torch.ones(2, 5, dtype=torch.bool)
    keep[1, 3:] = False
    padded_loss = lm_loss(logits, padded, ignore_index=0)
    logp_pad = logits.log_softmax(-1).gather(-1, padded[..., None]).squeeze(-1)
    torch.testing.assert_close(padded_loss, -logp_pad[keep & (padded != 0)].mean())


def test_lm_loss_errors():
    logits = torch.randn(2, 3, 4)
    with pytest.raises(ValueError, match="vocabulary dimension"):
        lm_loss(logits, torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="floating point"):
        lm_loss(logits.long(), torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="in \\[0, 4\\)"):
        lm_loss(logits, torch.full((2, 3), 4))
    with pytest.raises(ValueError, match="nothing|no target"):
        lm_loss(logits, torch.zeros(2, 3, dtype=torch.long), ignore_index=0)


@pytest.mark.parametrize("vocab", [2, 65, 256, 50257])
def test_uniform_model_has_perplexity_v(vocab):
    logits = torch.zeros(3, 4, vocab)
    g = torch.Generator().manual_seed(1)
    targets = torch.randint(0, vocab, (3, 4), generator=g)
    loss = lm_loss(logits, targets)
    assert math.isclose(float(loss), math.log(vocab), rel_tol=1e-6)
    assert math.isclose(perplexity(loss), vocab, rel_tol=1e-5)


def test_uniform_byte_model_scores_8_bits_per_char():
    text = "bits per character do not depend on the tokenizer"
    ids = torch.tensor(list(text.encode()))
    x, y = shifted_targets(ids)
    logits = torch.zeros(len(x), 256)
    total = F.cross_entropy(logits, y, reduction="sum")
    # the first byte is predicted from nothing, by the same uniform model
    total = total + math.log(256)
    assert math.isclose(bits_per_char(total, len(text)), 8.0, rel_tol=1e-6)


def test_bits_per_char_converts_token_loss_to_characters():
    # 4 tokens over 10 characters at 2.0 nats per token
    assert math.isclose(bits_per_char(4 * 2.0, 10), 0.8 / math.log(2))
    with pytest.raises(ValueError, match="n_chars"):
        bits_per_char(1.0, 0)
    with pytest.raises(ValueError, match=">= 0"):
        perplexity(-0.5)
