"""Answers to the chapter 7 exercises that the grader must judge.

``WRONG_ANSWERS``: plausible mistakes, each of which must lose at least half of
its question. ``ALTERNATIVES``: correct answers written differently from the
reference, each of which must keep full marks.
"""

WRONG_ANSWERS = {
    "q1_sinusoidal_table": [
        # one frequency per dimension instead of per (sin, cos) pair: exponent i/d, not 2i/d
        """def sinusoidal_encoding(n_positions, d_model, base=10000.0):
    positions = torch.arange(n_positions, dtype=torch.float64)[:, None]
    freqs = base ** (-torch.arange(d_model // 2, dtype=torch.float64) / d_model)
    table = torch.zeros(n_positions, d_model, dtype=torch.float64)
    table[:, 0::2] = torch.sin(positions * freqs)
    table[:, 1::2] = torch.cos(positions * freqs)
    return table.float()
""",
        # all the sines first, then all the cosines, instead of interleaved pairs
        """def sinusoidal_encoding(n_positions, d_model, base=10000.0):
    positions = torch.arange(n_positions, dtype=torch.float64)[:, None]
    freqs = base ** (-torch.arange(0, d_model, 2, dtype=torch.float64) / d_model)
    angles = positions * freqs
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1).float()
""",
    ],
    "q2_rope": [
        # rotates the two halves of the vector instead of adjacent pairs
        """def apply_rope(x, positions, base=10000.0):
    D = x.shape[-1]
    theta = base ** (-torch.arange(0, D, 2, dtype=torch.float64) / D)
    angles = positions.to(torch.float64)[:, None] * theta
    cos, sin = torch.cos(angles).to(x.dtype), torch.sin(angles).to(x.dtype)
    a, b = x[..., : D // 2], x[..., D // 2 :]
    return torch.cat([a * cos - b * sin, a * sin + b * cos], dim=-1)
""",
        # frequencies base^(-i/D) instead of base^(-2i/D): still relative, but not RoPE
        """def apply_rope(x, positions, base=10000.0):
    D = x.shape[-1]
    theta = base ** (-torch.arange(D // 2, dtype=torch.float64) / D)
    angles = positions.to(torch.float64)[:, None] * theta
    cos, sin = torch.cos(angles).to(x.dtype), torch.sin(angles).to(x.dtype)
    a, b = x[..., 0::2], x[..., 1::2]
    out = torch.empty_like(x)
    out[..., 0::2] = a * cos - b * sin
    out[..., 1::2] = a * sin + b * cos
    return out
""",
        # rotates clockwise: the sign of the sine flipped
        """def apply_rope(x, positions, base=10000.0):
    D = x.shape[-1]
    theta = base ** (-torch.arange(0, D, 2, dtype=torch.float64) / D)
    angles = positions.to(torch.float64)[:, None] * theta
    cos, sin = torch.cos(angles).to(x.dtype), torch.sin(angles).to(x.dtype)
    a, b = x[..., 0::2], x[..., 1::2]
    out = torch.empty_like(x)
    out[..., 0::2] = a * cos + b * sin
    out[..., 1::2] = -a * sin + b * cos
    return out
""",
    ],
    "q3_alibi_slopes": [
        # appends the first slopes of the 2k sequence instead of every other one
        """def alibi_slopes(n_heads):
    def geometric(n):
        ratio = 2.0 ** (-8.0 / n)
        return [ratio ** (h + 1) for h in range(n)]

    k = 2 ** int(math.floor(math.log2(n_heads)))
    return torch.tensor(geometric(k) + geometric(2 * k)[: n_heads - k])
""",
        # the power-of-two formula for every head count
        """def alibi_slopes(n_heads):
    ratio = 2.0 ** (-8.0 / n_heads)
    return torch.tensor([ratio ** (h + 1) for h in range(n_heads)])
""",
    ],
    "q4_alibi_bias": [
        # signed distance instead of its absolute value: rewards keys in the past
        """def alibi_bias(slopes, T):
    positions = torch.arange(T)
    distance = positions[None, :] - positions[:, None]
    return -slopes[:, None, None] * distance[None].to(slopes.dtype)
""",
        # forgets the minus sign: a reward that grows with distance
        """def alibi_bias(slopes, T):
    positions = torch.arange(T)
    distance = (positions[None, :] - positions[:, None]).abs()
    return slopes[:, None, None] * distance[None].to(slopes.dtype)
""",
    ],
}

ALTERNATIVES = {
    "q1_sinusoidal_table": [
        # float64 table, returned as float64, built with torch.stack
        """def sinusoidal_encoding(n_positions, d_model, base=10000.0):
    p = torch.arange(n_positions, dtype=torch.float64)[:, None]
    inv = torch.exp(-math.log(base) * torch.arange(0, d_model, 2, dtype=torch.float64) / d_model)
    return torch.stack([torch.sin(p * inv), torch.cos(p * inv)], dim=-1).flatten(1)
""",
    ],
    "q2_rope": [
        # the usual float32 angle table, complex multiplication
        """def apply_rope(x, positions, base=10000.0):
    D = x.shape[-1]
    inv_freq = 1.0 / (base ** (torch.arange(0, D, 2).float() / D))
    angles = torch.outer(positions.float(), inv_freq)
    rot = torch.polar(torch.ones_like(angles), angles)
    pairs = torch.view_as_complex(x.float().reshape(*x.shape[:-1], D // 2, 2).contiguous())
    return torch.view_as_real(pairs * rot).flatten(-2).to(x.dtype)
""",
    ],
    "q3_alibi_slopes": [
        # float64 tensor, slopes by exponent
        """def alibi_slopes(n_heads):
    k = 1
    while 2 * k <= n_heads:
        k *= 2
    exps = [8 * (h + 1) / k for h in range(k)]
    exps += [8 * (h + 1) / (2 * k) for h in range(0, 2 * (n_heads - k), 2)]
    return torch.tensor([2.0 ** -e for e in exps], dtype=torch.float64)
""",
    ],
    "q4_alibi_bias": [
        # float64, through torch.cdist
        """def alibi_bias(slopes, T):
    pos = torch.arange(T, dtype=torch.float64)[:, None]
    return -slopes.double()[:, None, None] * torch.cdist(pos, pos, p=1)
""",
    ],
}
