"""Greedy decoding, checked with scripted models whose every output we choose."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from transformer.decoding import greedy_decode

PAD, BOS, EOS = 0, 1, 2
V = 8


class ScriptedModel(nn.Module):
    """Emits ``script[b, t]`` at step t, whatever it is fed, and records its inputs."""

    pad_id = PAD

    def __init__(self, script: list[list[int]]) -> None:
        super().__init__()
        self.script = torch.tensor(script)  # (B, N)
        self.fed: list[torch.Tensor] = []
        self.modes: list[bool] = []
        self.dummy = nn.Parameter(torch.zeros(1))

    def start(self, src: torch.Tensor) -> int:
        self.fed.clear()
        return 0

    def step(self, prev: torch.Tensor, t: int) -> tuple[torch.Tensor, int]:
        self.fed.append(prev.clone())
        self.modes.append(self.training)
        logits = torch.full((prev.size(0), V), -5.0)
        logits[torch.arange(prev.size(0)), self.script[:, t]] = 5.0
        return logits, t + 1


def test_each_row_stops_at_its_own_eos_and_pads_after() -> None:
    model = ScriptedModel(
        [
            [4, EOS, 5, 6, 7, 7],  # finishes at step 2
            [5, 6, 7, EOS, 4, 4],  # finishes at step 4
            [6, 6, EOS, 7, 7, 7],  # finishes at step 3
        ]
    )
    src = torch.full((3, 4), 5)
    out = greedy_decode(model, src, max_len=6, bos_id=BOS, eos_id=EOS, pad_id=PAD)
    expected = torch.tensor([[4, EOS, PAD, PAD], [5, 6, 7, EOS], [6, 6, EOS, PAD]])
    assert torch.equal(out, expected)  # stopped early: 4 steps, not 6


def test_feeds_bos_then_its_own_predictions_and_pad_after_eos() -> None:
    model = ScriptedModel([[4, EOS, 5, 6], [5, 6, 7, EOS]])
    greedy_decode(model, torch.ones(2, 3, dtype=torch.long), 4, BOS, EOS, PAD)
    fed = torch.stack(model.fed, dim=1)  # (B, steps)
    assert torch.equal(fed, torch.tensor([[BOS, 4, EOS, PAD], [BOS, 5, 6, 7]]))


def test_runs_to_max_len_without_eos() -> None:
    model = ScriptedModel([[4, 5, 6, 7, 4, 5]])
    out = greedy_decode(model, torch.ones(1, 2, dtype=torch.long), 3, BOS, EOS, PAD)
    assert out.tolist() == [[4, 5, 6]]


def test_decodes_in_eval_mode_and_restores_training_mode() -> None:
    model = ScriptedModel([[EOS]]).train()
    greedy_decode(model, torch.ones(1, 2, dtype=torch.long), 3, BOS, EOS, PAD)
    assert model.modes == [False]
    assert model.training


@pytest.mark.parametrize(
    ("src", "max_len", "error"),
    [
        (torch.ones(3, dtype=torch.long), 4, ValueError),  # not (B, S)
        (torch.ones(2, 3), 4, TypeError),  # float ids
        (torch.ones(2, 3, dtype=torch.long), 0, ValueError),  # no budget
    ],
)
def test_bad_arguments_raise_clear_errors(
    src: torch.Tensor, max_len: int, error: type
) -> None:
    with pytest.raises(error, match="src|max_len"):
        greedy_decode(ScriptedModel([[EOS]]), src, max_len, BOS, EOS, PAD)
