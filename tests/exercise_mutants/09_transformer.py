"""Answers to the chapter 9 exercises that the grader must judge.

``WRONG_ANSWERS``: plausible mistakes, each of which must lose at least half of
its question. ``ALTERNATIVES``: correct answers written differently from the
reference, each of which must keep full marks.
"""

WRONG_ANSWERS = {
    "q1_noam_schedule": [
        # forgets the decay: warm-up forever
        """def noam_lr(step, d_model, warmup):
    return d_model**-0.5 * step * warmup**-1.5
""",
        # hard-coded to the public example
        """def noam_lr(step, d_model, warmup):
    return 6.9877e-4
""",
        # max instead of min
        """def noam_lr(step, d_model, warmup):
    return d_model**-0.5 * max(step**-0.5, step * warmup**-1.5)
""",
    ],
    "q2_smoothed_targets": [
        # spreads eps over the other V - 1 classes only (another convention, not the one asked)
        """def smoothed_targets(targets, n_classes, eps):
    one_hot = F.one_hot(targets, n_classes).float()
    return one_hot * (1 - eps) + (1 - one_hot) * eps / (n_classes - 1)
""",
        # forgets to take eps away from the true class: rows sum to 1 + eps
        """def smoothed_targets(targets, n_classes, eps):
    return F.one_hot(targets, n_classes).float() + eps / n_classes
""",
    ],
    "q3_beam_step": [
        # ranks the extensions by the new token's log-probability alone
        """def beam_step(scores, log_probs, k):
    V = log_probs.shape[1]
    flat_lp = log_probs.reshape(-1)
    _, flat = flat_lp.topk(k)
    return scores[flat // V] + flat_lp[flat], flat // V, flat % V
""",
        # keeps len(scores) extensions, not k
        """def beam_step(scores, log_probs, k):
    V = log_probs.shape[1]
    total = (scores[:, None] + log_probs).reshape(-1)
    new_scores, flat = total.topk(len(scores))
    return new_scores, flat // V, flat % V
""",
        # index arithmetic with K instead of V
        """def beam_step(scores, log_probs, k):
    K = scores.shape[0]
    total = (scores[:, None] + log_probs).reshape(-1)
    new_scores, flat = total.topk(k)
    return new_scores, flat // K, flat % K
""",
    ],
    "q4_cached_step": [
        # puts the new position first in the cache: same output, caches out of order
        """def cached_attention_step(x_new, cache_k, cache_v, wq, wk, wv, wo, n_heads):
    B, _, C = x_new.shape
    D = C // n_heads

    def split(t):
        return t.view(B, 1, n_heads, D).transpose(1, 2)

    q, k, v = split(x_new @ wq.T), split(x_new @ wk.T), split(x_new @ wv.T)
    keys = torch.cat([k, cache_k], dim=2)
    values = torch.cat([v, cache_v], dim=2)
    w = torch.softmax(q @ keys.transpose(-2, -1) / D**0.5, dim=-1)
    out = (w @ values).transpose(1, 2).reshape(B, 1, C) @ wo.T
    return out, keys, values
""",
        # attends over the old cache only, then appends: the query misses its own key
        """def cached_attention_step(x_new, cache_k, cache_v, wq, wk, wv, wo, n_heads):
    B, _, C = x_new.shape
    D = C // n_heads

    def split(t):
        return t.view(B, 1, n_heads, D).transpose(1, 2)

    q, k, v = split(x_new @ wq.T), split(x_new @ wk.T), split(x_new @ wv.T)
    w = torch.softmax(q @ cache_k.transpose(-2, -1) / D**0.5, dim=-1)
    out = (w @ cache_v).transpose(1, 2).reshape(B, 1, C) @ wo.T
    return out, torch.cat([cache_k, k], dim=2), torch.cat([cache_v, v], dim=2)
""",
        # scales by sqrt(C), the model size, instead of sqrt(D), a head's
        """def cached_attention_step(x_new, cache_k, cache_v, wq, wk, wv, wo, n_heads):
    B, _, C = x_new.shape
    D = C // n_heads

    def split(t):
        return t.view(B, 1, n_heads, D).transpose(1, 2)

    q, k, v = split(x_new @ wq.T), split(x_new @ wk.T), split(x_new @ wv.T)
    keys = torch.cat([cache_k, k], dim=2)
    values = torch.cat([cache_v, v], dim=2)
    w = torch.softmax(q @ keys.transpose(-2, -1) / C**0.5, dim=-1)
    out = (w @ values).transpose(1, 2).reshape(B, 1, C) @ wo.T
    return out, keys, values
""",
        # forgets the output projection wo
        """def cached_attention_step(x_new, cache_k, cache_v, wq, wk, wv, wo, n_heads):
    B, _, C = x_new.shape
    D = C // n_heads

    def split(t):
        return t.view(B, 1, n_heads, D).transpose(1, 2)

    q, k, v = split(x_new @ wq.T), split(x_new @ wk.T), split(x_new @ wv.T)
    keys = torch.cat([cache_k, k], dim=2)
    values = torch.cat([cache_v, v], dim=2)
    w = torch.softmax(q @ keys.transpose(-2, -1) / D**0.5, dim=-1)
    out = (w @ values).transpose(1, 2).reshape(B, 1, C)
    return out, keys, values
""",
        # splits the heads feature-strided: head h gets features h, h + H, h + 2H, ...
        """def cached_attention_step(x_new, cache_k, cache_v, wq, wk, wv, wo, n_heads):
    B, _, C = x_new.shape
    D = C // n_heads

    def split(t):
        return t.view(B, 1, D, n_heads).permute(0, 3, 1, 2)

    q, k, v = split(x_new @ wq.T), split(x_new @ wk.T), split(x_new @ wv.T)
    keys = torch.cat([cache_k, k], dim=2)
    values = torch.cat([cache_v, v], dim=2)
    w = torch.softmax(q @ keys.transpose(-2, -1) / D**0.5, dim=-1)
    out = (w @ values).permute(0, 2, 3, 1).reshape(B, 1, C) @ wo.T
    return out, keys, values
""",
    ],
}

