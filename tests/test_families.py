"""Decoder-only (chapter 10) and encoder-only (chapter 12) models built from the same
blocks and config family as chapter 9's Transformer."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch.testing import assert_close

from transformer.bert import EncoderOnlyConfig, EncoderOnlyTransformer
from transformer.checkpoint import load_checkpoint, save_checkpoint
from transformer.config import TransformerConfig
from transformer.gpt import DecoderOnlyConfig, DecoderOnlyTransformer, generate

TOL = dict(atol=1e-5, rtol=1e-5)
SCHEMES = ["learned", "sinusoidal", "rope", "alibi", "t5"]


def _gpt(seed: int = 0, **kw: object) -> DecoderOnlyTransformer:
    torch.manual_seed(seed)
    fields = dict(
        vocab_size=20, d_model=32, n_heads=4, n_layers=2, d_ff=64, dropout=0.0
    )
    fields.update(kw)
    return DecoderOnlyTransformer(DecoderOnlyConfig(**fields)).eval()  # type: ignore[arg-type]


def test_configs_share_their_fields_and_checks():
    shared = {f.name for f in dataclasses.fields(TransformerConfig)}
    for cls in (DecoderOnlyConfig, EncoderOnlyConfig):
        assert {"d_model", "n_heads", "d_ff", "dropout", "positional"} <= (
            {f.name for f in dataclasses.fields(cls)} & shared
        )
        with pytest.raises(ValueError, match="divisible by n_heads"):
            cls(vocab_size=10, d_model=30, n_heads=4)
        with pytest.raises(ValueError, match="pad_id"):
            cls(vocab_size=10, pad_id=10)
        with pytest.raises(TypeError):
            cls(10)  # keyword-only


@pytest.mark.parametrize("positional", SCHEMES)
def test_gpt_is_causal(positional):
    model = _gpt(positional=positional)
    ids = torch.randint(3, 20, (2, 9))
    changed = ids.clone()
    changed[:, 6] = 4
    a, b = model(ids), model(changed)
    assert_close(a[:, :6], b[:, :6], **TOL)  # the future never leaks back
    assert (a[:, 6:] - b[:, 6:]).abs().max() > 1e-4


@pytest.mark.parametrize("positional", SCHEMES)
def test_gpt_cached_steps_equal_the_parallel_pass(positional):
    model = _gpt(1, positional=positional)
    ids = torch.randint(3, 20, (3, 10))
    full = model(ids)  # (B, T, V)
    with torch.no_grad():
        state = model.start(ids[:, :4])
        assert_close(state.logits, full[:, 3], **TOL)
        for t in range(4, 10):
            logits, state = model.step(ids[:, t], state)
            assert_close(logits, full[:, t], **TOL)
    assert len(state.caches[0]) == 10


def test_gpt_right_padding_changes_nothing_for_the_real_tokens():
    model = _gpt(2)
    short = torch.randint(3, 20, (1, 5))
    padded = torch.cat([short, torch.zeros(1, 3, dtype=torch.long)], 1)  # pad_id 0
    both = torch.cat([padded, torch.randint(3, 20, (1, 8))])
    assert_close(model(both)[:1, :5], model(short), **TOL)
    explicit = torch.tensor([[1] * 5 + [0] * 3, [1] * 8])
    assert_close(model(both, attention_mask=explicit), model(both), **TOL)


def test_gpt_generation_with_and_without_cache_gives_the_same_tokens():
    model = _gpt(3)
    prompt = torch.randint(3, 20, (2, 4))
    a = generate(model, prompt, 12, temperature=0.0)
    b = generate(model, prompt, 12, temperature=0.0, use_cache=False)
    assert a.shape == (2, 16) and torch.equal(a, b)
    assert torch.equal(a[:, :4], prompt)
    g1, g2 = (torch.Generator().manual_seed(7) for _ in range(2))
    s1 = generate(model, prompt, 12, temperature=1.0, top_k=5, generator=g1)
    s2 = generate(
        model, prompt, 12, temperature=1.0, top_k=5, generator=g2, use_cache=False
    )
    assert torch.equal(s1, s2)


def test_gpt_stops_at_eos_and_pads_after_it():
    model = _gpt(4)
    model.output = torch.nn.Linear(32, 20, bias=True)  # untied, to set every logit
    with torch.no_grad():
        model.output.weight.zero_()
        model.output.bias.fill_(-10.0)
        model.output.bias[2] = 10.0  # eos everywhere
    out = generate(model, torch.randint(3, 20, (2, 3)), 10, temperature=0.0, eos_id=2)
    assert out.shape == (2, 4) and (out[:, 3] == 2).all()


def test_gpt_errors_are_actionable():
    model = _gpt(5, max_len=8)
    with pytest.raises(ValueError, match="max_len"):
        model(torch.randint(3, 20, (1, 9)))
    with pytest.raises(ValueError, match="vocabulary"):
        model(torch.full((1, 3), 25))
    with pytest.raises(TypeError, match="long"):
        model(torch.ones(1, 3))
    with pytest.raises(ValueError, match="shape"):
        model.step(torch.tensor([3, 4]), model.start(torch.randint(3, 20, (1, 3))))
    with pytest.raises(ValueError, match="attention_mask"):
        model(torch.randint(3, 20, (2, 3)), attention_mask=torch.ones(2, 4))


def test_gpt_trains_on_a_pattern():
    torch.manual_seed(0)
    model = _gpt(6).train()
    data = torch.arange(3, 19).repeat(8)[None].expand(16, -1)  # (16, 128) a cycle
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(200):
        i = torch.randint(0, 100, (1,)).item()
        x, y = data[:, i : i + 16], data[:, i + 1 : i + 17]
        loss = torch.nn.functional.cross_entropy(model(x).flatten(0, 1), y.flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5  # a cycle of 16 tokens is fully predictable


@pytest.mark.parametrize("norm_first", [False, True])
def test_encoder_only_reads_both_directions_and_ignores_padding(norm_first):
    torch.manual_seed(0)
    config = EncoderOnlyConfig(
        vocab_size=20,
        d_model=32,
        n_heads=4,
        d_ff=64,
        dropout=0.0,
        n_classes=3,
        norm_first=norm_first,
    )
    model = EncoderOnlyTransformer(config).eval()
    ids = torch.randint(3, 20, (2, 7))
    changed = ids.clone()
    changed[:, 6] = 4
    h, h2 = model(ids), model(changed)
    assert (h[:, 0] - h2[:, 0]).abs().max() > 1e-4  # position 0 sees position 6
    padded = torch.cat([ids[:1, :5], torch.zeros(1, 2, dtype=torch.long)], 1)
    assert_close(model(padded)[:, :5], model(ids[:1, :5]), **TOL)
    assert model.classify(ids).shape == (2, 3)
    assert model.token_logits(ids).shape == (2, 7, 20)
    assert model.token_head.weight is model.embedding.weight
    with pytest.raises(ValueError, match="classification head"):
        EncoderOnlyTransformer(dataclasses.replace(config, n_classes=None)).classify(
            ids
        )


@pytest.mark.parametrize(
    "model",
    [
        _gpt(8),
        EncoderOnlyTransformer(EncoderOnlyConfig(vocab_size=12, d_model=16, n_heads=2)),
    ],
    ids=["decoder-only", "encoder-only"],
)
def test_checkpoints_rebuild_every_family(model, tmp_path):
    path = save_checkpoint(model, tmp_path / "m.pt", step=3)
    back, extra = load_checkpoint(path, with_extra=True)
    assert (
        type(back) is type(model)
        and back.config == model.config
        and extra == {"step": 3}
    )
    ids = torch.randint(3, 12, (2, 5))
    model.eval()
    assert_close(back(ids), model(ids))
