"""Exact resume: every random state and the training state in one file (chapter 14).

A run that stops at step s and resumes must continue as if it had never stopped:
the same batches, the same dropout masks, the same optimizer moments and learning
rate. That takes more than the weights: the optimizer's and scheduler's state, the
gradient scaler's, the data reader's position, and the random generators of
Python, NumPy and torch (and CUDA) on every rank. :func:`save_train_state` writes
them atomically (chapter 9's :func:`~transformer.checkpoint.atomic_save`), and
:func:`load_train_state` reads them back with ``torch.load(weights_only=True)``: a
file of tensors and plain values, never code.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from transformer.checkpoint import atomic_save
from transformer.distributed import all_gather

__all__ = [
    "STATE_FORMAT",
    "get_rng_state",
    "load_train_state",
    "save_train_state",
    "set_rng_state",
]

STATE_FORMAT = "transformer-train-state"
#: Settings that may change between a run and its resumption.
MAY_CHANGE = ("steps", "resume", "stop_after", "save_every", "log_every", "out")


def get_rng_state() -> dict[str, Any]:
    """Python's, NumPy's, torch's (and CUDA's) random states, as plain values.

    NumPy's state is an array, which ``weights_only`` loading refuses, so its key
    is stored as a tensor.
    """
    np_state = np.random.get_state(legacy=False)
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`get_rng_state` returned."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    key = n["key"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", key, n["pos"], n["has_gauss"], n["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_train_state(path: str | os.PathLike[str], parts: dict[str, Any]) -> None:
    """Write ``parts`` and every rank's random state to ``path``, atomically.

    Every rank must call it (each contributes its random state); rank 0 writes.

    Args:
        path: the file, usually ``out/state.pt``.
        parts: ``config`` (a dict), ``step``, and the state dicts to restore.
    """
    rng = all_gather(get_rng_state())  # each rank's own
    if not dist.is_initialized() or dist.get_rank() == 0:
        atomic_save({**parts, "format": STATE_FORMAT, "rng": rng}, path)


def load_train_state(
    path: str | os.PathLike[str], config: dict[str, Any], world_size: int
) -> dict[str, Any]:
    """Read a state written by :func:`save_train_state` and check it fits this run.

    Args:
        path: the file.
        config: this run's settings; all but ``MAY_CHANGE`` must equal the
            saved ones, or the resumed run would not be the same run.
        world_size: this run's ranks; it must be the number that saved.

    Raises:
        ValueError: not a training state, other settings, or another world size.
    """
    path = Path(path)
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise ValueError(f"{str(path)!r} is not a training state of this package")
    saved = dict(state["config"])
    fixed = {k: v for k, v in config.items() if k not in MAY_CHANGE}
    differs = {k: (saved.get(k), v) for k, v in fixed.items() if saved.get(k) != v}
    if differs:
        raise ValueError(f"cannot resume with other settings; (saved, now) = {differs}")
    ranks = len(state["rng"])
    if ranks != world_size:
        raise ValueError(
            f"{str(path)!r} was saved by {ranks} ranks; resume with as many "
            f"(this run has {world_size})"
        )
    return state
