"""Chapter 7: train short, test long, for every positional scheme, over several seeds.

The chapter trains each of seven schemes once (one seed, live) on the previous-token
task at length 16 and tests it at lengths 16 to 64. This script runs the same
experiment (the same model, data and recipe as the chapter's cells) for several seeds
and stores, per scheme and test length, the token accuracy of every seed with its
mean, standard deviation, minimum and maximum, and the final training loss.

Run from the repository root:
    OMP_NUM_THREADS=1 python experiments/ch07_extrapolation.py [--seeds 0 1 2 3 4]
It writes experiments/results/ch07_extrapolation.json.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from transformer.multihead import MultiHeadAttention
from transformer.positional import PositionalScheme
from transformer.relative import make_positional
from transformer.utils import machine_summary, seed_everything
from transformer.utils import seed_spread as summary

# The chapter's configuration (notebooks/07_positional_encoding.ipynb).
V, C_SMALL, HEADS, FF, LAYERS = 10, 32, 4, 64, 2
TRAIN_LEN, TEST_LENS = 16, [16, 24, 32, 48, 64]
STEPS, BATCH, LR = 500, 64, 3e-3
NAMES = ["none", "sinusoidal", "learned", "relative", "rope", "t5", "alibi"]
OPTIONS = {
    "learned": {"init_std": 1.0},
    "relative": {"max_distance": 8},
    "t5": {"bidirectional": False},
}
# Extra runs that are not one of the chapter's seven: (scheme, options).
VARIANTS = {"learned, init std 0.02": ("learned", {"init_std": 0.02})}
TEST_OFFSET = 1000  # the test set of seed s is drawn with seed s + TEST_OFFSET


def previous_token_batch(n: int, T: int, generator: torch.Generator):
    x = torch.randint(0, V, (n, T), generator=generator)  # (n, T)
    y = x.roll(1, dims=1)  # (n, T): the label at t is the digit at t - 1
    y[:, 0] = -100  # the first position has no previous token: ignored by the loss
    return x, y


class Block(nn.Module):
    # Pre-LN: x + Attn(LN(x)), then x + FFN(LN(x)); causal self-attention.
    def __init__(self, scheme: PositionalScheme) -> None:
        super().__init__()
        self.scheme = scheme
        self.norm1, self.norm2 = nn.LayerNorm(C_SMALL), nn.LayerNorm(C_SMALL)
        self.attn = MultiHeadAttention(C_SMALL, HEADS)
        self.ffn = nn.Sequential(
            nn.Linear(C_SMALL, FF), nn.ReLU(), nn.Linear(FF, C_SMALL)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), positional=self.scheme, is_causal=True)[0]
        return x + self.ffn(self.norm2(x))  # (B, T, C)


class TinyDecoder(nn.Module):
    def __init__(self, scheme_name: str, options: dict) -> None:
        super().__init__()
        self.scheme = make_positional(
            scheme_name, d_model=C_SMALL, n_heads=HEADS, max_len=TRAIN_LEN, **options
        )
        self.embed = nn.Embedding(V, C_SMALL)
        # unit-size after the scaling
        nn.init.normal_(self.embed.weight, std=C_SMALL**-0.5)
        self.blocks = nn.ModuleList(Block(self.scheme) for _ in range(LAYERS))
        self.norm = nn.LayerNorm(C_SMALL)
        self.out = nn.Linear(C_SMALL, V)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        h = self.scheme.embed(self.embed(ids) * math.sqrt(C_SMALL))  # (B, T, C)
        for block in self.blocks:
            h = block(h)
        return self.out(self.norm(h))  # (B, T, V)


def train_scheme(name: str, seed: int, options: dict, steps: int = STEPS):
    # The chapter's train_scheme, with the seed and the scheme's options as arguments.
    seed_everything(seed)
    gen = torch.Generator().manual_seed(seed)
    model = TinyDecoder(name, options)
    opt = torch.optim.AdamW(model.parameters(), lr=LR)
    for _ in range(steps):
        x, y = previous_token_batch(BATCH, TRAIN_LEN, gen)
        logits = model(x)  # (B, T, V)
        loss = F.cross_entropy(logits.flatten(0, 1), y.flatten(), ignore_index=-100)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval(), loss.item()


@torch.no_grad()
def accuracy(model: TinyDecoder, T: int, seed: int, n: int = 256) -> float:
    x, y = previous_token_batch(n, T, torch.Generator().manual_seed(seed + TEST_OFFSET))
    pred = model(x).argmax(-1)  # (n, T)
    return (pred == y).float()[:, 1:].mean().item()


def _one_thread() -> None:
    torch.set_num_threads(1)  # tiny models: one thread is fastest, as in the chapter


def run_one(task: tuple[int, str, dict]) -> tuple[dict[str, float | None], float]:
    seed, name, options = task
    t0 = time.perf_counter()
    scheme, opts = VARIANTS.get(name, (name, options.get(name, {})))
    model, loss = train_scheme(scheme, seed, opts)
    accs: dict[str, float | None] = {}
    for T in TEST_LENS:
        try:
            accs[str(T)] = accuracy(model, T, seed)
        except ValueError:  # the learned table has no row for this position
            accs[str(T)] = None
    shown = " ".join("  n/a " if a is None else f"{a:6.1%}" for a in accs.values())
    print(
        f"seed {seed} {name:<22} loss {loss:.3f} acc {shown} "
        f"({time.perf_counter() - t0:.0f} s)",
        flush=True,
    )
    return accs, loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--names", nargs="+", default=NAMES + list(VARIANTS))
    parser.add_argument("--learned-init-std", type=float, default=None)
    parser.add_argument("--jobs", type=int, default=1, help="worker processes")
    parser.add_argument("--out", default="experiments/results/ch07_extrapolation.json")
    args = parser.parse_args()
    options = {k: dict(v) for k, v in OPTIONS.items()}
    if args.learned_init_std is not None:
        options["learned"]["init_std"] = args.learned_init_std

    start = time.perf_counter()
    tasks = [(seed, name, options) for seed in args.seeds for name in args.names]
    with multiprocessing.get_context("fork").Pool(
        args.jobs, initializer=_one_thread
    ) as pool:
        done = pool.map(run_one, tasks, chunksize=1)
    per_seed: dict[str, dict[str, dict[str, float | None]]] = {
        n: {} for n in args.names
    }
    final_loss: dict[str, dict[str, float]] = {n: {} for n in args.names}
    for (seed, name, _), (accs, loss) in zip(tasks, done):
        per_seed[name][str(seed)] = accs
        final_loss[name][str(seed)] = loss
    table = {}
    for name in args.names:
        table[name] = {}
        for T in TEST_LENS:
            vals = [per_seed[name][str(s)][str(T)] for s in args.seeds]
            table[name][str(T)] = None if None in vals else summary(vals)
    result = {
        "experiment": "ch07_extrapolation",
        "description": (
            "previous-token task, train at length 16, token accuracy at each "
            "test length (positions 1..T-1), per positional scheme and seed"
        ),
        "config": {
            "vocab": V,
            "d_model": C_SMALL,
            "heads": HEADS,
            "d_ff": FF,
            "layers": LAYERS,
            "train_len": TRAIN_LEN,
            "test_lens": TEST_LENS,
            "steps": STEPS,
            "batch": BATCH,
            "lr": LR,
            "options": options,
            "variants": {
                k: {"scheme": v[0], "options": v[1]} for k, v in VARIANTS.items()
            },
            "test_seed_offset": TEST_OFFSET,
        },
        "seeds": args.seeds,
        "names": args.names,
        "accuracy": per_seed,
        "final_loss": final_loss,
        "summary": table,
        "wall_time_s": round(time.perf_counter() - start, 1),
        "jobs": args.jobs,
        "machine": machine_summary(),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out} in {result['wall_time_s']:.0f} s")


if __name__ == "__main__":
    main()
