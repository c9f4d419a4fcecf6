"""Answers to the chapter 10 exercises that the grader must judge.

``WRONG_ANSWERS``: plausible mistakes, each of which must lose at least half of
its question. ``ALTERNATIVES``: correct answers written differently from the
reference, each of which must keep full marks.
"""

WRONG_ANSWERS = {
    "q1_shifted_lm_loss": [
        # no shift: each position scored against its own input token
        """def shifted_lm_loss(logits, ids, pad_id):
    V = logits.shape[-1]
    return F.cross_entropy(logits.reshape(-1, V), ids.reshape(-1), ignore_index=pad_id)
""",
        # shifted the wrong way: position t + 1 scored against token t
        """def shifted_lm_loss(logits, ids, pad_id):
    V = logits.shape[-1]
    scores, targets = logits[:, 1:], ids[:, :-1]
    return F.cross_entropy(scores.reshape(-1, V), targets.reshape(-1), ignore_index=pad_id)
""",
        # padding targets scored like any other token
        """def shifted_lm_loss(logits, ids, pad_id):
    V = logits.shape[-1]
    scores, targets = logits[:, :-1], ids[:, 1:]
    return F.cross_entropy(scores.reshape(-1, V), targets.reshape(-1))
""",
        # the mean of the per-row means: rows with more padding weigh more per token
        """def shifted_lm_loss(logits, ids, pad_id):
    log_p = logits[:, :-1].log_softmax(-1)
    targets = ids[:, 1:]
    nll = -log_p.gather(-1, targets[..., None]).squeeze(-1)
    real = (targets != pad_id).float()
    return ((nll * real).sum(1) / real.sum(1)).mean()
""",
    ],
    "q2_nucleus_filter": [
        # drops the token that makes the mass reach p (and can drop everything)
        """def nucleus_filter(logits, p):
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    mass = sorted_logits.softmax(-1).cumsum(-1)
    drop = torch.zeros_like(mass, dtype=torch.bool).scatter(-1, order, mass >= p)
    return logits.masked_fill(drop, float("-inf"))
""",
        # adds up the raw logits instead of probabilities
        """def nucleus_filter(logits, p):
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    before = sorted_logits.cumsum(-1) - sorted_logits
    drop = torch.zeros_like(before, dtype=torch.bool).scatter(-1, order, before >= p)
    return logits.masked_fill(drop, float("-inf"))
""",
        # forgets to map the sorted mask back to the original token order
        """def nucleus_filter(logits, p):
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    probs = sorted_logits.softmax(-1)
    drop = probs.cumsum(-1) - probs >= p
    return logits.masked_fill(drop, float("-inf"))
""",
        # filters the caller's tensor in place
        """def nucleus_filter(logits, p):
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    probs = sorted_logits.softmax(-1)
    drop_sorted = probs.cumsum(-1) - probs >= p
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    logits[drop] = float("-inf")
    return logits
""",
    ],
    "q3_bpe_merge_step": [
        # counts each pair once per distinct word, ignoring the frequencies
        """def bpe_merge_step(words):
    counts = Counter(p for word in words for p in zip(word, word[1:]))
    best = max(counts.values())
    pair = min(p for p, c in counts.items() if c == best)
    merged = {}
    for word, freq in words.items():
        out, i = [], 0
        while i < len(word):
            if i + 1 < len(word) and (word[i], word[i + 1]) == pair:
                out.append(word[i] + word[i + 1])
                i += 2
            else:
                out.append(word[i])
                i += 1
        merged[tuple(out)] = freq
    return pair, merged
""",
        # overlapping merges: after a merge the scan moves on by one symbol only
        """def bpe_merge_step(words):
    counts = Counter()
    for word, freq in words.items():
        for p in zip(word, word[1:]):
            counts[p] += freq
    best = max(counts.values())
    pair = min(p for p, c in counts.items() if c == best)
    merged = {}
    for word, freq in words.items():
        out, i = [], 0
        while i < len(word):
            if i + 1 < len(word) and (word[i], word[i + 1]) == pair:
                out.append(word[i] + word[i + 1])
            elif not (i > 0 and (word[i - 1], word[i]) == pair):
                out.append(word[i])
            i += 1
        merged[tuple(out)] = freq
    return pair, merged
""",
        # ties go to the largest pair, and only the first occurrence per word is merged
        """def bpe_merge_step(words):
    counts = Counter()
    for word, freq in words.items():
        for p in zip(word, word[1:]):
            counts[p] += freq
    pair = max(counts, key=lambda p: (counts[p], p))
    merged = {}
    for word, freq in words.items():
        w = list(word)
        for i in range(len(w) - 1):
            if (w[i], w[i + 1]) == pair:
                w[i : i + 2] = [w[i] + w[i + 1]]
                break
        merged[tuple(w)] = freq
    return pair, merged
""",
    ],
    "q4_perplexity_bpc": [
        # bits per character left in nats
        """def perplexity_and_bpc(logits, targets, n_chars):
    nll = F.cross_entropy(logits, targets, reduction="none")
    return math.exp(nll.mean().item()), nll.sum().item() / n_chars
""",
        # perplexity as 2 to the mean nats, and bits per token instead of per character
        """def perplexity_and_bpc(logits, targets, n_chars):
    nll = F.cross_entropy(logits, targets, reduction="none")
    return 2 ** nll.mean().item(), nll.mean().item() / math.log(2)
""",
        # exp of the total, not of the mean
        """def perplexity_and_bpc(logits, targets, n_chars):
    nll = F.cross_entropy(logits, targets, reduction="none")
    return math.exp(nll.sum().item()), nll.sum().item() / math.log(2) / n_chars
""",
    ],
}

