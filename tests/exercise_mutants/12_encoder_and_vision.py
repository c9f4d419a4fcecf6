"""Answers to the chapter 12 exercises that the grader must judge.

``WRONG_ANSWERS``: plausible mistakes, each of which must lose at least half of
its question. ``ALTERNATIVES``: correct answers written differently from the
reference, each of which must keep full marks.
"""

WRONG_ANSWERS = {
    "q1_mask_tokens": [
        # labels only where [MASK] was put, not at every chosen position
        """def mask_tokens(ids, chosen_draw, action_draw, random_ids, mask_id,
                ignore_id,
                special_ids, p):
    special = torch.zeros_like(ids, dtype=torch.bool)
    for s in special_ids:
        special |= ids == s
    chosen = (chosen_draw < p) & ~special
    masked = chosen & (action_draw < 0.8)
    inputs = ids.clone()
    inputs[masked] = mask_id
    swap = chosen & (action_draw >= 0.8) & (action_draw < 0.9)
    inputs[swap] = random_ids[swap]
    return inputs, torch.where(masked, ids, torch.full_like(ids, ignore_id))
""",
        # special tokens may be chosen
        """def mask_tokens(ids, chosen_draw, action_draw, random_ids, mask_id,
                ignore_id,
                special_ids, p):
    chosen = chosen_draw < p
    inputs = ids.clone()
    inputs[chosen & (action_draw < 0.8)] = mask_id
    swap = chosen & (action_draw >= 0.8) & (action_draw < 0.9)
    inputs[swap] = random_ids[swap]
    return inputs, torch.where(chosen, ids, torch.full_like(ids, ignore_id))
""",
        # every chosen token masked: no random or kept cases
        """def mask_tokens(ids, chosen_draw, action_draw, random_ids, mask_id,
                ignore_id,
                special_ids, p):
    special = torch.zeros_like(ids, dtype=torch.bool)
    for s in special_ids:
        special |= ids == s
    chosen = (chosen_draw < p) & ~special
    inputs = torch.where(chosen, torch.full_like(ids, mask_id), ids)
    return inputs, torch.where(chosen, ids, torch.full_like(ids, ignore_id))
""",
        # corrupts the caller's ids in place
        """def mask_tokens(ids, chosen_draw, action_draw, random_ids, mask_id,
                ignore_id,
                special_ids, p):
    special = torch.zeros_like(ids, dtype=torch.bool)
    for s in special_ids:
        special |= ids == s
    chosen = (chosen_draw < p) & ~special
    labels = torch.where(chosen, ids, torch.full_like(ids, ignore_id))
    ids[chosen & (action_draw < 0.8)] = mask_id
    swap = chosen & (action_draw >= 0.8) & (action_draw < 0.9)
    ids[swap] = random_ids[swap]
    return ids, labels
""",
    ],
    "q2_patchify": [
        # a plain reshape: rows of pixels, not square patches
        """def patchify(images, patch_size):
    B, I, H, W = images.shape
    P = patch_size
    if H % P or W % P:
        raise ValueError("does not split")
    return images.reshape(B, (H // P) * (W // P), I * P * P)
""",
        # patches column by column
        """def patchify(images, patch_size):
    B, I, H, W = images.shape
    P = patch_size
    if H % P or W % P:
        raise ValueError("does not split")
    x = images.reshape(B, I, H // P, P, W // P, P).permute(0, 4, 2, 1, 3, 5)
    return x.reshape(B, (H // P) * (W // P), I * P * P)
""",
        # channels last inside a patch
        """def patchify(images, patch_size):
    B, I, H, W = images.shape
    P = patch_size
    if H % P or W % P:
        raise ValueError("does not split")
    x = images.reshape(B, I, H // P, P, W // P, P).permute(0, 2, 4, 3, 5, 1)
    return x.reshape(B, (H // P) * (W // P), I * P * P)
""",
        # the ragged edge silently dropped instead of an error
        """def patchify(images, patch_size):
    B, I, H, W = images.shape
    P = patch_size
    images = images[:, :, : H - H % P, : W - W % P]
    H, W = H - H % P, W - W % P
    x = images.reshape(B, I, H // P, P, W // P, P).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(B, (H // P) * (W // P), I * P * P)
""",
    ],
    "q3_pooled_classifier": [
        # the mean over positions instead of the first position
        """def pooled_classifier(hidden, w_pool, b_pool, w_cls, b_cls):
    pooled = torch.tanh(hidden.mean(1) @ w_pool.T + b_pool)
    return pooled @ w_cls.T + b_cls
""",
        # the last position
        """def pooled_classifier(hidden, w_pool, b_pool, w_cls, b_cls):
    pooled = torch.tanh(hidden[:, -1] @ w_pool.T + b_pool)
    return pooled @ w_cls.T + b_cls
""",
        # no tanh
        """def pooled_classifier(hidden, w_pool, b_pool, w_cls, b_cls):
    return (hidden[:, 0] @ w_pool.T + b_pool) @ w_cls.T + b_cls
""",
        # weights used untransposed
        """def pooled_classifier(hidden, w_pool, b_pool, w_cls, b_cls):
    pooled = torch.tanh(hidden[:, 0] @ w_pool + b_pool)
    return pooled @ w_cls.T + b_cls
""",
    ],
}

