"""Chapter 4 over several seeds: the bottleneck, the training budget, exposure bias.

For every seed (data, initialisation and batches all follow it), three experiments:

1. **Capacity or budget?** Chapter 4's bottleneck experiment (``BOTTLENECK``: copy 3-16
   digits, batch 64, Adam 3e-3) with a context vector of 64 and of 128 numbers, trained
   past the chapter's 1,000 steps. At every checkpoint the exact match of greedy copies
   is measured for each source length on the held-out test sources, so the curve can be
   read against both the hidden size and the number of training steps. The first
   1,000 steps are exactly the chapter's run for that seed.
2. **Exposure bias without alignment.** For the chapter's model (hidden 64, 1,000
   steps): per source length, the mean number of wrong tokens when every step reads the
   true prefix (teacher forced) and the mean edit distance between the free-running
   output and the target. Edit distance does not count a dropped or repeated digit
   again at every later position, as position-by-position accuracy does.
3. **Teacher-forcing ratio.** Short copies (3-8 digits), 300 steps, trained with
   teacher-forcing ratio 1, 0.5 and 0; exact match of greedy copies on the validation
   set.

The chapter runs one seed live and reads this table for the others. Run from the
repository root:

    OMP_NUM_THREADS=1 .venv/bin/python experiments/ch04_seq2seq.py [--jobs 3]

(``--jobs 3`` runs the seeds side by side, one process and one thread each; the
numbers are the same.)

It writes ``experiments/results/ch04_seq2seq.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np
import torch

from transformer.bottleneck import BOTTLENECK, exact_match_by_length
from transformer.data import pad_sequences
from transformer.decoding import greedy_decode
from transformer.training import evaluate, train
from transformer.utils import book_seed, machine_summary, seed_everything
from transformer.utils import seed_spread as spread

SEEDS = [book_seed() + i for i in range(3)]
HIDDEN = [64, 128]
CHECKPOINTS = [500, 1000, 2000, 3000]  # optimizer steps at which accuracy is measured
CHAPTER_STEPS = BOTTLENECK.steps  # the chapter's budget (1,000 steps)
RATIOS = [1.0, 0.5, 0.0]
SHORT = {"max_len": 8, "n_train": 4000, "n_test": 500, "n_val": 400, "steps": 300}
OUT = Path(__file__).resolve().parent / "results" / "ch04_seq2seq.json"


def forever(loader):
    """Batches from ``loader``, epoch after epoch, so training can stop and resume."""
    while True:
        yield from loader


def edit_distance(a: list[int], b: list[int]) -> int:
    """Levenshtein distance: the fewest insertions, deletions and substitutions."""
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        current = [i]
        for j, y in enumerate(b, 1):
            current.append(
                min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y))
            )
        previous = current
    return previous[-1]


@torch.no_grad()
def exposure_by_length(model, data) -> dict:
    """Per source length: teacher-forced wrong tokens and free-running edit distance."""
    model.eval()
    vocab = data.tgt_vocab
    groups: dict[int, list[tuple[str, str]]] = {}
    for src, tgt in data.test:
        groups.setdefault(len(src), []).append((src, tgt))
    rows = {
        "lengths": [],
        "forced_errors": [],
        "free_edit_distance": [],
        "exact_match": [],
    }
    for length in sorted(groups):
        group = groups[length]
        src = pad_sequences([data.src_vocab.encode(s) for s, _ in group])[0]  # (B, S)
        # (B, T + 2)
        tgt = pad_sequences([vocab.encode(t, True, True) for _, t in group])[0]
        # (B, T + 1), true prefix at every step
        forced = model(src, tgt[:, :-1]).argmax(-1)
        forced_errors = (forced != tgt[:, 1:]).sum(dim=1).float()  # (B,)
        free = greedy_decode(
            model, src, tgt.size(1) + 4, vocab.bos_id, vocab.eos_id, vocab.pad_id
        )
        distances = []
        for row, truth in zip(free.tolist(), tgt[:, 1:].tolist()):
            out = row[: row.index(vocab.eos_id) + 1] if vocab.eos_id in row else row
            out = [t for t in out if t != vocab.pad_id]
            distances.append(edit_distance(out, truth))
        rows["lengths"].append(length)
        rows["forced_errors"].append(float(forced_errors.mean()))
        rows["free_edit_distance"].append(float(np.mean(distances)))
        rows["exact_match"].append(float(np.mean([d == 0 for d in distances])))
    return rows


def budget(seed: int, hidden: int, data) -> dict:
    """Train one model to the last checkpoint, measuring exact match by length at
    each."""
    setup = dataclasses.replace(BOTTLENECK, seed=seed, hidden_size=hidden)
    seed_everything(setup.seed)  # as run_bottleneck: initialisation, then batches
    model = setup.baseline(data)
    seed_everything(setup.seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=setup.lr)
    batches = forever(
        data.loader("train", batch_size=setup.batch_size, seed=setup.seed)
    )
    row: dict = {"exact_match": [], "loss_steps": [], "loss": []}
    done, exposure = 0, None
    for checkpoint in CHECKPOINTS:
        history = train(
            model,
            batches,
            steps=checkpoint - done,
            optimizer=optimizer,
            clip_norm=setup.clip_norm,
            progress=False,
            log_every=20,
        )
        row["loss_steps"] += [done + s for s in history.steps]
        row["loss"] += history.train_loss
        done = checkpoint
        by_length = exact_match_by_length(
            model, data.test, data.src_vocab, data.tgt_vocab
        )
        row["exact_match"].append(by_length.exact_match)
        row["lengths"], row["counts"] = by_length.lengths, by_length.counts
        if checkpoint == CHAPTER_STEPS and hidden == BOTTLENECK.hidden_size:
            exposure = exposure_by_length(model, data)
    row["n_parameters"] = sum(p.numel() for p in model.parameters())
    return row, exposure


def ratios(seed: int) -> dict:
    """Exact match (greedy) and token accuracy (forced) after training at each ratio."""
    short = dataclasses.replace(
        BOTTLENECK,
        seed=seed,
        **{k: v for k, v in SHORT.items() if k != "steps"},
    )
    data = short.data()
    row = {}
    for ratio in RATIOS:
        seed_everything(seed)
        model = short.baseline(data)
        model.teacher_forcing_ratio = ratio
        seed_everything(seed)
        train(
            model,
            data.loader("train", batch_size=short.batch_size, seed=seed),
            steps=SHORT["steps"],
            lr=short.lr,
            clip_norm=short.clip_norm,
            progress=False,
        )
        metrics = evaluate(model, data.loader("val", batch_size=200))
        row[str(ratio)] = {
            "exact_match": float(metrics["exact_match"]),
            "token_accuracy": float(metrics["token_accuracy"]),
        }
    return row


def run_seed(seed: int) -> dict:
    """Every experiment for one seed (a process of its own under ``--jobs``)."""
    torch.set_num_threads(1)  # small recurrent models: one thread is fastest
    t0, cpu0 = time.perf_counter(), time.process_time()
    data = dataclasses.replace(BOTTLENECK, seed=seed).data()
    row: dict = {"budget": {}}
    for hidden in HIDDEN:
        row["budget"][str(hidden)], exposure = budget(seed, hidden, data)
        if exposure is not None:
            row["exposure"] = exposure
    row["ratios"] = ratios(seed)
    row["seconds"] = time.perf_counter() - t0
    row["cpu_seconds"] = time.process_time() - cpu0
    last = {h: row["budget"][str(h)]["exact_match"] for h in HIDDEN}
    print(
        f"seed {seed}: exact match at 16 digits after {CHECKPOINTS} steps: "
        + "; ".join(
            f"hidden {h} " + " ".join(f"{r[-1]:.2f}" for r in last[h]) for h in HIDDEN
        )
        + " | ratios "
        + " ".join(f"{r}:{row['ratios'][str(r)]['exact_match']:.2f}" for r in RATIOS)
        + f" ({row['seconds']:.0f} s)",
        flush=True,
    )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--jobs", type=int, default=1, help="seeds run in parallel processes"
    )
    jobs = parser.parse_args().jobs
    torch.set_num_threads(1)
    start = time.perf_counter()
    if jobs > 1:
        with Pool(min(jobs, len(SEEDS))) as pool:
            rows = pool.map(run_seed, SEEDS)
    else:
        rows = [run_seed(seed) for seed in SEEDS]
    per_seed = {str(seed): row for seed, row in zip(SEEDS, rows)}
    first = per_seed[str(SEEDS[0])]
    lengths = first["budget"][str(HIDDEN[0])]["lengths"]
    summary = {
        "budget": {
            str(h): spread(
                [per_seed[str(s)]["budget"][str(h)]["exact_match"] for s in SEEDS]
            )
            for h in HIDDEN
        },
        "exposure": {
            key: spread([per_seed[str(s)]["exposure"][key] for s in SEEDS])
            for key in ("forced_errors", "free_edit_distance", "exact_match")
        },
        "ratios": {
            str(r): spread(
                [per_seed[str(s)]["ratios"][str(r)]["exact_match"] for s in SEEDS]
            )
            for r in RATIOS
        },
    }
    result = {
        "description": (
            "Chapter 4 over seeds. budget: exact match by source length (copy 3-16 "
            f"digits) for hidden sizes {HIDDEN} at optimizer steps {CHECKPOINTS}; "
            f"exposure: for the chapter's model (hidden 64, {CHAPTER_STEPS} steps) per "
            "length, the mean number of wrong tokens with teacher forcing and the "
            "mean edit distance of the free-running output (both over the target plus "
            "<eos>); ratios: exact match on 3-8 digit copies after 300 steps at each "
            "teacher-forcing ratio"
        ),
        "seeds": SEEDS,
        "hidden_sizes": HIDDEN,
        "checkpoints": CHECKPOINTS,
        "chapter_steps": CHAPTER_STEPS,
        "ratios": RATIOS,
        "short": SHORT,
        "lengths": lengths,
        "per_seed": per_seed,
        "summary": summary,
        "jobs": jobs,
        "wall_seconds": time.perf_counter() - start,
        "cpu_seconds": sum(row["cpu_seconds"] for row in rows),
        "machine": machine_summary(),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=1) + "\n")
    print(
        "wrote "
        f"{OUT.relative_to(Path.cwd()) if OUT.is_relative_to(Path.cwd()) else OUT}"
    )
    print(f"{result['wall_seconds']:.0f} s wall, {result['cpu_seconds']:.0f} s CPU")


if __name__ == "__main__":
    main()
