"""The decoder-only fast path (transformer.fast_lm) computes what the model computes:
the same logits and gradients, the same greedy tokens, the same dropout statistics."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from transformer import fast_lm
from transformer.fast_lm import CausalDropoutAttention, FastLM, FastLMState, keep_mask
from transformer.gpt import DecoderOnlyConfig, DecoderOnlyTransformer, LMState, generate

TOL = dict(atol=1e-5, rtol=1e-5)


def _gpt(seed: int = 0, **kw: object) -> DecoderOnlyTransformer:
    torch.manual_seed(seed)
    fields = dict(
        vocab_size=23,
        d_model=32,
        n_heads=4,
        n_layers=2,
        d_ff=64,
        dropout=0.0,
        max_len=64,
    )
    fields.update(kw)
    return DecoderOnlyTransformer(DecoderOnlyConfig(**fields)).eval()  # type: ignore[arg-type]


@pytest.mark.parametrize("activation", ["gelu", "gelu_tanh", "relu"])
def test_logits_equal_the_model(activation):
    model = _gpt(activation=activation)
    fast = FastLM(model)
    ids = torch.randint(3, 23, (3, 17))
    with torch.no_grad():
        assert_close(fast(ids), model(ids), **TOL)


def test_padding_and_uncovered_models_take_the_models_path():
    model = _gpt(1)
    ids = torch.randint(3, 23, (2, 9))
    ids[1, 6:] = model.pad_id
    with torch.no_grad():
        assert_close(FastLM(model)(ids), model(ids), **TOL)
    for kw in ({"positional": "rope"}, {"norm_first": False}):
        other = _gpt(2, **kw)
        assert not FastLM(other).covered
        with torch.no_grad():
            assert_close(FastLM(other)(ids), other(ids), **TOL)


def test_training_without_dropout_gives_the_models_gradients():
    model = _gpt(3).train()
    ids = torch.randint(3, 23, (2, 12))
    y = torch.randint(0, 23, (2, 12))
    grads = []
    for m in (model, FastLM(model)):
        model.zero_grad()
        F.cross_entropy(m(ids).flatten(0, 1), y.flatten()).backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    for a, b in zip(*grads):
        assert_close(a, b, **TOL)


def _fixed_mask(shape: tuple[int, ...], p: float) -> torch.Tensor:
    """A 0/1 mask that depends on the size only, so both paths can share it (the
    fast path may hold the same elements as (B T, C) where the model has (B, T, C))."""
    n = math.prod(shape)
    g = torch.Generator().manual_seed(n)
    return (torch.rand(n, generator=g) >= p).float().view(shape)


class _FixedDropout(torch.nn.Module):
    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        return x * _fixed_mask(tuple(x.shape), self.p) / (1 - self.p)


def test_training_with_dropout_gives_the_models_logits_and_gradients_on_the_same_masks(
    monkeypatch: pytest.MonkeyPatch,
):
    """Every dropout scale folded into a weight, every mask moved: same numbers."""
    model = _gpt(4, dropout=0.3).train()
    ids = torch.randint(3, 23, (2, 12))
    torch.manual_seed(0)
    fast = FastLM(model)
    assert (fast(ids) - fast(ids)).abs().max() > 1e-3  # dropout is on: draws differ
    # attention-weight dropout is tested on its own below; here the other four sites
    for module in list(model.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, torch.nn.Dropout):
                setattr(module, child_name, _FixedDropout(child.p))
    for layer in model.layers:
        layer.self_attn.dropout = 0.0
    monkeypatch.setattr(
        fast_lm, "keep_mask", lambda x, p: _fixed_mask(tuple(x.shape), p).to(x.dtype)
    )
    y = torch.randint(0, 23, (2, 12))
    results = []
    for m in (model, fast):
        model.zero_grad()
        logits = m(ids)
        F.cross_entropy(logits.flatten(0, 1), y.flatten()).backward()
        results.append((logits.detach(), [p.grad.clone() for p in model.parameters()]))
    (a, ga), (b, gb) = results
    assert_close(b, a, **TOL)
    for x, z in zip(gb, ga):
        assert_close(x, z, **TOL)


def test_keep_mask_drops_a_fraction_p():
    torch.manual_seed(0)
    x = torch.empty(200_000)
    for p in (0.1, 0.5):
        keep = keep_mask(x, p)
        assert keep.dtype == x.dtype and set(keep.unique().tolist()) <= {0.0, 1.0}
        assert abs(1.0 - float(keep.mean()) - p) < 0.005
        # each of the four 15-bit numbers cut from one random integer is uniform
        lanes = 1.0 - keep.view(-1, 4).mean(0)
        assert (lanes - p).abs().max() < 0.01


@pytest.mark.parametrize("block", [4, 16, 64])
def test_causal_dropout_attention_gradients(block):
    """Forward and hand-written backward against autograd on the same masks."""
    torch.manual_seed(0)
    BH, T, D, p = 6, 37, 8, 0.3
    q, k, v = (
        torch.randn(BH, T, D, dtype=torch.float64, requires_grad=True) for _ in "qkv"
    )
    g = torch.randn(BH, T, D, dtype=torch.float64)

    def reference() -> torch.Tensor:
        upper = torch.full((T, T), float("-inf"), dtype=q.dtype).triu(1)
        outs = []
        for lo in range(0, T, block):
            hi = min(T, lo + block)
            s = torch.baddbmm(
                upper[lo:hi, :hi], q[:, lo:hi], k[:, :hi].mT, alpha=D**-0.5
            )
            w = s.softmax(-1)
            # masks drawn in the same order
            outs.append((w * keep_mask(w, p)) @ v[:, :hi])
        return torch.cat(outs, 1) / (1 - p)

    torch.manual_seed(1)
    got = CausalDropoutAttention.apply(q, k, v, p, block)
    got_grads = torch.autograd.grad(got, (q, k, v), g)
    torch.manual_seed(1)
    want = reference()
    want_grads = torch.autograd.grad(want, (q, k, v), g)
    assert_close(got, want)
    for a, b in zip(got_grads, want_grads):
        assert_close(a, b)
    # with nothing dropped it is causal attention
    plain = CausalDropoutAttention.apply(q, k, v, 1e-9, block)
    assert_close(plain, F.scaled_dot_product_attention(q, k, v, is_causal=True))


@pytest.mark.parametrize("batch", [1, 3])
def test_greedy_tokens_equal_the_models(batch):
    model = _gpt(5)
    fast = FastLM(model).eval()
    prompt = torch.randint(3, 23, (batch, 3))
    # 40 new tokens after 3: the key/value buffer (16 positions) must grow twice
    want = generate(model, prompt, 40, temperature=0.0)
    got = generate(fast, prompt, 40, temperature=0.0)  # type: ignore[arg-type]
    assert torch.equal(got, want)
    eos = int(want[0, 5])
    assert torch.equal(
        generate(fast, prompt, 40, temperature=0.0, eos_id=eos),  # type: ignore[arg-type]
        generate(model, prompt, 40, temperature=0.0, eos_id=eos),
    )


def test_steps_equal_the_models_steps():
    model = _gpt(6)
    fast = FastLM(model)
    ids = torch.randint(3, 23, (2, 10))
    with torch.no_grad():
        full = model(ids)
        state = fast.start(ids[:, :4])
        assert isinstance(state, FastLMState)
        assert_close(state.logits, full[:, 3], **TOL)
        for t in range(4, 10):
            logits, state = fast.step(ids[:, t], state)
            assert_close(logits, full[:, t], **TOL)
        assert state.length == 10
        padded = ids.clone()
        padded[1, 3] = model.pad_id
        # padding: the model's state
        assert isinstance(fast.start(padded[:, :4]), LMState)


def test_errors():
    model = _gpt(7)
    fast = FastLM(model)
    with pytest.raises(TypeError, match="DecoderOnlyTransformer"):
        FastLM(torch.nn.Linear(2, 2))  # type: ignore[arg-type]
    ids = torch.randint(3, 23, (2, 5))
    state = fast.start(ids)
    with pytest.raises(ValueError, match="shape"):
        fast.step(torch.tensor([1, 2, 3]), state)
    with pytest.raises(ValueError, match="vocabulary"):
        fast.step(torch.tensor([1, 99]), state)
    with pytest.raises(TypeError, match="start"):
        fast.step(ids[:, 0], "state")  # type: ignore[arg-type]
    fast.train()
    with pytest.raises(RuntimeError, match="eval"):
        fast.start(ids)
    long = _gpt(8, max_len=6)
    state = FastLM(long).start(ids)
    _, state = FastLM(long).step(ids[:, 0], state)
    with pytest.raises(ValueError, match="positions stop at 6"):
        FastLM(long).step(ids[:, 0], state)


def test_chapter_11_blocks_go_to_the_models_own_generation():
    """FastLM (chapter 10) leaves RMSNorm/SwiGLU/GQA/RoPE blocks to the model; their
    fast generation is transformer.fast_modern.FastModernLM (tested with Llama)."""
    from transformer.modern import ModernDecoderConfig

    torch.manual_seed(9)
    config = ModernDecoderConfig(
        vocab_size=23, d_model=32, n_heads=4, n_kv_heads=2, n_layers=2
    )
    model = DecoderOnlyTransformer(config).eval()
    fast = FastLM(model)
    ids = torch.randint(3, 23, (2, 6))
    assert not fast.covered
    with torch.no_grad():
        state = fast.start(ids)
        assert isinstance(state, LMState)
        assert_close(state.logits, model(ids)[:, -1], **TOL)
    want = generate(model, ids, 10, temperature=0.0)
    assert torch.equal(generate(fast, ids, 10, temperature=0.0), want)  # type: ignore[arg-type]
