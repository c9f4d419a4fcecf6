"""GPT-2 exactly: Hugging Face's config and weights on our decoder-only model (chapter
10).

GPT-2 (Radford et al., 2019) is a :class:`~transformer.gpt.DecoderOnlyTransformer`
with pre-LN blocks, the tanh-approximated GELU, learned positions, no embedding
scaling and an output layer tied to the token embedding, without a bias. Its
published weights use OpenAI's layout, which Hugging Face's ``GPT2LMHeadModel``
keeps: one "Conv1D" ``c_attn`` of shape (C, 3C) holds the query, key and value
projections side by side and computes ``x @ W + b``, where ``nn.Linear`` computes
``x @ W.T + b``. :func:`load_gpt2_state_dict` splits and transposes them into our
modules, so a reader with GPT-2's weights on disk can load them::

    from safetensors.torch import load_file           # or torch.load(...)
    state = load_file("gpt2/model.safetensors")        # a file you already have
    model = gpt2_from_state_dict(state)                 # the 124M model, eval mode

Nothing here downloads anything.

Shape letters: C model size (n_embd), V vocabulary, P positions (n_positions).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, cast

import torch
from torch import Tensor

from transformer.gpt import DecoderOnlyConfig, DecoderOnlyTransformer
from transformer.layers import EncoderLayer

__all__ = ["config_from_gpt2", "gpt2_from_state_dict", "load_gpt2_state_dict"]

#: GPT-2 small, as published: what :func:`config_from_gpt2` assumes by default.
GPT2_SMALL = {
    "vocab_size": 50257,
    "n_positions": 1024,
    "n_embd": 768,
    "n_layer": 12,
    "n_head": 12,
    "layer_norm_epsilon": 1e-5,
    "eos_token_id": 50256,
}


def config_from_gpt2(hf_config: Any = None, **overrides: Any) -> DecoderOnlyConfig:
    """Our :class:`~transformer.gpt.DecoderOnlyConfig` for a GPT-2 of the given size.

    Args:
        hf_config: a ``transformers.GPT2Config`` or a dict with its field names
            (``n_embd``, ``n_head``, ...); ``None`` means GPT-2 small.
        **overrides: fields of ours to change (e.g. ``dropout=0.0``).
    """
    values = dict(GPT2_SMALL)
    if hf_config is not None:
        given = hf_config if isinstance(hf_config, Mapping) else hf_config.to_dict()
        values.update({k: v for k, v in given.items() if v is not None})
    activation = values.get("activation_function", "gelu_new")
    if activation not in ("gelu_new", "gelu_pytorch_tanh", "gelu"):
        raise ValueError(f"GPT-2 activation {activation!r} has no counterpart here")
    d_model = int(values["n_embd"])
    vocab = int(values["vocab_size"])
    eos = int(values.get("eos_token_id") or vocab - 1)
    eos = eos if eos < vocab else vocab - 1
    fields: dict[str, Any] = dict(
        vocab_size=vocab,
        d_model=d_model,
        n_heads=int(values["n_head"]),
        n_layers=int(values["n_layer"]),
        d_ff=int(values.get("n_inner") or 4 * d_model),
        max_len=int(values["n_positions"]),
        layer_norm_eps=float(values["layer_norm_epsilon"]),
        dropout=float(values.get("resid_pdrop", 0.1)),
        activation="gelu" if activation == "gelu" else "gelu_tanh",
        norm_first=True,
        positional="learned",
        tie_output=True,
        output_bias=False,
        scale_embeddings=False,
        mask_pad=False,  # GPT-2 has no padding token: pass attention_mask instead
        pad_id=eos,
        bos_id=eos,
        eos_id=eos,
    )
    fields.update(overrides)
    return DecoderOnlyConfig(**fields)


def _strip(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Keys without the ``transformer.`` prefix of ``GPT2LMHeadModel``."""
    return {re.sub(r"^transformer\.", "", k): v for k, v in state.items()}


