"""Plausible wrong answers to the chapter 9 exercises; each must lose points."""

WRONG_ANSWERS = {
    # forgets the decay: warm-up forever
    "q1_noam_schedule": """def noam_lr(step, d_model, warmup):
    return d_model**-0.5 * step * warmup**-1.5
""",
    # spreads eps over the other V - 1 classes only (another convention, not the one asked)
    "q2_smoothed_targets": """def smoothed_targets(targets, n_classes, eps):
    one_hot = F.one_hot(targets, n_classes).float()
    return one_hot * (1 - eps) + (1 - one_hot) * eps / (n_classes - 1)
""",
    # ranks the extensions by the new token's log-probability alone
    "q3_beam_step": """def beam_step(scores, log_probs, k):
    V = log_probs.shape[1]
    flat_lp = log_probs.reshape(-1)
    _, flat = flat_lp.topk(k)
    return scores[flat // V] + flat_lp[flat], flat // V, flat % V
""",
}
