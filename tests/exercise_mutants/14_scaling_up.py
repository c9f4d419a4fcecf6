"""Answers to the chapter 14 exercises that the grader must judge.

``WRONG_ANSWERS``: plausible mistakes, each of which must lose at least half of
its question. ``ALTERNATIVES``: correct answers written differently from the
reference, each of which must keep full marks.
"""

WRONG_ANSWERS = {
    "q1_accumulate": [
        # each micro-batch's loss not divided by k: k times the gradient
        """def accumulate(model, loss_fn, x, y, k):
    if x.shape[0] % k:
        raise ValueError("B must be a multiple of k")
    model.zero_grad()
    b = x.shape[0] // k
    total = 0.0
    for j in range(k):
        loss = loss_fn(model(x[j * b:(j + 1) * b]), y[j * b:(j + 1) * b])
        loss.backward()
        total += loss.item() / k
    return total
""",
        # stale gradients kept: the caller's .grad is added to
        """def accumulate(model, loss_fn, x, y, k):
    if x.shape[0] % k:
        raise ValueError("B must be a multiple of k")
    b = x.shape[0] // k
    total = 0.0
    for j in range(k):
        loss = loss_fn(model(x[j * b:(j + 1) * b]), y[j * b:(j + 1) * b]) / k
        loss.backward()
        total += loss.item()
    return total
""",
        # the whole batch at once: right gradient, but no micro-batches
        """def accumulate(model, loss_fn, x, y, k):
    if x.shape[0] % k:
        raise ValueError("B must be a multiple of k")
    model.zero_grad()
    loss = loss_fn(model(x), y)
    loss.backward()
    return loss.item()
""",
        # the loss of the last micro-batch returned, and no check of the split
        """def accumulate(model, loss_fn, x, y, k):
    model.zero_grad()
    for xs, ys in zip(x.chunk(k), y.chunk(k)):
        loss = loss_fn(model(xs), ys)
        (loss / k).backward()
    return loss.item()
""",
    ],
    "q2_training_memory": [
        # weights and gradients in float32 too: 4 + 4 + 8 bytes, and stages off by one
        """def training_memory_gib(n_params, n_ranks, stage):
    if stage not in (0, 1, 2, 3):
        raise ValueError("bad stage")
    parts = [4.0 * n_params, 4.0 * n_params, 8.0 * n_params]
    for i in range(stage):
        parts[2 - i] /= n_ranks
    return sum(parts) / 2**30
""",
        # decimal gigabytes instead of GiB
        """def training_memory_gib(n_params, n_ranks, stage):
    if stage not in (0, 1, 2, 3):
        raise ValueError("bad stage")
    weights, grads, adam = 2.0 * n_params, 2.0 * n_params, 12.0 * n_params
    if stage >= 1:
        adam /= n_ranks
    if stage >= 2:
        grads /= n_ranks
    if stage >= 3:
        weights /= n_ranks
    return (weights + grads + adam) / 1e9
""",
        # stage 3 taken for stage 2: the weights never sharded
        """def training_memory_gib(n_params, n_ranks, stage):
    if stage not in (0, 1, 2, 3):
        raise ValueError("bad stage")
    weights, grads, adam = 2.0 * n_params, 2.0 * n_params, 12.0 * n_params
    if stage >= 1:
        adam /= n_ranks
    if stage >= 2:
        grads /= n_ranks
    return (weights + grads + adam) / 2**30
""",
        # every stage shards everything
        """def training_memory_gib(n_params, n_ranks, stage):
    if stage not in (0, 1, 2, 3):
        raise ValueError("bad stage")
    return 16.0 * n_params / (n_ranks if stage else 1) / 2**30
""",
    ],
    "q3_rng_state": [
        # torch only: Python's and NumPy's draws change after a restore
        """def rng_snapshot():
    return {"torch": torch.get_rng_state()}


def rng_restore(snapshot):
    torch.set_rng_state(snapshot["torch"])
""",
        # NumPy forgotten
        """def rng_snapshot():
    return {"python": random.getstate(), "torch": torch.get_rng_state()}


def rng_restore(snapshot):
    random.setstate(snapshot["python"])
    torch.set_rng_state(snapshot["torch"])
""",
        # reseeding instead of restoring: the draws start over from the seed
        """def rng_snapshot():
    return {"seed": 0}


def rng_restore(snapshot):
    random.seed(snapshot["seed"])
    np.random.seed(snapshot["seed"])
    torch.manual_seed(snapshot["seed"])
""",
    ],
}

ALTERNATIVES = {
    "q1_accumulate": [
        # chunk and a running mean, with a print
        """def accumulate(model, loss_fn, x, y, k):
    B = x.shape[0]
    if B % k != 0:
        raise ValueError(f"{B} is not a multiple of {k}")
    for p in model.parameters():
        p.grad = None
    losses = []
    for xs, ys in zip(torch.chunk(x, k), torch.chunk(y, k)):
        loss = loss_fn(model(xs), ys)
        (loss / k).backward()
        losses.append(float(loss))
    print("accumulated", k, "micro-batches")
    return sum(losses) / k
""",
        # strided micro-batches: any equal partition gives the same gradient
        """def accumulate(model, loss_fn, x, y, k):
    if x.shape[0] % k:
        raise ValueError("B must be a multiple of k")
    model.zero_grad(set_to_none=False)
    total = 0.0
    for j in range(k):
        loss = loss_fn(model(x[j::k]), y[j::k]) / k
        loss.backward()
        total += loss.detach().item()
    return float(total)
""",
    ],
    "q2_training_memory": [
        # bytes per parameter summed as a formula per stage
        """def training_memory_gib(n_params, n_ranks, stage):
    per_param = {0: 16, 1: 4 + 12 / n_ranks, 2: 2 + 14 / n_ranks, 3: 16 / n_ranks}
    if stage not in per_param:
        raise ValueError(f"no ZeRO stage {stage}")
    return float(n_params * per_param[stage] / 1024**3)
""",
    ],
    "q3_rng_state": [
        # NumPy's state as a dict, torch's cloned
        """def rng_snapshot():
    return {
        "py": random.getstate(),
        "np": np.random.get_state(legacy=False),
        "pt": torch.get_rng_state().clone(),
    }


def rng_restore(snapshot):
    random.setstate(snapshot["py"])
    np.random.set_state(snapshot["np"])
    torch.set_rng_state(snapshot["pt"].clone())
""",
    ],
}
