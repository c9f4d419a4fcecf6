"""Chapter 13: what each efficient attention costs in accuracy, on two tasks, 3 seeds.

Every method of :data:`transformer.efficient_layer.METHODS` that trains (the
tiled and recurrent forms compute the same function as full and parallel linear
attention, so they are not trained again) is swapped into the same small model
with :func:`~transformer.efficient_layer.use_efficient_attention`; everything
else is equal: the initial weights of the shared parts, the batches, the
optimizer and the number of steps.

1. ``needle``, a long-range task generated here (chapter 1's recall, with the key
   anywhere): T = 128 random digits, one of them replaced by one of 8 letters at a
   uniformly random position, the last token a ``?``. The model reads the output
   at ``?`` and must name the letter (chance 1/8). A bidirectional encoder of
   chapter 8's pre-LN layers (C = 32, 2 heads, 2 layers, FFN 64, learned
   positions), so Linformer takes part. Accuracy on 2,000 fresh sequences.
2. ``charlm``, chapter 10's character language model on the Python help topics
   (``ch10_baselines.load_data``: the same documents, split and vocabulary),
   chapter 10's decoder-only Transformer (C = 64, 4 heads, 2 layers, FFN 256,
   tied output) with a context of 128 characters. Causal, so Linformer cannot take
   part. Bits per character on the first ``eval_chars`` validation characters,
   the context restarting every 128 characters.

Both: AdamW (learning rate 3e-3, weight decay 0.01 on matrices, gradients clipped
at norm 1), 20 warm-up steps then a cosine decay to a tenth; no dropout. Seeds
``book_seed() + i`` fix the initial weights and the batches. Records per method
and seed: the score, the CPU seconds of training (``time.process_time``, one
thread) and its steps; per method the spread over seeds (``seed_spread``).
Writes ``results/ch13_efficient.json``.

Run from the repository root (about 12 minutes of CPU on one thread):

    OMP_NUM_THREADS=1 .venv/bin/python experiments/ch13_efficient.py
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
from ch10_baselines import CLIP, WARMUP, WEIGHT_DECAY, evaluate_bpc, load_data
from torch import nn

from transformer.efficient_layer import use_efficient_attention
from transformer.gpt import DecoderOnlyConfig, DecoderOnlyTransformer
from transformer.layers import EncoderLayer
from transformer.lm import lm_batches, lm_loss
from transformer.utils import book_seed, machine_summary, seed_everything, seed_spread

NAME = "ch13_efficient"
RESULTS = Path(__file__).resolve().parent / "results" / f"{NAME}.json"
LR = 3e-3
FULL = dict(
    needle=dict(
        length=128,
        keys=8,
        d_model=32,
        n_heads=2,
        n_layers=2,
        d_ff=64,
        batch=32,
        steps=300,
        n_test=2000,
    ),
    charlm=dict(
        block=128,
        d_model=64,
        n_heads=4,
        n_layers=2,
        d_ff=256,
        batch=16,
        steps=250,
        eval_chars=40000,
    ),
)
QUICK = dict(
    needle=dict(
        length=32,
        keys=4,
        d_model=16,
        n_heads=2,
        n_layers=1,
        d_ff=32,
        batch=8,
        steps=3,
        n_test=50,
    ),
    charlm=dict(
        block=32,
        d_model=16,
        n_heads=2,
        n_layers=1,
        d_ff=32,
        batch=4,
        steps=3,
        eval_chars=500,
    ),
)
# each method: (name in METHODS, options for the needle task, options for the LM)
METHODS = (
    ("full", {}, {}),
    ("window", dict(window=8), dict(window=16)),
    ("dilated", dict(window=4, dilation=4), dict(window=4, dilation=4)),
    ("global", dict(window=8, n_global=1), dict(window=16, n_global=1)),
    ("linformer", dict(proj_len=16), None),
    ("linear", {}, {}),
    ("performer", dict(n_features=32), dict(n_features=32)),
)


class NeedleClassifier(nn.Module):
    """Chapter 8's encoder layers over the sequence, read out at its last token."""

    def __init__(self, s: dict) -> None:
        super().__init__()
        C = s["d_model"]
        self.embedding = nn.Embedding(10 + s["keys"] + 1, C)
        self.positions = nn.Parameter(0.02 * torch.randn(s["length"], C))
        self.layers = nn.ModuleList(
            EncoderLayer(C, s["n_heads"], s["d_ff"], norm_first=True)
            for _ in range(s["n_layers"])
        )
        self.norm = nn.LayerNorm(C)
        self.head = nn.Linear(C, s["keys"])

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.embedding(ids) + self.positions  # (B, T, C)
        for layer in self.layers:
            x = layer(x)
        return self.head(self.norm(x[:, -1]))  # (B, keys)


