"""The public boundary: your own data, decoding defaults, and errors a learner can act
on."""

from __future__ import annotations

import math

import pytest
import torch

from transformer.beam import beam_search
from transformer.config import TransformerConfig
from transformer.data import Vocab, collate_pairs, pair_loader, pair_vocabs
from transformer.decoding import greedy_decode
from transformer.layers import DecoderLayer
from transformer.model import Transformer
from transformer.relative import RotaryEmbedding
from transformer.tasks import load_task

PAIRS = [("abc", "cba"), ("hello", "olleh"), ("ab", "ba"), ("xyz", "zyx")]


def _model(src_vocab: Vocab, tgt_vocab: Vocab, **kw: object) -> Transformer:
    torch.manual_seed(0)
    fields = dict(d_model=16, n_heads=2, d_ff=32, dropout=0.0, n_encoder_layers=1)
    fields.update(kw)
    config = TransformerConfig.for_vocabs(src_vocab, tgt_vocab, **fields)
    return Transformer(config).eval()


def test_pair_loader_frames_every_target_with_bos_and_eos():
    loader = pair_loader(PAIRS, batch_size=4, shuffle=False)
    src_vocab, tgt_vocab = loader.dataset.src_vocab, loader.dataset.tgt_vocab
    batch = next(iter(loader))
    assert (batch.tgt[:, 0] == tgt_vocab.bos_id).all()
    for row, (_, t) in zip(batch.tgt, PAIRS):
        assert tgt_vocab.decode(row.tolist()) == t
        assert int(row[len(t) + 1]) == tgt_vocab.eos_id
    assert src_vocab.decode(batch.src[1].tolist()) == "hello"


def test_pair_loader_takes_id_lists_and_checks_them():
    src_vocab, tgt_vocab = pair_vocabs(PAIRS)
    ids = [(src_vocab.encode(s), tgt_vocab.encode(t)) for s, t in PAIRS]
    a = next(iter(pair_loader(ids, src_vocab, tgt_vocab, shuffle=False)))
    b = next(iter(pair_loader(PAIRS, src_vocab, tgt_vocab, shuffle=False)))
    assert torch.equal(a.tgt, b.tgt) and torch.equal(a.src, b.src)
    with pytest.raises(ValueError, match="src_vocab= and tgt_vocab="):
        pair_loader(ids)
    with pytest.raises(ValueError, match="outside its vocabulary"):
        pair_loader([([1, 2], [999])], src_vocab, tgt_vocab)


def test_collate_refuses_targets_without_bos_and_eos():
    with pytest.raises(ValueError, match="not framed"):
        collate_pairs([([4, 5], [6, 7])])  # raw ids: the mistake that trained to 6-11%
    batch = collate_pairs([([4, 5], [1, 6, 7, 2])])
    assert batch.tgt_in.tolist() == [[1, 6, 7]] and batch.tgt_out.tolist() == [
        [6, 7, 2]
    ]


def test_decoders_take_their_defaults_from_the_model():
    src_vocab, tgt_vocab = pair_vocabs(PAIRS)
    model = _model(src_vocab, tgt_vocab, max_len=12)
    src = next(iter(pair_loader(PAIRS, src_vocab, tgt_vocab, shuffle=False))).src
    explicit = greedy_decode(model, src, 12, 1, 2, 0)
    assert torch.equal(greedy_decode(model, src), explicit)
    assert torch.equal(
        beam_search(model, src, beam_size=1),
        beam_search(model, src, 12, 1, 2, 0, beam_size=1),
    )
    # greedy and beam search return the same width when they return the same tokens
    assert beam_search(model, src, beam_size=1).shape == explicit.shape


@pytest.mark.parametrize("decode", [greedy_decode, beam_search])
def test_decoding_errors_name_the_problem(decode):
    src_vocab, tgt_vocab = pair_vocabs(PAIRS)
    model = _model(src_vocab, tgt_vocab)
    src = torch.tensor([[4, 5, 6]])
    with pytest.raises(ValueError, match="bos_id=99 is not an id"):
        decode(model, src, 5, bos_id=99)
    with pytest.raises(ValueError, match="empty batch"):
        decode(model, src[:0], 5)
    with pytest.raises(ValueError, match="max_len must be a positive int"):
        decode(model, src, 5.0)


