"""BERT exactly: Hugging Face's config and weights on our encoder (chapter 12).

BERT (Devlin et al., 2019) is an :class:`~transformer.bert.EncoderOnlyTransformer`
with its defaults: post-LN blocks, exact (erf) GELU, learned positions, a
token-type embedding, a LayerNorm on the embeddings, the MLM transform before a
tied output layer, and a tanh pooler on the first position.
:func:`config_from_bert` reads a ``transformers.BertConfig`` (or a dict of its
fields) and :func:`load_bert_state_dict` copies the state dict of a ``BertModel``,
``BertForMaskedLM`` or ``BertForSequenceClassification`` in, so a reader with
BERT weights on disk can run them::

    state = torch.load("pytorch_model.bin")           # a file you already have
    model = EncoderOnlyTransformer(config_from_bert(hf_config))
    load_bert_state_dict(model, state).eval()

Nothing here downloads anything. The names map one to one: BERT's ``query``,
``key``, ``value`` and ``attention.output.dense`` are our ``q_proj``, ``k_proj``,
``v_proj``, ``out_proj``; ``intermediate.dense`` and ``output.dense`` are the
feed-forward network's ``linear1`` and ``linear2``; the two LayerNorms of a layer
are ``norm1`` and ``norm2``.

Shape letters: C model size (hidden_size), F feed-forward size, V vocabulary.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, cast

import torch
from torch import Tensor, nn

from transformer.bert import EncoderOnlyConfig, EncoderOnlyTransformer
from transformer.layers import EncoderLayer

__all__ = ["config_from_bert", "load_bert_state_dict"]

#: Hugging Face activation names and ours ("gelu" is the exact erf form in both).
_ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_tanh", "relu": "relu", "silu": "silu"}


def _num_labels(values: Mapping[str, Any]) -> int:
    """The number of classes (a config dict stores ``id2label``, not ``num_labels``)."""
    return int(values.get("num_labels") or len(values.get("id2label") or {}) or 2)


def config_from_bert(hf_config: Any, **overrides: Any) -> EncoderOnlyConfig:
    """An :class:`~transformer.bert.EncoderOnlyConfig` with the sizes of a
    ``BertConfig`` (or its dict).

    ``n_classes`` is taken from ``num_labels`` only when ``with_classifier=True`` is
    passed as an override; other overrides replace fields (e.g. ``dropout=0.0``).
    """
    v = hf_config if isinstance(hf_config, Mapping) else hf_config.to_dict()
    kind = v.get("position_embedding_type", "absolute")
    if kind != "absolute":
        raise ValueError(
            f"only absolute position embeddings are supported, got {kind!r}"
        )
    act = v.get("hidden_act", "gelu")
    if act not in _ACTIVATIONS:
        raise ValueError(
            f"hidden_act {act!r} has no counterpart; one of {sorted(_ACTIVATIONS)}"
        )
    with_classifier = overrides.pop("with_classifier", False)
    pad = v.get("pad_token_id")
    fields: dict[str, Any] = dict(
        vocab_size=v["vocab_size"],
        d_model=v["hidden_size"],
        n_heads=v["num_attention_heads"],
        d_ff=v["intermediate_size"],
        n_layers=v["num_hidden_layers"],
        dropout=v.get("hidden_dropout_prob", 0.1),
        activation=_ACTIVATIONS[act],
        norm_first=False,
        positional="learned",
        max_len=v["max_position_embeddings"],
        n_token_types=v.get("type_vocab_size", 2),
        layer_norm_eps=v.get("layer_norm_eps", 1e-12),
        tie_output=True,
        mlm_transform=True,
        pad_id=0 if pad is None else pad,
        n_classes=_num_labels(v) if with_classifier else None,
    )
    fields.update(overrides)
    return EncoderOnlyConfig(**fields)


def load_bert_state_dict(
    model: EncoderOnlyTransformer, state_dict: Mapping[str, Tensor]
) -> EncoderOnlyTransformer:
    """Copy BERT weights in Hugging Face's layout into ``model``, in place.

    The body (embeddings and every layer) must be there: a missing key raises a
    ``KeyError``, a shape that differs a ``ValueError``. Heads are copied when both
    sides have them: the MLM head (``cls.predictions``), the pooler, the classifier.
    A head that the state dict lacks keeps its own initialisation, which is how
    fine-tuning starts (pretrained body, new classifier). A key that fits nowhere
    raises a ``ValueError``.
    """
    if not isinstance(model, EncoderOnlyTransformer):
        raise TypeError(
            f"model must be an EncoderOnlyTransformer, got {type(model).__name__}"
        )
    c = model.config
    if c.norm_first or c.positional != "learned" or not c.bias:
        raise ValueError(
            "BERT is post-LN with learned positions and biases; use config_from_bert"
        )
    state = {re.sub(r"^bert\.", "", k): v for k, v in state_dict.items()}
    used: set[str] = set()

    def put(target: Tensor | None, key: str) -> None:
        if key not in state:
            raise KeyError(f"the BERT state dict has no {key!r}")
        source = state[key]
        assert target is not None  # every target here exists under the checks above
        if target.shape != source.shape:
            raise ValueError(
                f"{key}: BERT has shape {tuple(source.shape)}, this model "
                f"{tuple(target.shape)}; build it with config_from_bert(...)"
            )
        used.add(key)
        target.copy_(source)

    def put_linear(lin: nn.Module, key: str) -> None:
        put(cast(nn.Linear, lin).weight, f"{key}.weight")
        put(cast(nn.Linear, lin).bias, f"{key}.bias")

    def put_norm(norm: nn.Module, key: str) -> None:
        put(cast(nn.LayerNorm, norm).weight, f"{key}.weight")
        put(cast(nn.LayerNorm, norm).bias, f"{key}.bias")

    with torch.no_grad():
        put(model.embedding.weight, "embeddings.word_embeddings.weight")
        put(
            cast(nn.Parameter, model.positional.weight),
            "embeddings.position_embeddings.weight",
        )
        if model.token_type is not None:
            put(model.token_type.weight, "embeddings.token_type_embeddings.weight")
        assert model.embedding_norm is not None  # post-LN: checked above
        put_norm(model.embedding_norm, "embeddings.LayerNorm")
        for i, layer in enumerate(cast("Iterable[EncoderLayer]", model.layers)):
            p = f"encoder.layer.{i}."
            attn = layer.self_attn
            for ours, theirs in (("q", "query"), ("k", "key"), ("v", "value")):
                put_linear(getattr(attn, f"{ours}_proj"), f"{p}attention.self.{theirs}")
            put_linear(attn.out_proj, f"{p}attention.output.dense")
            put_norm(layer.norm1, f"{p}attention.output.LayerNorm")
            put_linear(layer.ffn.linear1, f"{p}intermediate.dense")
            put_linear(layer.ffn.linear2, f"{p}output.dense")
            put_norm(layer.norm2, f"{p}output.LayerNorm")
        if "cls.predictions.transform.dense.weight" in state:
            if model.token_transform is None:
                raise ValueError(
                    "the state dict has BERT's MLM transform: set mlm_transform=True"
                )
            head = cast(nn.Sequential, model.token_transform)
            dense, norm = head[0], head[2]
            put_linear(dense, "cls.predictions.transform.dense")
            put_norm(norm, "cls.predictions.transform.LayerNorm")
            bias = "cls.predictions.bias"
            put(
                model.token_head.bias,
                bias if bias in state else "cls.predictions.decoder.bias",
            )
            used.update(
                {"cls.predictions.decoder.weight", "cls.predictions.decoder.bias"}
            )
        if "pooler.dense.weight" in state:
            put_linear(model.pooler[0], "pooler.dense")
        if model.classifier is not None and "classifier.weight" in state:
            put_linear(model.classifier, "classifier")
    buffers = ("embeddings.position_ids", "embeddings.token_type_ids")
    extra = [k for k in state if k not in used and k not in buffers]
    if extra:
        raise ValueError(
            f"unexpected BERT weights {extra[:5]}{' ...' if len(extra) > 5 else ''}: "
            "more layers than the config, or a head this model lacks (n_classes=, "
            "mlm_transform=)?"
        )
    return model
