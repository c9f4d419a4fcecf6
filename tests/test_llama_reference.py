"""Our modern decoder is Llama: Hugging Face's LlamaForCausalLM, built from a small
config with random weights (nothing downloaded), copied across, gives the same logits
with and without the cache and the same greedy tokens, for grouped-query (2 key/value
heads of 4), multi-query (1) and multi-head (4) attention."""

from __future__ import annotations

import os
import socket

import pytest
import torch
from torch.testing import assert_close

from transformer.gpt import DecoderOnlyTransformer, generate
from transformer.llama import config_from_llama, load_llama_state_dict
from transformer.modern import ModernDecoderConfig

os.environ["HF_HUB_OFFLINE"] = "1"  # also set in conftest.py: nothing is downloaded
transformers = pytest.importorskip("transformers")

TOL = dict(atol=1e-5, rtol=1e-5)
V = 101


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to open a connection fails the test."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"a test tried to open a network connection: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def _hf_config(n_kv_heads: int = 2, **fields):
    values = dict(
        vocab_size=V,
        hidden_size=32,
        intermediate_size=88,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=n_kv_heads,
        max_position_embeddings=64,
        rms_norm_eps=1e-5,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    values["rope_parameters"] = {"rope_type": "default", "rope_theta": 500.0}
    return transformers.LlamaConfig(**{**values, **fields})


def _pair(seed: int = 0, n_kv_heads: int = 2, **fields):
    """HF Llama with weights far from their init (norm gains too), and ours with a
    copy."""
    torch.manual_seed(seed)
    theirs = transformers.LlamaForCausalLM(_hf_config(n_kv_heads, **fields)).eval()
    with torch.no_grad():
        for name, p in theirs.named_parameters():
            if name.endswith("norm.weight"):
                p.uniform_(0.5, 1.5)
            else:
                p.normal_(std=0.2)
    ours = DecoderOnlyTransformer(config_from_llama(theirs.config)).eval()
    load_llama_state_dict(ours, theirs.state_dict())
    return ours, theirs


@pytest.mark.parametrize("n_kv_heads", [2, 1, 4])
def test_logits_equal_hugging_face_llama(n_kv_heads):
    ours, theirs = _pair(n_kv_heads=n_kv_heads)
    ids = torch.randint(0, V, (3, 23))
    with torch.no_grad():
        want = theirs(ids).logits
        assert_close(ours(ids), want, **TOL)
    assert want.std() > 1.0  # the weights are large enough for a wrong copy to show


def test_logits_equal_with_padding():
    ours, theirs = _pair(1)
    ids = torch.randint(0, V, (3, 12))
    mask = torch.ones(3, 12, dtype=torch.long)
    mask[1, 7:] = 0
    mask[2, 3:] = 0  # right padding: the real tokens must not see it
    with torch.no_grad():
        want = theirs(ids, attention_mask=mask).logits
        got = ours(ids, attention_mask=mask)
    real = mask.bool()
    assert_close(got[real], want[real], **TOL)


@pytest.mark.parametrize("n_kv_heads", [2, 1, 4])
def test_cached_steps_equal_hugging_face_with_its_cache(n_kv_heads):
    ours, theirs = _pair(2, n_kv_heads)
    ids = torch.randint(0, V, (2, 14))
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
    for cache in state.caches:  # only the shared heads are stored
        assert cache.k is not None and cache.v is not None
        assert tuple(cache.k.shape) == tuple(cache.v.shape) == (2, n_kv_heads, 14, 8)


@pytest.mark.parametrize("n_kv_heads", [2, 1, 4])
def test_greedy_generation_gives_hugging_faces_tokens(n_kv_heads):
    ours, theirs = _pair(3, n_kv_heads)
    prompt = torch.randint(3, V, (2, 6))
    with torch.no_grad():
        want = theirs.generate(
            prompt,
            attention_mask=torch.ones_like(prompt),
            do_sample=False,
            max_new_tokens=15,
        )  # a row that reaches eos (2) is padded with pad (0), as ours are
    assert want.shape[1] > 6
    assert torch.equal(generate(ours, prompt, 15, temperature=0.0, eos_id=2), want)
    slow = generate(ours, prompt, 15, temperature=0.0, eos_id=2, use_cache=False)
    assert torch.equal(slow, want)


def test_config_from_llama_reads_every_field():
    hf = _hf_config(2, tie_word_embeddings=True, hidden_act="silu")
    c = config_from_llama(hf)
    assert isinstance(c, ModernDecoderConfig)
    assert (c.vocab_size, c.d_model, c.n_heads, c.n_kv_heads, c.d_ff, c.n_layers) == (
        V,
        32,
        4,
        2,
        88,
        2,
    )
    assert (c.max_len, c.layer_norm_eps, c.positional_options) == (
        64,
        1e-5,
        {"base": 500.0},
    )
    assert (c.tie_output, c.bias, c.norm, c.ffn, c.positional) == (
        True,
        False,
        "rms",
        "swiglu",
        "rope",
    )
    assert (c.pad_id, c.bos_id, c.eos_id, c.mask_pad) == (0, 1, 2, False)
    assert config_from_llama(hf.to_dict(), max_len=128).max_len == 128


def test_tied_and_biased_llamas_load_exactly():
    for fields in (
        {"tie_word_embeddings": True},
        {"attention_bias": True, "mlp_bias": True},
    ):
        ours, theirs = _pair(4, 2, **fields)
        ids = torch.randint(0, V, (2, 9))
        with torch.no_grad():
            assert_close(ours(ids), theirs(ids).logits, **TOL)


def test_config_errors_name_the_problem():
    with pytest.raises(ValueError, match="rope_type 'linear'"):
        config_from_llama(
            _hf_config(
                rope_parameters={
                    "rope_type": "linear",
                    "factor": 2.0,
                    "rope_theta": 1e4,
                }
            )
        )
    with pytest.raises(ValueError, match="head_dim=16"):
        config_from_llama(_hf_config(head_dim=16))
    with pytest.raises(ValueError, match="attention_bias and mlp_bias"):
        config_from_llama(_hf_config(attention_bias=True))
    with pytest.raises(ValueError, match="hidden_act 'relu'"):
        config_from_llama(_hf_config(hidden_act="relu"))
    with pytest.raises(ValueError, match="divisible by n_kv_heads"):
        config_from_llama(_hf_config(num_key_value_heads=3))


def test_loader_refuses_missing_unexpected_and_misshapen_weights():
    ours, theirs = _pair(5)
    state = dict(theirs.state_dict())
    missing = {
        k: v for k, v in state.items() if k != "model.layers.1.mlp.up_proj.weight"
    }
    with pytest.raises(KeyError, match="layers.1.mlp.up_proj.weight"):
        load_llama_state_dict(ours, missing)
    extra = {**state, "model.layers.2.input_layernorm.weight": torch.ones(32)}
    with pytest.raises(ValueError, match=r"unexpected Llama weights \['layers.2.input"):
        load_llama_state_dict(ours, extra)
    mqa = DecoderOnlyTransformer(config_from_llama(_hf_config(1)))
    with pytest.raises(ValueError, match=r"k_proj.weight: Llama has shape \(16, 32\)"):
        load_llama_state_dict(mqa, state)
    gpt2_like = DecoderOnlyTransformer(
        ModernDecoderConfig(vocab_size=V, d_model=32, n_heads=4, norm="layer")
    )
    with pytest.raises(ValueError, match="not Llama-shaped"):
        load_llama_state_dict(gpt2_like, state)
    state["model.layers.0.self_attn.rotary_emb.inv_freq"] = torch.ones(4)  # old files
    load_llama_state_dict(ours, state)


@pytest.mark.parametrize("n_kv_heads", [2, 1])
def test_fast_path_generates_hugging_faces_tokens(n_kv_heads):
    from transformer.fast_modern import FastModernLM, GeneralState

    ours, theirs = _pair(6, n_kv_heads)
    fast = FastModernLM(ours).eval()
    prompt = torch.randint(3, V, (2, 9))  # the buffers fill at 18 and must grow
    with torch.no_grad():
        want = theirs.generate(
            prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=20
        )
        state = fast.start(prompt)
        assert isinstance(state, GeneralState) and state.k.shape[2] == n_kv_heads
        assert_close(state.logits, theirs(prompt).logits[:, -1], **TOL)
    got = generate(fast, prompt, 20, temperature=0.0, eos_id=2)  # type: ignore[arg-type]
    assert torch.equal(got, want)
    with torch.no_grad():  # every step's logits, across the buffers' growth
        state, full = fast.start(prompt), theirs(got).logits
        for t in range(9, 29):
            assert_close(state.logits, full[:, t - 1], **TOL)
            _, state = fast.step(got[:, t], state)
        assert state.k.shape[3] == 36  # grown once, from 18


def test_fast_modern_path_checks_its_input_and_falls_back():
    from transformer.fast_lm import FastLMState
    from transformer.fast_modern import FastModernLM, GeneralState
    from transformer.gpt import LMState

    ours, _ = _pair(7, 2)
    fast = FastModernLM(ours).eval()
    prompt = torch.randint(3, V, (1, 5))
    with torch.no_grad():
        state = fast.start(prompt)
        assert isinstance(state, GeneralState)
        with pytest.raises(ValueError, match="ids in"):
            fast.step(torch.tensor([V]), state)
        with pytest.raises(ValueError, match="shape"):
            fast.step(torch.tensor([1, 2]), state)
        padded = fast.start(prompt, attention_mask=torch.tensor([[1, 1, 1, 0, 0]]))
        assert isinstance(padded, LMState)  # the model's own path
    for fields in (
        {"positional": "learned"},
        {"norm": "layer", "ffn": "mlp", "n_kv_heads": 4},
    ):
        other = DecoderOnlyTransformer(
            ModernDecoderConfig(vocab_size=V, d_model=32, n_heads=4, **fields)  # type: ignore[arg-type]
        ).eval()
        fast = FastModernLM(other).eval()
        with torch.no_grad():
            state = fast.start(prompt)
        assert isinstance(state, (GeneralState, FastLMState))
        want = generate(other, prompt, 12, temperature=0.0)
        assert torch.equal(generate(fast, prompt, 12, temperature=0.0), want)  # type: ignore[arg-type]
    for fields in (
        {"tie_word_embeddings": True},
        {"attention_bias": True, "mlp_bias": True},
    ):
        ours, theirs = _pair(8, 2, **fields)
        want = theirs.generate(
            prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=12
        )
        got = generate(FastModernLM(ours).eval(), prompt, 12, temperature=0.0, eos_id=2)  # type: ignore[arg-type]
        assert torch.equal(got, want)