ALTERNATIVES = {
    "q1_shifted_lm_loss": [
        # float64, log-softmax and a boolean mask, with a print
        """def shifted_lm_loss(logits, ids, pad_id):
    log_p = logits.double()[:, :-1].log_softmax(-1)
    targets = ids[:, 1:]
    nll = -log_p.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    keep = targets != pad_id
    print("scored targets:", int(keep.sum()))
    return nll[keep].mean()
""",
    ],
    "q2_nucleus_filter": [
        # one row at a time with Python numbers, in float64
        """def nucleus_filter(logits, p):
    out = logits.double().clone()
    for row in range(logits.shape[0]):
        probs = logits[row].double().softmax(-1)
        mass = 0.0
        keep = set()
        for token in probs.argsort(descending=True).tolist():
            keep.add(token)
            mass += probs[token].item()
            if mass >= p:
                break
        for token in range(logits.shape[1]):
            if token not in keep:
                out[row, token] = float("-inf")
    return out
""",
    ],
    "q3_bpe_merge_step": [
        # sorted by (-count, pair), and each word rebuilt by extending the last symbol
        """def bpe_merge_step(words):
    counts = {}
    for word, freq in words.items():
        for a, b in zip(word, word[1:]):
            counts[(a, b)] = counts.get((a, b), 0) + freq
    pair = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[0][0]
    merged = {}
    for word, freq in words.items():
        out = []
        just_merged = False
        for symbol in word:
            if out and not just_merged and out[-1] == pair[0] and symbol == pair[1]:
                out[-1] = pair[0] + pair[1]
                just_merged = True
            else:
                out.append(symbol)
                just_merged = False
        merged[tuple(out)] = freq
    return tuple(pair), merged
""",
    ],
    "q4_perplexity_bpc": [
        # log-probabilities by hand, log2 directly, numpy floats
        """def perplexity_and_bpc(logits, targets, n_chars):
    log_p = torch.log_softmax(logits.double(), dim=1)
    nll = -log_p[torch.arange(len(targets)), targets]
    bits = (nll / math.log(2)).sum()
    print("tokens:", len(targets))
    return float(torch.exp(nll.mean())), float(bits / n_chars)
""",
    ],
}
