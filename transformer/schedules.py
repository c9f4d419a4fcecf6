"""Learning-rate schedules: warm-up, then inverse-square-root decay (chapter 9).

Vaswani et al. (2017, eq. 3) raise the learning rate linearly for ``warmup``
steps and then decay it as 1/sqrt(step)::

    lr(step) = factor * C^-0.5 * min(step^-0.5, step * warmup^-1.5)

:func:`warmup_inverse_sqrt_scheduler` wraps the same shape, scaled so that the
peak is the optimizer's own learning rate, as a ``torch.optim`` scheduler.
"""

from __future__ import annotations

import torch

__all__ = [
    "noam_rate",
    "warmup_inverse_sqrt",
    "warmup_inverse_sqrt_scheduler",
]


def noam_rate(
    step: int, d_model: int, warmup: int = 4000, factor: float = 1.0
) -> float:
    """Learning rate of "Attention Is All You Need" (section 5.3) at optimizer step
    ``step``.

    ``lr = factor * d_model^-0.5 * min(step^-0.5, step * warmup^-1.5)``: a linear
    warm-up for ``warmup`` steps, then decay with the inverse square root of the step.
    The peak, at ``step = warmup``, is ``factor / sqrt(d_model * warmup)``
    (7.0e-4 for the base model: d_model 512, 4000 warm-up steps).

    Args:
        step: optimizer step, counted from 1 (step 0 is treated as step 1).
        d_model: model size C.
        warmup: warm-up steps.
        factor: a constant multiplier (1 in the paper).
    """
    if warmup < 1 or d_model < 1:
        raise ValueError(f"warmup and d_model must be >= 1, got {warmup} and {d_model}")
    step = max(int(step), 1)
    return factor * d_model**-0.5 * min(step**-0.5, step * warmup**-1.5)


def warmup_inverse_sqrt(step: int, warmup: int) -> float:
    """The schedule's shape with its peak scaled to 1: ``min(step / warmup, sqrt(warmup
    / step))``.

    Multiply by a peak learning rate: the same curve as :func:`noam_rate`
    (``noam_rate(s, C, w) = warmup_inverse_sqrt(s, w) / sqrt(C * w)``).
    """
    if warmup < 1:
        raise ValueError(f"warmup must be >= 1, got {warmup}")
    step = max(int(step), 1)
    return min(step / warmup, (warmup / step) ** 0.5)


def warmup_inverse_sqrt_scheduler(
    optimizer: torch.optim.Optimizer, warmup: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` that scales each group's learning rate by
    :func:`warmup_inverse_sqrt`.

    The optimizer's ``lr`` becomes the *peak* learning rate, reached after ``warmup``
    steps. Pass the result as ``scheduler=`` to :func:`~transformer.training.train`
    (stepped once per optimizer step). With ``lr = 1 / sqrt(d_model * warmup)`` it is
    exactly the paper's schedule (:func:`noam_rate`).

    Args:
        optimizer: e.g. ``Adam(params, lr=peak, betas=(0.9, 0.98), eps=1e-9)`` as in the
            paper.
        warmup: warm-up steps (>= 1).
    """
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 1:
        raise ValueError(f"warmup must be a positive int, got {warmup!r}")
    # LambdaLR calls the function with 0 before the first step; optimizer step n uses
    # the value computed after n - 1 scheduler steps, so shift by one.
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: warmup_inverse_sqrt(s + 1, warmup)
    )
