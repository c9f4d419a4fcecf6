"""Recurrent networks written from scratch: the Elman RNN, the LSTM and the GRU.

A recurrent network reads a sequence one step at a time and carries a hidden
state ``h`` forward as its memory. The same parameters are used at every step,
so one network handles sequences of any length.

Every class mirrors its PyTorch counterpart with ``batch_first=True``:

* cells (:class:`RNNCell`, :class:`LSTMCell`, :class:`GRUCell`) perform one
  step, ``cell(x_t, state) -> new state``;
* layers (:class:`RNN`, :class:`LSTM`, :class:`GRU`) run a stack of cells over
  a whole batch of sequences, ``layer(x, h0=None, lengths=None) -> (output,
  h_n)``, where ``output`` holds the top layer's hidden state at every step and
  ``h_n`` the final state of every layer (a tuple ``(h_n, c_n)`` for the LSTM).

The parameters have the same names, shapes and gate order as PyTorch's
(LSTM: input, forget, cell candidate, output; GRU: reset, update, new), so
:meth:`RNN.from_torch` / :func:`load_torch_weights` copy a trained
``torch.nn`` module across and the tests can prove both compute the same thing.

Padded batches: pass ``lengths`` (B,) and every sequence stops updating its
state after its last real token. Outputs past a sequence's length are zero and
``h_n`` is the state at its last real token, so padding never changes the
result for the real tokens.

Speed: the input-to-hidden product does not depend on the previous state, so
the layers compute it for all time steps in one matrix multiplication before
the time loop; only the hidden-to-hidden product stays inside the loop.

Shape letters: B batch, T sequence length, I input features, H hidden size,
L layers, G gates (1 for the RNN, 4 for the LSTM, 3 for the GRU).

References: Elman (1990) for the simple recurrent network; Hochreiter and
Schmidhuber (1997) for the LSTM (the forget gate is from Gers et al., 2000);
Cho et al. (2014) for the GRU; Bengio et al. (1994) and Pascanu et al. (2013)
for vanishing and exploding gradients.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "RNNCell",
    "LSTMCell",
    "GRUCell",
    "RNN",
    "LSTM",
    "GRU",
    "LSTMGates",
    "GRUGates",
    "load_torch_weights",
    "gradient_norm_by_distance",
    "SequenceClassifier",
]

State = Tensor | tuple[Tensor, Tensor]

_NONLINEARITIES = {"tanh": torch.tanh, "relu": torch.relu}


def _check_positive_int(name: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def _check_float_tensor(name: str, x: object, expected_dtype: torch.dtype) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        hint = " (token ids? pass them through an nn.Embedding first)" if name == "x" else ""
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}{hint}")
    if x.dtype != expected_dtype:
        raise TypeError(
            f"{name} has dtype {x.dtype} but the parameters are {expected_dtype}; "
            f"convert one of them, e.g. x.to({expected_dtype}) or module.to({expected_dtype})"
        )
    return x


# --------------------------------------------------------------------------- cells


class _RecurrentCell(nn.Module):
    """Parameters and checks shared by the three cells.

    A cell owns ``weight_ih`` (G*H, I), ``weight_hh`` (G*H, H) and, with
    ``bias=True``, ``bias_ih`` and ``bias_hh`` (G*H,): the same names and
    layout as ``torch.nn.RNNCell``/``LSTMCell``/``GRUCell``.
    """

    n_gates: int = 1
    torch_cell: type[nn.Module] = nn.RNNCell

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
        factory = {"device": device, "dtype": dtype}
        rows = self.n_gates * hidden_size  # G*H: all gates stacked in one matrix
        self.weight_ih = nn.Parameter(torch.empty(rows, input_size, **factory))
        self.weight_hh = nn.Parameter(torch.empty(rows, hidden_size, **factory))
        if self.bias:
            self.bias_ih = nn.Parameter(torch.empty(rows, **factory))
            self.bias_hh = nn.Parameter(torch.empty(rows, **factory))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Uniform in [-1/sqrt(H), 1/sqrt(H)], PyTorch's default for recurrent layers."""
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

    def step(self, x_proj: Tensor, state: State) -> State:
        """One time step from an already projected input (see :meth:`project_input`)."""
        raise NotImplementedError

    def zero_state(self, batch_size: int, like: Tensor) -> State:
        """The all-zero initial state PyTorch uses when none is given."""
        return like.new_zeros(batch_size, self.hidden_size)

    def _check_state(self, state: State, batch_size: int, x: Tensor) -> State:
        expected = (batch_size, self.hidden_size)
        _check_float_tensor("h", state, x.dtype)
        if tuple(state.shape) != expected:
            raise ValueError(
                f"hidden state must have shape (B, H) = {expected}, got {tuple(state.shape)}"
            )
        return state

    def forward(self, x: Tensor, state: State | None = None) -> State:
        """Advance the state by one time step.

        Args:
            x: the input at this step.
            state: the previous state; zeros when ``None``.

        Shape:
            x: (B, I); state: (B, H) (a pair of (B, H) for the LSTM) -> same as state.
        """
        state = self._prepare(x, state)  # validate before any arithmetic
        return self.step(self.project_input(x), state)

    def _prepare(self, x: Tensor, state: State | None) -> State:
        """Validate ``x`` (B, I) and ``state``; return the state (zeros when None)."""
        _check_float_tensor("x", x, self.weight_ih.dtype)
        if x.dim() != 2 or x.shape[1] != self.input_size:
            raise ValueError(
                f"{type(self).__name__} expects input of shape (B, I) = (B, {self.input_size}), "
                f"got {tuple(x.shape)}"
            )
        if state is None:
            return self.zero_state(x.shape[0], x)
        return self._check_state(state, x.shape[0], x)

    @classmethod
    def from_torch(cls, module: nn.Module) -> _RecurrentCell:
        """Build a cell with the same size and a copy of the weights of a PyTorch cell."""
        if not isinstance(module, cls.torch_cell):
            raise TypeError(
                f"{cls.__name__}.from_torch expects torch.nn.{cls.torch_cell.__name__}, "
                f"got {type(module).__name__}"
            )
        ref = module.weight_ih
        kwargs = {}
        if cls is RNNCell:
            kwargs["nonlinearity"] = module.nonlinearity
        cell = cls(
            module.input_size,
            module.hidden_size,
            bias=module.bias,
            device=ref.device,
            dtype=ref.dtype,
            **kwargs,
        )
        load_torch_weights(cell, module)
        return cell


