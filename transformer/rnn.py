"""Recurrent networks written from scratch: the Elman RNN (chapter 2).

A recurrent network reads a sequence one step at a time and carries a hidden
state ``h`` forward as its memory. The same parameters are used at every step,
so one network handles sequences of any length.

Every class mirrors its PyTorch counterpart with ``batch_first=True``: a cell
(:class:`RNNCell`) performs one step, ``cell(x_t, state) -> new state``; a layer
(:class:`RNN`) runs a stack of cells over a whole batch of sequences,
``layer(x, h0=None, lengths=None) -> (output, h_n)``. The gated cells and layers
of chapter 3 (:mod:`transformer.gated`) are built on the same two base classes.
Parameter names, shapes and gate order are PyTorch's, so
:func:`transformer.rnn_interop.load_torch_weights` copies a ``torch.nn`` module
across and the tests prove both compute the same thing.

Padded batches: pass ``lengths`` (B,) and every sequence stops updating its
state after its last real token; outputs past a sequence's length are zero.
The input-to-hidden product of every step is one matrix product before the
time loop; only the hidden-to-hidden product stays inside it.

Shape letters: B batch, T sequence length, I input features, H hidden size,
L layers, G gates (1 for the RNN, 4 for the LSTM, 3 for the GRU).
References: Elman (1990); Bengio et al. (1994); Pascanu et al. (2013).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Generic, TypeVar, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from transformer.utils import check_float_tensor as _check_float_tensor
from transformer.utils import check_positive_int as _check_positive_int

State = Tensor | tuple[Tensor, Tensor]
_S = TypeVar("_S", Tensor, tuple[Tensor, Tensor])  # the state of one kind of cell

__all__ = ["RNN", "RNNCell"]


_NONLINEARITIES = {"tanh": torch.tanh, "relu": torch.relu}


# --------------------------------------------------------------------------- cells


class _RecurrentCell(nn.Module, Generic[_S]):
    """Parameters and checks shared by the three cells.

    A cell owns ``weight_ih`` (G*H, I), ``weight_hh`` (G*H, H) and, with
    ``bias=True``, ``bias_ih`` and ``bias_hh`` (G*H,): the same names and
    layout as ``torch.nn.RNNCell``/``LSTMCell``/``GRUCell``.
    """

    n_gates: int = 1
    torch_cell: type[nn.RNNCellBase] = nn.RNNCell

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.input_size = _check_positive_int("input_size", input_size)
        self.hidden_size = _check_positive_int("hidden_size", hidden_size)
        self.bias = bool(bias)
        rows = self.n_gates * hidden_size  # G*H: all gates stacked in one matrix
        self.weight_ih = nn.Parameter(
            torch.empty(rows, input_size, device=device, dtype=dtype)
        )
        self.weight_hh = nn.Parameter(
            torch.empty(rows, hidden_size, device=device, dtype=dtype)
        )
        if self.bias:
            self.bias_ih = nn.Parameter(torch.empty(rows, device=device, dtype=dtype))
            self.bias_hh = nn.Parameter(torch.empty(rows, device=device, dtype=dtype))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Uniform in [-1/sqrt(H), 1/sqrt(H)], PyTorch's default for recurrent
        layers."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}, bias={self.bias}"

    # The split into two halves is what makes the layers fast: the input half
    # can be done for every time step at once, the recurrent half cannot.
    def project_input(self, x: Tensor) -> Tensor:
        """Input-to-hidden term ``x W_ih^T + b_ih`` for any number of leading dims.

        Shape:
            x: (..., I) -> (..., G*H)
        """
        return F.linear(x, self.weight_ih, self.bias_ih)

    def project_hidden(self, h: Tensor) -> Tensor:
        """Hidden-to-hidden term ``h W_hh^T + b_hh``. Shape: (B, H) -> (B, G*H)."""
        return F.linear(h, self.weight_hh, self.bias_hh)

    def step(self, x_proj: Tensor, state: _S) -> _S:
        """One time step from an already projected input (see :meth:`project_input`)."""
        raise NotImplementedError

    def zero_state(self, batch_size: int, like: Tensor) -> _S:
        """The all-zero initial state PyTorch uses when none is given."""
        # the LSTM overrides it
        return cast(_S, like.new_zeros(batch_size, self.hidden_size))

    def _check_state(self, state: State, batch_size: int, x: Tensor) -> _S:
        expected = (batch_size, self.hidden_size)
        state = _check_float_tensor("h", state, x.dtype)
        if tuple(state.shape) != expected:
            raise ValueError(
                f"hidden state must have shape (B, H) = {expected}, got "
                f"{tuple(state.shape)}"
            )
        # one tensor; the LSTM checks each tensor of its pair here
        return cast(_S, state)

    def forward(self, x: Tensor, state: _S | None = None) -> _S:
        """Advance the state by one time step.

        Args:
            x: the input at this step.
            state: the previous state; zeros when ``None``.

        Shape:
            x: (B, I); state: (B, H) (a pair of (B, H) for the LSTM) -> same as state.
        """
        state = self._prepare(x, state)  # validate before any arithmetic
        return self.step(self.project_input(x), state)

    def _prepare(self, x: Tensor, state: _S | None) -> _S:
        """Validate ``x`` (B, I) and ``state``; return the state (zeros when None)."""
        _check_float_tensor("x", x, self.weight_ih.dtype)
        if x.dim() != 2 or x.shape[1] != self.input_size:
            raise ValueError(
                f"{type(self).__name__} expects input of shape (B, I) = (B, "
                f"{self.input_size}), got {tuple(x.shape)}"
            )
        if state is None:
            return self.zero_state(x.shape[0], x)
        return self._check_state(state, x.shape[0], x)

    @classmethod
    def from_torch(cls, module: nn.Module) -> _RecurrentCell:
        """Build a cell with the same size and a copy of the weights of a PyTorch
        cell."""
        if not isinstance(module, cls.torch_cell):
            raise TypeError(
                f"{cls.__name__}.from_torch expects "
                f"torch.nn.{cls.torch_cell.__name__}, got {type(module).__name__}"
            )
        ref = module.weight_ih
        kwargs = {"nonlinearity": module.nonlinearity} if cls is RNNCell else {}
        cell = cls(
            module.input_size,
            module.hidden_size,
            bias=module.bias,
            device=ref.device,
            dtype=ref.dtype,
            **kwargs,
        )
        from transformer.rnn_interop import load_torch_weights  # imports this module

        load_torch_weights(cell, module)
        return cell


class RNNCell(_RecurrentCell[Tensor]):
    """The Elman cell: ``h_t = tanh(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh)``.

    Args:
        input_size: I, features per input step.
        hidden_size: H, size of the hidden state.
        bias: learn the two bias vectors (PyTorch keeps two; their sum is what matters).
        nonlinearity: ``"tanh"`` (default) or ``"relu"``.

    Shape:
        x: (B, I), h: (B, H) -> (B, H)

    Reference: Elman, "Finding structure in time", 1990.
    """

    n_gates = 1
    torch_cell = nn.RNNCell

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        nonlinearity: str = "tanh",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        if nonlinearity not in _NONLINEARITIES:
            raise ValueError(
                f"nonlinearity must be one of {sorted(_NONLINEARITIES)}, got "
                f"{nonlinearity!r}"
            )
        self.nonlinearity = nonlinearity
        super().__init__(input_size, hidden_size, bias, device=device, dtype=dtype)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", nonlinearity={self.nonlinearity!r}"

    def step(self, x_proj: Tensor, state: Tensor) -> Tensor:
        """Shape: x_proj (B, H), state (B, H) -> (B, H)."""
        return _NONLINEARITIES[self.nonlinearity](x_proj + self.project_hidden(state))


# --------------------------------------------------------------------------- layers


class _RecurrentLayer(nn.Module):
    """A stack of ``num_layers`` cells run over whole sequences, batch first."""

    cell_class: type[_RecurrentCell] = RNNCell
    torch_layer: type[nn.RNNBase] = nn.RNN

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        dropout: float = 0.0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        **cell_kwargs: object,
    ) -> None:
        super().__init__()
        self.input_size = _check_positive_int("input_size", input_size)
        self.hidden_size = _check_positive_int("hidden_size", hidden_size)
        self.num_layers = _check_positive_int("num_layers", num_layers)
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        self.dropout = float(dropout)
        self.bias = bool(bias)
        # Layer l > 0 reads the hidden states of layer l - 1, hence input size H.
        self.cells = nn.ModuleList(
            self.cell_class(
                input_size if layer == 0 else hidden_size,
                hidden_size,
                bias,
                device=device,
                dtype=dtype,
                **cell_kwargs,
            )
            for layer in range(num_layers)
        )

    def extra_repr(self) -> str:
        return (
            f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}, "
            f"bias={self.bias}, dropout={self.dropout}, batch_first=True"
        )

    def _cells(self) -> list[_RecurrentCell[Any]]:
        # ModuleList holds Modules
        return cast("list[_RecurrentCell[Any]]", list(self.cells))

    # -- state helpers: the RNN and GRU carry one tensor, the LSTM a pair.
    def _initial_states(
        self, h0: State | None, batch_size: int, x: Tensor
    ) -> list[State]:
        if h0 is None:
            return [cell.zero_state(batch_size, x) for cell in self._cells()]
        expected = (self.num_layers, batch_size, self.hidden_size)
        h0 = _check_float_tensor("h0", h0, x.dtype)
        if tuple(h0.shape) != expected:
            raise ValueError(
                f"h0 must have shape (L, B, H) = {expected}, got {tuple(h0.shape)}"
            )
        return list(h0.unbind(0))  # L x (B, H)

    @staticmethod
    def _hidden(state: State) -> Tensor:
        # one tensor here; the LSTM overrides the three helpers
        return cast(Tensor, state)

    @staticmethod
    def _keep(mask: Tensor, new: State, old: State) -> State:
        return torch.where(mask, cast(Tensor, new), cast(Tensor, old))

    def _final(self, states: list[State]) -> State:
        return torch.stack(cast("list[Tensor]", states), dim=0)  # (L, B, H)

    def _check_lengths(
        self, lengths: Tensor | Sequence[int], batch_size: int, T: int, x: Tensor
    ) -> Tensor:
        lengths = torch.as_tensor(lengths, device=x.device)
        if lengths.dim() != 1 or lengths.shape[0] != batch_size:
            raise ValueError(
                f"lengths must have shape (B,) = ({batch_size},), got "
                f"{tuple(lengths.shape)}"
            )
        if lengths.is_floating_point() or lengths.dtype == torch.bool:
            raise TypeError(f"lengths must hold integers, got dtype {lengths.dtype}")
        if lengths.numel() and (lengths.min() < 0 or lengths.max() > T):
            raise ValueError(
                f"lengths must lie in [0, T] = [0, {T}], got min {int(lengths.min())} "
                f"and max {int(lengths.max())}"
            )
        return lengths

    def forward(
        self,
        x: Tensor,
        h0: State | None = None,
        lengths: Tensor | Sequence[int] | None = None,
    ) -> tuple[Tensor, State]:
        """Run the stack over every time step of a batch of sequences.

        Args:
            x: input sequences, batch first.
            h0: initial state of every layer; zeros when ``None``.
            lengths: number of real (non-padding) steps of each sequence. A
                sequence's state stops changing after its last real step, its
                outputs there are zero, and its ``h_n`` is the state at that step.

        Returns:
            ``output``: the top layer's hidden state at every step, and
            ``h_n``: the final state of every layer (``(h_n, c_n)`` for the LSTM).

        Shape:
            x: (B, T, I); h0: (L, B, H) -> output: (B, T, H), h_n: (L, B, H)
        """
        _check_float_tensor("x", x, self._cells()[0].weight_ih.dtype)
        if x.dim() != 3 or x.shape[-1] != self.input_size:
            hint = " (a single sequence? use x.unsqueeze(0))" if x.dim() == 2 else ""
            raise ValueError(
                f"{type(self).__name__} expects input of shape (B, T, I) = "
                f"(B, T, {self.input_size}), got {tuple(x.shape)}{hint}"
            )
        B, T, _ = x.shape
        if T == 0:
            raise ValueError("input has no time steps (T = 0)")
        states = self._initial_states(h0, B, x)
        keep = None
        if lengths is not None:
            lengths = self._check_lengths(lengths, B, T, x)
            if bool((lengths < T).any()):  # no padding at all: skip the masking work
                # (B, T)
                keep = torch.arange(T, device=x.device)[None, :] < lengths[:, None]

        layer_input = x  # (B, T, I) for the first layer, (B, T, H) after
        finals: list[State] = []
        for index, cell in enumerate(self._cells()):
            # One matmul for every time step at once: (B, T, I) -> (B, T, G*H).
            x_proj = cell.project_input(layer_input)
            state = states[index]
            outputs = []
            # unbind once rather than index x_proj[:, t] T times: the backward
            # pass of each index would allocate a full (B, T, G*H) zero tensor.
            for t, x_t in enumerate(x_proj.unbind(1)):
                new_state = cell.step(x_t, state)
                if keep is not None:
                    # Sequences that have ended keep their last real state.
                    new_state = self._keep(keep[:, t, None], new_state, state)
                state = new_state
                outputs.append(self._hidden(state))
            layer_output = torch.stack(outputs, dim=1)  # (B, T, H)
            if keep is not None:
                layer_output = layer_output.masked_fill(~keep[..., None], 0.0)
            finals.append(state)
            if self.dropout > 0 and self.training and index < self.num_layers - 1:
                layer_output = F.dropout(layer_output, self.dropout, training=True)
            layer_input = layer_output
        return layer_output, self._final(finals)

    @classmethod
    def from_torch(cls, module: nn.Module) -> _RecurrentLayer:
        """Build a layer of the same size holding a copy of a PyTorch layer's weights.

        The PyTorch module may use either ``batch_first`` setting (weights do not
        depend on it); ours is always batch first.
        """
        if not isinstance(module, cls.torch_layer):
            raise TypeError(
                f"{cls.__name__}.from_torch expects "
                f"torch.nn.{cls.torch_layer.__name__}, got {type(module).__name__}"
            )
        ref = cast(Tensor, module.weight_ih_l0)
        kwargs = {"nonlinearity": module.nonlinearity} if cls is RNN else {}
        layer = cls(
            module.input_size,
            module.hidden_size,
            num_layers=module.num_layers,
            bias=module.bias,
            dropout=module.dropout,
            device=ref.device,
            dtype=ref.dtype,
            **kwargs,
        )
        from transformer.rnn_interop import load_torch_weights  # imports this module

        load_torch_weights(layer, module)
        return layer


class RNN(_RecurrentLayer):
    """Multi-layer Elman RNN over whole sequences (``torch.nn.RNN``, batch first).

    Args:
        input_size: I.
        hidden_size: H.
        num_layers: L, stacked layers; layer l reads layer l-1's hidden states.
        nonlinearity: ``"tanh"`` or ``"relu"``.
        bias: learn bias vectors.
        dropout: dropout on the outputs of every layer but the last (training only).

    Shape:
        x: (B, T, I), h0: (L, B, H), lengths: (B,) -> output (B, T, H), h_n (L, B, H)

    Reference: Elman, "Finding structure in time", 1990.
    """

    cell_class = RNNCell
    torch_layer = nn.RNN

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        nonlinearity: str = "tanh",
        bias: bool = True,
        dropout: float = 0.0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(
            input_size,
            hidden_size,
            num_layers,
            bias,
            dropout,
            device=device,
            dtype=dtype,
            nonlinearity=nonlinearity,
        )
        self.nonlinearity = nonlinearity

    def extra_repr(self) -> str:
        return super().extra_repr() + f", nonlinearity={self.nonlinearity!r}"