ALTERNATIVES = {
    "q1_noam_schedule": [
        # warm-up and decay as two branches
        """def noam_lr(step, d_model, warmup):
    if step < warmup:
        return step / warmup**1.5 / math.sqrt(d_model)
    return 1 / math.sqrt(step * d_model)
""",
    ],
    "q2_smoothed_targets": [
        # float64, filled then scattered
        """def smoothed_targets(targets, n_classes, eps):
    q = torch.full((len(targets), n_classes), eps / n_classes, dtype=torch.float64)
    true = torch.full((len(targets), 1), 1.0 - eps, dtype=torch.float64)
    return q.scatter_add(1, targets[:, None], true)
""",
    ],
    "q3_beam_step": [
        # a full sort in float64, unravel_index for the indices
        """def beam_step(scores, log_probs, k):
    total = scores.double()[:, None] + log_probs.double()
    order = total.flatten().argsort(descending=True)[:k]
    beam, token = torch.unravel_index(order, total.shape)
    return total.flatten()[order], beam, token
""",
    ],
    "q4_cached_step": [
        # PyTorch's fused attention (no mask: the new query sees every cached key)
        """def cached_attention_step(x_new, cache_k, cache_v, wq, wk, wv, wo, n_heads):
    B, _, C = x_new.shape
    H = n_heads
    q, k, v = (F.linear(x_new, w).reshape(B, H, 1, C // H) for w in (wq, wk, wv))
    keys, values = torch.cat((cache_k, k), 2), torch.cat((cache_v, v), 2)
    att = F.scaled_dot_product_attention(q, keys, values)  # (B, H, 1, D)
    return F.linear(att.reshape(B, 1, C), wo), keys, values
""",
        # float64, einsum, and a print
        """def cached_attention_step(x_new, cache_k, cache_v, wq, wk, wv, wo, n_heads):
    x = x_new.double()
    B, _, C = x.shape
    D = C // n_heads
    q = torch.einsum("bc,fc->bf", x[:, 0], wq.double()).view(B, n_heads, 1, D)
    k = torch.einsum("bc,fc->bf", x[:, 0], wk.double()).view(B, n_heads, 1, D)
    v = torch.einsum("bc,fc->bf", x[:, 0], wv.double()).view(B, n_heads, 1, D)
    keys = torch.cat([cache_k.double(), k], dim=-2)
    values = torch.cat([cache_v.double(), v], dim=-2)
    print("cache length", keys.shape[2])
    s = torch.einsum("bhqd,bhkd->bhqk", q, keys) / math.sqrt(D)
    att = torch.einsum("bhqk,bhkd->bhqd", s.softmax(-1), values)
    return att.reshape(B, 1, C) @ wo.double().T, keys, values
""",
    ],
}
