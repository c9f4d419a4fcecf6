"""Our Vision Transformer is ViT: Hugging Face's ViTModel and ViTForImageClassification,
built from a small config with random weights (nothing downloaded), copied across,
give the same hidden states and logits."""

from __future__ import annotations

import os
import re
import socket

import pytest
import torch
from torch.testing import assert_close

from transformer.vit import VisionTransformer
from transformer.vit_hf import config_from_vit, load_vit_state_dict

os.environ["HF_HUB_OFFLINE"] = "1"  # also set in conftest.py: nothing is downloaded
transformers = pytest.importorskip("transformers")

TOL = dict(atol=1e-5, rtol=1e-5)


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"a test tried to open a network connection: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def _pair(cls, channels: int = 1, **fields):
    torch.manual_seed(0)
    config = transformers.ViTConfig(
        image_size=8,
        patch_size=2,
        num_channels=channels,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        num_labels=10,
        **fields,
    )
    theirs = cls(config).eval()
    with torch.no_grad():
        for name, p in theirs.named_parameters():
            if "layernorm" in name and name.endswith("weight"):
                p.uniform_(0.5, 1.5)
            else:
                p.normal_(std=0.2)
    ours = VisionTransformer(config_from_vit(theirs.config)).eval()
    load_vit_state_dict(ours, theirs.state_dict())
    return ours, theirs


@pytest.mark.parametrize("channels", [1, 3])
def test_hidden_states_equal_vit_model(channels):
    ours, theirs = _pair(transformers.ViTModel, channels)
    x = torch.randn(4, channels, 8, 8)
    with torch.no_grad():
        want = theirs(pixel_values=x).last_hidden_state
        assert_close(ours(x), want, **TOL)
    assert want.shape == (4, 17, 32) and want.std() > 0.5


def test_logits_equal_vit_for_image_classification():
    ours, theirs = _pair(transformers.ViTForImageClassification)
    x = torch.randn(4, 1, 8, 8)
    with torch.no_grad():
        want = theirs(pixel_values=x).logits
        assert_close(ours.classify(x), want, **TOL)
    assert want.shape == (4, 10) and want.std() > 0.5


def test_older_checkpoint_names_load_the_same_weights():
    ours, theirs = _pair(transformers.ViTForImageClassification)
    old = {}
    for k, v in theirs.state_dict().items():
        k = re.sub(r"layers\.(\d+)\.", r"encoder.layer.\1.", k)
        k = re.sub(
            r"attention\.(q|k|v)_proj",
            lambda m: (
                "attention.attention."
                + {"q": "query", "k": "key", "v": "value"}[m.group(1)]
            ),
            k,
        )
        k = k.replace("attention.o_proj", "attention.output.dense")
        k = k.replace("mlp.fc1", "intermediate.dense").replace(
            "mlp.fc2", "output.dense"
        )
        old[k] = v
    again = VisionTransformer(ours.config).eval()
    load_vit_state_dict(again, old)
    x = torch.randn(2, 1, 8, 8)
    assert_close(again.classify(x), ours.classify(x), **TOL)


def test_loader_and_config_errors():
    ours, theirs = _pair(transformers.ViTModel)
    state = theirs.state_dict()
    with pytest.raises(KeyError, match="cls_token"):
        load_vit_state_dict(
            ours, {k: v for k, v in state.items() if "cls_token" not in k}
        )
    bad = {**state, "embeddings.position_embeddings": torch.zeros(1, 5, 32)}
    with pytest.raises(ValueError, match="position_embeddings"):
        load_vit_state_dict(ours, bad)
    with pytest.raises(ValueError, match="unexpected ViT weights"):
        load_vit_state_dict(ours, {**state, "layers.5.mlp.fc1.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="qkv_bias"):
        config_from_vit(transformers.ViTConfig(qkv_bias=False))
    with pytest.raises(ValueError, match="GELU"):
        config_from_vit(transformers.ViTConfig(hidden_act="relu"))