def needle_batch(
    n: int, s: dict, g: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """n sequences of digits with one letter at a random place, and that letter."""
    T = s["length"]
    ids = torch.randint(0, 10, (n, T), generator=g)  # digits 0-9
    where = torch.randint(0, T - 1, (n,), generator=g)
    letter = torch.randint(0, s["keys"], (n,), generator=g)
    ids[torch.arange(n), where] = 10 + letter  # letters 10, 11, ...
    ids[:, -1] = 10 + s["keys"]  # the question mark
    return ids, letter


def schedule(optimizer: torch.optim.Optimizer, step: int, steps: int) -> None:
    frac = step / steps
    scale = min(1.0, (step + 1) / WARMUP) * (
        0.1 + 0.45 * (1 + math.cos(math.pi * frac))
    )
    for group in optimizer.param_groups:
        group["lr"] = LR * scale


def make_optimizer(model: nn.Module) -> torch.optim.Optimizer:
    decay = [p for p in model.parameters() if p.dim() >= 2]
    rest = [p for p in model.parameters() if p.dim() < 2]
    groups = [
        {"params": decay, "weight_decay": WEIGHT_DECAY},
        {"params": rest, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=LR)


def train(model: nn.Module, steps: int, next_loss) -> dict:
    """``steps`` optimizer steps; ``next_loss(model)`` draws a batch and scores it."""
    optimizer = make_optimizer(model)
    used = 0.0
    model.train()
    for step in range(steps):
        t0 = time.process_time()
        schedule(optimizer, step, steps)
        loss = next_loss(model)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), CLIP)
        optimizer.step()
        used += time.process_time() - t0
    return {"cpu_seconds": used, "steps": steps, "final_loss": loss.item()}


def run_needle(method: str, options: dict, seed: int, s: dict) -> dict:
    seed_everything(seed)
    model = NeedleClassifier(s)
    if method != "full":
        use_efficient_attention(model, method, max_len=s["length"], **options)
    g = torch.Generator().manual_seed(seed)

    def next_loss(m: nn.Module) -> torch.Tensor:
        ids, letter = needle_batch(s["batch"], s, g)
        return nn.functional.cross_entropy(m(ids), letter)

    record = train(model, s["steps"], next_loss)
    model.eval()
    ids, letter = needle_batch(s["n_test"], s, torch.Generator().manual_seed(10**6))
    with torch.no_grad():
        record["accuracy"] = (model(ids).argmax(-1) == letter).float().mean().item()
    return record


def run_charlm(method: str, options: dict, seed: int, s: dict, data: dict) -> dict:
    seed_everything(seed)
    config = DecoderOnlyConfig(
        vocab_size=len(data["chars"]),
        d_model=s["d_model"],
        n_heads=s["n_heads"],
        n_layers=s["n_layers"],
        d_ff=s["d_ff"],
        max_len=s["block"],
        dropout=0.0,
        mask_pad=False,
    )
    model = DecoderOnlyTransformer(config)
    if method != "full":
        use_efficient_attention(model, method, **options)
    g = torch.Generator().manual_seed(seed)
    batches = lm_batches(data["train"], s["block"], s["batch"], generator=g)

    def next_loss(m: nn.Module) -> torch.Tensor:
        x, y = next(batches)
        return lm_loss(m(x), y)

    record = train(model, s["steps"], next_loss)
    with torch.no_grad():
        record["bpc"] = evaluate_bpc(model, data["curve"], s["block"])
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="seeds per method")
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes, seconds in all"
    )
    parser.add_argument(
        "--out", type=Path, default=RESULTS, help="where to write the JSON"
    )
    args = parser.parse_args()
    if args.seeds < 1:
        parser.error(f"--seeds must be at least 1, got {args.seeds}")
    torch.set_num_threads(1)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    sizes = QUICK if args.quick else FULL
    seeds = [book_seed() + i for i in range(args.seeds)]
    lm = sizes["charlm"]
    data = load_data(args.quick, lm["block"], lm["eval_chars"])

    tasks: dict[str, list] = {"needle": [], "charlm": []}
    for method, needle_options, lm_options in METHODS:
        for task, options, score in (
            ("needle", needle_options, "accuracy"),
            ("charlm", lm_options, "bpc"),
        ):
            if options is None:  # Linformer cannot be causal
                continue
            per_seed = {}
            for seed in seeds:
                if task == "needle":
                    record = run_needle(method, options, seed, sizes["needle"])
                else:
                    record = run_charlm(method, options, seed, lm, data)
                per_seed[str(seed)] = record
                cpu, value = record["cpu_seconds"], record[score]
                print(
                    f"{task:>6} {method:>9} seed {seed}: {score} {value:.3f}, "
                    f"{cpu:.1f} CPU s",
                    flush=True,
                )
            runs = list(per_seed.values())
            tasks[task].append(
                {
                    "method": method,
                    "options": options,
                    "per_seed": per_seed,
                    "summary": {
                        score: seed_spread([r[score] for r in runs]),
                        "cpu_seconds": seed_spread([r["cpu_seconds"] for r in runs]),
                    },
                }
            )

    out = {
        "name": NAME,
        "description": __doc__.split("\n\n")[0],
        "quick": args.quick,
        "seeds": seeds,
        "sizes": sizes,
        "training": {
            "optimizer": "AdamW",
            "lr": LR,
            "weight_decay": WEIGHT_DECAY,
            "clip_norm": CLIP,
            "schedule": f"{WARMUP} linear warm-up steps, then cosine to 0.1x",
        },
        "data": {
            "needle": "generated: digits with one letter at a random place, then '?'",
            "charlm": (
                "Python help topics, transformer.lm.documents() (chapter 10's split)"
            ),
            "charlm_eval_chars": len(data["curve"]) - 1,
        },
        "tasks": tasks,
        "notes": (
            "needle: accuracy on 2,000 fresh sequences (chance 1/keys). charlm: bits "
            "per character on the first eval_chars validation characters, lower is "
            "better. "
            "cpu_seconds: process time of the training steps, one thread."
        ),
        "cpu_seconds": time.process_time() - cpu0,
        "wall_seconds": time.perf_counter() - wall0,
        "machine": machine_summary(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    cpu, wall = out["cpu_seconds"], out["wall_seconds"]
    print(f"CPU {cpu:.0f} s in {wall:.0f} s wall; wrote {args.out}")


if __name__ == "__main__":
    main()
