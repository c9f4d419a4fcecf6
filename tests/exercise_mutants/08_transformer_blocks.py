"""Answers to the chapter 8 exercises that the grader must judge.

``WRONG_ANSWERS``: plausible mistakes, each of which must lose at least half of
its question. ``ALTERNATIVES``: correct answers written differently from the
reference, each of which must keep full marks.
"""

WRONG_ANSWERS = {
    "q1_layer_norm": [
        # unbiased variance (divides by C - 1), as torch.var does by default
        """def layer_norm(x, gamma, beta, eps=1e-5):
    mean = x.mean(dim=-1, keepdim=True)
    var = x.var(dim=-1, keepdim=True)
    return gamma * (x - mean) / torch.sqrt(var + eps) + beta
""",
        # forgets eps: a constant vector divides 0 by 0
        """def layer_norm(x, gamma, beta, eps=1e-5):
    mean = x.mean(dim=-1, keepdim=True)
    std = ((x - mean) ** 2).mean(dim=-1, keepdim=True).sqrt()
    return gamma * (x - mean) / std + beta
""",
    ],
    "q2_pre_ln_residual": [
        # post-LN instead of pre-LN: normalises the sum
        """def pre_ln_residual(x, sublayer, norm):
    return norm(x + sublayer(x))
""",
        # the residual adds the normalised input instead of the raw one
        """def pre_ln_residual(x, sublayer, norm):
    h = norm(x)
    return h + sublayer(h)
""",
    ],
    "q3_feed_forward": [
        # ReLU in the wrong place: after the second layer
        """def feed_forward(x, w1, b1, w2, b2):
    return torch.relu((x @ w1.T + b1) @ w2.T + b2)
""",
        # forgets nn.Linear's (out, in) layout: no transposes
        """def feed_forward(x, w1, b1, w2, b2):
    return torch.relu(x @ w1 + b1) @ w2 + b2
""",
    ],
}

ALTERNATIVES = {
    "q1_layer_norm": [
        # float64, biased variance from torch.var, rsqrt
        """def layer_norm(x, gamma, beta, eps=1e-5):
    x = x.double()
    var, mean = torch.var_mean(x, dim=-1, keepdim=True, correction=0)
    return (x - mean) * torch.rsqrt(var + eps) * gamma.double() + beta.double()
""",
    ],
    "q3_feed_forward": [
        # through F.linear, in float64
        """def feed_forward(x, w1, b1, w2, b2):
    hidden = F.relu(F.linear(x.double(), w1.double(), b1.double()))
    return F.linear(hidden, w2.double(), b2.double())
""",
    ],
}
