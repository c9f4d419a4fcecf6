"""Answers to the chapter 2 exercises that the grader must judge.

``WRONG_ANSWERS``: plausible mistakes, each of which must lose at least half of
its question. ``ALTERNATIVES``: correct answers written differently from the
reference, each of which must keep full marks.
"""

WRONG_ANSWERS = {
    "q1_rnn_step": [
        # forgets the transposes: only right when the matrices happen to be symmetric
        """def rnn_step(x_t, h_prev, W_ih, W_hh, b):
    return torch.tanh(x_t @ W_ih + h_prev @ W_hh + b)
""",
        # ReLU instead of tanh
        """def rnn_step(x_t, h_prev, W_ih, W_hh, b):
    return torch.relu(x_t @ W_ih.T + h_prev @ W_hh.T + b)
""",
    ],
    "q2_last_states": [
        # takes the state after the padding instead of at the last real token
        """def last_states(outputs, lengths):
    return outputs[:, -1]
""",
        # a bare .squeeze(): a batch of one (or H = 1) loses its dimensions
        """def last_states(outputs, lengths):
    index = (lengths - 1).view(-1, 1, 1).expand(-1, 1, outputs.size(2))
    return outputs.gather(1, index).squeeze()
""",
    ],
    "q3_clip_by_global_norm": [
        # clips each tensor by its own norm instead of the global norm
        """def clip_by_global_norm(grads, max_norm):
    total = torch.sqrt(sum((g ** 2).sum() for g in grads)).item()
    return [g * min(1.0, max_norm / max(g.norm().item(), 1e-12)) for g in grads], total
""",
        # scales the caller's tensors in place
        """def clip_by_global_norm(grads, max_norm):
    total = torch.sqrt(sum((g.double() ** 2).sum() for g in grads)).item()
    scale = min(1.0, max_norm / total)
    return [g.mul_(scale) for g in grads], total
""",
    ],
    "q4_gradient_decay": [
        # uses the largest singular value of W instead of the eigenvalues, and its power
        """def gradient_decay(W_hh, d):
    sigma = torch.linalg.matrix_norm(W_hh, ord=2).item()
    return sigma, sigma ** d
""",
        # drops the imaginary parts of complex eigenvalues
        """def gradient_decay(W_hh, d):
    radius = torch.linalg.eigvals(W_hh).real.abs().max().item()
    power = torch.linalg.matrix_power(W_hh, d)
    return radius, torch.linalg.matrix_norm(power, ord=2).item()
""",
    ],
}

ALTERNATIVES = {
    "q1_rnn_step": [
        # computed and returned in float64 whatever the input dtype
        """def rnn_step(x_t, h_prev, W_ih, W_hh, b):
    x_t, h_prev, W_ih, W_hh, b = (t.double() for t in (x_t, h_prev, W_ih, W_hh, b))
    return torch.tanh(torch.addmm(b, x_t, W_ih.T) + h_prev @ W_hh.T)
""",
    ],
    "q2_last_states": [
        # gather, squeezing only the time dimension
        """def last_states(outputs, lengths):
    index = (lengths - 1).view(-1, 1, 1).expand(-1, 1, outputs.size(2))
    return outputs.gather(1, index).squeeze(1)
""",
    ],
    "q3_clip_by_global_norm": [
        # float64 results, norm from one concatenated vector
        """def clip_by_global_norm(grads, max_norm):
    flat = torch.cat([g.reshape(-1).double() for g in grads])
    norm = torch.linalg.vector_norm(flat).item()
    scale = max_norm / norm if norm > max_norm else 1.0
    return [g.double() * scale for g in grads], norm
""",
    ],
    "q4_gradient_decay": [
        # in float64 throughout
        """def gradient_decay(W_hh, d):
    W = W_hh.double()
    radius = float(torch.linalg.eigvals(W).abs().max())
    return radius, float(torch.linalg.svdvals(torch.linalg.matrix_power(W, d))[0])
""",
    ],
}
