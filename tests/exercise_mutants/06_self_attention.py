"""Answers to the chapter 6 exercises that the grader must judge.

``WRONG_ANSWERS``: plausible mistakes, each of which must lose at least half of
its question. ``ALTERNATIVES``: correct answers written differently from the
reference, each of which must keep full marks.
"""

WRONG_ANSWERS = {
    "q1_scaled_attention": [
        # forgets the 1/sqrt(d_k) scale
        """def attention(Q, K, V, mask=None):
    scores = Q @ K.transpose(-2, -1)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    return weights @ V, weights
""",
        # scales by the value size d_v instead of the key size d_k
        """def attention(Q, K, V, mask=None):
    scores = Q @ K.transpose(-2, -1) / math.sqrt(V.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    return weights @ V, weights
""",
        # mask polarity of nn.MultiheadAttention: hides the allowed keys
        """def attention(Q, K, V, mask=None):
    scores = Q @ K.transpose(-2, -1) / math.sqrt(Q.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    return weights @ V, weights
""",
    ],
    "q2_split_merge_heads": [
        # reshapes straight to (B, H, T, D) without the transpose: mixes positions into heads
        """def split_heads(x, n_heads):
    B, T, C = x.shape
    return x.reshape(B, n_heads, T, C // n_heads)


def merge_heads(x):
    B, H, T, D = x.shape
    return x.reshape(B, T, H * D)
""",
        # splits right but merges without swapping the head and time dimensions back
        """def split_heads(x, n_heads):
    B, T, C = x.shape
    return x.view(B, T, n_heads, C // n_heads).transpose(1, 2)


def merge_heads(x):
    B, H, T, D = x.shape
    return x.reshape(B, T, H * D)
""",
    ],
    "q3_decoder_mask": [
        # mask polarity of nn.Transformer: True marks the future (triu) instead of the allowed past
        """def decoder_mask(tgt_ids, pad_id):
    T = tgt_ids.shape[1]
    causal = torch.ones(T, T, dtype=torch.bool).triu(1)
    not_pad = (tgt_ids != pad_id)[:, None, None, :]
    return causal & not_pad
""",
        # hides padded queries (rows) instead of padded keys (columns)
        """def decoder_mask(tgt_ids, pad_id):
    T = tgt_ids.shape[1]
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    not_pad = (tgt_ids != pad_id)[:, None, :, None]
    return causal & not_pad
""",
        # assumes the padding id is 0
        """def decoder_mask(tgt_ids, pad_id):
    T = tgt_ids.shape[1]
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    return causal & (tgt_ids != 0)[:, None, None, :]
""",
    ],
    "q4_multi_head_self_attention": [
        # scales by the model size C instead of the head size D
        """def multi_head_self_attention(x, W_q, W_k, W_v, W_o, n_heads):
    B, T, C = x.shape
    D = C // n_heads
    q = (x @ W_q.T).view(B, T, n_heads, D).transpose(1, 2)
    k = (x @ W_k.T).view(B, T, n_heads, D).transpose(1, 2)
    v = (x @ W_v.T).view(B, T, n_heads, D).transpose(1, 2)
    w = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(C), dim=-1)
    heads = (w @ v).transpose(1, 2).reshape(B, T, C)
    return heads @ W_o.T
""",
        # splits the heads with a plain view, without the transpose
        """def multi_head_self_attention(x, W_q, W_k, W_v, W_o, n_heads):
    B, T, C = x.shape
    D = C // n_heads
    q = (x @ W_q.T).reshape(B, n_heads, T, D)
    k = (x @ W_k.T).reshape(B, n_heads, T, D)
    v = (x @ W_v.T).reshape(B, n_heads, T, D)
    w = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(D), dim=-1)
    return (w @ v).reshape(B, T, C) @ W_o.T
""",
    ],
}

ALTERNATIVES = {
    "q1_scaled_attention": [
        # in float64, masking with a large negative number
        """def attention(Q, K, V, mask=None):
    Q, K, V = Q.double(), K.double(), V.double()
    scores = torch.einsum("...td,...sd->...ts", Q, K) / Q.shape[-1] ** 0.5
    if mask is not None:
        scores = torch.where(mask, scores, torch.tensor(-1e30, dtype=scores.dtype))
    weights = scores.softmax(-1)
    return weights @ V, weights
""",
    ],
    "q2_split_merge_heads": [
        # unflatten / permute / flatten, returning copies
        """def split_heads(x, n_heads):
    return x.unflatten(-1, (n_heads, -1)).permute(0, 2, 1, 3).contiguous()


def merge_heads(x):
    return x.permute(0, 2, 1, 3).flatten(2).clone()
""",
    ],
    "q4_multi_head_self_attention": [
        # in float64, one head at a time
        """def multi_head_self_attention(x, W_q, W_k, W_v, W_o, n_heads):
    x, W_q, W_k, W_v, W_o = (t.double() for t in (x, W_q, W_k, W_v, W_o))
    C = x.shape[-1]
    D = C // n_heads
    q, k, v = x @ W_q.T, x @ W_k.T, x @ W_v.T
    heads = []
    for h in range(n_heads):
        cols = slice(h * D, (h + 1) * D)
        w = torch.softmax(q[..., cols] @ k[..., cols].transpose(-2, -1) / D**0.5, dim=-1)
        heads.append(w @ v[..., cols])
    return torch.cat(heads, dim=-1) @ W_o.T
""",
    ],
}
