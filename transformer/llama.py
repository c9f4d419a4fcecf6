"""Llama exactly: Hugging Face's config and weights on our modern decoder (chapter 11).

Llama (Touvron et al., 2023) is a :class:`~transformer.gpt.DecoderOnlyTransformer`
built from a :class:`~transformer.modern.ModernDecoderConfig` with its defaults:
pre-norm blocks with RMSNorm, a SwiGLU feed-forward network, grouped-query
attention, rotary positions, no biases, no embedding scaling.
:func:`config_from_llama` reads a ``transformers.LlamaConfig`` (or a dict of its
fields) and :func:`load_llama_state_dict` copies a ``LlamaForCausalLM`` state
dict in, so a reader with Llama-format weights on disk can run them::

    from safetensors.torch import load_file           # or torch.load(...)
    state = load_file("model.safetensors")              # a file you already have
    model = DecoderOnlyTransformer(config_from_llama(hf_config))
    load_llama_state_dict(model, state).eval()

Nothing here downloads anything.

**The rotary convention.** Our :class:`~transformer.relative.RotaryEmbedding`
rotates the pairs of neighbouring features ``(2i, 2i+1)`` (RoFormer's layout);
Hugging Face's Llama rotates feature ``i`` with feature ``i + D/2`` of each head
(``rotate_half``), with the same angle ``theta_i``. The loader therefore reorders
the rows of every head of ``q_proj`` and ``k_proj`` to ``0, D/2, 1, D/2+1, ...``:
a query and a key permuted alike have the same dot product, so the attention
scores, and every output, are unchanged, and the rotary code stays chapter 7's.

Shape letters: C model size (hidden_size), H query heads, G key/value heads,
D head size, F feed-forward size (intermediate_size), V vocabulary.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, cast

import torch
from torch import Tensor

from transformer.gpt import DecoderOnlyTransformer
from transformer.layers import EncoderLayer
from transformer.modern import ModernDecoderConfig, SwiGLUFeedForward

__all__ = ["config_from_llama", "load_llama_state_dict"]


def _rope_base(values: Mapping[str, Any]) -> float:
    """RoPE's base from a Llama config of either layout; scaled variants are refused."""
    rope = values.get("rope_parameters") or values.get("rope_scaling") or {}
    kind = rope.get("rope_type", rope.get("type", "default"))
    if kind != "default":
        raise ValueError(
            f"rope_type {kind!r} (a rescaled RoPE) has no counterpart here; only "
            "'default'"
        )
    return float(rope.get("rope_theta", values.get("rope_theta", 10000.0)))


def config_from_llama(hf_config: Any, **overrides: Any) -> ModernDecoderConfig:
    """Our :class:`~transformer.modern.ModernDecoderConfig` for a Llama of the given
    size.

    Args:
        hf_config: a ``transformers.LlamaConfig`` or a dict with its field names
            (``hidden_size``, ``num_key_value_heads``, ...).
        **overrides: fields of ours to change (e.g. ``max_len=4096``).
    """
    values = dict(hf_config if isinstance(hf_config, Mapping) else hf_config.to_dict())
    d_model, n_heads = int(values["hidden_size"]), int(values["num_attention_heads"])
    head_dim = values.get("head_dim") or d_model // n_heads
    if head_dim * n_heads != d_model:
        raise ValueError(
            f"head_dim={head_dim} with {n_heads} heads is not hidden_size={d_model}; "
            "heads here are always hidden_size / num_attention_heads wide"
        )
    act = values.get("hidden_act", "silu")
    if act not in ("silu", "gelu"):
        raise ValueError(
            f"Llama hidden_act {act!r} has no counterpart here (silu or gelu)"
        )
    bias = bool(values.get("attention_bias", False))
    if bool(values.get("mlp_bias", False)) != bias:
        raise ValueError(
            "attention_bias and mlp_bias differ; one bias setting is supported"
        )
    vocab = int(values["vocab_size"])
    ids = {}
    for ours, theirs, default in (
        ("pad_id", "pad_token_id", 0),
        ("bos_id", "bos_token_id", 1),
    ):
        value = values.get(theirs)
        ids[ours] = (
            default if value is None or not 0 <= int(value) < vocab else int(value)
        )
    eos = values.get("eos_token_id")
    eos = eos[0] if isinstance(eos, list | tuple) else eos  # Llama 3 lists several
    ids["eos_id"] = 2 if eos is None or not 0 <= int(eos) < vocab else int(eos)
    fields: dict[str, Any] = dict(
        vocab_size=vocab,
        d_model=d_model,
        n_heads=n_heads,
        n_kv_heads=int(values.get("num_key_value_heads") or n_heads),
        n_layers=int(values["num_hidden_layers"]),
        d_ff=int(values["intermediate_size"]),
        max_len=int(values.get("max_position_embeddings", 2048)),
        layer_norm_eps=float(values.get("rms_norm_eps", 1e-6)),
        positional_options={"base": _rope_base(values)},
        activation=act,
        bias=bias,
        tie_output=bool(values.get("tie_word_embeddings", False)),
        dropout=float(values.get("attention_dropout", 0.0)),
        mask_pad=False,  # Llama's vocabularies have no padding: pass attention_mask
        **ids,
    )
    fields.update(overrides)
    return ModernDecoderConfig(**fields)


