"""ViT exactly: Hugging Face's config and weights on our ViT (chapter 12).

:func:`config_from_vit` reads a ``transformers.ViTConfig`` (or a dict of its
fields) and :func:`load_vit_state_dict` copies the state dict of a ``ViTModel`` or
``ViTForImageClassification`` into a :class:`~transformer.vit.VisionTransformer`::

    state = torch.load("pytorch_model.bin")           # a file you already have
    model = VisionTransformer(config_from_vit(hf_config))
    load_vit_state_dict(model, state).eval()

Nothing here downloads anything. Hugging Face writes the patch embedding as a
``Conv2d`` with kernel and stride P; its weight (C, I, P, P), flattened to
(C, I * P * P), is our linear patch embedding, because
:func:`~transformer.vit.patchify` lists each patch's pixels in the same order.
A layer's ``layernorm_before`` and ``layernorm_after`` are our pre-LN ``norm1``
and ``norm2``; ``mlp.fc1`` and ``mlp.fc2`` the FFN's ``linear1`` and ``linear2``.
``ViTModel``'s pooler (a tanh layer that classification does not use) is skipped.

Shape letters: C model size (hidden_size), I channels, P patch side.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, cast

import torch
from torch import Tensor, nn

from transformer.layers import EncoderLayer
from transformer.vit import VisionTransformer, VisionTransformerConfig

__all__ = ["config_from_vit", "load_vit_state_dict"]


def _num_labels(values: Mapping[str, Any]) -> int:
    """The number of classes (a config dict stores ``id2label``, not ``num_labels``)."""
    return int(values.get("num_labels") or len(values.get("id2label") or {}) or 2)


def config_from_vit(hf_config: Any, **overrides: Any) -> VisionTransformerConfig:
    """A :class:`~transformer.vit.VisionTransformerConfig` with the sizes of a
    ``ViTConfig`` (or its dict).

    ``n_classes`` is ``num_labels``; overrides replace fields (e.g. ``dropout=0.0``).
    """
    v = hf_config if isinstance(hf_config, Mapping) else hf_config.to_dict()
    if v.get("hidden_act", "gelu") != "gelu":
        raise ValueError(f"only the exact GELU is supported, got {v['hidden_act']!r}")
    if not v.get("qkv_bias", True):
        raise ValueError(
            "qkv_bias=False has no counterpart: every linear layer has a bias"
        )
    image, patch = v["image_size"], v["patch_size"]
    if not isinstance(image, int) or not isinstance(patch, int):
        raise ValueError(f"square images and patches only, got {image!r} and {patch!r}")
    fields: dict[str, Any] = dict(
        image_size=image,
        patch_size=patch,
        n_channels=v.get("num_channels", 3),
        n_classes=_num_labels(v),
        d_model=v["hidden_size"],
        n_heads=v["num_attention_heads"],
        d_ff=v["intermediate_size"],
        n_layers=v["num_hidden_layers"],
        dropout=v.get("hidden_dropout_prob", 0.0),
        layer_norm_eps=v.get("layer_norm_eps", 1e-12),
    )
    fields.update(overrides)
    return VisionTransformerConfig(**fields)


#: Names of older checkpoints (transformers 4) and the current ones.
_OLD_NAMES = (
    (r"^encoder\.layer\.(\d+)\.", r"layers.\1."),
    (r"\.attention\.attention\.(q|k|v)[a-z]*\.", r".attention.\1_proj."),
    (r"\.attention\.output\.dense\.", ".attention.o_proj."),
    (r"\.intermediate\.dense\.", ".mlp.fc1."),
    (r"\.output\.dense\.", ".mlp.fc2."),
)


def _new_name(key: str) -> str:
    for old, new in _OLD_NAMES:
        key = re.sub(old, new, key)
    return key


def load_vit_state_dict(
    model: VisionTransformer, state_dict: Mapping[str, Tensor]
) -> VisionTransformer:
    """Copy ViT weights in Hugging Face's layout into ``model``, in place.

    Every weight of the body must be there (a missing key raises a ``KeyError``, a
    shape that differs a ``ValueError``); the classifier is copied when the state
    dict has one and keeps its own initialisation otherwise (fine-tuning a new
    head). A key that fits nowhere raises a ``ValueError``. Both the names of
    ``transformers`` 5 (``layers.0.attention.q_proj``) and of older checkpoints
    (``encoder.layer.0.attention.attention.query``) are read.
    """
    if not isinstance(model, VisionTransformer):
        raise TypeError(
            f"model must be a VisionTransformer, got {type(model).__name__}"
        )
    if not model.config.norm_first or model.norm is None:
        raise ValueError("ViT is pre-LN with a final LayerNorm; use config_from_vit")
    state = {_new_name(re.sub(r"^vit\.", "", k)): v for k, v in state_dict.items()}
    used: set[str] = set()

    def put(target: Tensor, key: str, reshape: bool = False) -> None:
        if key not in state:
            raise KeyError(f"the ViT state dict has no {key!r}")
        source = state[key].flatten(1) if reshape else state[key]
        if target.shape != source.shape:
            raise ValueError(
                f"{key}: ViT has shape {tuple(source.shape)}, this model "
                f"{tuple(target.shape)}; build it with config_from_vit(...)"
            )
        used.add(key)
        target.copy_(source)

    def put_module(module: nn.Module, key: str) -> None:
        put(cast(Tensor, module.weight), f"{key}.weight")
        put(cast(Tensor, module.bias), f"{key}.bias")

    with torch.no_grad():
        e = "embeddings."
        put(model.class_token, f"{e}cls_token")
        put(model.positions, f"{e}position_embeddings")
        conv = f"{e}patch_embeddings.projection"
        put(model.patch_embedding.weight, f"{conv}.weight", reshape=True)  # (C, I*P*P)
        put(model.patch_embedding.bias, f"{conv}.bias")
        for i, layer in enumerate(cast("Iterable[EncoderLayer]", model.layers)):
            p = f"layers.{i}."
            attn = layer.self_attn
            for name in ("q", "k", "v"):
                put_module(getattr(attn, f"{name}_proj"), f"{p}attention.{name}_proj")
            put_module(attn.out_proj, f"{p}attention.o_proj")
            put_module(layer.norm1, f"{p}layernorm_before")
            put_module(layer.norm2, f"{p}layernorm_after")
            put_module(layer.ffn.linear1, f"{p}mlp.fc1")
            put_module(layer.ffn.linear2, f"{p}mlp.fc2")
        put_module(model.norm, "layernorm")
        if "classifier.weight" in state:
            put_module(model.classifier, "classifier")
    extra = [k for k in state if k not in used and not k.startswith("pooler.")]
    if extra:
        raise ValueError(
            f"unexpected ViT weights {extra[:5]}{' ...' if len(extra) > 5 else ''}: "
            "more layers than the config, or not a ViT state dict?"
        )
    return model
