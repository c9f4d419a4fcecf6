"""Tests of the chapter 9 decoding additions: key/value cache and beam search."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from transformer.beam import beam_search, greedy_decode_with_cache
from transformer.config import TransformerConfig
from transformer.decoding import greedy_decode
from transformer.fast import FastDecoding, FastDecodingState
from transformer.model import Transformer

BOS, EOS, PAD = 1, 2, 0


def _model(seed: int = 0, **kw: object) -> Transformer:
    torch.manual_seed(seed)
    config = TransformerConfig(
        src_vocab_size=15,
        tgt_vocab_size=12,
        d_model=32,
        n_heads=4,
        n_encoder_layers=2,
        n_decoder_layers=2,
        d_ff=64,
        dropout=0.1,
        **kw,  # type: ignore[arg-type]
    )
    return Transformer(config)


def _src(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(4, 15, (5, 9), generator=g)
    src[1, 6:] = PAD
    src[3, 2:] = PAD
    return src


def _assert_steps_agree(models: list, states: list, n_steps: int) -> list:
    """Feed every (model, state) the same tokens (the first one's greedy choices) and
    check that all give the same logits at every step; returns the final states."""
    first = states[0].inner if isinstance(states[0], FastDecodingState) else states[0]
    prev = torch.full((first.memory.shape[0],), BOS)
    for _ in range(n_steps):
        outs = [m.step(prev, s) for m, s in zip(models, states)]
        states = [s for _, s in outs]
        for logits, _ in outs[1:]:
            torch.testing.assert_close(logits, outs[0][0], atol=1e-5, rtol=1e-5)
        prev = outs[0][0].argmax(-1)
    return states


@pytest.mark.parametrize("positional", ["sinusoidal", "rope", "alibi"])
@pytest.mark.parametrize("norm_first", [False, True])
def test_cached_greedy_equals_uncached(positional: str, norm_first: bool) -> None:
    model = _model(positional=positional, norm_first=norm_first)
    src = _src()
    fast = greedy_decode_with_cache(model, src, 20, BOS, EOS, PAD, use_cache=True)
    slow = greedy_decode_with_cache(model, src, 20, BOS, EOS, PAD, use_cache=False)
    assert torch.equal(fast, slow)
    # default: cache
    assert torch.equal(fast, greedy_decode(model, src, 20, BOS, EOS, PAD))
    assert model.training  # the mode is given back


def test_cached_step_logits_equal_uncached() -> None:
    model = _model(1).eval()
    src = _src(1)
    with torch.no_grad():
        a, b = model.start(src, use_cache=True), model.start(src, use_cache=False)
        assert a.caches is not None and b.caches is None
        a, b = _assert_steps_agree([model, model], [a, b], 12)
        assert len(a.caches[0][0]) == 12  # one cached key per fed token
        assert len(a.caches[0][1]) == src.shape[1]  # cross-attention: the source, once


@pytest.mark.parametrize("use_cache", [True, False])
def test_beam_size_one_is_greedy(use_cache: bool) -> None:
    model = _model(2)
    src = _src(2)
    greedy = greedy_decode_with_cache(
        model, src, 15, BOS, EOS, PAD, use_cache=use_cache
    )
    beam = beam_search(
        model,
        src,
        15,
        BOS,
        EOS,
        PAD,
        beam_size=1,
        length_penalty=0.0,
        use_cache=use_cache,
    )
    assert torch.equal(beam, greedy)


def _sequence_log_prob(
    model: Transformer, src: torch.Tensor, out: torch.Tensor
) -> torch.Tensor:
    """Sum of log p(token) of each row of ``out`` (up to and including eos)."""
    tgt_in = torch.cat([torch.full((out.shape[0], 1), BOS), out[:, :-1]], 1)
    with torch.no_grad():
        log_p = model.eval()(src, tgt_in).log_softmax(-1)
    picked = log_p.gather(-1, out[..., None]).squeeze(-1)
    return (picked * (out != PAD)).sum(1)


def test_beam_scores_are_the_model_log_probabilities() -> None:
    model = _model(3)
    src = _src(3)
    out, scores = beam_search(
        model,
        src,
        12,
        BOS,
        EOS,
        PAD,
        beam_size=3,
        length_penalty=0.0,
        return_scores=True,
    )
    torch.testing.assert_close(
        scores, _sequence_log_prob(model, src, out), atol=1e-4, rtol=1e-4
    )
    greedy = greedy_decode(model, src, 12, BOS, EOS, PAD)
    # every greedy output that ended was a candidate the beam could keep
    ended = (greedy == EOS).any(1)
    g_scores = _sequence_log_prob(model, src, greedy)
    assert bool((scores[ended] >= g_scores[ended] - 1e-4).all())


class Crafted(nn.Module):
    """A decoder whose next-token distribution is a fixed table of the previous token.

    From bos: token 3 with p=0.55, token 4 with p=0.45. After 3: ten tokens 5..14
    equally likely (p=0.1 each, eos never). After 4 and after 5..14: eos (rows are
    normalised). Greedy takes 3 and pays log 0.1 on the next step; the best sequence is
    4, eos.
    """

    pad_id = PAD

    def __init__(self) -> None:
        super().__init__()
        V = 15
        table = torch.full((V, V), 1e-9)
        table[BOS, 3], table[BOS, 4] = 0.55, 0.45
        table[3, 5:15] = 0.1
        table[4, EOS] = 1.0
        table[5:15, EOS] = 1.0
        table[EOS, EOS] = table[PAD, EOS] = 1.0
        self.register_buffer("log_table", (table / table.sum(1, keepdim=True)).log())

    def start(self, src: torch.Tensor) -> torch.Tensor:
        return torch.zeros(src.shape[0], dtype=torch.long)

    def step(
        self, prev: torch.Tensor, state: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.log_table[prev], state

    def reorder_state(self, state: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        return state.index_select(0, index)


def test_beam_search_beats_greedy_on_crafted_model() -> None:
    model = Crafted()
    src = torch.zeros(2, 3, dtype=torch.long)
    greedy = greedy_decode(model, src, 5, BOS, EOS, PAD)
    assert greedy[0].tolist() == [3, 5, EOS]  # a tie among 5..14 goes to the first
    beam, score = beam_search(
        model,
        src,
        5,
        BOS,
        EOS,
        PAD,
        beam_size=2,
        length_penalty=0.0,
        return_scores=True,
    )
    assert beam[0].tolist() == [4, EOS]
    greedy_score = math.log(0.55) + math.log(0.1)
    assert math.isclose(float(score[0]), math.log(0.45), rel_tol=1e-5)
    assert float(score[0]) > greedy_score


def test_length_penalty_changes_preferences() -> None:
    """With alpha = 0 short outputs win; a large alpha favours the longer one."""

    class TwoWays(Crafted):
        def __init__(self) -> None:
            super().__init__()
            V = 15
            table = torch.full((V, V), 1e-9)
            table[BOS, EOS], table[BOS, 3] = 0.4, 0.6
            table[3, 4] = 1.0
            table[4, 5] = 1.0
            table[5, EOS] = 0.5
            table[5, 6] = 0.5
            table[6, EOS] = 1.0
            table[EOS, EOS] = table[PAD, EOS] = 1.0
            self.log_table = (table / table.sum(1, keepdim=True)).log()

    model = TwoWays()
    src = torch.zeros(1, 2, dtype=torch.long)
    short = beam_search(model, src, 8, BOS, EOS, PAD, beam_size=3, length_penalty=0.0)
    long = beam_search(model, src, 8, BOS, EOS, PAD, beam_size=3, length_penalty=1.0)
    assert short[0].tolist() == [EOS]  # log 0.4 > log 0.3
    assert long[0].tolist() in ([3, 4, 5, EOS], [3, 4, 5, 6, EOS])


def test_beam_search_errors() -> None:
    model = _model()
    with pytest.raises(ValueError, match="beam_size"):
        beam_search(model, _src(), 5, BOS, EOS, PAD, beam_size=0)
    with pytest.raises(ValueError, match="length_penalty"):
        beam_search(model, _src(), 5, BOS, EOS, PAD, length_penalty=-1.0)
    with pytest.raises(TypeError, match="reorder_state"):
        beam_search(nn.Linear(2, 2), _src(), 5, BOS, EOS, PAD)


def test_early_unlikely_endings_do_not_stop_the_search() -> None:
    """Short, unlikely hypotheses that finish first must not end the search early."""

    class EarlyEos(Crafted):
        def __init__(self) -> None:
            super().__init__()
            V = 15
            table = torch.full((V, V), 1e-9)
            table[BOS, 3], table[BOS, EOS], table[BOS, 4] = 0.9, 0.06, 0.04
            table[3, 5], table[3, EOS] = 0.9, 0.1  # a second short ending
            table[5, 7], table[5, 8] = 0.95, 0.05
            table[4, EOS] = table[7, EOS] = table[8, EOS] = 1.0
            table[EOS, EOS] = table[PAD, EOS] = 1.0
            self.log_table = (table / table.sum(1, keepdim=True)).log()

    model = EarlyEos()
    src = torch.zeros(1, 2, dtype=torch.long)
    for alpha in (0.0, 0.6):
        out = beam_search(
            model, src, 6, BOS, EOS, PAD, beam_size=2, length_penalty=alpha
        )
        assert out[0].tolist() == [3, 5, 7, EOS], (alpha, out)
    assert greedy_decode(model, src, 6, BOS, EOS, PAD)[0].tolist() == [3, 5, 7, EOS]


# ------------------------------------------------------- the one-position inference
# step
SCHEMES = ["none", "sinusoidal", "learned", "relative", "rope", "t5", "alibi"]


def _distinct_norms(model: Transformer) -> Transformer:
    """Give every LayerNorm its own scale and shift, so that mixing them up shows."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.LayerNorm):
                m.weight.copy_(1 + 0.5 * torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(0.5 * torch.randn(m.bias.shape, generator=g))
    return model


@pytest.mark.parametrize("positional", SCHEMES)
@pytest.mark.parametrize("norm_first", [False, True])
def test_fast_path_gives_the_logits_of_the_teaching_path(
    positional: str, norm_first: bool
) -> None:
    """Three ways to get the next-token logits agree at every step: the fast
    one-position path (weights gathered once), the general layers with a cache, and no
    cache at all."""
    model = _model(4, positional=positional, norm_first=norm_first, activation="gelu")
    model = _distinct_norms(model).eval()
    fast = FastDecoding(model)
    src = _src(4)  # rows 1 and 3 are padded: the cross-attention mask matters
    with torch.no_grad():
        states = [fast.start(src), model.start(src), model.start(src, use_cache=False)]
        _assert_steps_agree([fast, model, model], states, 10)


def test_fast_path_without_biases_and_with_final_norm() -> None:
    model = _distinct_norms(
        _model(5, bias=False, norm_first=True, tie_output=True)
    ).eval()
    assert model.decoder.norm is not None  # pre-LN stacks end with a norm
    fast, src = FastDecoding(model), _src(5)
    with torch.no_grad():
        _assert_steps_agree([fast, model], [fast.start(src), model.start(src)], 6)


def test_fast_greedy_and_beam_give_the_teaching_paths_tokens() -> None:
    model = _model(7).eval()
    fast, src = FastDecoding(model), _src(7)
    assert torch.equal(greedy_decode(fast, src, 15), greedy_decode(model, src, 15))
    a, sa = beam_search(fast, src, 15, beam_size=3, return_scores=True)
    b, sb = beam_search(model, src, 15, beam_size=3, return_scores=True)
    assert torch.equal(a, b)
    torch.testing.assert_close(sa, sb)


def test_value_vectors_are_refused_by_the_fast_path() -> None:
    """Shaw et al.'s value term needs the weights themselves: the model's own step."""
    model = _model(8, positional="relative", positional_options={"values": True}).eval()
    with pytest.raises(ValueError, match="value vectors"):
        FastDecoding(model)
    src = _src(8)
    with torch.no_grad():
        _assert_steps_agree(
            [model, model], [model.start(src), model.start(src, use_cache=False)], 5
        )


def test_fast_path_refuses_training_mode() -> None:
    model = _model(6)  # training mode: dropout is active
    with pytest.raises(RuntimeError, match="eval"):
        FastDecoding(model).start(_src(6))


@pytest.mark.parametrize("use_fast", [False, True])
def test_a_fed_pad_is_hidden_as_teacher_forcing_hides_it(use_fast: bool) -> None:
    """Bug: a generated <pad> before <eos> was masked by forward but attended by step,
    so beam scores disagreed with teacher-forced rescoring of the same tokens."""
    model = _model(9).eval()
    decoder = FastDecoding(model) if use_fast else model
    src = _src(9)
    fed = torch.tensor([BOS, 5, PAD, 7, 6])  # a pad in the middle of the fed tokens
    tgt_in = fed.expand(src.shape[0], -1)  # (B, 5)
    with torch.no_grad():
        want = torch.log_softmax(model(src, tgt_in), -1)  # (B, 5, V), teacher forced
        state = decoder.start(src)
        for t in range(len(fed)):
            logits, state = decoder.step(tgt_in[:, t], state)
            got = torch.log_softmax(logits, -1)
            if t != 2:  # the pad position's own output is never used
                torch.testing.assert_close(got, want[:, t], atol=1e-5, rtol=1e-5)
        uncached = model.start(src, use_cache=False)
        for t in range(len(fed)):
            logits, uncached = model.step(tgt_in[:, t], uncached)
        torch.testing.assert_close(
            torch.log_softmax(logits, -1), want[:, -1], atol=1e-5, rtol=1e-5
        )


def test_fast_path_carries_the_fed_padding_mask_per_row_and_through_reorder() -> None:
    """The fast step keeps the padding mask in its state instead of recomputing it:
    rows that feed padding at different steps, and rows selected and repeated by
    ``reorder_state`` after that, must still match the model's own cached step."""
    model = _model(10).eval()
    fast = FastDecoding(model)
    src = _src(10)
    B = src.shape[0]
    fed = torch.randint(3, 12, (B, 7), generator=torch.Generator().manual_seed(10))
    fed[:, 0] = BOS
    fed[0, 2] = PAD  # row 0 pads early, row 1 late, the others never
    fed[1 % B, 5] = PAD
    with torch.no_grad():
        a, b = fast.start(src), model.start(src)
        assert a.keys is None  # nothing fed yet: no mask is built
        for t in range(7):
            la, a = fast.step(fed[:, t], a)
            lb, b = model.step(fed[:, t], b)
            torch.testing.assert_close(la, lb, atol=1e-5, rtol=1e-5)
            if t == 3:  # after row 0's pad: reorder and repeat rows
                index = torch.arange(B - 1, -1, -1).repeat_interleave(2)[:B]
                a, b = fast.reorder_state(a, index), model.reorder_state(b, index)
                fed = fed.index_select(0, index)
        assert a.keys is not None and a.keys.shape == (B, 7)


@pytest.mark.parametrize("beam_size", [2, 4])
def test_cached_beam_search_equals_uncached(beam_size: int) -> None:
    """Beam search reorders the caches (preallocated storage) at every step."""
    model = _model(7)
    src = _src(7)
    kw = dict(beam_size=beam_size, length_penalty=0.6, return_scores=True)
    fast, s_fast = beam_search(model, src, 14, BOS, EOS, PAD, use_cache=True, **kw)
    slow, s_slow = beam_search(model, src, 14, BOS, EOS, PAD, use_cache=False, **kw)
    assert torch.equal(fast, slow)
    torch.testing.assert_close(s_fast, s_slow, atol=1e-4, rtol=1e-4)
