"""Copying PyTorch's recurrent weights into ours (chapters 2 and 3).

Our cells and layers use PyTorch's parameter names, shapes and gate order, so a
``torch.nn.RNNCell/LSTMCell/GRUCell`` or ``torch.nn.RNN/LSTM/GRU`` can be copied
across and both compared on the same input; this is how the tests prove that the
book's recurrent networks compute what PyTorch's do. ``from_torch`` on every cell and
layer class builds one of ours from a PyTorch module through :func:`load_torch_weights`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from transformer.rnn import RNNCell, _RecurrentCell, _RecurrentLayer

__all__ = ["load_torch_weights"]


def load_torch_weights(ours: nn.Module, theirs: nn.Module) -> nn.Module:
    """Copy the weights of a PyTorch recurrent cell or layer into ours, in place.

    Works for ``nn.RNNCell/LSTMCell/GRUCell`` into our cells and ``nn.RNN/LSTM/GRU``
    into our layers. The sizes, bias setting, number of layers and (for the RNN)
    nonlinearity must match; bidirectional and projected LSTMs are not supported.

    Returns:
        ``ours``, for chaining.
    """
    if isinstance(ours, _RecurrentCell):
        if not isinstance(theirs, ours.torch_cell):
            raise TypeError(
                f"cannot load torch.nn.{type(theirs).__name__} into "
                f"{type(ours).__name__}; expected torch.nn.{ours.torch_cell.__name__}"
            )
        pairs: list[tuple[_RecurrentCell[Any], nn.Module, str]] = [(ours, theirs, "")]
    elif isinstance(ours, _RecurrentLayer):
        if not isinstance(theirs, ours.torch_layer):
            raise TypeError(
                f"cannot load torch.nn.{type(theirs).__name__} into "
                f"{type(ours).__name__}; expected torch.nn.{ours.torch_layer.__name__}"
            )
        if theirs.bidirectional:
            raise ValueError("bidirectional PyTorch layers are not supported")
        if getattr(theirs, "proj_size", 0):
            raise ValueError("LSTMs with proj_size > 0 are not supported")
        if theirs.num_layers != ours.num_layers:
            raise ValueError(
                f"num_layers differ: ours has {ours.num_layers}, theirs "
                f"{theirs.num_layers}"
            )
        pairs = [
            (cell, theirs, f"_l{layer}") for layer, cell in enumerate(ours._cells())
        ]
    else:
        raise TypeError(
            f"expected one of our recurrent cells or layers, got {type(ours).__name__}"
        )

    for cell, module, suffix in pairs:
        if module.bias != cell.bias:
            raise ValueError(
                f"bias settings differ: ours {cell.bias}, theirs {module.bias}"
            )
        if isinstance(cell, RNNCell) and module.nonlinearity != cell.nonlinearity:
            raise ValueError(
                f"nonlinearities differ: ours {cell.nonlinearity!r}, theirs "
                f"{module.nonlinearity!r}"
            )
        names = ["weight_ih", "weight_hh"] + (
            ["bias_ih", "bias_hh"] if cell.bias else []
        )
        with torch.no_grad():
            for name in names:
                source = getattr(module, name + suffix)
                target = getattr(cell, name)
                if source.shape != target.shape:
                    raise ValueError(
                        f"{name}{suffix} has shape {tuple(source.shape)} in the "
                        f"PyTorch module but {tuple(target.shape)} here; check "
                        "input_size and hidden_size"
                    )
                target.copy_(source)
    return ours
