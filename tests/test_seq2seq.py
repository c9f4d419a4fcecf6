"""The context-vector encoder-decoder and the bottleneck experiment."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from torch import nn

from transformer.bottleneck import (
    BOTTLENECK,
    BottleneckSetup,
    exact_match_by_length,
    run_bottleneck,
)
from transformer.decoding import greedy_decode
from transformer.seq2seq import Seq2Seq, context_vector
from transformer.tasks import load_task
from transformer.training import evaluate, train
from transformer.utils import seed_everything

V_SRC, V_TGT, PAD, BOS, EOS = 9, 11, 0, 1, 2


def small(cell: str = "gru", **kwargs) -> Seq2Seq:
    torch.manual_seed(0)
    return Seq2Seq(V_SRC, V_TGT, emb_size=8, hidden_size=12, cell=cell, **kwargs)


def batch(
    B: int = 3, S: int = 5, T: int = 6, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(4, V_SRC, (B, S), generator=g)
    tgt_in = torch.randint(4, V_TGT, (B, T), generator=g)
    tgt_in[:, 0] = BOS
    return src, tgt_in


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_every_cell_gives_the_protocol_shapes(cell: str) -> None:
    model = small(cell, num_layers=2)
    src, tgt_in = batch()
    assert model(src, tgt_in).shape == (3, 6, V_TGT)
    state = model.start(src)
    assert state.context.shape == (3, 12)
    logits, state = model.step(tgt_in[:, 0], state)
    assert logits.shape == (3, V_TGT)
    out = greedy_decode(model, src, 7, BOS, EOS, PAD)
    assert out.shape[0] == 3 and 1 <= out.shape[1] <= 7


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_teacher_forced_forward_equals_stepping_with_the_true_tokens(cell: str) -> None:
    model = small(cell).eval()
    src, tgt_in = batch()
    state = model.start(src)
    stepped = []
    for t in range(tgt_in.size(1)):
        logits, state = model.step(tgt_in[:, t], state)
        stepped.append(logits)
    torch.testing.assert_close(model(src, tgt_in), torch.stack(stepped, 1))


def test_ratio_one_always_reads_the_truth_even_in_training() -> None:
    model = small(teacher_forcing_ratio=1.0)
    src, tgt_in = batch()
    model.train()
    in_training = model(src, tgt_in)
    model.eval()
    torch.testing.assert_close(in_training, model(src, tgt_in))
    changed = tgt_in.clone()
    changed[:, 2] = 4 + (changed[:, 2] - 3) % (V_TGT - 4)  # another real token
    model.train()
    after = model(src, changed)
    # The logits at position t are computed after reading tgt_in[:, t]: positions
    # 0 and 1 cannot see the change, position 2 reads the new token.
    torch.testing.assert_close(after[:, :2], in_training[:, :2])
    assert not torch.allclose(after[:, 2], in_training[:, 2])


def test_ratio_zero_free_runs_on_its_own_predictions_in_training() -> None:
    model = small(teacher_forcing_ratio=0.0).train()
    src, tgt_in = batch()
    free = model(src, tgt_in)
    # The same computation by hand: always feed back the previous argmax.
    state, prev, by_hand = model.start(src), tgt_in[:, 0], []
    for _ in range(tgt_in.size(1)):
        logits, state = model.step(prev, state)
        by_hand.append(logits)
        prev = logits.argmax(-1)
    torch.testing.assert_close(free, torch.stack(by_hand, 1))
    # So the true tokens after <bos> are never read...
    other = tgt_in.clone()
    other[:, 1:] = 4
    torch.testing.assert_close(model(src, other), free)
    # ...and gradients still flow (the argmax choice itself is not differentiated).
    free.sum().backward()
    assert model.decoder.out.weight.grad is not None


def test_ratio_zero_applies_only_in_training_mode() -> None:
    model = small(teacher_forcing_ratio=0.0).eval()
    src, tgt_in = batch()
    forced = replace_ratio(model, 1.0)(src, tgt_in)
    torch.testing.assert_close(model(src, tgt_in), forced)


def replace_ratio(model: Seq2Seq, ratio: float) -> Seq2Seq:
    model.teacher_forcing_ratio = ratio
    return model


def test_intermediate_ratio_mixes_truth_and_predictions() -> None:
    model = small(teacher_forcing_ratio=0.5).train()
    src, tgt_in = batch(B=64, T=8)
    torch.manual_seed(1)
    mixed = model(src, tgt_in)
    forced = replace_ratio(model, 1.0)(src, tgt_in)
    free = replace_ratio(model, 0.0)(src, tgt_in)
    same_as_forced = torch.isclose(mixed, forced).all(-1)[:, 1:]  # (B, T-1)
    same_as_free = torch.isclose(mixed, free).all(-1)[:, 1:]
    assert 0.1 < same_as_forced.float().mean() < 0.9
    assert 0.05 < same_as_free.float().mean() < 0.9


def test_context_does_not_depend_on_padding() -> None:
    model = small("lstm").eval()
    src = torch.tensor([[5, 6, 7, PAD, PAD], [8, 5, 6, 7, 8]])
    padded_more = torch.cat([src, torch.full((2, 4), PAD)], dim=1)
    alone = model.start(src[:1, :3])
    torch.testing.assert_close(model.start(src).context[:1], alone.context)
    torch.testing.assert_close(
        model.start(padded_more).context, model.start(src).context
    )
    assert context_vector(model.start(src).hidden).shape == (2, 12)


def test_reorder_state_selects_rows_like_encoding_them_again() -> None:
    model = small("lstm").eval()
    src, _ = batch(B=4)
    index = torch.tensor([2, 2, 0])
    reordered = model.reorder_state(model.start(src), index)
    fresh = model.start(src[index])
    torch.testing.assert_close(reordered.context, fresh.context)
    torch.testing.assert_close(reordered.hidden[0], fresh.hidden[0])
    torch.testing.assert_close(reordered.hidden[1], fresh.hidden[1])


def test_token_ids_outside_the_vocabulary_raise_value_error() -> None:
    model = small()
    src, tgt_in = batch()
    with pytest.raises(
        ValueError, match=r"src holds token id 9, but the source vocabulary has 9"
    ):
        model(torch.where(src == 5, V_SRC, src), tgt_in)
    with pytest.raises(ValueError, match="target vocabulary has 11 ids"):
        model(src, torch.full_like(tgt_in, V_TGT + 3))
    with pytest.raises(ValueError, match="token id -6"):
        model.start(src - 10)
    with pytest.raises(ValueError, match="target vocabulary"):
        model.step(torch.tensor([V_TGT, 4, 4]), model.start(src))


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda m, s, t: m(s[0], t), ValueError, r"unsqueeze\(0\)"),
        (lambda m, s, t: m(s.float(), t), TypeError, "torch.long"),
        (lambda m, s, t: m(s[:2], t), ValueError, "same batch size"),
        (lambda m, s, t: m.step(t, m.start(s)), ValueError, r"prev must be a \(B,\)"),
    ],
)
def test_malformed_inputs_raise_clear_errors(call, error, match) -> None:
    model = small()
    src, tgt_in = batch()
    with pytest.raises(error, match=match):
        call(model, src, tgt_in)


def test_bad_construction_arguments() -> None:
    with pytest.raises(ValueError, match="cell must be one of"):
        Seq2Seq(5, 5, cell="transformer")
    with pytest.raises(ValueError, match="teacher_forcing_ratio"):
        Seq2Seq(5, 5, teacher_forcing_ratio=1.5)
    with pytest.raises(ValueError, match="hidden_size must be a positive int"):
        Seq2Seq(5, 5, hidden_size=0)
    with pytest.raises(ValueError, match="min_len <= max_len"):
        BottleneckSetup(min_len=8, max_len=4)


def test_learns_a_tiny_copy_task_in_seconds() -> None:
    # About 2 s of CPU time: 450 steps of batch 50 on 1-4 digit strings. Seeds 0-2
    # all reach 96-100% exact match on held-out sources.
    data = load_task(
        "copy", n_train=3000, n_val=200, n_test=0, min_len=1, max_len=4, seed=0
    )
    seed_everything(0)
    model = Seq2Seq(
        len(data.src_vocab), len(data.tgt_vocab), emb_size=16, hidden_size=48
    )
    history = train(
        model, data.loader("train", batch_size=50), steps=450, lr=1e-2, progress=False
    )
    metrics = evaluate(model, data.loader("val", batch_size=100))
    assert history.train_loss[-1] < 0.3 * history.train_loss[0]
    assert metrics["exact_match"] > 0.9, metrics


class CopyByStep(nn.Module):
    """Copies its source perfectly, through the start/step protocol only."""

    pad_id = PAD

    def __init__(self) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))

    def start(self, src):
        return src, 0

    def step(self, prev, state):
        src, t = state
        lengths = (src != PAD).sum(1)
        token = src[:, min(t, src.size(1) - 1)]
        token = torch.where(lengths <= t, torch.full_like(token, EOS), token)
        return nn.functional.one_hot(token, 14).float(), (src, t + 1)


def test_exact_match_by_length_groups_and_scores() -> None:
    data = load_task(
        "copy", n_train=0, n_val=0, n_test=60, min_len=2, max_len=5, seed=1
    )
    result = exact_match_by_length(
        CopyByStep(), data.test, data.src_vocab, data.tgt_vocab
    )
    assert result.lengths == sorted({len(s) for s, _ in data.test})
    assert sum(result.counts) == 60
    assert result.exact_match == [1.0] * len(result.lengths)
    assert result.token_accuracy == [1.0] * len(result.lengths)
    assert result.as_dict()[result.lengths[0]] == 1.0


def test_run_bottleneck_trains_and_reports_every_length() -> None:
    setup = replace(
        BOTTLENECK,
        min_len=2,
        max_len=5,
        n_train=200,
        n_val=0,
        n_test=40,
        steps=3,
        hidden_size=8,
    )
    result = run_bottleneck(setup=setup, device="cpu")
    assert result.history.total_steps == 3
    assert result.by_length.lengths == [2, 3, 4, 5]
    assert sum(result.by_length.counts) == 40
    assert all(0.0 <= a <= 1.0 for a in result.by_length.exact_match)
    assert result.n_parameters == sum(p.numel() for p in result.model.parameters())