@torch.no_grad()
def load_gpt2_state_dict(
    model: DecoderOnlyTransformer, state_dict: Mapping[str, Tensor]
) -> DecoderOnlyTransformer:
    """Copy GPT-2 weights in Hugging Face's (OpenAI's) layout into ``model``, in place.

    Every weight of ``model`` must be found, with the right shape: a missing or
    misshapen tensor raises a ``KeyError``/``ValueError`` naming it. The causal-mask
    buffers some versions store (``attn.bias``, ``attn.masked_bias``) are ignored.
    """
    state = _strip(state_dict)
    C = model.config.d_model
    used: set[str] = set()

    def take(key: str) -> Tensor:
        if key not in state:
            raise KeyError(f"the GPT-2 state dict has no {key!r}")
        used.add(key)
        return state[key]

    def put(target: Tensor, source: Tensor, name: str) -> None:
        if target.shape != source.shape:
            raise ValueError(
                f"{name}: GPT-2 has shape {tuple(source.shape)}, this model "
                f"{tuple(target.shape)}; build it with config_from_gpt2(...)"
            )
        target.copy_(source)

    put(model.embedding.weight, take("wte.weight"), "wte.weight")
    positions = cast(Tensor, model.positional.weight)  # the learned table
    put(positions, take("wpe.weight"), "wpe.weight")
    for i, layer in enumerate(cast("Iterable[EncoderLayer]", model.layers)):
        p = f"h.{i}."
        w = take(p + "attn.c_attn.weight")  # (C, 3C): x @ w gives [q | k | v]
        b = take(p + "attn.c_attn.bias")  # (3C,)
        attn = layer.self_attn
        for j, lin in enumerate((attn.q_proj, attn.k_proj, attn.v_proj)):
            put(lin.weight, w[:, j * C : (j + 1) * C].T, f"{p}attn.c_attn[{j}]")
            put(lin.bias, b[j * C : (j + 1) * C], f"{p}attn.c_attn.bias[{j}]")
        put(attn.out_proj.weight, take(p + "attn.c_proj.weight").T, p + "attn.c_proj")
        put(attn.out_proj.bias, take(p + "attn.c_proj.bias"), p + "attn.c_proj.bias")
        ffn = layer.ffn
        put(ffn.linear1.weight, take(p + "mlp.c_fc.weight").T, p + "mlp.c_fc")
        put(ffn.linear1.bias, take(p + "mlp.c_fc.bias"), p + "mlp.c_fc.bias")
        put(ffn.linear2.weight, take(p + "mlp.c_proj.weight").T, p + "mlp.c_proj")
        put(ffn.linear2.bias, take(p + "mlp.c_proj.bias"), p + "mlp.c_proj.bias")
        for ours, theirs in ((layer.norm1, "ln_1"), (layer.norm2, "ln_2")):
            put(ours.weight, take(f"{p}{theirs}.weight"), f"{p}{theirs}.weight")
            put(ours.bias, take(f"{p}{theirs}.bias"), f"{p}{theirs}.bias")
    if model.norm is None:
        raise ValueError(
            "GPT-2 ends with a LayerNorm (ln_f): build with norm_first=True"
        )
    put(model.norm.weight, take("ln_f.weight"), "ln_f.weight")
    put(model.norm.bias, take("ln_f.bias"), "ln_f.bias")
    if "lm_head.weight" in state and not model.config.tie_output:
        put(model.output.weight, take("lm_head.weight"), "lm_head.weight")
    used.add("lm_head.weight")
    extra = [
        k for k in state if k not in used and not re.search(r"attn\.(masked_)?bias$", k)
    ]
    if extra:
        raise ValueError(
            f"unexpected GPT-2 weights {extra[:5]}: is this a GPT-2 state dict?"
        )
    return model


def gpt2_from_state_dict(
    state_dict: Mapping[str, Tensor], hf_config: Any = None, **overrides: Any
) -> DecoderOnlyTransformer:
    """Build a GPT-2 of the size the weights have, load them, return it in eval mode.

    The size is read from the tensors themselves (vocabulary, positions, width,
    depth); the number of heads cannot be, so it comes from ``hf_config`` (default:
    GPT-2 small's 64-wide heads, C / 64).
    """
    state = _strip(state_dict)
    V, C = state["wte.weight"].shape
    P = state["wpe.weight"].shape[0]
    n_layer = 1 + max(
        int(m.group(1)) for k in state if (m := re.match(r"h\.(\d+)\.", k))
    )
    given = {"vocab_size": V, "n_embd": C, "n_positions": P, "n_layer": n_layer}
    if hf_config is None:
        given["n_head"] = C // 64
    else:
        base = hf_config if isinstance(hf_config, Mapping) else hf_config.to_dict()
        given = {**base, **given}
    model = DecoderOnlyTransformer(config_from_gpt2(given, **overrides))
    return load_gpt2_state_dict(model, state_dict).eval()
