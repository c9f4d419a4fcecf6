"""Chapter 14: what bf16, activation checkpointing and torch.compile cost or save here.

One training step of chapter 10's GPT (``transformer.train.build_model``: C = 64,
4 heads, 2 layers, FFN 256, block 128, no dropout) on batches of 16 windows of
chapter 10's corpus (bytes), with AdamW, measured four ways:

1. ``fp32``: the plain step;
2. ``bf16``: the forward under ``torch.autocast("cpu", dtype=torch.bfloat16)``;
3. ``checkpointing``: every block's activations recomputed in the backward
   (``enable_activation_checkpointing``);
4. ``compile``: the model through ``torch.compile`` (the first step compiles).

Each variant starts from the same weights and reads the same batches for a given
seed. Step time is CPU time of this process (``time.process_time()``, one thread,
so the load of other processes on the machine matters less than for wall time),
the median of the steps after ``warmup`` steps; the first step's time is kept too
(for ``compile`` it is the compilation). Activation memory is the bytes of every
tensor autograd saves for the backward during one forward (measured with
``torch.autograd.graph.saved_tensors_hooks``; not available for ``compile``, whose
graph saves its own). Loss parity: the largest difference between the loss curve
of a variant and that of ``fp32`` over the same steps. Seeds are ``book_seed() + i``.
Writes ``results/ch14_speed.json``.

Run from the repository root (about 2 minutes of CPU on one thread, most of it
compiling and bf16 steps):

    OMP_NUM_THREADS=1 .venv/bin/python experiments/ch14_speed.py
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from transformer.distributed import WindowDataset, WindowShards
from transformer.lm import lm_loss
from transformer.train import (
    TrainConfig,
    build_model,
    corpus_bytes,
    enable_activation_checkpointing,
)
from transformer.utils import book_seed, machine_summary, seed_spread

NAME = "ch14_speed"
RESULTS = Path(__file__).resolve().parent / "results" / f"{NAME}.json"
VARIANTS = ("fp32", "bf16", "checkpointing", "compile")
FULL = dict(
    model=dict(d_model=64, n_heads=4, n_layers=2, d_ff=256, block_size=128),
    batch=16,
    warmup=2,
    steps=10,
    seeds=3,
)
QUICK = dict(
    model=dict(d_model=32, n_heads=2, n_layers=1, d_ff=64, block_size=16),
    batch=4,
    warmup=1,
    steps=2,
    seeds=1,
)


def saved_bytes(model: torch.nn.Module, x: torch.Tensor, autocast: Any) -> int:
    """Bytes autograd keeps for the backward of one forward pass (the activations)."""
    sizes: list[int] = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        sizes.append(t.numel() * t.element_size())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), autocast():
        model(x).float().sum().backward()
    model.zero_grad(set_to_none=True)
    return sum(sizes)


def measure(variant: str, seed: int, setup: dict[str, Any]) -> dict[str, Any]:
    config = TrainConfig(**setup["model"], dropout=0.0, device="cpu")
    torch.manual_seed(seed)
    model = build_model(config)
    if variant == "checkpointing":
        enable_activation_checkpointing(model)
    forward = torch.compile(model) if variant == "compile" else model

    def autocast() -> Any:
        if variant == "bf16":
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    train_ids, _ = corpus_bytes()
    shards = WindowShards(WindowDataset(train_ids, config.block_size), seed=seed)
    probe, _ = shards.next_batch(setup["batch"])
    memory = None if variant == "compile" else saved_bytes(model, probe, autocast)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    cpu_times, losses = [], []
    for _ in range(setup["warmup"] + setup["steps"]):
        x, y = shards.next_batch(setup["batch"])  # (B, T), (B, T)
        start = time.process_time()
        with autocast():
            loss = lm_loss(forward(x).float(), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        cpu_times.append(time.process_time() - start)
        losses.append(loss.item())
    tokens = setup["batch"] * config.block_size
    step = statistics.median(cpu_times[setup["warmup"] :])
    return dict(
        step_cpu_s=step,
        first_step_cpu_s=cpu_times[0],
        tokens_per_cpu_s=tokens / step,
        saved_bytes=memory,
        losses=losses,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a tiny smoke run")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    setup = QUICK if args.quick else FULL
    torch.set_num_threads(1)
    seeds = [book_seed() + i for i in range(setup["seeds"])]
    wall0, cpu0 = time.perf_counter(), time.process_time()
    runs: dict[str, dict[str, Any]] = {v: {} for v in VARIANTS}
    for seed in seeds:
        for variant in VARIANTS:
            torch._dynamo.reset()  # every compile run pays its compilation
            runs[variant][str(seed)] = r = measure(variant, seed, setup)
            print(
                f"seed {seed} {variant:<13} step {r['step_cpu_s'] * 1e3:7.1f} ms CPU, "
                f"first {r['first_step_cpu_s']:6.2f} s, saved {r['saved_bytes']}"
            )
    rows = []
    for variant in VARIANTS:
        per_seed = runs[variant]
        base = runs["fp32"]
        gaps, speed = [], []
        for s, r in per_seed.items():
            gaps.append(max(abs(a - b) for a, b in zip(r["losses"], base[s]["losses"])))
            speed.append(base[s]["step_cpu_s"] / r["step_cpu_s"])
        results = list(per_seed.values())
        memory = [r["saved_bytes"] for r in results]
        mib = None if None in memory else seed_spread([m / 2**20 for m in memory])
        rows.append(
            dict(
                name=variant,
                step_cpu_ms=seed_spread([r["step_cpu_s"] * 1e3 for r in results]),
                first_step_cpu_s=seed_spread([r["first_step_cpu_s"] for r in results]),
                speed_vs_fp32=seed_spread(speed),
                saved_mib=mib,
                max_loss_gap_vs_fp32=seed_spread(gaps),
                per_seed=per_seed,
            )
        )
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    out = dict(
        name=NAME,
        seeds=seeds,
        setup=setup,
        rows=rows,
        machine=machine_summary(),
        cpu_seconds=cpu,
        wall_seconds=wall,
        avx512_bf16="avx512_bf16" in Path("/proc/cpuinfo").read_text(),
        amx_bf16="amx_bf16" in Path("/proc/cpuinfo").read_text(),
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    for row in rows:
        s = row["speed_vs_fp32"]
        low, high = s["min"], s["max"]
        print(f"{row['name']:<13} {s['mean']:.2f}x fp32 [{low:.2f}, {high:.2f}]")
    print(f"wrote {args.out} ({out['cpu_seconds']:.0f} CPU s)")


if __name__ == "__main__":
    main()
