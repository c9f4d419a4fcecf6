"""The Vision Transformer: patches in the right order, a patch embedding equal to a
strided convolution, the class token's attention, and clear errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from transformer.vit import (
    MLP,
    SmallCNN,
    VisionTransformer,
    VisionTransformerConfig,
    digits,
    patchify,
)

TOL = dict(atol=1e-5, rtol=1e-5)


def _config(**fields):
    values = dict(
        image_size=8,
        patch_size=2,
        n_classes=10,
        d_model=32,
        n_heads=4,
        d_ff=64,
        dropout=0.0,
    )
    return VisionTransformerConfig(**{**values, **fields})


def test_patchify_lists_patches_row_by_row():
    image = torch.arange(16.0).view(1, 1, 4, 4)
    patches = patchify(image, 2)
    assert patches.shape == (1, 4, 4)
    assert patches[0, 0].tolist() == [0, 1, 4, 5]  # top left
    assert patches[0, 1].tolist() == [2, 3, 6, 7]  # top right
    assert patches[0, 2].tolist() == [8, 9, 12, 13]  # bottom left
    two = torch.stack([image[0, 0], image[0, 0] + 100]).unsqueeze(0)  # (1, 2, 4, 4)
    assert patchify(two, 2)[0, 0].tolist() == [0, 1, 4, 5, 100, 101, 104, 105]


def test_patch_embedding_is_a_strided_convolution():
    conv = nn.Conv2d(3, 16, kernel_size=4, stride=4)
    lin = nn.Linear(48, 16)
    with torch.no_grad():
        lin.weight.copy_(conv.weight.flatten(1))
        lin.bias.copy_(conv.bias)
    x = torch.randn(2, 3, 8, 12)
    assert_close(lin(patchify(x, 4)), conv(x).flatten(2).transpose(1, 2), **TOL)


def test_shapes_class_token_and_attention_maps():
    torch.manual_seed(0)
    model = VisionTransformer(_config()).eval()
    x = torch.rand(3, 1, 8, 8)
    assert model(x).shape == (3, 17, 32)
    assert model.classify(x).shape == (3, 10)
    maps = model.attention_maps(x)
    assert len(maps) == 2 and maps[0].shape == (3, 4, 17, 17)
    assert_close(maps[0].sum(-1), torch.ones(3, 4, 17))
    # the class token's output depends on every patch
    y = x.clone()
    y[:, :, 7, 7] += 1.0
    assert (model(x)[:, 0] - model(y)[:, 0]).abs().max() > 1e-4


def test_without_positions_a_vit_cannot_tell_patch_order():
    torch.manual_seed(0)
    model = VisionTransformer(_config()).eval()
    with torch.no_grad():
        model.positions.zero_()
    x = torch.rand(2, 1, 8, 8)
    # patches reversed
    flipped = x.view(2, 1, 4, 2, 4, 2).flip(2, 4).reshape(2, 1, 8, 8)
    assert_close(model.classify(x), model.classify(flipped), **TOL)


def test_config_and_input_errors():
    with pytest.raises(ValueError, match="must divide image_size"):
        _config(patch_size=3)
    with pytest.raises(ValueError, match="positional must be 'none'"):
        _config(positional="learned")
    with pytest.raises(TypeError, match="VisionTransformerConfig"):
        VisionTransformer(object())  # type: ignore[arg-type]
    model = VisionTransformer(_config())
    with pytest.raises(ValueError, match=r"\(B, 1, 8, 8\)"):
        model(torch.rand(2, 3, 8, 8))
    with pytest.raises(TypeError, match="floating point"):
        model(torch.zeros(2, 1, 8, 8, dtype=torch.long))
    with pytest.raises(ValueError, match="does not split"):
        patchify(torch.rand(1, 1, 5, 4), 2)
    with pytest.raises(ValueError, match="patch_size"):
        patchify(torch.rand(1, 1, 4, 4), 0)
    with pytest.raises(ValueError, match="shape"):
        patchify(torch.rand(4, 4), 2)


def test_digits_and_baselines():
    x, y, xt, yt = digits()
    assert x.shape == (1438, 1, 8, 8) and xt.shape == (359, 1, 8, 8)
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    assert set(y.tolist()) == set(range(10))
    again = digits()
    assert torch.equal(again[0], x) and not torch.equal(digits(seed=1)[0], x)
    assert SmallCNN(10).classify(x[:4]).shape == (4, 10)
    assert MLP(64, 10).classify(x[:4]).shape == (4, 10)
