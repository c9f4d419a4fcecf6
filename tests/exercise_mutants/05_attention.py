"""Plausible wrong answers to the chapter 5 exercises; each must lose points."""

WRONG_ANSWERS = {
    # normalises over the wrong axis: over queries instead of over keys
    "q1_kernel_regression": """def kernel_regression(x_query, x_keys, y_values, width):
    scores = -((x_query[:, None] - x_keys[None, :]) ** 2) / (2 * width**2)
    weights = torch.softmax(scores, dim=0)
    return weights @ y_values, weights
""",
    # masks after the softmax: the allowed weights no longer sum to 1
    "q2_masked_softmax": """def masked_softmax(scores, mask):
    return torch.softmax(scores, dim=-1) * mask
""",
    # forgets the tanh: the score becomes linear and unbounded
    "q3_additive_attention": """def additive_attention(query, keys, values, W_q, W_k, w_v):
    q = query @ W_q.T
    k = keys @ W_k.T
    scores = (q[:, :, None, :] + k[:, None, :, :]) @ w_v
    weights = torch.softmax(scores, dim=-1)
    return weights @ values, weights
""",
    # ignores the source mask: padding gets weight
    "q4_decoder_context": """def decoder_context(state, memory, src_mask):
    scores = (memory @ state[:, :, None]).squeeze(-1) / math.sqrt(state.shape[-1])
    weights = torch.softmax(scores, dim=-1)
    context = (weights[:, :, None] * memory).sum(1)
    return context, weights
""",
}
