"""Plausible wrong answers to the chapter 3 exercises; each must lose points."""

WRONG_ANSWERS = {
    # output straight from the cell state, forgetting the tanh in h = o * tanh(c)
    "q1_lstm_step": """def lstm_step(x_t, h_prev, c_prev, W_ih, W_hh, b):
    z = x_t @ W_ih.T + h_prev @ W_hh.T + b
    i, f, g, o = z.chunk(4, dim=-1)
    c = torch.sigmoid(f) * c_prev + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * c, c
""",
    # the update gate's roles swapped (the convention of the original paper, not PyTorch's)
    "q2_gru_step": """def gru_step(x_t, h_prev, W_ih, W_hh, b_ih, b_hh):
    xr, xz, xn = (x_t @ W_ih.T + b_ih).chunk(3, dim=-1)
    hr, hz, hn = (h_prev @ W_hh.T + b_hh).chunk(3, dim=-1)
    r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
    n = torch.tanh(xn + r * hn)
    return z * n + (1 - z) * h_prev
""",
    # every layer counted with the input size of the first layer
    "q3_parameter_count": """def recurrent_parameter_count(
    kind, input_size, hidden_size, num_layers=1
):
    gates = {"rnn": 1, "lstm": 4, "gru": 3}[kind]
    return num_layers * gates * hidden_size * (input_size + hidden_size + 2)
""",
    # sets the first block, which is the input gate, not the forget gate
    "q4_set_forget_bias": """def set_forget_bias(lstm, value):
    size = lstm.hidden_size
    with torch.no_grad():
        for layer in range(lstm.num_layers):
            getattr(lstm, f"bias_ih_l{layer}")[:size] = value
            getattr(lstm, f"bias_hh_l{layer}")[:size] = 0.0
    return lstm
""",
}
