"""Masked-token pretraining: the 80/10/10 rule, the tokenizer's special ids, and a
masked-language model that learns through the book's ``train``."""

from __future__ import annotations

import pytest
import torch

from transformer.bert import EncoderOnlyConfig, EncoderOnlyTransformer
from transformer.bpe import BPETokenizer
from transformer.mlm import (
    EncoderTokenizer,
    MaskedLM,
    MaskedLMBatches,
    mask_tokens,
)
from transformer.training import train

N, MASK, PAD, CLS = 50, 53, 50, 51


def _mask(ids, p=0.15, seed=0):
    return mask_tokens(
        ids,
        mask_id=MASK,
        n_ordinary=N,
        special_ids=(PAD, CLS),
        ignore_id=PAD,
        p=p,
        generator=torch.Generator().manual_seed(seed),
    )


def test_the_80_10_10_rule_in_proportion():
    ids = torch.randint(0, N, (400, 250), generator=torch.Generator().manual_seed(1))
    inputs, labels = _mask(ids)
    chosen = labels != PAD
    assert chosen.float().mean().item() == pytest.approx(0.15, abs=0.005)
    assert torch.equal(labels[chosen], ids[chosen])  # labels are the original tokens
    assert torch.equal(inputs[~chosen], ids[~chosen])  # the rest is untouched
    n = chosen.sum().item()
    as_mask = (inputs[chosen] == MASK).sum().item() / n
    kept = (inputs[chosen] == ids[chosen]).sum().item() / n
    replaced = 1 - as_mask - kept
    assert as_mask == pytest.approx(0.8, abs=0.01)
    # a random replacement equals the original 1 time in N: kept = 0.1 + 0.1 / N
    assert kept == pytest.approx(0.1 + 0.1 / N, abs=0.01)
    assert replaced == pytest.approx(0.1 - 0.1 / N, abs=0.01)
    # replacements are ordinary tokens
    assert inputs[chosen & (inputs != MASK)].max() < N


def test_special_tokens_are_never_chosen_and_masks_are_reproducible():
    ids = torch.randint(0, N, (50, 40))
    ids[:, 0] = CLS
    ids[:, 30:] = PAD
    inputs, labels = _mask(ids, p=0.9)
    assert (labels[:, 0] == PAD).all() and (labels[:, 30:] == PAD).all()
    assert (inputs[:, 0] == CLS).all() and (inputs[:, 30:] == PAD).all()
    again, labels2 = _mask(ids, p=0.9)
    assert torch.equal(inputs, again) and torch.equal(labels, labels2)
    other, _ = _mask(ids, p=0.9, seed=1)
    assert not torch.equal(inputs, other)


def test_mask_tokens_rejects_bad_input():
    with pytest.raises(TypeError, match="torch.long"):
        _mask(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="p must be"):
        _mask(torch.zeros(2, 3, dtype=torch.long), p=1.5)
    with pytest.raises(ValueError, match="n_ordinary"):
        mask_tokens(
            torch.zeros(2, 3, dtype=torch.long), mask_id=1, n_ordinary=0, ignore_id=0
        )


def _tokenizer() -> EncoderTokenizer:
    text = "the cat sat on the mat. the dog sat on the log. " * 20
    return EncoderTokenizer(BPETokenizer.train(text, vocab_size=270))


def test_tokenizer_places_special_ids_after_the_ordinary_ones():
    tok = _tokenizer()
    assert (tok.pad_id, tok.cls_id, tok.sep_id, tok.mask_id) == tuple(range(270, 274))
    assert tok.vocab_size == 274
    row = tok.encode("the cat sat on the mat", max_len=6)
    assert row[0] == tok.cls_id and row[-1] == tok.sep_id and len(row) <= 6
    ids, mask = tok.pad([row, tok.encode("the dog", 10)])
    assert ids.shape[1] == len(row) and mask.sum(1).tolist() == [
        len(row),
        mask[1].sum(),
    ]
    assert tok.decode([tok.cls_id, *tok.bpe.encode("the cat"), tok.mask_id]) == (
        "[CLS]the cat[MASK]"
    )
    with pytest.raises(ValueError, match="max_len"):
        tok.encode("x", max_len=2)
    with pytest.raises(ValueError, match="no rows"):
        tok.pad([])


def test_masked_lm_learns_through_train():
    torch.manual_seed(0)
    tok = _tokenizer()
    text = "the cat sat on the mat. the dog sat on the log. "
    chunks = [tok.encode(text * 2, 24) for _ in range(32)]
    config = EncoderOnlyConfig(
        vocab_size=tok.vocab_size,
        d_model=32,
        n_heads=4,
        d_ff=64,
        dropout=0.0,
        max_len=24,
        pad_id=tok.pad_id,
    )
    model = MaskedLM(EncoderOnlyTransformer(config))
    batches = MaskedLMBatches(chunks, tok, batch_size=16, p=0.3, seed=0)
    assert len(batches) == 2
    history = train(model, batches, steps=150, lr=3e-3, progress=False, log_every=10)
    assert history.train_loss[0] > 4.0  # about log(V) at the start
    # a repeated sentence is predictable from context
    assert history.train_loss[-1] < 1.0
    first, second = next(iter(batches)), next(iter(batches))
    assert not torch.equal(first.src, second.src)  # fresh masks every pass
