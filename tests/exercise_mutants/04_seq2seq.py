"""Plausible wrong answers to the chapter 4 exercises; each must lose points."""

WRONG_ANSWERS = {
    # takes the last column, which is padding for every shorter row
    "q1_context_vector": """def context_from_outputs(outputs, lengths):
    return outputs[:, -1]
""",
    # averages over every position, padding included
    "q2_masked_cross_entropy": """def masked_cross_entropy(logits, targets, pad_id):
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1))
""",
    # forgets the shift: step t reads the prediction made at step t, not t - 1
    "q3_scheduled_sampling_inputs": """def decoder_inputs(tgt_in, predictions, use_truth):
    mixed = torch.where(use_truth, tgt_in, predictions)
    mixed[:, 0] = tgt_in[:, 0]
    return mixed
""",
    # stops when every row finished but never pads after a row's eos
    "q4_greedy_decode": """def greedy(model, src, max_len, bos_id, eos_id, pad_id):
    state = model.start(src)
    prev = torch.full((src.size(0),), bos_id, dtype=torch.long)
    done = torch.zeros(src.size(0), dtype=torch.bool)
    out = []
    for _ in range(max_len):
        logits, state = model.step(prev, state)
        token = logits.argmax(dim=-1)
        out.append(token)
        done = done | (token == eos_id)
        if done.all():
            break
        prev = token
    return torch.stack(out, dim=1)
""",
}
