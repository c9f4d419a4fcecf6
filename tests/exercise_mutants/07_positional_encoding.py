"""Plausible wrong answers to the chapter 7 exercises; each must lose points."""

WRONG_ANSWERS = {
    # one frequency per dimension instead of per (sin, cos) pair: exponent i/d, not 2i/d
    "q1_sinusoidal_table": """def sinusoidal_encoding(n_positions, d_model, base=10000.0):
    positions = torch.arange(n_positions, dtype=torch.float64)[:, None]
    freqs = base ** (-torch.arange(d_model // 2, dtype=torch.float64) / d_model)
    table = torch.zeros(n_positions, d_model, dtype=torch.float64)
    table[:, 0::2] = torch.sin(positions * freqs)
    table[:, 1::2] = torch.cos(positions * freqs)
    return table.float()
""",
    # rotates the two halves of the vector instead of adjacent pairs
    "q2_rope": """def apply_rope(x, positions, base=10000.0):
    D = x.shape[-1]
    theta = base ** (-torch.arange(0, D, 2, dtype=torch.float64) / D)
    angles = positions.to(torch.float64)[:, None] * theta
    cos, sin = torch.cos(angles).to(x.dtype), torch.sin(angles).to(x.dtype)
    a, b = x[..., : D // 2], x[..., D // 2 :]
    return torch.cat([a * cos - b * sin, a * sin + b * cos], dim=-1)
""",
    # appends the first slopes of the 2k sequence instead of every other one
    "q3_alibi_slopes": """def alibi_slopes(n_heads):
    def geometric(n):
        ratio = 2.0 ** (-8.0 / n)
        return [ratio ** (h + 1) for h in range(n)]

    k = 2 ** int(math.floor(math.log2(n_heads)))
    return torch.tensor(geometric(k) + geometric(2 * k)[: n_heads - k])
""",
    # signed distance instead of its absolute value: rewards keys in the past
    "q4_alibi_bias": """def alibi_bias(slopes, T):
    positions = torch.arange(T)
    distance = positions[None, :] - positions[:, None]
    return -slopes[:, None, None] * distance[None].to(slopes.dtype)
""",
}
