"""Answers to the chapter 13 exercises that the grader must judge.

``WRONG_ANSWERS``: plausible mistakes, each of which must lose at least half of
its question. ``ALTERNATIVES``: correct answers written differently from the
reference, each of which must keep full marks.
"""

WRONG_ANSWERS = {
    "q1_online_softmax_two_blocks": [
        # each block normalised by its own maximum, never rescaled to the common one
        """def online_softmax_two_blocks(s1, v1, s2, v2):
    p1, p2 = torch.exp(s1 - s1.max()), torch.exp(s2 - s2.max())
    return (p1 @ v1 + p2 @ v2) / (p1.sum() + p2.sum())
""",
        # no maximum subtracted: exp overflows for large scores
        """def online_softmax_two_blocks(s1, v1, s2, v2):
    p1, p2 = torch.exp(s1), torch.exp(s2)
    return (p1 @ v1 + p2 @ v2) / (p1.sum() + p2.sum())
""",
        # the rescaling factor upside down
        """def online_softmax_two_blocks(s1, v1, s2, v2):
    m1 = s1.max()
    p1 = torch.exp(s1 - m1)
    m = torch.maximum(m1, s2.max())
    p2 = torch.exp(s2 - m)
    scale = torch.exp(m - m1)
    return (scale * (p1 @ v1) + p2 @ v2) / (scale * p1.sum() + p2.sum())
""",
        # the weighted sum, never divided by the sum of the weights
        """def online_softmax_two_blocks(s1, v1, s2, v2):
    m = torch.maximum(s1.max(), s2.max())
    return torch.exp(s1 - m) @ v1 + torch.exp(s2 - m) @ v2
""",
    ],
    "q2_sliding_window_mask": [
        # one key too many: |t - s| <= window
        """def sliding_window_mask(T, window, causal):
    if window < 1:
        raise ValueError("window")
    t = torch.arange(T)
    off = t[:, None] - t[None, :]
    mask = off.abs() <= window
    return mask & (off >= 0) if causal else mask
""",
        # causal the wrong way round: queries see the future
        """def sliding_window_mask(T, window, causal):
    if window < 1:
        raise ValueError("window")
    t = torch.arange(T)
    off = t[:, None] - t[None, :]
    mask = off.abs() < window
    return mask & (off <= 0) if causal else mask
""",
        # correct masks, but a window of 0 goes through silently
        """def sliding_window_mask(T, window, causal):
    t = torch.arange(T)
    off = t[:, None] - t[None, :]
    mask = off.abs() < window
    return mask & (off >= 0) if causal else mask
""",
        # the causal flag ignored
        """def sliding_window_mask(T, window, causal):
    if window < 1:
        raise ValueError("window")
    t = torch.arange(T)
    return (t[:, None] - t[None, :]).abs() < window
""",
    ],
    "q3_causal_linear_prefix_sum": [
        # not causal: every output sums over the whole sequence
        """def causal_linear_prefix_sum(q, k, v):
    fq, fk = F.elu(q) + 1, F.elu(k) + 1
    return (fq @ (fk.T @ v)) / (fq @ fk.sum(0))[:, None]
""",
        # the position itself left out (s < t)
        """def causal_linear_prefix_sum(q, k, v):
    fq, fk = F.elu(q) + 1, F.elu(k) + 1
    kernel = (fq @ fk.T).tril(-1)
    return (kernel @ v) / kernel.sum(-1, keepdim=True).clamp_min(1e-6)
""",
        # no normalisation by phi(q_t) . z_t
        """def causal_linear_prefix_sum(q, k, v):
    fq, fk = F.elu(q) + 1, F.elu(k) + 1
    S = torch.cumsum(fk[:, :, None] * v[:, None, :], dim=0)
    return torch.einsum("td,tde->te", fq, S)
""",
        # exp as the feature map instead of elu + 1
        """def causal_linear_prefix_sum(q, k, v):
    fq, fk = torch.exp(q), torch.exp(k)
    kernel = (fq @ fk.T).tril()
    return (kernel @ v) / kernel.sum(-1, keepdim=True)
""",
    ],
}

ALTERNATIVES = {
    "q1_online_softmax_two_blocks": [
        # all at once, through torch's own softmax
        """def online_softmax_two_blocks(s1, v1, s2, v2):
    w = torch.softmax(torch.cat([s1, s2]).double(), dim=0)
    return w @ torch.cat([v1, v2]).double()
""",
        # logsumexp per block, combined in float64, with a print
        """def online_softmax_two_blocks(s1, v1, s2, v2):
    l1, l2 = torch.logsumexp(s1.double(), 0), torch.logsumexp(s2.double(), 0)
    total = torch.logaddexp(l1, l2)
    a1 = torch.softmax(s1.double(), 0) @ v1.double() if torch.isfinite(l1) else 0.0
    a2 = torch.softmax(s2.double(), 0) @ v2.double() if torch.isfinite(l2) else 0.0
    print("combined two blocks")
    return torch.exp(l1 - total) * a1 + torch.exp(l2 - total) * a2
""",
    ],
    "q2_sliding_window_mask": [
        # from ones, with tril and triu
        """def sliding_window_mask(T, window, causal):
    if window < 1:
        raise ValueError(f"window must be positive, got {window}")
    ones = torch.ones(T, T, dtype=torch.bool)
    band = ones.tril(window - 1) & ones.triu(-(window - 1))
    return band & ones.tril() if causal else band
""",
        # a Python double loop
        """def sliding_window_mask(T, window, causal):
    if window < 1:
        raise ValueError("window < 1")
    mask = torch.zeros(T, T, dtype=torch.bool)
    for t in range(T):
        for s in range(T):
            mask[t, s] = (0 <= t - s < window) if causal else abs(t - s) < window
    return mask
""",
    ],
    "q3_causal_linear_prefix_sum": [
        # with cumsum, in float64
        """def causal_linear_prefix_sum(q, k, v):
    fq, fk = F.elu(q.double()) + 1, F.elu(k.double()) + 1
    S = torch.cumsum(fk[:, :, None] * v.double()[:, None, :], dim=0)  # (T, D, Dv)
    z = torch.cumsum(fk, dim=0)  # (T, D)
    return torch.einsum("td,tde->te", fq, S) / (fq * z).sum(-1, keepdim=True)
""",
        # the quadratic form with a lower-triangular kernel
        """def causal_linear_prefix_sum(q, k, v):
    kernel = ((F.elu(q) + 1) @ (F.elu(k) + 1).T).tril()
    return (kernel @ v) / kernel.sum(-1, keepdim=True)
""",
    ],
}
