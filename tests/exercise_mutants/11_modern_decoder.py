"""Answers to the chapter 11 exercises that the grader must judge.

``WRONG_ANSWERS``: plausible mistakes, each of which must lose at least half of
its question. ``ALTERNATIVES``: correct answers written differently from the
reference, each of which must keep full marks.
"""

WRONG_ANSWERS = {
    "q1_rms_norm": [
        # layer normalisation's habit: the mean subtracted first
        """def rms_norm(x, weight, eps):
    centred = x - x.mean(dim=-1, keepdim=True)
    return weight * centred / torch.sqrt(centred.pow(2).mean(dim=-1, keepdim=True) + eps)
""",
        # eps added after the square root
        """def rms_norm(x, weight, eps):
    return weight * x / (torch.sqrt(x.pow(2).mean(dim=-1, keepdim=True)) + eps)
""",
        # the statistic over the first dimension instead of the last
        """def rms_norm(x, weight, eps):
    return weight * x / torch.sqrt(x.pow(2).mean(dim=0, keepdim=True) + eps)
""",
        # the root of the sum, not of the mean
        """def rms_norm(x, weight, eps):
    return weight * x / torch.sqrt(x.pow(2).sum(dim=-1, keepdim=True) + eps)
""",
        # normalised in place, into the caller's tensor
        """def rms_norm(x, weight, eps):
    x /= torch.sqrt(x.pow(2).mean(dim=-1, keepdim=True) + eps)
    return weight * x
""",
    ],
    "q2_swiglu": [
        # silu on the up projection instead of the gate
        """def swiglu(x, w_gate, w_up, w_down):
    return ((x @ w_gate.T) * F.silu(x @ w_up.T)) @ w_down.T
""",
        # a sigmoid gate (the original GLU), not silu
        """def swiglu(x, w_gate, w_up, w_down):
    return (torch.sigmoid(x @ w_gate.T) * (x @ w_up.T)) @ w_down.T
""",
        # silu applied after the product
        """def swiglu(x, w_gate, w_up, w_down):
    return F.silu((x @ w_gate.T) * (x @ w_up.T)) @ w_down.T
""",
        # GELU instead of silu
        """def swiglu(x, w_gate, w_up, w_down):
    return (F.gelu(x @ w_gate.T) * (x @ w_up.T)) @ w_down.T
""",
    ],
    "q3_repeat_kv": [
        # tiled instead of grouped: heads come out 0, 1, 0, 1
        """def repeat_kv(kv, n_heads):
    G = kv.shape[1]
    if n_heads % G:
        raise ValueError("n_heads must be a multiple of G")
    return kv.repeat(1, n_heads // G, 1, 1)
""",
        # grouped correctly, but a bad head count goes through silently
        """def repeat_kv(kv, n_heads):
    G = kv.shape[1]
    return kv.repeat_interleave(max(1, n_heads // G), dim=1)
""",
        # repeated along the sequence, then reshaped: the heads are mixed with positions
        """def repeat_kv(kv, n_heads):
    B, G, S, D = kv.shape
    if n_heads % G:
        raise ValueError("n_heads must be a multiple of G")
    return kv.repeat_interleave(n_heads // G, dim=2).reshape(B, n_heads, S, D)
""",
    ],
}

ALTERNATIVES = {
    "q1_rms_norm": [
        # float64, rsqrt and a print
        """def rms_norm(x, weight, eps):
    h = x.double()
    inv = torch.rsqrt((h * h).sum(-1, keepdim=True) / h.shape[-1] + eps)
    print("normalised", h.shape[-1], "features")
    return (h * inv) * weight.double()
""",
        # through torch's own function
        """def rms_norm(x, weight, eps):
    return F.rms_norm(x, (x.shape[-1],), weight=weight, eps=eps)
""",
    ],
    "q2_swiglu": [
        # silu written out, einsum, float64
        """def swiglu(x, w_gate, w_up, w_down):
    xd = x.double()
    gate = torch.einsum("...c,fc->...f", xd, w_gate.double())
    up = torch.einsum("...c,fc->...f", xd, w_up.double())
    return torch.einsum("...f,cf->...c", gate * torch.sigmoid(gate) * up, w_down.double())
""",
        # through F.linear
        """def swiglu(x, w_gate, w_up, w_down):
    return F.linear(F.silu(F.linear(x, w_gate)) * F.linear(x, w_up), w_down)
""",
    ],
    "q3_repeat_kv": [
        # expand and reshape, as Hugging Face's repeat_kv does
        """def repeat_kv(kv, n_heads):
    B, G, S, D = kv.shape
    if n_heads % G != 0:
        raise ValueError(f"{n_heads} heads cannot share {G} key/value heads equally")
    return kv[:, :, None].expand(B, G, n_heads // G, S, D).reshape(B, n_heads, S, D)
""",
        # an index per query head, with a print
        """def repeat_kv(kv, n_heads):
    G = kv.shape[1]
    if n_heads % G:
        raise ValueError("bad head count")
    index = torch.tensor([h // (n_heads // G) for h in range(n_heads)])
    print("query head -> key/value head:", index.tolist())
    return kv.index_select(1, index)
""",
    ],
}
