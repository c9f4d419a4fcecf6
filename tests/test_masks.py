"""Tests for transformer.masks: one convention (bool, True = may attend), shapes,
errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.testing import assert_close

from transformer.masks import (
    causal_mask,
    combine_masks,
    decoder_self_mask,
    padding_mask,
)
from transformer.multihead import MultiHeadAttention


def test_causal_mask_matches_torch_square_subsequent_mask():
    m = causal_mask(5)
    assert m.dtype == torch.bool and m.shape == (5, 5)
    torch_float = nn.Transformer.generate_square_subsequent_mask(5)  # -inf = blocked
    assert torch.equal(m, torch_float == 0)
    assert m[2].tolist() == [True, True, True, False, False]


def test_causal_mask_rectangular_is_bottom_right_aligned():
    m = causal_mask(2, 5)  # two new queries after three cached keys
    assert m.tolist() == [
        [True, True, True, True, False],
        [True, True, True, True, True],
    ]
    with pytest.raises(ValueError, match="at least as many keys"):
        causal_mask(5, 3)
    with pytest.raises(ValueError, match="non-negative int"):
        causal_mask(-1)


def test_causal_mask_agrees_with_torch_is_causal():
    q, k, v = torch.randn(3, 2, 6, 4).unbind(0)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=causal_mask(6))
    assert_close(out, F.scaled_dot_product_attention(q, k, v, is_causal=True))


def test_padding_mask_shape_and_values():
    ids = torch.tensor([[5, 6, 7, 0], [8, 0, 0, 0]])
    m = padding_mask(ids, pad_id=0)
    assert m.shape == (2, 1, 1, 4) and m.dtype == torch.bool
    assert m[:, 0, 0].tolist() == [
        [True, True, True, False],
        [True, False, False, False],
    ]
    with pytest.raises(ValueError, match=r"\(B, S\)"):
        padding_mask(torch.tensor([1, 2, 0]), 0)
    with pytest.raises(TypeError, match="integer"):
        padding_mask(torch.ones(2, 3), 0)


def test_combine_masks_is_logical_and_with_broadcasting():
    ids = torch.tensor([[5, 6, 0], [8, 9, 4]])
    m = combine_masks(padding_mask(ids, 0), causal_mask(3), None)
    assert m.shape == (2, 1, 3, 3)
    assert m[0, 0].tolist() == [
        [True, False, False],
        [True, True, False],
        [True, True, False],
    ]
    assert torch.equal(m[1, 0], causal_mask(3))
    assert torch.equal(decoder_self_mask(ids, 0), m)
    assert combine_masks(None, None) is None
    with pytest.raises(TypeError, match="bool"):
        combine_masks(causal_mask(3), torch.ones(3, 3))
    with pytest.raises(ValueError, match="do not broadcast"):
        combine_masks(causal_mask(3), causal_mask(4))


def test_masks_match_nn_multihead_attention_with_flipped_polarity():
    torch.manual_seed(0)
    theirs = nn.MultiheadAttention(8, 2, batch_first=True)
    ours = MultiHeadAttention(8, 2).copy_from_torch(theirs)
    ids = torch.tensor([[3, 4, 5, 0], [6, 7, 0, 0]])
    x = torch.randn(2, 4, 8)
    out, _ = ours(x, mask=decoder_self_mask(ids, 0))
    ref, _ = theirs(x, x, x, key_padding_mask=ids == 0, attn_mask=~causal_mask(4))
    assert_close(out, ref, atol=1e-5, rtol=1e-4)