def test_model_boundary_errors():
    src_vocab, tgt_vocab = pair_vocabs(PAIRS)
    model = _model(src_vocab, tgt_vocab)
    src, tgt = torch.tensor([[4, 5, 6]]), torch.tensor([[1, 4]])
    with pytest.raises(ValueError, match="on meta but the model is on cpu"):
        model(src.to("meta"), tgt)
    layer = DecoderLayer(16, 2, 32)
    with pytest.raises(TypeError, match="memory is torch.float64"):
        layer(torch.zeros(1, 2, 16), torch.zeros(1, 3, 16, dtype=torch.float64))
    with pytest.raises(TypeError, match="positional"):
        TransformerConfig(10, 10)  # keyword-only: no field order to get wrong


def test_dates_accept_one_language_as_a_string():
    data = load_task("dates", n_train=20, n_val=5, n_test=5, languages="fr")
    assert data.kwargs["languages"] == "fr"
    months = ("janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août")
    assert any(any(m in s for m in months) for s, _ in data.train)


def test_positional_options_reach_the_scheme():
    src_vocab, tgt_vocab = pair_vocabs(PAIRS)
    shaw = _model(
        src_vocab, tgt_vocab, positional="relative", positional_options={"values": True}
    )
    assert shaw.decoder.positional.values is not None
    t5 = _model(
        src_vocab,
        tgt_vocab,
        positional="t5",
        positional_options={"bidirectional": False},
    )
    assert t5.decoder.positional.bidirectional is False
    with pytest.raises(ValueError, match="positional_options"):
        TransformerConfig(
            src_vocab_size=9,
            tgt_vocab_size=9,
            positional="rope",
            positional_options={"nonsense": 1},
        )
    assert {"a": 1} == TransformerConfig(
        src_vocab_size=9, tgt_vocab_size=9, positional="none", positional_options={}
    ).positional_options | {"a": 1}


def test_bias_false_reaches_the_output_layer():
    src_vocab, tgt_vocab = pair_vocabs(PAIRS)
    model = _model(src_vocab, tgt_vocab, bias=False)
    assert model.decoder.output.bias is None
    assert all(
        m.bias is None for m in model.modules() if isinstance(m, torch.nn.Linear)
    )


def test_rope_angles_survive_bfloat16_and_never_need_float64_on_the_device():
    """Bug: inv_freq was a float64 buffer, rounded by .to(bfloat16) (0.22 rad at
    511)."""
    rope = RotaryEmbedding(64).to(torch.bfloat16)
    assert rope.inv_freq.dtype == torch.float64  # not a buffer: .to() leaves it alone
    assert not list(rope.buffers())
    pos = torch.tensor([128, 511])
    exact = pos[:, None].double() * (10000.0 ** (-torch.arange(0, 64, 2).double() / 64))
    assert (rope.angles(pos) - exact).abs().max() < 1e-9
    q = torch.randn(1, 1, 2, 64, dtype=torch.bfloat16)
    rotated, _ = rope.rotate(q, q, pos, pos)
    assert rotated.dtype == torch.bfloat16
    # norms are kept: a rotation, up to bfloat16 rounding
    assert torch.allclose(
        rotated.float().norm(dim=-1), q.float().norm(dim=-1), rtol=2e-2
    )
    assert math.isclose(float(rope.angles(torch.tensor([1]))[0, 0]), 1.0)


def test_readme_example_trains_a_copy_task_from_raw_pairs():
    """The README's own-data example, smaller: raw string pairs in, exact matches
    out."""
    import random

    from transformer.training import evaluate, train

    rng = random.Random(0)
    words = [
        "".join(rng.choice("abcdef") for _ in range(rng.randint(2, 6)))
        for _ in range(600)
    ]
    pairs = [(w, w) for w in words]
    loader = pair_loader(pairs, batch_size=32)
    src_vocab, tgt_vocab = loader.dataset.src_vocab, loader.dataset.tgt_vocab
    torch.manual_seed(0)
    config = TransformerConfig.for_vocabs(
        src_vocab, tgt_vocab, d_model=32, n_heads=2, d_ff=64, dropout=0.0
    )
    model = Transformer(config)
    train(model, loader, steps=300, lr=3e-3, progress=False)
    result = evaluate(
        model, pair_loader(pairs[:100], src_vocab, tgt_vocab, shuffle=False)
    )
    assert result["exact_match"] > 0.5, result
