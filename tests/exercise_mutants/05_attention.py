"""Answers to the chapter 5 exercises that the grader must judge.

``WRONG_ANSWERS``: plausible mistakes, each of which must lose at least half of
its question. ``ALTERNATIVES``: correct answers written differently from the
reference, each of which must keep full marks.
"""

WRONG_ANSWERS = {
    "q1_kernel_regression": [
        # normalises over the wrong axis: over queries instead of over keys
        """def kernel_regression(x_query, x_keys, y_values, width):
    scores = -((x_query[:, None] - x_keys[None, :]) ** 2) / (2 * width**2)
    weights = torch.softmax(scores, dim=0)
    return weights @ y_values, weights
""",
        # forgets the 2 in 2 width^2: a kernel half as wide
        """def kernel_regression(x_query, x_keys, y_values, width):
    scores = -((x_query[:, None] - x_keys[None, :]) ** 2) / width**2
    weights = torch.softmax(scores, dim=1)
    return weights @ y_values, weights
""",
    ],
    "q2_masked_softmax": [
        # masks after the softmax: the allowed weights no longer sum to 1
        """def masked_softmax(scores, mask):
    return torch.softmax(scores, dim=-1) * mask
""",
        # fills with -inf: a fully masked row becomes NaN
        """def masked_softmax(scores, mask):
    return torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)
""",
    ],
    "q3_additive_attention": [
        # forgets the tanh: the score becomes linear and unbounded
        """def additive_attention(query, keys, values, W_q, W_k, w_v):
    q = query @ W_q.T
    k = keys @ W_k.T
    scores = (q[:, :, None, :] + k[:, None, :, :]) @ w_v
    weights = torch.softmax(scores, dim=-1)
    return weights @ values, weights
""",
        # softmax over the queries instead of the keys
        """def additive_attention(query, keys, values, W_q, W_k, w_v):
    q = query @ W_q.T
    k = keys @ W_k.T
    scores = torch.tanh(q[:, :, None, :] + k[:, None, :, :]) @ w_v
    weights = torch.softmax(scores, dim=1)
    return weights @ values, weights
""",
    ],
    "q4_decoder_context": [
        # ignores the source mask: padding gets weight
        """def decoder_context(state, memory, src_mask):
    scores = (memory @ state[:, :, None]).squeeze(-1) / math.sqrt(state.shape[-1])
    weights = torch.softmax(scores, dim=-1)
    context = (weights[:, :, None] * memory).sum(1)
    return context, weights
""",
        # forgets the 1/sqrt(H) scale
        """def decoder_context(state, memory, src_mask):
    scores = (memory @ state[:, :, None]).squeeze(-1)
    weights = torch.softmax(scores.masked_fill(~src_mask, -1e9), dim=-1) * src_mask
    context = (weights[:, :, None] * memory).sum(1)
    return context, weights
""",
        # fills with -inf: a source with no real token gives NaN
        """def decoder_context(state, memory, src_mask):
    scores = (memory @ state[:, :, None]).squeeze(-1) / math.sqrt(state.shape[-1])
    weights = torch.softmax(scores.masked_fill(~src_mask, float("-inf")), dim=-1)
    context = (weights[:, :, None] * memory).sum(1)
    return context, weights
""",
    ],
}

ALTERNATIVES = {
    "q1_kernel_regression": [
        # in float64, kernel weights normalised by hand
        """def kernel_regression(x_query, x_keys, y_values, width):
    d = x_query.double()[:, None] - x_keys.double()[None, :]
    k = torch.exp(-d**2 / (2 * width**2) - (-d**2 / (2 * width**2)).max(1, keepdim=True).values)
    weights = k / k.sum(1, keepdim=True)
    return weights @ y_values.double(), weights
""",
    ],
    "q2_masked_softmax": [
        # -inf, then the NaN of empty rows replaced by zeros
        """def masked_softmax(scores, mask):
    w = torch.softmax(scores.double().masked_fill(~mask, float("-inf")), dim=-1)
    return torch.nan_to_num(w, nan=0.0)
""",
    ],
    "q4_decoder_context": [
        # in float64 with einsum, empty rows handled by nan_to_num
        """def decoder_context(state, memory, src_mask):
    s = torch.einsum("bh,bsh->bs", state.double(), memory.double()) / state.shape[-1] ** 0.5
    w = torch.nan_to_num(torch.softmax(s.masked_fill(~src_mask, float("-inf")), -1))
    return torch.einsum("bs,bsh->bh", w, memory.double()), w
""",
    ],
}
