"""Beam search against exhaustive search on small random language models.

With a beam wide enough to hold every prefix, beam search must find exactly the
output that an exhaustive search finds: the best length-normalised score over every
sequence that ends with eos, or that reaches ``max_len``. Two plausible bugs break
this: stopping a source with a bound computed from the current length instead of
``max_len`` (a later, longer hypothesis could still win once normalised), and
keeping only K candidates per step instead of 2K (the ones that end with eos would
crowd out the alive beams).
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import nn

from transformer.beam import beam_search

PAD, BOS, EOS = 0, 1, 2


class RandomPrefixLM(nn.Module):
    """A fixed random next-token distribution for every prefix (no learning
    involved)."""

    pad_id = PAD

    def __init__(self, vocab: int, seed: int, sharpness: float = 2.0) -> None:
        super().__init__()
        self.vocab = vocab
        self.generator = torch.Generator().manual_seed(seed)
        self.sharpness = sharpness
        self.table: dict[tuple[int, ...], torch.Tensor] = {}
        self.dummy = nn.Parameter(torch.zeros(1))

    def logits_for(self, prefix: tuple[int, ...]) -> torch.Tensor:
        if prefix not in self.table:
            logits = torch.randn(self.vocab, generator=self.generator) * self.sharpness
            logits[PAD] = logits[BOS] = -1e9  # never emitted
            self.table[prefix] = logits
        return self.table[prefix]

    def start(self, src: torch.Tensor) -> list[tuple[int, ...]]:
        return [() for _ in range(src.size(0))]

    def step(self, prev: torch.Tensor, state: list[tuple[int, ...]]):
        new = [p + (int(t),) if int(t) != BOS else p for p, t in zip(state, prev)]
        return torch.stack([self.logits_for(p) for p in new]), new

    def reorder_state(self, state, index: torch.Tensor):
        return [state[int(i)] for i in index]


def exhaustive(
    model: RandomPrefixLM, max_len: int, alpha: float
) -> tuple[list[int], float]:
    best: tuple[list[int], float] = ([], -math.inf)
    words = range(EOS + 1, model.vocab)  # real tokens
    for length in range(1, max_len + 1):
        for body in itertools.product(words, repeat=length - 1):
            for last in (EOS, *words):
                seq = list(body) + [last]
                if last != EOS and length < max_len:
                    continue  # unfinished and still within budget: not an output
                logp, prefix = 0.0, ()
                for tok in seq:
                    logp += float(torch.log_softmax(model.logits_for(prefix), -1)[tok])
                    prefix = prefix + (tok,)
                score = logp / length**alpha
                if score > best[1]:
                    best = (seq, score)
    return best


@pytest.mark.parametrize("alpha", [0.0, 0.6, 1.0, 2.0])
@pytest.mark.parametrize("seed", range(6))
def test_a_wide_beam_finds_the_exhaustive_optimum(seed: int, alpha: float) -> None:
    vocab, max_len = 5, 4  # 3 real tokens + eos: 3^3 = 27 alive prefixes at most
    model = RandomPrefixLM(vocab, seed)
    want, want_score = exhaustive(model, max_len, alpha)
    out, score = beam_search(
        model,
        torch.zeros(1, 3, dtype=torch.long),
        max_len,
        BOS,
        EOS,
        PAD,
        beam_size=27,
        length_penalty=alpha,
        return_scores=True,
    )
    got = [t for t in out[0].tolist() if t != PAD]
    assert got == want, (got, want)
    assert float(score[0]) == pytest.approx(want_score, abs=1e-5)


def reference_beam(model: RandomPrefixLM, max_len: int, K: int, alpha: float):
    """The same search written plainly for one source, without early stopping."""
    alive: list[tuple[float, list[int]]] = [(0.0, [])]
    finished: list[tuple[float, list[int]]] = []
    for t in range(1, max_len + 1):
        cands = []
        for score, seq in alive:
            log_p = torch.log_softmax(model.logits_for(tuple(seq)), -1)
            cands += [(score + float(log_p[v]), seq + [v]) for v in range(model.vocab)]
        cands.sort(key=lambda c: -c[0])
        top = cands[: 2 * K]
        for score, seq in top[:K]:
            if seq[-1] == EOS or t == max_len:
                finished.append((score / t**alpha, seq))
        alive = [c for c in top if c[1][-1] != EOS][:K]
    return max(finished, key=lambda f: f[0])


@pytest.mark.parametrize("K", [2, 3])
@pytest.mark.parametrize("alpha", [0.0, 1.0, 2.0, 3.0])
@pytest.mark.parametrize("seed", range(8))
def test_beam_search_equals_a_plain_search_without_early_stopping(
    seed, alpha, K
) -> None:
    # Stopping early must never change the answer, and the batched search must keep
    # 2K candidates per step so that beams ending with eos do not crowd out alive ones.
    # Sharp distributions and long outputs: both bugs above change some of these
    # answers.
    model = RandomPrefixLM(5, seed, sharpness=3.0)
    want_score, want = reference_beam(model, 8, K, alpha)
    out, score = beam_search(
        model,
        torch.zeros(1, 3, dtype=torch.long),
        8,
        BOS,
        EOS,
        PAD,
        beam_size=K,
        length_penalty=alpha,
        return_scores=True,
    )
    assert [t for t in out[0].tolist() if t != PAD] == want
    assert float(score[0]) == pytest.approx(want_score, abs=1e-5)
