"""Gated recurrent networks: the LSTM and the GRU (chapter 3).

The LSTM (Hochreiter and Schmidhuber, 1997; the forget gate is from Gers et al.,
2000) adds a cell state ``c`` updated by addition, under a forget, an input and an
output gate; the GRU (Cho et al., 2014) merges the gates into a reset and an
update gate. Both are built on the base classes of :mod:`transformer.rnn` and
mirror ``torch.nn.LSTM``/``GRU`` (gate order: LSTM input, forget, cell candidate,
output; GRU reset, update, new).

Shape letters: B batch, T sequence length, I input features, H hidden size,
L layers.
"""

from __future__ import annotations

from typing import NamedTuple, cast

import torch
from torch import Tensor, nn

from transformer.rnn import State, _check_float_tensor, _RecurrentCell, _RecurrentLayer

__all__ = [
    "GRU",
    "GRUCell",
    "GRUGates",
    "LSTM",
    "LSTMCell",
    "LSTMGates",
]


class LSTMGates(NamedTuple):
    """Activations of the four LSTM gates and the new state at one step, each (B, H)."""

    input: Tensor  # i: how much of the candidate to write
    forget: Tensor  # f: how much of the old cell state to keep
    candidate: Tensor  # g: the new content, in [-1, 1]
    output: Tensor  # o: how much of the cell to expose as h
    cell: Tensor  # c_t = f * c_{t-1} + i * g
    hidden: Tensor  # h_t = o * tanh(c_t)


class LSTMCell(_RecurrentCell[tuple[Tensor, Tensor]]):
    """Long short-term memory cell with a forget gate.

    $$i, f, o = \\sigma(\\cdot),\\quad g = \\tanh(\\cdot),\\quad
    c_t = f \\odot c_{t-1} + i \\odot g,\\quad h_t = o \\odot \\tanh(c_t)$$

    where each gate is ``x_t W_i*^T + b_i* + h_{t-1} W_h*^T + b_h*``. The rows of
    ``weight_ih``/``weight_hh`` hold the gates in PyTorch's order i, f, g, o.

    Args:
        input_size: I.
        hidden_size: H.
        bias: learn the bias vectors.

    Shape:
        x: (B, I), state: a pair (h, c) of (B, H) -> a pair (h, c) of (B, H)

    Reference: Hochreiter and Schmidhuber, "Long short-term memory", 1997; the
    forget gate from Gers, Schmidhuber and Cummins, 2000.
    """

    n_gates = 4
    torch_cell = nn.LSTMCell

    def zero_state(self, batch_size: int, like: Tensor) -> tuple[Tensor, Tensor]:
        zeros = like.new_zeros(batch_size, self.hidden_size)
        return zeros, zeros

    def _check_state(
        self, state: State, batch_size: int, x: Tensor
    ) -> tuple[Tensor, Tensor]:
        if not isinstance(state, tuple | list) or len(state) != 2:
            raise TypeError(
                "LSTMCell state must be a pair (h, c) of tensors of shape (B, H), "
                f"got {type(state).__name__}"
            )
        h, c = state
        check = super()._check_state  # checks one (B, H) tensor and returns it
        return cast(Tensor, check(h, batch_size, x)), cast(
            Tensor, check(c, batch_size, x)
        )

    def gates_from_projection(
        self, x_proj: Tensor, state: tuple[Tensor, Tensor]
    ) -> LSTMGates:
        """All gate activations and the new state, from a projected input."""
        h, c = state
        z = x_proj + self.project_hidden(h)  # (B, 4H)
        i, f, g, o = z.chunk(4, dim=-1)  # 4 x (B, H), PyTorch's order
        i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
        # The additive update: c_t depends on c_{t-1} through a product with f
        # only, with no squashing nonlinearity in between.
        c_new = f * c + i * g
        h_new = o * torch.tanh(c_new)
        return LSTMGates(i, f, g, o, c_new, h_new)

    def gates(self, x: Tensor, state: tuple[Tensor, Tensor] | None = None) -> LSTMGates:
        """Like ``forward`` but also return the gates, for plots and explanations."""
        state = self._prepare(x, state)
        return self.gates_from_projection(self.project_input(x), state)

    def step(
        self, x_proj: Tensor, state: tuple[Tensor, Tensor]
    ) -> tuple[Tensor, Tensor]:
        """Shape: x_proj (B, 4H), state 2 x (B, H) -> 2 x (B, H)."""
        gates = self.gates_from_projection(x_proj, state)
        return gates.hidden, gates.cell


