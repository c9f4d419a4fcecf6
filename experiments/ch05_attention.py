"""Chapter 5 over several seeds: context vector vs attention, and dates with attention.

For every seed, the bottleneck experiment of chapter 4 (``BOTTLENECK`` with that
seed: data, initialisation and batches) trains chapter 4's context-vector GRU and
chapter 5's attention model of the same hidden size, and measures exact match for
every source length on held-out sources. Then the attention model of chapter 5 is
trained on the dates task with that seed. The chapter runs one seed live and reads
this table for the others.

Run from the repository root:

    OMP_NUM_THREADS=1 .venv/bin/python experiments/ch05_attention.py

It writes ``experiments/results/ch05_attention.json``.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch

from transformer.attention_seq2seq import AttentionSeq2Seq
from transformer.bottleneck import BOTTLENECK, run_bottleneck
from transformer.tasks import load_task
from transformer.training import evaluate, train
from transformer.utils import machine_summary, seed_everything
from transformer.utils import seed_spread as summary

SEEDS = [0, 1, 2]
LONG = 4  # the summary averages exact match over the LONG longest source lengths
OUT = Path(__file__).resolve().parent / "results" / "ch05_attention.json"

# The dates run of the chapter (same sizes, steps and learning rate).
DATES = {"n_train": 4000, "n_val": 200, "n_test": 500, "steps": 350, "lr": 3e-3}


def bottleneck(seed: int) -> dict:
    """Both models through chapter 4's experiment with one seed."""
    setup = dataclasses.replace(BOTTLENECK, seed=seed)
    data = setup.data()
    baseline = run_bottleneck(None, setup, data=data)
    seed_everything(setup.seed)
    model = AttentionSeq2Seq(
        len(data.src_vocab),
        len(data.tgt_vocab),
        emb_size=setup.emb_size,
        hidden_size=setup.hidden_size,
        cell=setup.cell,
        pad_id=data.tgt_vocab.pad_id,
    )
    attention = run_bottleneck(model, setup, data=data)
    lengths = baseline.by_length.lengths
    row = {
        "lengths": lengths,
        "context_vector": baseline.by_length.exact_match,
        "attention": attention.by_length.exact_match,
        "counts": baseline.by_length.counts,
    }
    for name in ("context_vector", "attention"):
        row[f"{name}_long"] = float(np.mean(row[name][-LONG:]))
        row[f"{name}_short"] = row[name][0]
    return row


def dates(seed: int) -> float:
    """Test exact match of the attention model on the dates task with one seed."""
    data = load_task(
        "dates",
        n_train=DATES["n_train"],
        n_val=DATES["n_val"],
        n_test=DATES["n_test"],
        seed=seed,
    )
    seed_everything(seed)
    model = AttentionSeq2Seq(
        len(data.src_vocab),
        len(data.tgt_vocab),
        emb_size=32,
        hidden_size=64,
        pad_id=data.src_vocab.pad_id,
    )
    train(
        model,
        data.loader("train", batch_size=64, seed=seed),
        steps=DATES["steps"],
        lr=DATES["lr"],
        progress=False,
    )
    return float(evaluate(model, data.loader("test", batch_size=250))["exact_match"])


def main() -> None:
    torch.set_num_threads(1)  # small recurrent models: one thread is fastest
    start = time.perf_counter()
    per_seed = {}
    for seed in SEEDS:
        t0 = time.perf_counter()
        row = bottleneck(seed)
        row["dates_exact_match"] = dates(seed)
        row["seconds"] = time.perf_counter() - t0
        per_seed[str(seed)] = row
        print(
            f"seed {seed}: lengths {row['lengths'][-LONG]}-{row['lengths'][-1]} "
            f"context vector {100 * row['context_vector_long']:5.1f}%, "
            f"attention {100 * row['attention_long']:5.1f}%; "
            f"dates {100 * row['dates_exact_match']:5.1f}% ({row['seconds']:.0f} s)",
            flush=True,
        )
    lengths = per_seed[str(SEEDS[0])]["lengths"]
    assert all(per_seed[str(s)]["lengths"] == lengths for s in SEEDS)
    by_length = {
        name: {
            "mean": np.mean([per_seed[str(s)][name] for s in SEEDS], axis=0).tolist(),
            "min": np.min([per_seed[str(s)][name] for s in SEEDS], axis=0).tolist(),
            "max": np.max([per_seed[str(s)][name] for s in SEEDS], axis=0).tolist(),
        }
        for name in ("context_vector", "attention")
    }
    result = {
        "description": (
            "Chapter 4's bottleneck experiment (copy 3-16 digits, hidden 64, 1000 "
            "steps) with the context-vector GRU and the attention model, exact match "
            f"by source length; the mean over the {LONG} longest lengths; the "
            "attention model's test exact match on the dates task (350 steps)"
        ),
        "seeds": SEEDS,
        "long_lengths": lengths[-LONG:],
        "lengths": lengths,
        "per_seed": per_seed,
        "by_length": by_length,
        "summary": {
            key: summary([per_seed[str(s)][key] for s in SEEDS])
            for key in (
                "context_vector_long",
                "attention_long",
                "context_vector_short",
                "attention_short",
                "dates_exact_match",
            )
        },
        "wall_seconds": time.perf_counter() - start,
        "machine": machine_summary(),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=1) + "\n")
    for key, s in result["summary"].items():
        print(
            f"{key:>22}: mean {100 * s['mean']:5.1f}% ± {100 * s['std']:4.1f} "
            f"(min {100 * s['min']:5.1f}%, max {100 * s['max']:5.1f}%)"
        )
    print(f"wrote {OUT.relative_to(OUT.parents[2])} in {result['wall_seconds']:.0f} s")


if __name__ == "__main__":
    main()
