"""Plausible wrong answers to the chapter 6 exercises; each must lose points."""

WRONG_ANSWERS = {
    # forgets the 1/sqrt(d_k) scale
    "q1_scaled_attention": """def attention(Q, K, V, mask=None):
    scores = Q @ K.transpose(-2, -1)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    return weights @ V, weights
""",
    # reshapes straight to (B, H, T, D) without the transpose: mixes positions into heads
    "q2_split_merge_heads": """def split_heads(x, n_heads):
    B, T, C = x.shape
    return x.reshape(B, n_heads, T, C // n_heads)


def merge_heads(x):
    B, H, T, D = x.shape
    return x.reshape(B, T, H * D)
""",
    # mask polarity of nn.Transformer: True marks the future (triu) instead of the allowed past
    "q3_decoder_mask": """def decoder_mask(tgt_ids, pad_id):
    T = tgt_ids.shape[1]
    causal = torch.ones(T, T, dtype=torch.bool).triu(1)
    not_pad = (tgt_ids != pad_id)[:, None, None, :]
    return causal & not_pad
""",
    # scales by the model size C instead of the head size D
    "q4_multi_head_self_attention": """
def multi_head_self_attention(x, W_q, W_k, W_v, W_o, n_heads):
    B, T, C = x.shape
    D = C // n_heads
    q = (x @ W_q.T).view(B, T, n_heads, D).transpose(1, 2)
    k = (x @ W_k.T).view(B, T, n_heads, D).transpose(1, 2)
    v = (x @ W_v.T).view(B, T, n_heads, D).transpose(1, 2)
    w = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(C), dim=-1)
    heads = (w @ v).transpose(1, 2).reshape(B, T, C)
    return heads @ W_o.T
""",
}
