"""Chapter 8: post-LN and pre-LN, with and without a learning-rate warm-up, over seeds.

The chapter trains four 6-layer encoder-only models once (one seed, live) to reverse
10-digit strings as a tagging task, at a high peak learning rate: post-LN or pre-LN,
each at a constant learning rate or with a linear warm-up and inverse square-root
decay. This script runs the same four recipes (the chapter's code) for several seeds
and stores every run's training-loss curve and test token accuracy, with the mean,
standard deviation, minimum and maximum of the accuracy per recipe.

Run from the repository root:
    OMP_NUM_THREADS=1 python experiments/ch08_warmup.py [--seeds 0 1 2 3 4]
It writes experiments/results/ch08_warmup.json.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from transformer.layers import EncoderLayer
from transformer.relative import make_positional
from transformer.schedules import warmup_inverse_sqrt
from transformer.tasks import load_task
from transformer.utils import machine_summary, seed_everything
from transformer.utils import seed_spread as summary

# The chapter's configuration (notebooks/08_transformer_blocks.ipynb).
DEPTH, STEPS, BATCH, LR, WARMUP = 6, 300, 64, 1e-2, 150
RECIPES = {  # name: (norm_first, warm-up steps; 0 = constant learning rate)
    "post-LN, no warm-up": (False, 0),
    "post-LN, warm-up": (False, WARMUP),
    "pre-LN, no warm-up": (True, 0),
    "pre-LN, warm-up": (True, WARMUP),
}


def make_stack(
    depth: int, norm_first: bool, C: int = 64, H: int = 4, F_: int = 128, V=16
):
    # An encoder-only model: embeddings, sinusoidal positions, `depth` blocks, output
    # layer.
    model = nn.ModuleDict(
        {
            "emb": nn.Embedding(V, C),
            "layers": nn.ModuleList(
                EncoderLayer(C, H, F_, norm_first=norm_first) for _ in range(depth)
            ),
            "final_norm": nn.LayerNorm(C) if norm_first else nn.Identity(),
            "out": nn.Linear(C, V),
        }
    )
    nn.init.normal_(model["emb"].weight, std=C**-0.5)
    model.pos = make_positional("sinusoidal", d_model=C)
    return model


def run_stack(model, ids):
    C = model["emb"].embedding_dim
    x = model.pos.embed(model["emb"](ids) * math.sqrt(C), torch.arange(ids.shape[1]))
    for layer in model["layers"]:
        x = layer(x)
    return model["out"](model["final_norm"](x))  # (B, T, V)


def reversal_data(seed: int):
    task = load_task(
        "reverse", n_train=4000, n_val=0, n_test=500, min_len=10, max_len=10, seed=seed
    )
    vocab = task.src_vocab

    def to_tensor(pairs):
        src = torch.tensor([vocab.encode(s) for s, _ in pairs])
        tgt = torch.tensor([vocab.encode(t) for _, t in pairs])
        return src, tgt

    return vocab, to_tensor(task.train), to_tensor(task.test)


def train_stack(data, norm_first, warmup, seed, steps=STEPS, lr=LR, depth=DEPTH):
    vocab, (train_src, train_tgt), (test_src, test_tgt) = data
    seed_everything(seed)
    model = make_stack(depth, norm_first, V=len(vocab))
    opt = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.9, 0.98), eps=1e-9)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        (lambda s: warmup_inverse_sqrt(s + 1, warmup)) if warmup else (lambda s: 1.0),
    )
    g = torch.Generator().manual_seed(seed)
    losses = []
    for _ in range(steps):
        idx = torch.randint(0, len(train_src), (BATCH,), generator=g)
        logits = run_stack(model, train_src[idx])
        loss = F.cross_entropy(logits.flatten(0, 1), train_tgt[idx].flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    with torch.no_grad():
        acc = (
            (run_stack(model.eval(), test_src).argmax(-1) == test_tgt)
            .float()
            .mean()
            .item()
        )
    return losses, acc


def _one_thread() -> None:
    torch.set_num_threads(1)  # tiny models: one thread is fastest


def run_one(task: tuple[int, str]) -> tuple[list[float], float]:
    seed, name = task
    norm_first, warmup = RECIPES[name]
    t0 = time.perf_counter()
    curve, acc = train_stack(reversal_data(seed), norm_first, warmup, seed)
    print(
        f"seed {seed} {name:<20} final loss {statistics.fmean(curve[-20:]):.3f} "
        f"test accuracy {acc:6.1%} ({time.perf_counter() - t0:.0f} s)",
        flush=True,
    )
    return curve, acc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--jobs", type=int, default=1, help="worker processes")
    parser.add_argument("--out", default="experiments/results/ch08_warmup.json")
    args = parser.parse_args()
    start = time.perf_counter()
    tasks = [(seed, name) for seed in args.seeds for name in RECIPES]
    with multiprocessing.get_context("fork").Pool(
        args.jobs, initializer=_one_thread
    ) as pool:
        done = pool.map(run_one, tasks, chunksize=1)
    accuracy = {name: {} for name in RECIPES}
    losses = {name: {} for name in RECIPES}
    for (seed, name), (curve, acc) in zip(tasks, done):
        accuracy[name][str(seed)] = acc
        losses[name][str(seed)] = [round(v, 5) for v in curve]
    result = {
        "experiment": "ch08_warmup",
        "description": "6-layer encoder-only model, reversal of 10 digits as tagging, "
        "Adam at a peak learning rate of 1e-2; test token accuracy and training loss "
        "per step, per recipe and seed",
        "config": {
            "depth": DEPTH,
            "steps": STEPS,
            "batch": BATCH,
            "lr": LR,
            "warmup": WARMUP,
            "d_model": 64,
            "heads": 4,
            "d_ff": 128,
            "recipes": {
                k: {"norm_first": v[0], "warmup": v[1]} for k, v in RECIPES.items()
            },
        },
        "seeds": args.seeds,
        "accuracy": accuracy,
        "loss": losses,
        "summary": {
            name: summary([accuracy[name][str(s)] for s in args.seeds])
            for name in RECIPES
        },
        "wall_time_s": round(time.perf_counter() - start, 1),
        "jobs": args.jobs,
        "machine": machine_summary(),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result) + "\n")
    print(f"wrote {out} in {result['wall_time_s']:.0f} s")


if __name__ == "__main__":
    main()
