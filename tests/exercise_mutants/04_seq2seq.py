"""Answers to the chapter 4 exercises that the grader must judge.

``WRONG_ANSWERS``: plausible mistakes, each of which must lose at least half of
its question. ``ALTERNATIVES``: correct answers written differently from the
reference, each of which must keep full marks.
"""

GREEDY = """def greedy(model, src, max_len, bos_id, eos_id, pad_id):
    state = model.start(src)
    prev = torch.full((src.size(0),), bos_id, dtype=torch.long)
    done = torch.zeros(src.size(0), dtype=torch.bool)
    out = []
    for _ in range(max_len):
        logits, state = model.step(prev, state)
        token = logits.argmax(dim=-1){pad}
        out.append(token)
        done = done | (token == eos_id){stop}
        prev = token
    return torch.stack(out, dim=1)
"""
STOP = "\n        if done.all():\n            break"

WRONG_ANSWERS = {
    "q1_context_vector": [
        # takes the last column, which is padding for every shorter row
        """def context_from_outputs(outputs, lengths):
    return outputs[:, -1]
""",
        # a bare .squeeze(): a batch of one (or H = 1) loses its dimensions
        """def context_from_outputs(outputs, lengths):
    index = (lengths - 1)[:, None, None].expand(-1, 1, outputs.size(-1))
    return torch.gather(outputs, 1, index).squeeze()
""",
    ],
    "q2_masked_cross_entropy": [
        # averages over every position, padding included
        """def masked_cross_entropy(logits, targets, pad_id):
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1))
""",
        # zeroes the padding but still divides by every position
        """def masked_cross_entropy(logits, targets, pad_id):
    picked = F.log_softmax(logits, dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return -(picked * (targets != pad_id)).mean()
""",
        # assumes the padding id is always 0
        """def masked_cross_entropy(logits, targets, pad_id):
    V = logits.size(-1)
    return F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1), ignore_index=0)
""",
    ],
    "q3_scheduled_sampling_inputs": [
        # forgets the shift: step t reads the prediction made at step t, not t - 1
        """def decoder_inputs(tgt_in, predictions, use_truth):
    mixed = torch.where(use_truth, tgt_in, predictions)
    mixed[:, 0] = tgt_in[:, 0]
    return mixed
""",
        # right values, but written into the caller's tgt_in
        """def decoder_inputs(tgt_in, predictions, use_truth):
    previous = torch.cat([tgt_in[:, :1], predictions[:, :-1]], dim=1)
    flip = ~use_truth
    flip[:, 0] = False
    tgt_in[flip] = previous[flip]
    return tgt_in
""",
    ],
    "q4_greedy_decode": [
        # stops when every row finished but never pads after a row's eos
        GREEDY.format(pad="", stop=STOP),
        # pads after eos but always runs max_len steps
        GREEDY.format(pad=".masked_fill(done, pad_id)", stop=""),
    ],
}

ALTERNATIVES = {
    "q1_context_vector": [
        # gather, squeezing only the time dimension
        """def context_from_outputs(outputs, lengths):
    index = (lengths - 1)[:, None, None].expand(-1, 1, outputs.size(-1))
    return torch.gather(outputs, 1, index)[:, 0]
""",
    ],
    "q2_masked_cross_entropy": [
        # in float64, through F.cross_entropy's own ignore_index
        """def masked_cross_entropy(logits, targets, pad_id):
    V = logits.size(-1)
    flat = logits.double().reshape(-1, V)
    return F.cross_entropy(flat, targets.reshape(-1), ignore_index=pad_id)
""",
    ],
    "q3_scheduled_sampling_inputs": [
        # no in-place step at all
        """def decoder_inputs(tgt_in, predictions, use_truth):
    previous = torch.cat([tgt_in[:, :1], predictions[:, :-1]], dim=1)
    first = torch.zeros_like(use_truth)
    first[:, 0] = True
    return torch.where(use_truth | first, tgt_in, previous)
""",
    ],
    "q4_greedy_decode": [
        # a list of finished rows and prints along the way
        """def greedy(model, src, max_len, bos_id, eos_id, pad_id):
    state = model.start(src)
    B = src.size(0)
    prev = torch.full((B,), bos_id, dtype=torch.long)
    finished = [False] * B
    columns = []
    for step in range(max_len):
        logits, state = model.step(prev, state)
        token = logits.argmax(dim=-1)
        print("step", step, "tokens", token.tolist())
        column = [pad_id if finished[b] else int(token[b]) for b in range(B)]
        finished = [f or c == eos_id for f, c in zip(finished, column)]
        columns.append(column)
        if all(finished):
            break
        prev = token
    return torch.tensor(columns, dtype=torch.long).T
""",
    ],
}
