"""Plausible wrong answers to the chapter 8 exercises; each must lose points."""

WRONG_ANSWERS = {
    # unbiased variance (divides by C - 1), as torch.var does by default
    "q1_layer_norm": """def layer_norm(x, gamma, beta, eps=1e-5):
    mean = x.mean(dim=-1, keepdim=True)
    var = x.var(dim=-1, keepdim=True)
    return gamma * (x - mean) / torch.sqrt(var + eps) + beta
""",
    # post-LN instead of pre-LN: normalises the sum
    "q2_pre_ln_residual": """def pre_ln_residual(x, sublayer, norm):
    return norm(x + sublayer(x))
""",
    # ReLU in the wrong place: after the second layer
    "q3_feed_forward": """def feed_forward(x, w1, b1, w2, b2):
    return torch.relu((x @ w1.T + b1) @ w2.T + b2)
""",
}