ALTERNATIVES = {
    "q1_mask_tokens": [
        # torch.where throughout, a print
        """def mask_tokens(ids, chosen_draw, action_draw, random_ids, mask_id,
                ignore_id,
                special_ids, p):
    keep = torch.ones_like(ids, dtype=torch.bool)
    for s in special_ids:
        keep = keep & (ids != s)
    chosen = (chosen_draw < p) & keep
    print("chosen", int(chosen.sum()))
    out = torch.where(chosen & (action_draw < 0.8), torch.full_like(ids, mask_id), ids)
    swap = chosen & (action_draw >= 0.8) & (action_draw < 0.9)
    out = torch.where(swap, random_ids, out)
    labels = ids.masked_fill(~chosen, ignore_id)
    return out, labels
""",
        # torch.isin for the special tokens
        """def mask_tokens(ids, chosen_draw, action_draw, random_ids, mask_id,
                ignore_id,
                special_ids, p):
    special = torch.isin(ids, torch.tensor(list(special_ids), dtype=torch.long))
    chosen = (chosen_draw < p) & ~special
    inputs = ids.clone()
    inputs[chosen & (action_draw < 0.8)] = mask_id
    swap = chosen & (0.8 <= action_draw) & (action_draw < 0.9)
    inputs[swap] = random_ids[swap]
    labels = torch.full_like(ids, ignore_id)
    labels[chosen] = ids[chosen]
    return inputs, labels
""",
    ],
    "q2_patchify": [
        # unfold, as a convolution's im2col does
        """def patchify(images, patch_size):
    B, I, H, W = images.shape
    P = patch_size
    if H % P or W % P:
        raise ValueError("does not split")
    cols = torch.nn.functional.unfold(images, kernel_size=P, stride=P)  # (B, I*P*P, N)
    return cols.transpose(1, 2)
""",
        # loops over the grid
        """def patchify(images, patch_size):
    B, I, H, W = images.shape
    P = patch_size
    if H % P or W % P:
        raise ValueError("does not split")
    rows = []
    for r in range(0, H, P):
        for c in range(0, W, P):
            rows.append(images[:, :, r : r + P, c : c + P].reshape(B, -1))
    return torch.stack(rows, dim=1)
""",
    ],
    "q3_pooled_classifier": [
        # float64 and torch.nn.functional.linear
        """def pooled_classifier(hidden, w_pool, b_pool, w_cls, b_cls):
    h = hidden.double()[:, 0]
    pooled = torch.tanh(torch.nn.functional.linear(h, w_pool.double(), b_pool.double()))
    return torch.nn.functional.linear(pooled, w_cls.double(), b_cls.double())
""",
        # einsum, with a print
        """def pooled_classifier(hidden, w_pool, b_pool, w_cls, b_cls):
    print("batch", hidden.shape[0])
    pooled = torch.tanh(torch.einsum("bc,dc->bd", hidden[:, 0, :], w_pool) + b_pool)
    return torch.einsum("bd,kd->bk", pooled, w_cls) + b_cls
""",
    ],
}
