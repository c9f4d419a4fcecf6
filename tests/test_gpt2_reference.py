"""Our decoder-only model is GPT-2: Hugging Face's GPT2LMHeadModel, built from a small
config with random weights (nothing downloaded), copied across, gives the same logits
and the same greedy tokens."""

from __future__ import annotations

import os
import socket

import pytest
import torch
from torch.testing import assert_close

from transformer.fast_lm import FastLM
from transformer.gpt import DecoderOnlyTransformer, generate
from transformer.gpt2 import (
    config_from_gpt2,
    gpt2_from_state_dict,
    load_gpt2_state_dict,
)

os.environ["HF_HUB_OFFLINE"] = "1"  # also set in conftest.py: nothing is downloaded
transformers = pytest.importorskip("transformers")

TOL = dict(atol=1e-5, rtol=1e-5)


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to open a connection fails the test."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"a test tried to open a network connection: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def _pair(seed: int = 0, activation: str = "gelu_new"):
    torch.manual_seed(seed)
    hf_config = transformers.GPT2Config(
        vocab_size=101,
        n_positions=40,
        n_embd=32,
        n_layer=2,
        n_head=4,
        activation_function=activation,
        bos_token_id=100,
        eos_token_id=100,
    )
    theirs = transformers.GPT2LMHeadModel(hf_config).eval()
    ours = DecoderOnlyTransformer(config_from_gpt2(hf_config, dropout=0.0)).eval()
    load_gpt2_state_dict(ours, theirs.state_dict())
    return ours, theirs


@pytest.mark.parametrize("activation", ["gelu_new", "gelu"])
def test_logits_equal_hugging_face_gpt2(activation):
    ours, theirs = _pair(activation=activation)
    ids = torch.randint(0, 101, (3, 17))
    with torch.no_grad():
        assert_close(ours(ids), theirs(ids).logits, **TOL)


def test_logits_equal_with_padding():
    ours, theirs = _pair(1)
    ids = torch.randint(0, 101, (3, 12))
    mask = torch.ones(3, 12, dtype=torch.long)
    mask[1, 7:] = 0
    mask[2, 3:] = 0  # right padding: the real tokens must not see it
    with torch.no_grad():
        want = theirs(ids, attention_mask=mask).logits
        got = ours(ids, attention_mask=mask)
    real = mask.bool()
    assert_close(got[real], want[real], **TOL)


def test_cached_steps_equal_hugging_face_with_its_cache():
    ours, theirs = _pair(2)
    ids = torch.randint(0, 101, (2, 14))
    with torch.no_grad():
        out = theirs(ids[:, :5], use_cache=True)
        past, want = out.past_key_values, [out.logits[:, -1]]
        for t in range(5, 14):
            out = theirs(ids[:, t : t + 1], past_key_values=past, use_cache=True)
            past = out.past_key_values
            want.append(out.logits[:, -1])
        state = ours.start(ids[:, :5])
        got = [state.logits]
        for t in range(5, 14):
            logits, state = ours.step(ids[:, t], state)
            got.append(logits)
    assert_close(torch.stack(got, 1), torch.stack(want, 1), **TOL)


def test_greedy_generation_gives_hugging_faces_tokens():
    ours, theirs = _pair(3)
    prompt = torch.randint(0, 100, (2, 6))
    with torch.no_grad():
        want = theirs.generate(
            prompt,
            attention_mask=torch.ones_like(prompt),
            do_sample=False,
            max_new_tokens=15,
            min_new_tokens=15,
            pad_token_id=100,
        )
    got = generate(ours, prompt, 15, temperature=0.0)
    assert torch.equal(got, want)
    fast = FastLM(ours)  # the fast path: the same logits and tokens
    assert torch.equal(generate(fast, prompt, 15, temperature=0.0), want)  # type: ignore[arg-type]
    with torch.no_grad():
        assert_close(fast(prompt), theirs(prompt).logits, **TOL)


def test_loader_reads_the_size_from_the_weights_and_refuses_foreign_ones():
    _, theirs = _pair(4)
    hf_config = {"n_head": 4, "activation_function": "gelu_new"}
    model = gpt2_from_state_dict(theirs.state_dict(), hf_config, dropout=0.0)
    assert (model.config.n_layers, model.config.d_model, model.config.max_len) == (
        2,
        32,
        40,
    )
    assert not model.training
    ids = torch.randint(0, 101, (1, 9))
    with torch.no_grad():
        assert_close(model(ids), theirs(ids).logits, **TOL)
    state = dict(theirs.state_dict())
    state.pop("transformer.h.1.mlp.c_fc.bias")
    with pytest.raises(KeyError, match="h.1.mlp.c_fc.bias"):
        load_gpt2_state_dict(
            DecoderOnlyTransformer(config_from_gpt2(_pair(4)[1].config)), state
        )
    small = DecoderOnlyTransformer(
        config_from_gpt2(theirs.config, n_layers=2, d_model=16, n_heads=4, d_ff=64)
    )
    with pytest.raises(ValueError, match="config_from_gpt2"):
        load_gpt2_state_dict(small, theirs.state_dict())
