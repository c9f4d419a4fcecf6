"""Answers to the chapter 1 exercises that the grader must judge.

``WRONG_ANSWERS``: plausible mistakes, each of which must lose at least half of
its question. ``ALTERNATIVES``: correct answers written differently from the
reference (another dtype, no in-place step, prints), each of which must keep
full marks.
"""

WRONG_ANSWERS = {
    "q1_pad_batch": [
        # pads on the left instead of the right
        """def pad_batch(seqs, pad_id):
    lengths = torch.tensor([len(s) for s in seqs], dtype=torch.long)
    padded = torch.full((len(seqs), int(lengths.max())), pad_id, dtype=torch.long)
    for i, s in enumerate(seqs):
        padded[i, padded.shape[1] - len(s):] = torch.tensor(s, dtype=torch.long)
    return padded, lengths
""",
        # pads with zeros whatever pad_id is
        """def pad_batch(seqs, pad_id):
    lengths = torch.tensor([len(s) for s in seqs], dtype=torch.long)
    padded = torch.zeros(len(seqs), int(lengths.max()), dtype=torch.long)
    for i, s in enumerate(seqs):
        padded[i, : len(s)] = torch.tensor(s, dtype=torch.long)
    return padded, lengths
""",
        # counts the ids that differ from pad_id instead of the sequence length
        """def pad_batch(seqs, pad_id):
    lengths = torch.tensor([sum(t != pad_id for t in s) for s in seqs], dtype=torch.long)
    padded = torch.full((len(seqs), max(len(s) for s in seqs)), pad_id, dtype=torch.long)
    for i, s in enumerate(seqs):
        padded[i, : len(s)] = torch.tensor(s, dtype=torch.long)
    return padded, lengths
""",
    ],
    "q2_padding_mask": [
        # off by one: marks the first padding position as real
        """def padding_mask(lengths, max_len):
    return torch.arange(max_len)[None, :] <= lengths[:, None]
""",
        # the opposite polarity (True at padding), as nn.MultiheadAttention wants it
        """def padding_mask(lengths, max_len):
    return torch.arange(max_len)[None, :] >= lengths[:, None]
""",
    ],
    "q3_teacher_forcing": [
        # forgets to shift: labels equal the decoder input
        """def teacher_forcing_pair(target_ids, bos_id, eos_id):
    seq = [bos_id, *target_ids]
    return seq, list(seq)
""",
        # builds the decoder input by inserting into the caller's list
        """def teacher_forcing_pair(target_ids, bos_id, eos_id):
    labels = target_ids + [eos_id]
    target_ids.insert(0, bos_id)
    return target_ids, labels
""",
    ],
    "q4_exact_match": [
        # token accuracy instead of exact match
        """def exact_match(predictions, targets, pad_id):
    real = targets != pad_id
    return ((predictions == targets) & real).sum().item() / real.sum().item()
""",
        # ignores padding in the predictions too: [5, 0, 0] passes for [5, 6, 0]
        """def exact_match(predictions, targets, pad_id):
    ok = (predictions == targets) | (targets == pad_id) | (predictions == pad_id)
    return ok.all(dim=1).float().mean().item()
""",
        # compares every position, padding included
        """def exact_match(predictions, targets, pad_id):
    return (predictions == targets).all(dim=1).float().mean().item()
""",
    ],
}

ALTERNATIVES = {
    "q1_pad_batch": [
        # torch's own padding helper
        """def pad_batch(seqs, pad_id):
    rows = [torch.tensor(s, dtype=torch.long) for s in seqs]
    padded = torch.nn.utils.rnn.pad_sequence(rows, batch_first=True, padding_value=pad_id)
    return padded, torch.tensor([len(s) for s in seqs])
""",
    ],
    "q3_teacher_forcing": [
        # list concatenation, with a print left in
        """def teacher_forcing_pair(target_ids, bos_id, eos_id):
    print("building the pair for", target_ids)
    return [bos_id] + list(target_ids), list(target_ids) + [eos_id]
""",
    ],
    "q4_exact_match": [
        # a Python loop over rows
        """def exact_match(predictions, targets, pad_id):
    hits = 0
    for p, t in zip(predictions.tolist(), targets.tolist()):
        hits += all(a == b for a, b in zip(p, t) if b != pad_id)
    return hits / len(targets)
""",
    ],
}
