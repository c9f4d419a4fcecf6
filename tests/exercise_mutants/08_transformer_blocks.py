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
    "q4_encoder_block": [
        # pre-LN instead of the post-LN block asked for: normalises the inputs
        """def encoder_block(x, keep, p, n_heads, eps=1e-5):
    B, S, C = x.shape
    H, D = n_heads, C // n_heads

    def split(t):
        return t.reshape(B, S, H, D).transpose(1, 2)

    def norm(t, g, b):
        return F.layer_norm(t, (C,), g, b, eps)

    def attention(h):
        q = split(h @ p["wq"].T + p["bq"])
        k = split(h @ p["wk"].T + p["bk"])
        v = split(h @ p["wv"].T + p["bv"])
        s = q @ k.transpose(-2, -1) / D**0.5
        s = s.masked_fill(~keep[:, None, None, :], float("-inf"))
        out = (s.softmax(-1) @ v).transpose(1, 2).reshape(B, S, C)
        return out @ p["wo"].T + p["bo"]

    def ffn(h):
        return torch.relu(h @ p["w1"].T + p["b1"]) @ p["w2"].T + p["b2"]

    z = x + attention(norm(x, p["gamma1"], p["beta1"]))
    return z + ffn(norm(z, p["gamma2"], p["beta2"]))
""",
        # ignores the padding mask: queries attend to padding keys too
        """def encoder_block(x, keep, p, n_heads, eps=1e-5):
    B, S, C = x.shape
    H, D = n_heads, C // n_heads

    def split(t):
        return t.reshape(B, S, H, D).transpose(1, 2)

    def norm(t, g, b):
        return F.layer_norm(t, (C,), g, b, eps)

    def attention(h):
        q = split(h @ p["wq"].T + p["bq"])
        k = split(h @ p["wk"].T + p["bk"])
        v = split(h @ p["wv"].T + p["bv"])
        s = q @ k.transpose(-2, -1) / D**0.5
        out = (s.softmax(-1) @ v).transpose(1, 2).reshape(B, S, C)
        return out @ p["wo"].T + p["bo"]

    def ffn(h):
        return torch.relu(h @ p["w1"].T + p["b1"]) @ p["w2"].T + p["b2"]

    z = norm(x + attention(x), p["gamma1"], p["beta1"])
    return norm(z + ffn(z), p["gamma2"], p["beta2"])
""",
        # scales the scores by sqrt(C), the model size, instead of sqrt(D), a head's
        """def encoder_block(x, keep, p, n_heads, eps=1e-5):
    B, S, C = x.shape
    H, D = n_heads, C // n_heads

    def split(t):
        return t.reshape(B, S, H, D).transpose(1, 2)

    def norm(t, g, b):
        return F.layer_norm(t, (C,), g, b, eps)

    def attention(h):
        q = split(h @ p["wq"].T + p["bq"])
        k = split(h @ p["wk"].T + p["bk"])
        v = split(h @ p["wv"].T + p["bv"])
        s = q @ k.transpose(-2, -1) / C**0.5
        s = s.masked_fill(~keep[:, None, None, :], float("-inf"))
        out = (s.softmax(-1) @ v).transpose(1, 2).reshape(B, S, C)
        return out @ p["wo"].T + p["bo"]

    def ffn(h):
        return torch.relu(h @ p["w1"].T + p["b1"]) @ p["w2"].T + p["b2"]

    z = norm(x + attention(x), p["gamma1"], p["beta1"])
    return norm(z + ffn(z), p["gamma2"], p["beta2"])
""",
        # splits heads with a bare reshape to (B, H, S, D): mixes positions, features
        """def encoder_block(x, keep, p, n_heads, eps=1e-5):
    B, S, C = x.shape
    H, D = n_heads, C // n_heads

    def split(t):
        return t.reshape(B, S, H, D).transpose(1, 2)

    def norm(t, g, b):
        return F.layer_norm(t, (C,), g, b, eps)

    def attention(h):
        q = (h @ p["wq"].T + p["bq"])
        k = (h @ p["wk"].T + p["bk"])
        v = (h @ p["wv"].T + p["bv"])
        q, k, v = (t.reshape(B, H, S, D) for t in (q, k, v))
        s = q @ k.transpose(-2, -1) / D**0.5
        s = s.masked_fill(~keep[:, None, None, :], float("-inf"))
        out = (s.softmax(-1) @ v).reshape(B, S, C)
        return out @ p["wo"].T + p["bo"]

    def ffn(h):
        return torch.relu(h @ p["w1"].T + p["b1"]) @ p["w2"].T + p["b2"]

    z = norm(x + attention(x), p["gamma1"], p["beta1"])
    return norm(z + ffn(z), p["gamma2"], p["beta2"])
""",
        # forgets the residual around the FFN: E = LN2(FFN(Z))
        """def encoder_block(x, keep, p, n_heads, eps=1e-5):
    B, S, C = x.shape
    H, D = n_heads, C // n_heads

    def split(t):
        return t.reshape(B, S, H, D).transpose(1, 2)

    def norm(t, g, b):
        return F.layer_norm(t, (C,), g, b, eps)

    def attention(h):
        q = split(h @ p["wq"].T + p["bq"])
        k = split(h @ p["wk"].T + p["bk"])
        v = split(h @ p["wv"].T + p["bv"])
        s = q @ k.transpose(-2, -1) / D**0.5
        s = s.masked_fill(~keep[:, None, None, :], float("-inf"))
        out = (s.softmax(-1) @ v).transpose(1, 2).reshape(B, S, C)
        return out @ p["wo"].T + p["bo"]

    def ffn(h):
        return torch.relu(h @ p["w1"].T + p["b1"]) @ p["w2"].T + p["b2"]

    z = norm(x + attention(x), p["gamma1"], p["beta1"])
    return norm(ffn(z), p["gamma2"], p["beta2"])
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
    "q4_encoder_block": [
        # fused attention (bool mask, True = may attend), F.linear, F.layer_norm
        """def encoder_block(x, keep, p, n_heads, eps=1e-5):
    B, S, C = x.shape
    D = C // n_heads

    def split(t):
        return t.view(B, S, n_heads, D).permute(0, 2, 1, 3)

    q, k, v = (split(F.linear(x, p["w" + n], p["b" + n])) for n in "qkv")
    att = F.scaled_dot_product_attention(q, k, v, attn_mask=keep[:, None, None, :])
    att = F.linear(att.permute(0, 2, 1, 3).reshape(B, S, C), p["wo"], p["bo"])
    z = F.layer_norm(x + att, (C,), p["gamma1"], p["beta1"], eps)
    h = F.linear(F.relu(F.linear(z, p["w1"], p["b1"])), p["w2"], p["b2"])
    return F.layer_norm(z + h, (C,), p["gamma2"], p["beta2"], eps)
""",
        # in float64, one head at a time with einsum, and a print
        """def encoder_block(x, keep, p, n_heads, eps=1e-5):
    x = x.double()
    q = {n: p[n].double() for n in p}
    B, S, C = x.shape
    D = C // n_heads
    heads = []
    for h in range(n_heads):
        cols = slice(h * D, (h + 1) * D)
        qh = x @ q["wq"][cols].T + q["bq"][cols]
        kh = x @ q["wk"][cols].T + q["bk"][cols]
        vh = x @ q["wv"][cols].T + q["bv"][cols]
        s = torch.einsum("bsd,btd->bst", qh, kh) / D**0.5
        s = torch.where(keep[:, None, :], s, torch.tensor(-1e30, dtype=s.dtype))
        heads.append(torch.softmax(s, dim=-1) @ vh)
    att = torch.cat(heads, dim=-1) @ q["wo"].T + q["bo"]

    def norm(t, g, b):
        var, mu = torch.var_mean(t, dim=-1, keepdim=True, correction=0)
        return (t - mu) * torch.rsqrt(var + eps) * g + b

    z = norm(x + att, q["gamma1"], q["beta1"])
    print("z", tuple(z.shape))
    f = torch.clamp(z @ q["w1"].T + q["b1"], min=0) @ q["w2"].T + q["b2"]
    return norm(z + f, q["gamma2"], q["beta2"])
""",
    ],
}
