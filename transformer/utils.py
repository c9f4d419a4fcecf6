"""Device selection, seeding and small helpers shared by every chapter.

Every notebook asks :func:`get_device` for the device instead of hard-coding
one, so the same code runs on a laptop CPU, an NVIDIA GPU (CUDA) or an Apple
GPU (MPS).
"""

from __future__ import annotations

import json
import os
import platform
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

_VALID_DEVICES = ("cpu", "cuda", "mps")


def get_device(prefer: str | None = None) -> torch.device:
    """Return the best available device: CUDA, then MPS, then CPU.

    Args:
        prefer: force a device type (``"cpu"``, ``"cuda"`` or ``"mps"``).
            The environment variable ``TRANSFORMER_DEVICE`` does the same
            without editing code; ``prefer`` wins over it.

    Raises:
        ValueError: the requested device is unknown or not available here.
    """
    choice = prefer or os.environ.get("TRANSFORMER_DEVICE")
    if choice is not None:
        kind = str(choice).split(":")[0]
        if kind not in _VALID_DEVICES:
            raise ValueError(
                f"unknown device {choice!r}; choose one of {_VALID_DEVICES}"
            )
        if kind == "cuda" and not torch.cuda.is_available():
            raise ValueError(
                "CUDA was requested but torch.cuda.is_available() is False"
            )
        if kind == "mps" and not _mps_available():
            raise ValueError("MPS was requested but this PyTorch build cannot use it")
        return torch.device(choice)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if _mps_available():
        return torch.device("mps")
    return torch.device("cpu")


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def book_seed() -> int:
    """The book's base seed: ``BOOK_SEED`` from the environment, 0 when unset.

    Every notebook derives its seeds from this one number, so a rerun under
    another seed (``BOOK_SEED=1 make execute``) changes one variable and
    nothing else. A conclusion the book draws must hold whatever it is.

    Raises:
        ValueError: ``BOOK_SEED`` is set but is not a non-negative integer.
    """
    raw = os.environ.get("BOOK_SEED", "").strip()
    if not raw:
        return 0
    try:
        seed = int(raw)
    except ValueError:
        raise ValueError(
            f"BOOK_SEED must be a non-negative integer, got {raw!r}"
        ) from None
    if seed < 0:
        raise ValueError(f"BOOK_SEED must be a non-negative integer, got {raw!r}")
    return seed


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and PyTorch (all devices) so a run can be repeated.

    Args:
        seed: a non-negative integer.

    Returns:
        A fresh ``torch.Generator`` seeded with ``seed``, handy for data
        shuffling that must not depend on how much randomness the model used.
    """
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    return torch.Generator().manual_seed(seed)


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) scalar parameters in ``model``."""
    return sum(
        p.numel() for p in model.parameters() if p.requires_grad or not trainable_only
    )


@contextmanager
def timer() -> Iterator[dict[str, float]]:
    """Measure wall time of a ``with`` block: ``with timer() as t: ...;
    t["seconds"]``."""
    result: dict[str, float] = {}
    start = time.perf_counter()
    try:
        yield result
    finally:
        result["seconds"] = time.perf_counter() - start


def machine_summary() -> dict[str, Any]:
    """What a stored measurement was made on: CPU, thread count, library versions."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def experiment_results(name: str, start: str | Path | None = None) -> dict[str, Any]:
    """Load a stored multi-seed table, ``experiments/results/<name>.json``.

    Some comparisons run over several seeds for longer than a chapter can afford; a
    script in ``experiments/`` runs them and stores the table, and the chapter reads
    it with this function. The folder is found by walking up from ``start`` (default:
    the current directory), so notebooks find it from ``notebooks/``.

    Raises:
        FileNotFoundError: no stored table of that name; the message names the script
            that writes it.
    """
    here = Path(start) if start is not None else Path.cwd()
    for folder in (here, *here.resolve().parents):
        path = folder / "experiments" / "results" / f"{name}.json"
        if path.is_file():
            return json.loads(path.read_text())
    raise FileNotFoundError(
        f"no stored results {name!r} in experiments/results/ above {here}; "
        f"run `python experiments/{name}.py` from the repository root to make them"
    )


def seed_spread(values: Any) -> dict[str, Any]:
    """Mean, sample standard deviation, min and max over seeds, as a multi-seed table
    stores them.

    Args:
        values: one number per seed, or one equal-length list per seed (then every
            statistic is taken position by position and comes back as a list).

    Returns:
        ``{"mean", "std", "min", "max"}``; ``std`` is 0 for a single seed.
    """
    array = np.asarray(values, dtype=float)
    if array.ndim == 0 or array.shape[0] == 0:
        raise ValueError("seed_spread needs one value (or one list) per seed, got none")
    std = (
        np.std(array, axis=0, ddof=1)
        if array.shape[0] > 1
        else np.zeros(array.shape[1:])
    )
    return {
        "mean": np.mean(array, axis=0).tolist(),
        "std": np.asarray(std).tolist(),
        "min": np.min(array, axis=0).tolist(),
        "max": np.max(array, axis=0).tolist(),
    }


def check_positive_int(name: str, value: object) -> int:
    """``value`` if it is a positive int (not a bool), else a ValueError naming it."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def check_float_tensor(
    name: str, x: object, expected_dtype: torch.dtype
) -> torch.Tensor:
    """``x`` if it is a floating tensor of ``expected_dtype``, else an actionable
    error."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        hint = (
            " (token ids? pass them through an nn.Embedding first)"
            if name == "x"
            else ""
        )
        raise TypeError(
            f"{name} must be a floating-point tensor, got dtype {x.dtype}{hint}"
        )
    if x.dtype != expected_dtype:
        raise TypeError(
            f"{name} has dtype {x.dtype} but the parameters are {expected_dtype}; "
            f"convert one of them, e.g. x.to({expected_dtype}) or "
            f"module.to({expected_dtype})"
        )
    return x
