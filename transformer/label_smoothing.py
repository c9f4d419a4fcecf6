"""Label smoothing: a softer target for the cross-entropy (chapter 9).

Instead of putting all the target probability on the right token, give it
``1 - eps`` and spread ``eps`` uniformly over the vocabulary (Szegedy et al.,
2016; used by Vaswani et al., 2017, with eps = 0.1). The model is then never
pushed to make its logits infinitely confident::

    loss = (1 - eps) * NLL(y) + eps * mean_v(-log p_v)

Shape letters: B batch, T target length, V vocabulary.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

__all__ = [
    "label_smoothed_cross_entropy",
    "label_smoothing_loss",
]


def label_smoothed_cross_entropy(
    logits: torch.Tensor,
    targets: torch.Tensor,
    pad_id: int,
    smoothing: float = 0.1,
) -> torch.Tensor:
    """Cross-entropy against a smoothed target distribution, ignoring padding.

    Instead of a one-hot target the model is trained towards
    ``(1 - eps) * one_hot(y) + eps / V`` (Szegedy et al., 2016), which penalises
    over-confident logits. Per token this is::

        loss = (1 - eps) * (-log p_y) + eps * mean_v(-log p_v)

    the same definition as ``F.cross_entropy(..., label_smoothing=eps)``. Vaswani et
    al. (2017) used eps = 0.1: it "hurts perplexity, as the model learns to be more
    unsure, but improves accuracy and BLEU". Note the loss cannot reach zero: its
    minimum is the entropy of the smoothed target.

    Args:
        logits: unnormalised scores.
        targets: labels, ``pad_id`` where there is no token.
        pad_id: the padding id to ignore (no loss, no gradient, not counted).
        smoothing: eps in [0, 1); 0 gives
            :func:`~transformer.training.sequence_cross_entropy`.

    Returns:
        The mean loss per real token (0 for an all-padding batch).

    Shape:
        logits: (B, T, V), targets: (B, T) long -> scalar.
    """
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")
    if logits.dim() != 3:
        raise ValueError(f"logits must have shape (B, T, V), got {tuple(logits.shape)}")
    if targets.shape != logits.shape[:2]:
        raise ValueError(
            f"targets must have shape (B, T) = {tuple(logits.shape[:2])} to match the "
            f"logits, got {tuple(targets.shape)}"
        )
    if targets.dtype != torch.long:
        raise TypeError(
            f"targets must be token ids of dtype torch.long, got {targets.dtype}"
        )
    log_p = F.log_softmax(logits.float(), dim=-1)  # (B, T, V)
    real = targets != pad_id  # (B, T)
    safe = targets.masked_fill(~real, 0)  # any valid index; masked below
    nll = -log_p.gather(-1, safe.unsqueeze(-1)).squeeze(-1)  # (B, T)
    uniform = -log_p.mean(dim=-1)  # (B, T): cross-entropy with the uniform distribution
    per_token = ((1.0 - smoothing) * nll + smoothing * uniform) * real  # (B, T)
    return per_token.sum() / real.sum().clamp(min=1)


def label_smoothing_loss(pad_id: int, smoothing: float = 0.1) -> LossFn:
    """A ``loss_fn`` for :func:`~transformer.training.train`: label-smoothed
    cross-entropy ignoring ``pad_id``."""
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")

    def loss_fn(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return label_smoothed_cross_entropy(logits, targets, pad_id, smoothing)

    return loss_fn
