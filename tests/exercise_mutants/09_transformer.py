"""Answers to the chapter 9 exercises that the grader must judge.

``WRONG_ANSWERS``: plausible mistakes, each of which must lose at least half of
its question. ``ALTERNATIVES``: correct answers written differently from the
reference, each of which must keep full marks.
"""

WRONG_ANSWERS = {
    "q1_noam_schedule": [
        # forgets the decay: warm-up forever
        """def noam_lr(step, d_model, warmup):
    return d_model**-0.5 * step * warmup**-1.5
""",
        # hard-coded to the public example
        """def noam_lr(step, d_model, warmup):
    return 6.9877e-4
""",
        # max instead of min
        """def noam_lr(step, d_model, warmup):
    return d_model**-0.5 * max(step**-0.5, step * warmup**-1.5)
""",
    ],
    "q2_smoothed_targets": [
        # spreads eps over the other V - 1 classes only (another convention, not the one asked)
        """def smoothed_targets(targets, n_classes, eps):
    one_hot = F.one_hot(targets, n_classes).float()
    return one_hot * (1 - eps) + (1 - one_hot) * eps / (n_classes - 1)
""",
        # forgets to take eps away from the true class: rows sum to 1 + eps
        """def smoothed_targets(targets, n_classes, eps):
    return F.one_hot(targets, n_classes).float() + eps / n_classes
""",
    ],
    "q3_beam_step": [
        # ranks the extensions by the new token's log-probability alone
        """def beam_step(scores, log_probs, k):
    V = log_probs.shape[1]
    flat_lp = log_probs.reshape(-1)
    _, flat = flat_lp.topk(k)
    return scores[flat // V] + flat_lp[flat], flat // V, flat % V
""",
        # keeps len(scores) extensions, not k
        """def beam_step(scores, log_probs, k):
    V = log_probs.shape[1]
    total = (scores[:, None] + log_probs).reshape(-1)
    new_scores, flat = total.topk(len(scores))
    return new_scores, flat // V, flat % V
""",
        # index arithmetic with K instead of V
        """def beam_step(scores, log_probs, k):
    K = scores.shape[0]
    total = (scores[:, None] + log_probs).reshape(-1)
    new_scores, flat = total.topk(k)
    return new_scores, flat // K, flat % K
""",
    ],
}

ALTERNATIVES = {
    "q1_noam_schedule": [
        # warm-up and decay as two branches
        """def noam_lr(step, d_model, warmup):
    if step < warmup:
        return step / warmup**1.5 / math.sqrt(d_model)
    return 1 / math.sqrt(step * d_model)
""",
    ],
    "q2_smoothed_targets": [
        # float64, filled then scattered
        """def smoothed_targets(targets, n_classes, eps):
    q = torch.full((len(targets), n_classes), eps / n_classes, dtype=torch.float64)
    true = torch.full((len(targets), 1), 1.0 - eps, dtype=torch.float64)
    return q.scatter_add(1, targets[:, None], true)
""",
    ],
    "q3_beam_step": [
        # a full sort in float64, unravel_index for the indices
        """def beam_step(scores, log_probs, k):
    total = scores.double()[:, None] + log_probs.double()
    order = total.flatten().argsort(descending=True)[:k]
    beam, token = torch.unravel_index(order, total.shape)
    return total.flatten()[order], beam, token
""",
    ],
}
