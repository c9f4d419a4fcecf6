"""Answers to the chapter 3 exercises that the grader must judge.

``WRONG_ANSWERS``: plausible mistakes, each of which must lose at least half of
its question. ``ALTERNATIVES``: correct answers written differently from the
reference, each of which must keep full marks.
"""

WRONG_ANSWERS = {
    "q1_lstm_step": [
        # output straight from the cell state, forgetting the tanh in h = o * tanh(c)
        """def lstm_step(x_t, h_prev, c_prev, W_ih, W_hh, b):
    z = x_t @ W_ih.T + h_prev @ W_hh.T + b
    i, f, g, o = z.chunk(4, dim=-1)
    c = torch.sigmoid(f) * c_prev + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * c, c
""",
        # gate order i, f, o, g (another library's layout), not PyTorch's i, f, g, o
        """def lstm_step(x_t, h_prev, c_prev, W_ih, W_hh, b):
    z = x_t @ W_ih.T + h_prev @ W_hh.T + b
    i, f, o, g = z.chunk(4, dim=-1)
    c = torch.sigmoid(f) * c_prev + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c
""",
    ],
    "q2_gru_step": [
        # the update gate's roles swapped (the convention of the original paper, not PyTorch's)
        """def gru_step(x_t, h_prev, W_ih, W_hh, b_ih, b_hh):
    xr, xz, xn = (x_t @ W_ih.T + b_ih).chunk(3, dim=-1)
    hr, hz, hn = (h_prev @ W_hh.T + b_hh).chunk(3, dim=-1)
    r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
    n = torch.tanh(xn + r * hn)
    return z * n + (1 - z) * h_prev
""",
        # the reset gate multiplies the recurrent term but not its bias b_hn
        """def gru_step(x_t, h_prev, W_ih, W_hh, b_ih, b_hh):
    H = h_prev.shape[-1]
    xr, xz, xn = (x_t @ W_ih.T + b_ih).chunk(3, dim=-1)
    hr, hz, hn = (h_prev @ W_hh.T).chunk(3, dim=-1)
    br, bz, bn = b_hh.split(H)
    r, z = torch.sigmoid(xr + hr + br), torch.sigmoid(xz + hz + bz)
    n = torch.tanh(xn + r * hn + bn)
    return (1 - z) * n + z * h_prev
""",
    ],
    "q3_parameter_count": [
        # every layer counted with the input size of the first layer
        """def recurrent_parameter_count(kind, input_size, hidden_size, num_layers=1):
    gates = {"rnn": 1, "lstm": 4, "gru": 3}[kind]
    return num_layers * gates * hidden_size * (input_size + hidden_size + 2)
""",
        # hard-coded to the public example
        """def recurrent_parameter_count(kind, input_size, hidden_size, num_layers=1):
    return 36 if kind == "rnn" else 144
""",
        # one bias vector per layer instead of two
        """def recurrent_parameter_count(kind, input_size, hidden_size, num_layers=1):
    gates = {"rnn": 1, "lstm": 4, "gru": 3}[kind]
    total = 0
    for layer in range(num_layers):
        layer_input = input_size if layer == 0 else hidden_size
        total += gates * hidden_size * (layer_input + hidden_size + 1)
    return total
""",
    ],
    "q4_set_forget_bias": [
        # sets the first block, which is the input gate, not the forget gate
        """def set_forget_bias(lstm, value):
    size = lstm.hidden_size
    with torch.no_grad():
        for layer in range(lstm.num_layers):
            getattr(lstm, f"bias_ih_l{layer}")[:size] = value
            getattr(lstm, f"bias_hh_l{layer}")[:size] = 0.0
    return lstm
""",
        # only the first layer
        """def set_forget_bias(lstm, value):
    size = lstm.hidden_size
    with torch.no_grad():
        lstm.bias_ih_l0[size : 2 * size] = value
        lstm.bias_hh_l0[size : 2 * size] = 0.0
    return lstm
""",
    ],
}

ALTERNATIVES = {
    "q1_lstm_step": [
        # in float64, gates sliced by index
        """def lstm_step(x_t, h_prev, c_prev, W_ih, W_hh, b):
    H = h_prev.shape[-1]
    z = x_t.double() @ W_ih.double().T + h_prev.double() @ W_hh.double().T + b.double()
    i, f = torch.sigmoid(z[:, :H]), torch.sigmoid(z[:, H : 2 * H])
    g, o = torch.tanh(z[:, 2 * H : 3 * H]), torch.sigmoid(z[:, 3 * H :])
    c = f * c_prev.double() + i * g
    return o * torch.tanh(c), c
""",
    ],
    "q2_gru_step": [
        # in float64
        """def gru_step(x_t, h_prev, W_ih, W_hh, b_ih, b_hh):
    x_t, h_prev, W_ih, W_hh, b_ih, b_hh = (
        t.double() for t in (x_t, h_prev, W_ih, W_hh, b_ih, b_hh)
    )
    xr, xz, xn = (x_t @ W_ih.T + b_ih).chunk(3, dim=-1)
    hr, hz, hn = (h_prev @ W_hh.T + b_hh).chunk(3, dim=-1)
    r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
    return torch.lerp(torch.tanh(xn + r * hn), h_prev, z)
""",
    ],
    "q3_parameter_count": [
        # one formula for the first layer plus the others
        """def recurrent_parameter_count(kind, input_size, hidden_size, num_layers=1):
    G = {"rnn": 1, "lstm": 4, "gru": 3}[kind]
    first = G * hidden_size * (input_size + hidden_size + 2)
    return first + (num_layers - 1) * G * hidden_size * (2 * hidden_size + 2)
""",
    ],
    "q4_set_forget_bias": [
        # through named_parameters and .data, with a print
        """def set_forget_bias(lstm, value):
    H = lstm.hidden_size
    for name, p in lstm.named_parameters():
        if name.startswith("bias_ih"):
            p.data[H : 2 * H] = value
        elif name.startswith("bias_hh"):
            p.data[H : 2 * H] = 0.0
    print("forget bias set to", value)
    return lstm
""",
    ],
}
