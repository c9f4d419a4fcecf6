"""Saving and loading models: config and weights in one safe, atomic file (chapter 9).

A checkpoint holds the model's class name, its config as a plain dict and its
weights, so :func:`load_checkpoint` can rebuild the model without being told how it
was built. It is read with ``torch.load(weights_only=True)``: a checkpoint can hold
tensors and plain values, never code.
"""

from __future__ import annotations

import importlib
import os
import tempfile
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from transformer.config import BlockConfig

__all__ = ["CheckpointError", "atomic_save", "load_checkpoint", "save_checkpoint"]

_CHECKPOINT_FORMAT = "transformer-checkpoint"
_CHECKPOINT_VERSION = 1


def _model_kind(model: nn.Module) -> str:
    """``module.Class`` of a model this package can rebuild, or a TypeError."""
    cls = type(model)
    config = getattr(model, "config", None)
    if not cls.__module__.startswith("transformer.") or not isinstance(
        config, BlockConfig
    ):
        raise TypeError(
            f"save_checkpoint expects a model of this package with a config (a "
            f"Transformer, say), got {cls.__name__}"
        )
    return f"{cls.__module__}.{cls.__qualname__}"


def _model_class(kind: object) -> Any:
    """The class a checkpoint names; only classes of this package are accepted."""
    if not isinstance(kind, str) or not kind.startswith("transformer."):
        raise ValueError(f"the checkpoint names an unknown model class {kind!r}")
    module, _, name = kind.rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    if not isinstance(cls, type) or not issubclass(cls, nn.Module):
        raise ValueError(f"{kind!r} is not a model class")
    return cls


class CheckpointError(ValueError):
    """A checkpoint file is missing, damaged, or does not fit the model."""


_PLAIN = (type(None), bool, int, float, str)


def _check_plain(value: Any, where: str) -> None:
    """Refuse what ``torch.load(weights_only=True)`` would refuse, naming the
    culprit."""
    if isinstance(value, _PLAIN) or isinstance(value, torch.Tensor):
        return
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_plain(item, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{where} has a key {key!r} that is not a str")
            _check_plain(item, f"{where}[{key!r}]")
        return
    raise TypeError(
        f"{where} is a {type(value).__name__}; a checkpoint's extra values must be "
        "None, bool, int, float, str, tensors, or lists/dicts of them (convert it "
        "first, e.g. float(x) for a NumPy scalar, or store history.losses rather than "
        "the History)"
    )


def save_checkpoint(
    model: nn.Module, path: str | os.PathLike[str], **extra: Any
) -> Path:
    """Save config and weights to ``path`` atomically.

    The file is written to a temporary file in the same folder, flushed to disk and
    moved over ``path`` with :func:`os.replace`, which is atomic; the folder is then
    synced too, so a crash mid-save leaves the previous checkpoint intact instead of
    a half-written file. The file gets the usual permissions (``0o666`` less the
    umask), like any file the user writes.

    Args:
        model: a model of this package that has a ``config`` (the
            :class:`~transformer.model.Transformer`, or the decoder-only and
            encoder-only models of later chapters).
        path: destination file.
        **extra: small plain values (step, metrics) stored alongside; read them back
            with ``load_checkpoint(path, with_extra=True)``.

    Raises:
        TypeError: ``model`` is not a model of this package, or an extra value is not
            plain (it could not be loaded back safely).

    Returns:
        The path written.
    """
    kind = _model_kind(model)
    for key, value in extra.items():
        _check_plain(value, f"extra value {key!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": _CHECKPOINT_FORMAT,
        "version": _CHECKPOINT_VERSION,
        "model": kind,
        "config": cast(BlockConfig, model.config).to_dict(),  # _model_kind checked it
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "extra": extra,
    }
    return atomic_save(payload, path)


def atomic_save(obj: Any, path: str | os.PathLike[str]) -> Path:
    """``torch.save(obj, path)`` such that ``path`` holds the old file or the new one.

    The object is written to a temporary file in the same folder, flushed to disk
    and moved over ``path`` with :func:`os.replace`, which is atomic; the folder is
    then synced, so a crash mid-save never leaves a half-written file. Chapter 14's
    training states are written this way too.

    Returns:
        The path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp made it private (0600)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_folder(path.parent)
    return path


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable (POSIX); a no-op where folders can't be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def load_checkpoint(
    path: str | os.PathLike[str],
    map_location: str | torch.device = "cpu",
    *,
    config: BlockConfig | None = None,
    with_extra: bool = False,
) -> nn.Module | tuple[nn.Module, dict[str, Any]]:
    """Rebuild a model from a file written by :func:`save_checkpoint`.

    The file names the model's class (a class of this package) and its config, so
    the same call loads a :class:`~transformer.model.Transformer` or a decoder-only
    model.

    Loads with ``weights_only=True``, so the file can hold only tensors and plain
    values, never code. The model comes back in eval mode.

    Args:
        path: the checkpoint file.
        map_location: where to put the tensors.
        config: if given, the checkpoint's config must equal it.
        with_extra: also return the extra values given to ``save_checkpoint``, as
            ``(model, extra)``.

    Raises:
        FileNotFoundError: no file at ``path``.
        CheckpointError: the file is truncated or corrupt, is not a checkpoint of this
            package, or its weights do not fit its (or the expected) config.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {str(path)!r}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except (
        Exception
    ) as e:  # a text or foreign file fails deep in the unpickler, any way
        raise CheckpointError(
            f"{str(path)!r} is not a readable checkpoint (truncated or corrupt file?): "
            f"{e}"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != _CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{str(path)!r} is a torch file but not a checkpoint written by "
            "save_checkpoint (no 'format' marker)"
        )
    if payload.get("version") != _CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{str(path)!r} has checkpoint version {payload.get('version')!r}; "
            f"this code reads version {_CHECKPOINT_VERSION}"
        )
    try:
        model_class = _model_class(
            payload.get("model", "transformer.model.Transformer")
        )
        saved = model_class.config_class.from_dict(payload["config"])
    except (KeyError, TypeError, ValueError, ImportError, AttributeError) as e:
        raise CheckpointError(f"{str(path)!r} holds an invalid config: {e}") from None
    if config is not None and saved != config:
        diff = {
            k: (getattr(saved, k), getattr(config, k))
            for k in saved.to_dict()
            if getattr(saved, k) != getattr(config, k)
        }
        raise CheckpointError(
            f"{str(path)!r} was saved with a different config; (saved, expected) = "
            f"{diff}"
        )
    model = model_class(saved)
    state = payload.get("state_dict")
    if not isinstance(state, dict):
        raise CheckpointError(f"{str(path)!r} has no state_dict")
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(
        k
        for k in set(state) & set(expected)
        if tuple(state[k].shape) != tuple(expected[k].shape)
    )
    if missing or unexpected or wrong:
        detail = "; ".join(
            f"{label}: {keys[:5]}{' ...' if len(keys) > 5 else ''}"
            for label, keys in (
                ("missing", missing),
                ("unexpected", unexpected),
                ("wrong shape", wrong),
            )
            if keys
        )
        raise CheckpointError(
            f"{str(path)!r}: weights do not fit the saved config ({detail})"
        )
    model.load_state_dict(state)
    model.to(map_location)
    model.eval()
    if with_extra:
        extra = payload.get("extra", {})
        return model, dict(extra) if isinstance(extra, dict) else {}
    return model