class RNNCell(_RecurrentCell):
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
                f"nonlinearity must be one of {sorted(_NONLINEARITIES)}, got {nonlinearity!r}"
            )
        self.nonlinearity = nonlinearity
        super().__init__(input_size, hidden_size, bias, device=device, dtype=dtype)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", nonlinearity={self.nonlinearity!r}"

    def step(self, x_proj: Tensor, state: Tensor) -> Tensor:
        """Shape: x_proj (B, H), state (B, H) -> (B, H)."""
        return _NONLINEARITIES[self.nonlinearity](x_proj + self.project_hidden(state))


class LSTMGates(NamedTuple):
    """Activations of the four LSTM gates and the new state at one step, each (B, H)."""

    input: Tensor  # i: how much of the candidate to write
    forget: Tensor  # f: how much of the old cell state to keep
    candidate: Tensor  # g: the new content, in [-1, 1]
    output: Tensor  # o: how much of the cell to expose as h
    cell: Tensor  # c_t = f * c_{t-1} + i * g
    hidden: Tensor  # h_t = o * tanh(c_t)


class LSTMCell(_RecurrentCell):
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

    def _check_state(self, state: State, batch_size: int, x: Tensor) -> tuple[Tensor, Tensor]:
        if not isinstance(state, tuple | list) or len(state) != 2:
            raise TypeError(
                "LSTMCell state must be a pair (h, c) of tensors of shape (B, H), "
                f"got {type(state).__name__}"
            )
        h, c = state
        return super()._check_state(h, batch_size, x), super()._check_state(c, batch_size, x)

    def gates_from_projection(self, x_proj: Tensor, state: tuple[Tensor, Tensor]) -> LSTMGates:
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
        """Like :meth:`forward` but also return the gates, for plots and explanations."""
        state = self._prepare(x, state)
        return self.gates_from_projection(self.project_input(x), state)

    def step(self, x_proj: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        """Shape: x_proj (B, 4H), state 2 x (B, H) -> 2 x (B, H)."""
        gates = self.gates_from_projection(x_proj, state)
        return gates.hidden, gates.cell


class GRUGates(NamedTuple):
    """Activations of the GRU gates and the new state at one step, each (B, H)."""

    reset: Tensor  # r: how much of h_{t-1} the candidate may look at
    update: Tensor  # z: how much of h_{t-1} to keep unchanged
    new: Tensor  # n: the candidate state
    hidden: Tensor  # h_t = (1 - z) * n + z * h_{t-1}


class GRUCell(_RecurrentCell):
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
        """Like :meth:`forward` but also return the gates."""
        h = self._prepare(x, h)
        return self.gates_from_projection(self.project_input(x), h)

    def step(self, x_proj: Tensor, state: Tensor) -> Tensor:
        """Shape: x_proj (B, 3H), state (B, H) -> (B, H)."""
        return self.gates_from_projection(x_proj, state).hidden


# --------------------------------------------------------------------------- layers


class _RecurrentLayer(nn.Module):
    """A stack of ``num_layers`` cells run over whole sequences, batch first."""

    cell_class: type[_RecurrentCell] = RNNCell
    torch_layer: type[nn.Module] = nn.RNN

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

    # -- state helpers: the RNN and GRU carry one tensor, the LSTM a pair.
    def _initial_states(self, h0: State | None, batch_size: int, x: Tensor) -> list[State]:
        if h0 is None:
            return [cell.zero_state(batch_size, x) for cell in self.cells]
        expected = (self.num_layers, batch_size, self.hidden_size)
        _check_float_tensor("h0", h0, x.dtype)
        if tuple(h0.shape) != expected:
            raise ValueError(f"h0 must have shape (L, B, H) = {expected}, got {tuple(h0.shape)}")
        return list(h0.unbind(0))  # L x (B, H)

    @staticmethod
    def _hidden(state: State) -> Tensor:
        return state

    @staticmethod
    def _keep(mask: Tensor, new: State, old: State) -> State:
        return torch.where(mask, new, old)

    def _final(self, states: list[State]) -> State:
        return torch.stack(states, dim=0)  # (L, B, H)

    def _check_lengths(self, lengths: Tensor | Sequence[int], batch_size: int, T: int, x: Tensor):
        lengths = torch.as_tensor(lengths, device=x.device)
        if lengths.dim() != 1 or lengths.shape[0] != batch_size:
            raise ValueError(
                f"lengths must have shape (B,) = ({batch_size},), got {tuple(lengths.shape)}"
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
        _check_float_tensor("x", x, self.cells[0].weight_ih.dtype)
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
                keep = torch.arange(T, device=x.device)[None, :] < lengths[:, None]  # (B, T)

        layer_input = x  # (B, T, I) for the first layer, (B, T, H) after
        finals: list[State] = []
        for index, cell in enumerate(self.cells):
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
                f"{cls.__name__}.from_torch expects torch.nn.{cls.torch_layer.__name__}, "
                f"got {type(module).__name__}"
            )
        ref = module.weight_ih_l0
        kwargs = {}
        if cls is RNN:
            kwargs["nonlinearity"] = module.nonlinearity
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


class GRU(_RecurrentLayer):
    """Multi-layer GRU over whole sequences (``torch.nn.GRU``, batch first).

    Args and shapes as :class:`RNN` (no ``nonlinearity``).

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

    def _initial_states(self, h0: State | None, batch_size: int, x: Tensor) -> list[State]:
        if h0 is None:
            return [cell.zero_state(batch_size, x) for cell in self.cells]
        if not isinstance(h0, tuple | list) or len(h0) != 2:
            raise TypeError(
                "LSTM initial state must be a pair (h0, c0) of tensors of shape (L, B, H), "
                f"got {type(h0).__name__}"
            )
        expected = (self.num_layers, batch_size, self.hidden_size)
        for name, tensor in zip(("h0", "c0"), h0):
            _check_float_tensor(name, tensor, x.dtype)
            if tuple(tensor.shape) != expected:
                raise ValueError(
                    f"{name} must have shape (L, B, H) = {expected}, got {tuple(tensor.shape)}"
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


# --------------------------------------------------------------------------- torch interop


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
                f"cannot load torch.nn.{type(theirs).__name__} into {type(ours).__name__}; "
                f"expected torch.nn.{ours.torch_cell.__name__}"
            )
        pairs = [(ours, theirs, "")]
    elif isinstance(ours, _RecurrentLayer):
        if not isinstance(theirs, ours.torch_layer):
            raise TypeError(
                f"cannot load torch.nn.{type(theirs).__name__} into {type(ours).__name__}; "
                f"expected torch.nn.{ours.torch_layer.__name__}"
            )
        if theirs.bidirectional:
            raise ValueError("bidirectional PyTorch layers are not supported")
        if getattr(theirs, "proj_size", 0):
            raise ValueError("LSTMs with proj_size > 0 are not supported")
        if theirs.num_layers != ours.num_layers:
            raise ValueError(
                f"num_layers differ: ours has {ours.num_layers}, theirs {theirs.num_layers}"
            )
        pairs = [(cell, theirs, f"_l{layer}") for layer, cell in enumerate(ours.cells)]
    else:
        raise TypeError(f"expected one of our recurrent cells or layers, got {type(ours).__name__}")

    for cell, module, suffix in pairs:
        if module.bias != cell.bias:
            raise ValueError(f"bias settings differ: ours {cell.bias}, theirs {module.bias}")
        if isinstance(cell, RNNCell) and module.nonlinearity != cell.nonlinearity:
            raise ValueError(
                f"nonlinearities differ: ours {cell.nonlinearity!r}, theirs {module.nonlinearity!r}"
            )
        names = ["weight_ih", "weight_hh"] + (["bias_ih", "bias_hh"] if cell.bias else [])
        with torch.no_grad():
            for name in names:
                source = getattr(module, name + suffix)
                target = getattr(cell, name)
                if source.shape != target.shape:
                    raise ValueError(
                        f"{name}{suffix} has shape {tuple(source.shape)} in the PyTorch module "
                        f"but {tuple(target.shape)} here; check input_size and hidden_size"
                    )
                target.copy_(source)
    return ours


# --------------------------------------------------------------------------- diagnostics


def gradient_norm_by_distance(
    layer: _RecurrentLayer, x: Tensor, generator: torch.Generator | None = None
) -> Tensor:
    """How strongly the final state depends on each earlier input, by distance.

    Runs ``layer`` on ``x``, projects every sequence's final top-layer hidden
    state ``h_T`` on a random unit direction ``u`` and backpropagates. The norm
    of the gradient reaching input step t, ``|| d(u . h_T) / d x_t ||``, is
    averaged (root mean square) over the batch. Its expectation over ``u`` is
    the size of the Jacobian ``d h_T / d x_t`` (Frobenius norm / sqrt(H)), the
    quantity that vanishes or explodes (Bengio et al., 1994; Pascanu et al., 2013).

    Args:
        layer: one of :class:`RNN`, :class:`LSTM`, :class:`GRU`.
        x: input sequences (not modified).
        generator: random source for the directions ``u``.

    Returns:
        A tensor (T,) whose entry d is the gradient norm at distance d from the
        last step (d = 0 is the last input, d = T - 1 the first).

    Shape:
        x: (B, T, I) -> (T,)
    """
    if not isinstance(layer, _RecurrentLayer):
        raise TypeError(f"expected an RNN, LSTM or GRU layer, got {type(layer).__name__}")
    x = x.detach().clone().requires_grad_(True)
    output, _ = layer(x)  # (B, T, H)
    last = output[:, -1]  # (B, H)
    u = torch.randn(last.shape, generator=generator, dtype=last.dtype).to(last.device)
    u = u / u.norm(dim=-1, keepdim=True)
    (grad,) = torch.autograd.grad((last * u).sum(), x)  # (B, T, I)
    per_step = grad.pow(2).sum(dim=-1).mean(dim=0).sqrt()  # (T,)
    return per_step.flip(0).detach()  # index = distance from the last step


# --------------------------------------------------------------------------- many-to-one model

_LAYERS: dict[str, type[_RecurrentLayer]] = {"rnn": RNN, "lstm": LSTM, "gru": GRU}


class SequenceClassifier(nn.Module):
    """Many-to-one model: embed tokens, run a recurrent layer, classify the final state.

    The label is read from the top layer's state at each sequence's last real
    token (``lengths``), so padding does not affect the prediction.

    Args:
        vocab_size: V, number of input token ids.
        num_classes: number of output classes.
        kind: ``"rnn"``, ``"lstm"`` or ``"gru"``.
        embed_size: size of the token embeddings (the recurrent input size I).
        hidden_size: H.
        num_layers: L.
        pad_id: the padding id; its embedding is zero and never trained.
        **layer_kwargs: passed to the recurrent layer (``nonlinearity``, ``dropout``).

    Shape:
        ids: (B, T) long, lengths: (B,) -> logits (B, num_classes)
    """

    def __init__(
        self,
        vocab_size: int,
        num_classes: int,
        kind: str = "rnn",
        embed_size: int = 16,
        hidden_size: int = 32,
        num_layers: int = 1,
        pad_id: int = 0,
        **layer_kwargs: object,
    ) -> None:
        super().__init__()
        if kind not in _LAYERS:
            raise ValueError(f"kind must be one of {sorted(_LAYERS)}, got {kind!r}")
        self.kind = kind
        self.pad_id = pad_id
        self.embed = nn.Embedding(vocab_size, embed_size, padding_idx=pad_id)
        self.rnn = _LAYERS[kind](embed_size, hidden_size, num_layers=num_layers, **layer_kwargs)
        self.head = nn.Linear(hidden_size, num_classes)

    def forward(self, ids: Tensor, lengths: Tensor | None = None) -> Tensor:
        if ids.dtype != torch.long or ids.dim() != 2:
            raise ValueError(
                f"ids must be a (B, T) tensor of token ids (long), got shape "
                f"{tuple(ids.shape)} and dtype {ids.dtype}"
            )
        if lengths is None:
            lengths = (ids != self.pad_id).sum(dim=1)  # (B,)
        _, state = self.rnn(self.embed(ids), lengths=lengths)  # state: (L, B, H) or a pair
        h_n = state[0] if isinstance(state, tuple) else state
        return self.head(h_n[-1])  # (B, num_classes)
