"""Plausible wrong answers to the chapter 1 exercises; each must lose points."""

WRONG_ANSWERS = {
    # pads on the left instead of the right
    "q1_pad_batch": """def pad_batch(seqs, pad_id):
    lengths = torch.tensor([len(s) for s in seqs], dtype=torch.long)
    padded = torch.full((len(seqs), int(lengths.max())), pad_id, dtype=torch.long)
    for i, s in enumerate(seqs):
        padded[i, padded.shape[1] - len(s):] = torch.tensor(s, dtype=torch.long)
    return padded, lengths
""",
    # off by one: marks the first padding position as real
    "q2_padding_mask": """def padding_mask(lengths, max_len):
    return torch.arange(max_len)[None, :] <= lengths[:, None]
""",
    # forgets to shift: labels equal the decoder input
    "q3_teacher_forcing": """def teacher_forcing_pair(target_ids, bos_id, eos_id):
    seq = [bos_id, *target_ids]
    return seq, list(seq)
""",
    # token accuracy instead of exact match
    "q4_exact_match": """def exact_match(predictions, targets, pad_id):
    real = targets != pad_id
    return ((predictions == targets) & real).sum().item() / real.sum().item()
""",
}
