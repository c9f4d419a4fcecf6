"""Our RNN, LSTM and GRU against torch.nn with copied weights, padding, and errors."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from transformer.gated import GRU, LSTM, GRUCell, LSTMCell
from transformer.rnn import RNN, RNNCell
from transformer.rnn_interop import load_torch_weights
from transformer.rnn_tools import SequenceClassifier, gradient_norm_by_distance

F64 = torch.float64
# float64: far tighter than the 1e-5 the book promises
TOL = {"rtol": 1e-7, "atol": 1e-9}

# (name, torch layer, our layer, extra kwargs)
KINDS = [
    ("rnn_tanh", nn.RNN, RNN, {"nonlinearity": "tanh"}),
    ("rnn_relu", nn.RNN, RNN, {"nonlinearity": "relu"}),
    ("lstm", nn.LSTM, LSTM, {}),
    ("gru", nn.GRU, GRU, {}),
]
CELLS = [
    ("rnn_tanh", nn.RNNCell, RNNCell, {"nonlinearity": "tanh"}),
    ("rnn_relu", nn.RNNCell, RNNCell, {"nonlinearity": "relu"}),
    ("lstm", nn.LSTMCell, LSTMCell, {}),
    ("gru", nn.GRUCell, GRUCell, {}),
]
SHAPES = [(1, 1, 1, 1), (3, 5, 4, 6), (2, 9, 7, 3)]  # (B, T, I, H)


def _pair(torch_cls, our_cls, kwargs, I, H, num_layers=1, bias=True, dtype=F64, seed=0):
    torch.manual_seed(seed)
    theirs = torch_cls(
        I, H, num_layers=num_layers, bias=bias, batch_first=True, dtype=dtype, **kwargs
    )
    ours = our_cls.from_torch(theirs)
    return theirs, ours


def _random_state(is_lstm, L, B, H, dtype=F64):
    if is_lstm:
        return (torch.randn(L, B, H, dtype=dtype), torch.randn(L, B, H, dtype=dtype))
    return torch.randn(L, B, H, dtype=dtype)


def _flat(state):
    return list(state) if isinstance(state, tuple) else [state]


def _clone_leaf(state):
    if isinstance(state, tuple):
        return tuple(s.clone().requires_grad_(True) for s in state)
    return state.clone().requires_grad_(True)


@pytest.mark.parametrize(
    "name,torch_cls,our_cls,kwargs", KINDS, ids=[k[0] for k in KINDS]
)
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("B,T,I,H", SHAPES)
@pytest.mark.parametrize("with_h0", [False, True])
def test_layer_matches_torch_outputs_states_and_gradients(
    name, torch_cls, our_cls, kwargs, num_layers, B, T, I, H, with_h0
):
    theirs, ours = _pair(
        torch_cls, our_cls, kwargs, I, H, num_layers, seed=B * T + num_layers
    )
    is_lstm = our_cls is LSTM
    x = torch.randn(B, T, I, dtype=F64)
    h0 = _random_state(is_lstm, num_layers, B, H) if with_h0 else None

    x_t, x_o = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    h_t = _clone_leaf(h0) if with_h0 else None
    h_o = _clone_leaf(h0) if with_h0 else None
    out_t, hn_t = theirs(x_t, h_t)
    out_o, hn_o = ours(x_o, h_o)

    assert out_o.shape == (B, T, H)
    torch.testing.assert_close(out_o, out_t, **TOL)
    assert len(_flat(hn_o)) == len(_flat(hn_t))
    for a, b in zip(_flat(hn_o), _flat(hn_t)):
        assert a.shape == (num_layers, B, H)
        torch.testing.assert_close(a, b, **TOL)

    # A loss that touches every output and every final state with distinct weights.
    torch.manual_seed(1)
    w_out = torch.randn_like(out_t)
    w_states = [torch.randn_like(s) for s in _flat(hn_t)]

    def loss(out, hn):
        return (out * w_out).sum() + sum(
            (s * w).sum() for s, w in zip(_flat(hn), w_states)
        )

    loss(out_t, hn_t).backward()
    loss(out_o, hn_o).backward()
    torch.testing.assert_close(x_o.grad, x_t.grad, **TOL)
    if with_h0:
        for a, b in zip(_flat(h_o), _flat(h_t)):
            torch.testing.assert_close(a.grad, b.grad, **TOL)
    for layer, cell in enumerate(ours.cells):
        for pname in ["weight_ih", "weight_hh", "bias_ih", "bias_hh"]:
            ours_grad = getattr(cell, pname).grad
            theirs_grad = getattr(theirs, f"{pname}_l{layer}").grad
            assert ours_grad is not None, f"no gradient for layer {layer} {pname}"
            torch.testing.assert_close(ours_grad, theirs_grad, **TOL)


@pytest.mark.parametrize(
    "name,torch_cls,our_cls,kwargs", KINDS, ids=[k[0] for k in KINDS]
)
def test_float32_matches_torch_within_1e5(name, torch_cls, our_cls, kwargs):
    theirs, ours = _pair(
        torch_cls, our_cls, kwargs, I=8, H=16, num_layers=2, dtype=torch.float32
    )
    x = torch.randn(4, 30, 8)
    out_t, hn_t = theirs(x)
    out_o, hn_o = ours(x)
    torch.testing.assert_close(out_o, out_t, rtol=1e-5, atol=1e-5)
    for a, b in zip(_flat(hn_o), _flat(hn_t)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "name,torch_cls,our_cls,kwargs", KINDS, ids=[k[0] for k in KINDS]
)
def test_without_bias_matches_torch(name, torch_cls, our_cls, kwargs):
    theirs, ours = _pair(torch_cls, our_cls, kwargs, I=3, H=4, num_layers=2, bias=False)
    assert ours.cells[0].bias_ih is None
    assert sum(p.numel() for p in ours.parameters()) == sum(
        p.numel() for p in theirs.parameters()
    )
    x = torch.randn(2, 6, 3, dtype=F64)
    torch.testing.assert_close(ours(x)[0], theirs(x)[0], **TOL)


@pytest.mark.parametrize(
    "name,torch_cls,our_cls,kwargs", CELLS, ids=[k[0] for k in CELLS]
)
def test_cell_matches_torch_cell(name, torch_cls, our_cls, kwargs):
    torch.manual_seed(3)
    theirs = torch_cls(5, 7, dtype=F64, **kwargs)
    ours = our_cls.from_torch(theirs)
    # Same parameter names and shapes as PyTorch, so state dicts are interchangeable.
    assert {k: v.shape for k, v in ours.state_dict().items()} == {
        k: v.shape for k, v in theirs.state_dict().items()
    }
    x = torch.randn(4, 5, dtype=F64)
    if our_cls is LSTMCell:
        state = (torch.randn(4, 7, dtype=F64), torch.randn(4, 7, dtype=F64))
        for a, b in zip(ours(x, state), theirs(x, state)):
            torch.testing.assert_close(a, b, **TOL)
        for a, b in zip(ours(x), theirs(x)):
            torch.testing.assert_close(a, b, **TOL)
    else:
        h = torch.randn(4, 7, dtype=F64)
        torch.testing.assert_close(ours(x, h), theirs(x, h), **TOL)
        torch.testing.assert_close(ours(x), theirs(x), **TOL)


def test_gate_helpers_agree_with_forward_and_have_valid_ranges():
    torch.manual_seed(0)
    lstm = LSTMCell(3, 5, dtype=F64)
    x = torch.randn(4, 3, dtype=F64)
    state = (torch.randn(4, 5, dtype=F64), torch.randn(4, 5, dtype=F64))
    g = lstm.gates(x, state)
    h, c = lstm(x, state)
    torch.testing.assert_close(g.hidden, h, **TOL)
    torch.testing.assert_close(g.cell, c, **TOL)
    torch.testing.assert_close(
        g.cell, g.forget * state[1] + g.input * g.candidate, **TOL
    )
    for gate in (g.input, g.forget, g.output):
        assert gate.min() > 0 and gate.max() < 1
    assert g.candidate.abs().max() < 1

    gru = GRUCell(3, 5, dtype=F64)
    h0 = torch.randn(4, 5, dtype=F64)
    gg = gru.gates(x, h0)
    torch.testing.assert_close(gg.hidden, gru(x, h0), **TOL)
    torch.testing.assert_close(
        gg.hidden, (1 - gg.update) * gg.new + gg.update * h0, **TOL
    )


def test_gate_order_is_torchs():
    """Setting only torch's forget-gate bias (second block) must saturate our forget
    gate."""
    torch.manual_seed(0)
    theirs = nn.LSTMCell(2, 3, dtype=F64)
    with torch.no_grad():
        theirs.bias_ih.zero_()
        theirs.bias_hh.zero_()
        theirs.bias_ih[3:6] = 50.0  # rows H..2H are the forget gate in PyTorch
    ours = LSTMCell.from_torch(theirs)
    g = ours.gates(torch.randn(4, 2, dtype=F64))
    assert torch.all(g.forget > 1 - 1e-12)
    assert torch.all(g.input < 1 - 1e-6)


# --------------------------------------------------------------------------- padding


def _padded_batch(B, T_max, I, lengths, dtype=F64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, T_max, I, generator=g, dtype=dtype)
    for b, n in enumerate(lengths):
        # Large garbage in the padding: it must not leak into any result.
        x[b, n:] = 1e3 * torch.randn(T_max - n, I, generator=g, dtype=dtype)
    return x


@pytest.mark.parametrize(
    "name,torch_cls,our_cls,kwargs", KINDS, ids=[k[0] for k in KINDS]
)
@pytest.mark.parametrize("num_layers", [1, 2])
def test_padded_batch_matches_each_sequence_alone(
    name, torch_cls, our_cls, kwargs, num_layers
):
    theirs, ours = _pair(torch_cls, our_cls, kwargs, I=3, H=4, num_layers=num_layers)
    lengths = [6, 2, 4, 1]
    x = _padded_batch(len(lengths), 6, 3, lengths)
    x.requires_grad_(True)
    out, hn = ours(x, lengths=torch.tensor(lengths))
    out.pow(2).sum().backward()
    grad_padded = x.grad.clone()
    for b, n in enumerate(lengths):
        x_b = x[b : b + 1, :n].detach().clone().requires_grad_(True)
        out_b, hn_b = ours(x_b)
        torch.testing.assert_close(out[b, :n], out_b[0], **TOL)
        assert torch.all(out[b, n:] == 0), "outputs past the length must be zero"
        for full, alone in zip(_flat(hn), _flat(hn_b)):
            torch.testing.assert_close(full[:, b], alone[:, 0], **TOL)
        out_b.pow(2).sum().backward()
        torch.testing.assert_close(grad_padded[b, :n], x_b.grad[0], **TOL)
        assert torch.all(grad_padded[b, n:] == 0), "padding must receive no gradient"

    # PyTorch's own way of handling padding gives the same final states.
    packed = pack_padded_sequence(
        x, torch.tensor(lengths), batch_first=True, enforce_sorted=False
    )
    out_packed, hn_t = theirs(packed)
    out_t, _ = pad_packed_sequence(out_packed, batch_first=True, total_length=6)
    torch.testing.assert_close(out, out_t, **TOL)
    for a, b in zip(_flat(hn), _flat(hn_t)):
        torch.testing.assert_close(a, b, **TOL)


@settings(max_examples=25, deadline=None)
@given(
    kind=st.sampled_from([RNN, LSTM, GRU]),
    lengths=st.lists(st.integers(1, 7), min_size=1, max_size=4),
    extra=st.integers(0, 3),
)
def test_padding_never_changes_real_tokens(kind, lengths, extra):
    torch.manual_seed(0)
    layer = kind(2, 3, num_layers=2, dtype=F64)
    T = max(lengths) + extra
    x = _padded_batch(len(lengths), T, 2, lengths, seed=len(lengths) + extra)
    y = x.clone()
    for b, n in enumerate(lengths):
        y[b, n:] = -y[b, n:]  # different padding content
    out_x, hn_x = layer(x, lengths=lengths)
    out_y, hn_y = layer(y, lengths=lengths)
    torch.testing.assert_close(out_x, out_y, **TOL)
    for a, b in zip(_flat(hn_x), _flat(hn_y)):
        torch.testing.assert_close(a, b, **TOL)
    # Full-length lengths give exactly the unmasked run.
    full = [T] * len(lengths)
    torch.testing.assert_close(layer(x, lengths=full)[0], layer(x)[0], **TOL)


def test_zero_length_keeps_initial_state():
    layer = LSTM(2, 3, dtype=F64)
    h0 = (torch.randn(1, 2, 3, dtype=F64), torch.randn(1, 2, 3, dtype=F64))
    out, (h, c) = layer(torch.randn(2, 4, 2, dtype=F64), h0, lengths=[0, 4])
    assert torch.all(out[0] == 0)
    torch.testing.assert_close(h[:, 0], h0[0][:, 0])
    torch.testing.assert_close(c[:, 0], h0[1][:, 0])


# --------------------------------------------------------------------------- dropout,
# helpers


def test_dropout_only_between_layers_and_only_in_training():
    torch.manual_seed(0)
    with_dropout = GRU(3, 8, num_layers=2, dropout=0.5, dtype=F64)
    without = GRU(3, 8, num_layers=2, dtype=F64)
    without.load_state_dict(with_dropout.state_dict())
    x = torch.randn(2, 5, 3, dtype=F64)
    with_dropout.eval()
    torch.testing.assert_close(with_dropout(x)[0], without(x)[0], **TOL)
    with_dropout.train()
    assert not torch.allclose(with_dropout(x)[0], without(x)[0])
    single = GRU(3, 8, num_layers=1, dropout=0.5, dtype=F64).train()
    single_ref = GRU(3, 8, dtype=F64)
    single_ref.load_state_dict(single.state_dict())
    # last layer: no dropout
    torch.testing.assert_close(single(x)[0], single_ref(x)[0], **TOL)


def test_gradient_norm_by_distance_matches_autograd_and_vanishes():
    torch.manual_seed(0)
    layer = RNN(2, 4, dtype=F64)
    x = torch.randn(3, 6, 2, dtype=F64)
    norms = gradient_norm_by_distance(
        layer, x, generator=torch.Generator().manual_seed(5)
    )
    assert norms.shape == (6,)
    # Recompute by hand with the same random directions.
    u = torch.randn(3, 4, generator=torch.Generator().manual_seed(5), dtype=F64)
    u = u / u.norm(dim=-1, keepdim=True)
    xr = x.clone().requires_grad_(True)
    ((layer(xr)[0][:, -1] * u).sum()).backward()
    expected = xr.grad.pow(2).sum(-1).mean(0).sqrt().flip(0)
    torch.testing.assert_close(norms, expected, **TOL)

    # A contracting recurrent matrix (spectral radius 0.3) makes the gradient vanish.
    with torch.no_grad():
        q, _ = torch.linalg.qr(torch.randn(4, 4, dtype=F64))
        layer.cells[0].weight_hh.copy_(0.3 * q)
    norms = gradient_norm_by_distance(layer, torch.randn(8, 20, 2, dtype=F64))
    assert norms[-1] < 1e-6 * norms[0]
    assert torch.all(norms[1:] < norms[:-1])


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize("cls", [RNN, LSTM, GRU])
def test_layer_errors_name_expected_and_actual(cls):
    layer = cls(4, 3, num_layers=2)
    with pytest.raises(ValueError, match=r"\(B, T, 4\).*\(2, 5, 6\)"):
        layer(torch.randn(2, 5, 6))
    with pytest.raises(ValueError, match=r"unsqueeze"):
        layer(torch.randn(5, 4))
    with pytest.raises(TypeError, match="Embedding"):
        layer(torch.randint(0, 9, (2, 5, 4)))
    with pytest.raises(TypeError, match="float64.*float32"):
        layer(torch.randn(2, 5, 4, dtype=F64))
    with pytest.raises(ValueError, match=r"\(2,\).*\(3,\)"):
        layer(torch.randn(2, 5, 4), lengths=torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match=r"\[0, 5\].*max 7"):
        layer(torch.randn(2, 5, 4), lengths=torch.tensor([7, 2]))
    with pytest.raises(TypeError, match="integers"):
        layer(torch.randn(2, 5, 4), lengths=torch.tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match="T = 0"):
        layer(torch.randn(2, 0, 4))
    bad = torch.zeros(1, 2, 3)  # one layer's worth of state for a two-layer stack
    if cls is LSTM:
        with pytest.raises(TypeError, match=r"pair \(h0, c0\)"):
            layer(torch.randn(2, 5, 4), torch.zeros(2, 2, 3))
        with pytest.raises(ValueError, match=r"h0.*\(2, 2, 3\).*\(1, 2, 3\)"):
            layer(torch.randn(2, 5, 4), (bad, bad))
    else:
        with pytest.raises(ValueError, match=r"h0.*\(2, 2, 3\).*\(1, 2, 3\)"):
            layer(torch.randn(2, 5, 4), bad)


@pytest.mark.parametrize("cls", [RNNCell, LSTMCell, GRUCell])
def test_cell_errors_name_expected_and_actual(cls):
    cell = cls(4, 3)
    with pytest.raises(ValueError, match=r"\(B, 4\).*\(2, 5\)"):
        cell(torch.randn(2, 5))
    bad_h = torch.zeros(2, 7)
    state = (bad_h, torch.zeros(2, 3)) if cls is LSTMCell else bad_h
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(2, 7\)"):
        cell(torch.randn(2, 4), state)


def test_constructor_and_loading_errors():
    with pytest.raises(ValueError, match="hidden_size"):
        RNN(3, 0)
    with pytest.raises(ValueError, match="nonlinearity"):
        RNN(3, 4, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match="dropout"):
        LSTM(3, 4, dropout=1.5)
    with pytest.raises(TypeError, match="nn.LSTM"):
        LSTM.from_torch(nn.GRU(3, 4))
    with pytest.raises(ValueError, match="bidirectional"):
        GRU.from_torch(nn.GRU(3, 4, bidirectional=True))
    with pytest.raises(ValueError, match="num_layers"):
        load_torch_weights(RNN(3, 4), nn.RNN(3, 4, num_layers=2))
    with pytest.raises(ValueError, match=r"\(4, 5\).*\(4, 3\)"):
        load_torch_weights(RNN(3, 4), nn.RNN(5, 4))
    with pytest.raises(ValueError, match="nonlinearities"):
        load_torch_weights(RNN(3, 4), nn.RNN(3, 4, nonlinearity="relu"))
    with pytest.raises(TypeError, match="nn.GRUCell"):
        GRUCell.from_torch(nn.GRU(3, 4))


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_sequence_classifier_ignores_padding(kind):
    torch.manual_seed(0)
    model = SequenceClassifier(
        10, 3, kind=kind, embed_size=4, hidden_size=5, pad_id=0
    ).double()
    ids = torch.tensor([[4, 5, 6, 0, 0], [7, 8, 9, 5, 4]])
    logits = model(ids)
    assert logits.shape == (2, 3)
    torch.testing.assert_close(logits[0], model(ids[:1, :3])[0], **TOL)
    with pytest.raises(ValueError, match="token ids"):
        model(torch.randn(2, 5))
    with pytest.raises(ValueError, match="kind"):
        SequenceClassifier(10, 3, kind="transformer")
