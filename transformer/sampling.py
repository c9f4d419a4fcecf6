"""Choosing the next token from a language model's logits.

A language model outputs, at the last position, one score (logit) per token
of the vocabulary. Generation turns those scores into one chosen token, again
and again. This module holds the standard ways to do it:

* **greedy**: take the highest score (temperature 0 below);
* **temperature**: divide the logits by ``t`` before the softmax; ``t < 1``
  sharpens the distribution towards greedy, ``t > 1`` flattens it towards
  uniform (Ackley, Hinton & Sejnowski 1985 for the Boltzmann form);
* **top-k**: sample only among the ``k`` highest-scoring tokens (Fan, Lewis &
  Dauphin 2018);
* **top-p** or nucleus sampling: sample only among the smallest set of
  tokens whose probabilities add up to at least ``p`` (Holtzman et al. 2020,
  "The Curious Case of Neural Text Degeneration").

The filters set the logits of excluded tokens to ``-inf``, so a softmax
gives them probability exactly 0 and the kept ones are renormalised. They are
applied in the order temperature, top-k, top-p, as in Hugging Face's
``generate``.

**Ties.** Both filters keep every token whose logit equals that of the last
token they keep, so the kept set never depends on how a sort orders equal
values; with ties the set can be larger than ``k`` (or than the minimal
nucleus). Hugging Face's ``TopKLogitsWarper`` keeps ties the same way.

Shape letters: B batch, V vocabulary size.
"""

from __future__ import annotations

import torch


def _check_logits(logits: torch.Tensor) -> None:
    if not isinstance(logits, torch.Tensor) or not logits.is_floating_point():
        kind = logits.dtype if isinstance(logits, torch.Tensor) else type(logits)
        raise ValueError(f"logits must be a floating-point tensor, got {kind}")
    if logits.dim() != 2:
        shape = tuple(logits.shape)
        raise ValueError(f"logits must have shape (B, V), got {shape}")
    if logits.shape[-1] == 0:
        raise ValueError("logits have an empty vocabulary dimension")


def _check_top_k(k: int) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"top_k must be an integer >= 1, got {k!r}")


def _check_top_p(p: float) -> None:
    if not 0.0 < p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1], got {p}")


def temperature_scale(logits: torch.Tensor, t: float) -> torch.Tensor:
    """Divide the logits by a temperature ``t > 0``.

    ``softmax(logits / t)``: at ``t = 1`` the model's own distribution; as
    ``t -> 0`` all the mass goes to the argmax; as ``t -> inf`` the
    distribution becomes uniform. The order of the tokens never changes.

    Args:
        logits: scores for every token.
        t: temperature, strictly positive (use greedy selection for 0).

    Shape:
        logits: (B, V) -> (B, V)

    Raises:
        ValueError: ``t <= 0`` or logits that are not (B, V) floats.
    """
    _check_logits(logits)
    if t <= 0:
        raise ValueError(f"temperature must be > 0 here (0 means greedy), got {t}")
    return logits / t


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the ``k`` highest logits of each row; the rest become ``-inf``.

    Tokens tied with the ``k``-th highest logit are all kept (see the module
    docstring). ``k`` larger than the vocabulary keeps everything.

    Args:
        logits: scores for every token.
        k: how many tokens to keep, at least 1.

    Shape:
        logits: (B, V) -> (B, V)

    Raises:
        ValueError: ``k < 1`` or logits that are not (B, V) floats.
    """
    _check_logits(logits)
    _check_top_k(k)
    k = min(k, logits.shape[-1])
    kth = torch.topk(logits, k, dim=-1).values[:, -1:]  # (B, 1)
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus filter: keep the smallest set of top tokens with mass >= ``p``.

    Sort the probabilities from largest to smallest and keep a token while
    the mass of the tokens before it is still below ``p``. The token that
    crosses ``p`` is kept, so the most likely token always survives, and
    ``p = 1`` keeps every token of non-zero probability. Excluded logits
    become ``-inf``.

    Args:
        logits: scores for every token.
        p: the probability mass to cover, in (0, 1].

    Shape:
        logits: (B, V) -> (B, V)

    Raises:
        ValueError: ``p`` outside (0, 1] or logits that are not (B, V) floats.
    """
    _check_logits(logits)
    _check_top_p(p)
    sorted_logits, _ = torch.sort(logits, dim=-1, descending=True)  # (B, V)
    probs = sorted_logits.softmax(dim=-1)  # (B, V)
    mass_before = probs.cumsum(dim=-1) - probs  # (B, V), mass of the tokens ahead
    keep = mass_before < p  # (B, V), a prefix of the sorted row, never empty
    n_kept = keep.sum(dim=-1, keepdim=True)  # (B, 1)
    last_kept = sorted_logits.gather(-1, n_kept - 1)  # (B, 1)
    return logits.masked_fill(logits < last_kept, float("-inf"))


def next_token_probs(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
) -> torch.Tensor:
    """The distribution :func:`sample_next` draws from.

    Temperature first, then top-k, then top-p, then a softmax. At
    temperature 0 it is a one-hot vector on the argmax (the first one, if
    several tokens share the highest logit).

    Shape:
        logits: (B, V) -> (B, V), rows summing to 1
    """
    _check_logits(logits)
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if torch.isnan(logits).any() or not torch.isfinite(logits).any(dim=-1).all():
        raise ValueError("every row of logits needs a finite value and no NaN")
    if top_k is not None:
        _check_top_k(top_k)
    if top_p is not None:
        _check_top_p(top_p)
    if temperature == 0:
        best = logits.argmax(dim=-1, keepdim=True)  # (B, 1)
        return torch.zeros_like(logits).scatter_(-1, best, 1.0)  # (B, V)
    scores = temperature_scale(logits, temperature)
    if top_k is not None:
        scores = top_k_filter(scores, top_k)
    if top_p is not None:
        scores = top_p_filter(scores, top_p)
    return scores.softmax(dim=-1)


@torch.no_grad()
def sample_next(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Choose one next token per row of logits.

    Args:
        logits: scores for every token at the last position.
        temperature: 0 picks the argmax (greedy); otherwise divides the
            logits before sampling.
        top_k: sample only among the ``top_k`` best tokens (``None``: all).
        top_p: sample only from the nucleus of mass ``top_p`` (``None``: all).
        generator: seeds the draw, for reproducible samples.

    Shape:
        logits: (B, V) -> (B,) token ids, ``int64``

    Raises:
        ValueError: a negative temperature, ``top_k < 1``, ``top_p`` outside
            (0, 1], or logits that are not (B, V) floats with a finite value
            in every row.
    """
    if temperature == 0:  # greedy: the argmax survives every filter anyway
        return next_token_probs(logits, 0.0, top_k, top_p).argmax(dim=-1)  # (B,)
    probs = next_token_probs(logits, temperature, top_k, top_p)  # (B, V)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)  # (B,)
