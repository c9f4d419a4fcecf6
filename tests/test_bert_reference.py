"""Our encoder-only model is BERT: Hugging Face's BertModel, BertForMaskedLM and
BertForSequenceClassification, built from a small config with random weights (nothing
downloaded), copied across, give the same hidden states, pooled vectors and logits
with a padding mask and two token types."""

from __future__ import annotations

import os
import socket

import pytest
import torch
from torch.testing import assert_close

from transformer.bert import EncoderOnlyTransformer
from transformer.bert_hf import config_from_bert, load_bert_state_dict

os.environ["HF_HUB_OFFLINE"] = "1"  # also set in conftest.py: nothing is downloaded
transformers = pytest.importorskip("transformers")

TOL = dict(atol=1e-5, rtol=1e-5)
V = 97


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to open a connection fails the test."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"a test tried to open a network connection: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def _hf_config(**fields):
    values = dict(
        vocab_size=V,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=40,
        pad_token_id=0,
        num_labels=5,
    )
    return transformers.BertConfig(**{**values, **fields})


def _pair(cls, seed: int = 0, **fields):
    """A Hugging Face BERT with weights far from their init, and ours with a copy."""
    torch.manual_seed(seed)
    theirs = cls(_hf_config(**fields)).eval()
    with torch.no_grad():
        for name, p in theirs.named_parameters():
            if name.endswith("LayerNorm.weight"):
                p.uniform_(0.5, 1.5)
            else:
                p.normal_(std=0.2)
    config = config_from_bert(theirs.config, with_classifier=True)
    ours = EncoderOnlyTransformer(config).eval()
    load_bert_state_dict(ours, theirs.state_dict())
    return ours, theirs


def _inputs():
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(1, V, (3, 11), generator=g)
    mask = torch.ones(3, 11, dtype=torch.long)
    mask[1, 7:] = 0
    mask[2, 4:] = 0
    ids[mask == 0] = 0
    types = torch.randint(0, 2, (3, 11), generator=g)
    return ids, mask, types


def test_hidden_states_and_pooler_equal_bert_model_with_padding():
    ours, theirs = _pair(transformers.BertModel)
    ids, mask, types = _inputs()
    with torch.no_grad():
        want = theirs(input_ids=ids, attention_mask=mask, token_type_ids=types)
        real = mask.bool()
        assert_close(ours(ids, mask, types)[real], want.last_hidden_state[real], **TOL)
        assert_close(ours.pooled(ids, mask, types), want.pooler_output, **TOL)
        # by default ours masks the padding id; token types default to 0 on both sides
        plain = theirs(input_ids=ids, attention_mask=mask).last_hidden_state
        assert_close(ours(ids)[real], plain[real], **TOL)
    assert want.last_hidden_state.std() > 0.5  # a wrong copy would show


def test_masked_lm_logits_equal_bert_for_masked_lm():
    ours, theirs = _pair(transformers.BertForMaskedLM)
    ids, mask, types = _inputs()
    with torch.no_grad():
        want = theirs(input_ids=ids, attention_mask=mask, token_type_ids=types).logits
        real = mask.bool()
        assert_close(ours.token_logits(ids, mask, types)[real], want[real], **TOL)
    assert want.std() > 0.5
    assert ours.token_head.weight is ours.embedding.weight  # tied, as BERT's decoder


def test_classifier_logits_equal_bert_for_sequence_classification():
    ours, theirs = _pair(transformers.BertForSequenceClassification)
    ids, mask, types = _inputs()
    with torch.no_grad():
        want = theirs(input_ids=ids, attention_mask=mask, token_type_ids=types).logits
        assert_close(ours.classify(ids, mask, types), want, **TOL)
    assert want.shape == (3, 5)


def test_config_from_bert_reads_the_sizes():
    config = config_from_bert(_hf_config(layer_norm_eps=1e-7, type_vocab_size=3))
    assert (config.vocab_size, config.d_model, config.n_heads, config.d_ff) == (
        V,
        32,
        4,
        64,
    )
    assert (config.n_layers, config.max_len, config.n_token_types) == (2, 40, 3)
    assert config.layer_norm_eps == 1e-7 and config.n_classes is None
    assert config.activation == "gelu" and not config.norm_first
    with pytest.raises(ValueError, match="absolute"):
        config_from_bert(_hf_config(position_embedding_type="relative_key"))
    with pytest.raises(ValueError, match="hidden_act"):
        config_from_bert(_hf_config(hidden_act="mish"))


def test_loader_refuses_missing_misshapen_and_unexpected_weights():
    ours, theirs = _pair(transformers.BertModel)
    state = theirs.state_dict()
    missing = {k: v for k, v in state.items() if "layer.1.intermediate" not in k}
    with pytest.raises(KeyError, match="layer.1.intermediate"):
        load_bert_state_dict(ours, missing)
    bad = dict(state)
    bad["embeddings.word_embeddings.weight"] = torch.zeros(V + 1, 32)
    with pytest.raises(ValueError, match="word_embeddings"):
        load_bert_state_dict(ours, bad)
    extra = {**state, "encoder.layer.2.output.dense.weight": torch.zeros(32, 64)}
    with pytest.raises(ValueError, match="unexpected BERT weights"):
        load_bert_state_dict(ours, extra)
    with pytest.raises(TypeError, match="EncoderOnlyTransformer"):
        load_bert_state_dict(torch.nn.Linear(2, 2), state)  # type: ignore[arg-type]


def test_a_new_head_keeps_its_initialisation():
    """Fine-tuning starts from a pretrained body (no classifier in the state dict)."""
    ours, theirs = _pair(transformers.BertForMaskedLM)
    assert ours.classifier is not None
    before = ours.classifier.weight.clone()
    load_bert_state_dict(ours, theirs.state_dict())
    assert torch.equal(ours.classifier.weight, before)