class GRUGates(NamedTuple):
    """Activations of the GRU gates and the new state at one step, each (B, H)."""

    reset: Tensor  # r: how much of h_{t-1} the candidate may look at
    update: Tensor  # z: how much of h_{t-1} to keep unchanged
    new: Tensor  # n: the candidate state
    hidden: Tensor  # h_t = (1 - z) * n + z * h_{t-1}


class GRUCell(_RecurrentCell[Tensor]):
    """Gated recurrent unit, PyTorch's formulation.

    $$r, z = \\sigma(\\cdot),\\quad
    n = \\tanh(x_t W_{in}^T + b_{in} + r \\odot (h_{t-1} W_{hn}^T + b_{hn})),\\quad
    h_t = (1 - z) \\odot n + z \\odot h_{t-1}$$

    Gate order in the weight rows: r, z, n (as PyTorch). Note that the reset gate
    multiplies the *projected* previous state, including its bias ``b_hn``.

    Args:
        input_size: I.
        hidden_size: H.
        bias: learn the bias vectors.

    Shape:
        x: (B, I), h: (B, H) -> (B, H)

    Reference: Cho et al., "Learning phrase representations using RNN
    encoder-decoder for statistical machine translation", 2014.
    """

    n_gates = 3
    torch_cell = nn.GRUCell

    def gates_from_projection(self, x_proj: Tensor, h: Tensor) -> GRUGates:
        """All gate activations and the new state, from a projected input."""
        x_r, x_z, x_n = x_proj.chunk(3, dim=-1)  # 3 x (B, H)
        h_r, h_z, h_n = self.project_hidden(h).chunk(3, dim=-1)  # 3 x (B, H)
        r = torch.sigmoid(x_r + h_r)
        z = torch.sigmoid(x_z + h_z)
        n = torch.tanh(x_n + r * h_n)
        # Interpolation between old state and candidate: with z near 1 the
        # state is copied unchanged, which is the GRU's gradient highway.
        h_new = (1.0 - z) * n + z * h
        return GRUGates(r, z, n, h_new)

    def gates(self, x: Tensor, h: Tensor | None = None) -> GRUGates:
        """Like ``forward`` but also return the gates."""
        h = self._prepare(x, h)
        return self.gates_from_projection(self.project_input(x), h)

    def step(self, x_proj: Tensor, state: Tensor) -> Tensor:
        """Shape: x_proj (B, 3H), state (B, H) -> (B, H)."""
        return self.gates_from_projection(x_proj, state).hidden


class GRU(_RecurrentLayer):
    """Multi-layer GRU over whole sequences (``torch.nn.GRU``, batch first).

    Args and shapes as :class:`~transformer.rnn.RNN` (no ``nonlinearity``).

    Reference: Cho et al., 2014; compared with the LSTM by Chung et al., 2014.
    """

    cell_class = GRUCell
    torch_layer = nn.GRU


class LSTM(_RecurrentLayer):
    """Multi-layer LSTM over whole sequences (``torch.nn.LSTM``, batch first).

    The state is a pair: ``h0``/``h_n`` become ``(h, c)`` tuples of (L, B, H).

    Shape:
        x: (B, T, I), (h0, c0): 2 x (L, B, H), lengths: (B,)
        -> output (B, T, H), (h_n, c_n): 2 x (L, B, H)

    Reference: Hochreiter and Schmidhuber, 1997.
    """

    cell_class = LSTMCell
    torch_layer = nn.LSTM

    def _initial_states(
        self, h0: State | None, batch_size: int, x: Tensor
    ) -> list[State]:
        if h0 is None:
            return [cell.zero_state(batch_size, x) for cell in self._cells()]
        if not isinstance(h0, tuple | list) or len(h0) != 2:
            raise TypeError(
                "LSTM initial state must be a pair (h0, c0) of tensors of shape (L, "
                f"B, H), got {type(h0).__name__}"
            )
        expected = (self.num_layers, batch_size, self.hidden_size)
        for name, tensor in zip(("h0", "c0"), h0):
            _check_float_tensor(name, tensor, x.dtype)
            if tuple(tensor.shape) != expected:
                raise ValueError(
                    f"{name} must have shape (L, B, H) = {expected}, got "
                    f"{tuple(tensor.shape)}"
                )
        return list(zip(h0[0].unbind(0), h0[1].unbind(0)))  # L x ((B, H), (B, H))

    @staticmethod
    def _hidden(state: State) -> Tensor:
        return state[0]

    @staticmethod
    def _keep(mask: Tensor, new: State, old: State) -> State:
        return torch.where(mask, new[0], old[0]), torch.where(mask, new[1], old[1])

    def _final(self, states: list[State]) -> State:
        h_n = torch.stack([s[0] for s in states], dim=0)  # (L, B, H)
        c_n = torch.stack([s[1] for s in states], dim=0)  # (L, B, H)
        return h_n, c_n
