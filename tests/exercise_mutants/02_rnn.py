"""Plausible wrong answers to the chapter 2 exercises; each must lose points."""

WRONG_ANSWERS = {
    # forgets the transposes: only right when the matrices happen to be symmetric
    "q1_rnn_step": """def rnn_step(x_t, h_prev, W_ih, W_hh, b):
    return torch.tanh(x_t @ W_ih + h_prev @ W_hh + b)
""",
    # takes the state after the padding instead of at the last real token
    "q2_last_states": """def last_states(outputs, lengths):
    return outputs[:, -1]
""",
    # clips each tensor by its own norm instead of the global norm
    "q3_clip_by_global_norm": """def clip_by_global_norm(grads, max_norm):
    total = torch.sqrt(sum((g ** 2).sum() for g in grads)).item()
    return [g * min(1.0, max_norm / max(g.norm().item(), 1e-12)) for g in grads], total
""",
    # uses the largest singular value of W instead of the eigenvalues, and its power
    "q4_gradient_decay": """def gradient_decay(W_hh, d):
    sigma = torch.linalg.matrix_norm(W_hh, ord=2).item()
    return sigma, sigma ** d
""",
}