def _halves_to_pairs(w: Tensor, heads: int) -> Tensor:
    """Reorder each head's rows from ``rotate_half``'s layout to neighbouring pairs.

    Shape:
        w: (heads * D, ...) -> (heads * D, ...), rows ``0, D/2, 1, D/2+1, ...`` of each
            head.
    """
    rest = w.shape[1:]
    # (heads, 2, D/2, ...)
    halves = w.reshape(heads, 2, w.shape[0] // heads // 2, *rest)
    return halves.transpose(1, 2).reshape(w.shape)  # (heads * D, ...)


def _check_llama_style(model: DecoderOnlyTransformer) -> ModernDecoderConfig:
    c = model.config
    if not (
        isinstance(c, ModernDecoderConfig)
        and (c.norm, c.ffn, c.positional, c.norm_first)
        == ("rms", "swiglu", "rope", True)
        and c.use_final_norm
        and not c.output_bias
        and not c.scale_embeddings
    ):
        raise ValueError(
            "this model is not Llama-shaped (RMSNorm, SwiGLU, RoPE, pre-norm, final "
            "norm, no output bias); build it with "
            "DecoderOnlyTransformer(config_from_llama(...))"
        )
    return c


@torch.no_grad()
def load_llama_state_dict(
    model: DecoderOnlyTransformer, state_dict: Mapping[str, Tensor]
) -> DecoderOnlyTransformer:
    """Copy Llama weights in Hugging Face's layout into ``model``, in place.

    Every weight of ``model`` must be found with its shape, and every tensor of the
    state dict must be used: a missing key raises a ``KeyError``, a shape that
    differs or a key left over a ``ValueError``, each naming the tensor. The
    ``rotary_emb.inv_freq`` buffers some versions store are ignored (RoPE's angles
    are computed, not stored), and so is ``lm_head.weight`` when the output is tied.
    """
    c = _check_llama_style(model)
    state = {re.sub(r"^model\.", "", k): v for k, v in state_dict.items()}
    used: set[str] = set()

    def take(key: str) -> Tensor:
        if key not in state:
            raise KeyError(f"the Llama state dict has no {key!r}")
        used.add(key)
        return state[key]

    def put(target: Tensor | None, key: str, permute_heads: int = 0) -> None:
        source = take(key)
        assert target is not None  # a bias asked for only when the model has biases
        if target.shape != source.shape:
            raise ValueError(
                f"{key}: Llama has shape {tuple(source.shape)}, this model "
                f"{tuple(target.shape)}; build it with config_from_llama(...)"
            )
        target.copy_(
            _halves_to_pairs(source, permute_heads) if permute_heads else source
        )

    put(model.embedding.weight, "embed_tokens.weight")
    for i, layer in enumerate(cast("Iterable[EncoderLayer]", model.layers)):
        p = f"layers.{i}."
        attn, ffn = layer.self_attn, cast(SwiGLUFeedForward, layer.ffn)
        projections = (
            (attn.q_proj, "q_proj", c.n_heads),  # rows reordered for our RoPE layout
            (attn.k_proj, "k_proj", c.kv_heads),
            (attn.v_proj, "v_proj", 0),
            (attn.out_proj, "o_proj", 0),
        )
        for lin, name, heads in projections:
            put(lin.weight, f"{p}self_attn.{name}.weight", heads)
            if c.bias:
                put(lin.bias, f"{p}self_attn.{name}.bias", heads)
        for lin, name in (
            (ffn.linear1, "gate"),
            (ffn.linear_up, "up"),
            (ffn.linear2, "down"),
        ):
            put(lin.weight, f"{p}mlp.{name}_proj.weight")
            if c.bias:
                put(lin.bias, f"{p}mlp.{name}_proj.bias")
        put(layer.norm1.weight, f"{p}input_layernorm.weight")
        put(layer.norm2.weight, f"{p}post_attention_layernorm.weight")
    assert model.norm is not None  # _check_llama_style asked for a final norm
    put(model.norm.weight, "norm.weight")
    if not c.tie_output:
        put(model.output.weight, "lm_head.weight")
    used.add("lm_head.weight")  # a tied checkpoint may still hold a copy
    extra = [
        k for k in state if k not in used and not k.endswith("rotary_emb.inv_freq")
    ]
    if extra:
        raise ValueError(
            f"unexpected Llama weights {extra[:5]}{' ...' if len(extra) > 5 else ''}: "
            "more layers than the config, or not a Llama state dict?"
        )
    return model
