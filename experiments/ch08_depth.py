"""Chapter 8: post-LN and pre-LN at 2, 6 and 12 layers, at initialisation and training.

Two measurements, over seeds, at several depths:

(a) Gradients at initialisation. For an encoder-only stack of L blocks (the chapter's
    `make_stack`: C = 64, 4 heads, F = 128), one batch of 128 random sequences of 12
    tokens with random labels, the gradient norm of every block's second feed-forward
    matrix W2 (the parameter of Xiong et al.'s Theorem 1) and of all of a block's
    parameters together, for post-LN and pre-LN, with PyTorch's default
    initialisation and with Xavier's.
(b) Training at a high learning rate. The chapter's reversal task (10 digits, as
    tagging), Adam at a peak learning rate of 1e-2 for 300 steps of batch 64:
    post-LN without and with a 150-step warm-up, and pre-LN without one, at each
    depth. Per run: the training-loss curve, its final value (mean of the last 20
    steps), whether it stayed at chance (diverged) and its largest loss spike (the
    largest rise of the 20-step mean loss above the lowest value it had reached).

Run from the repository root:
    OMP_NUM_THREADS=1 python experiments/ch08_depth.py [--quick] [--seeds 0 1 2]
It writes experiments/results/ch08_depth.json.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ch08_warmup import reversal_data, run_stack  # noqa: E402  (same folder)

from transformer.layers import EncoderLayer  # noqa: E402
from transformer.relative import make_positional  # noqa: E402
from transformer.schedules import warmup_inverse_sqrt  # noqa: E402
from transformer.utils import machine_summary, seed_everything, seed_spread  # noqa: E402

DEPTHS = (2, 6, 12)
INITS = ("default", "xavier")
STEPS, BATCH, LR, WARMUP = 300, 64, 1e-2, 150
RECIPES = {  # name: (norm_first, warm-up steps; 0 = constant learning rate)
    "post-LN, no warm-up": (False, 0),
    "post-LN, warm-up": (False, WARMUP),
    "pre-LN, no warm-up": (True, 0),
}
CHANCE = math.log(10)  # the loss of a uniform guess among the ten digits
DIVERGED_ABOVE = 2.0  # final loss (nats) at which a run counts as not having learned
SPIKE_ABOVE = 0.1  # rise of the 20-step mean loss (nats) that counts as a spike


def make_stack(depth: int, norm_first: bool, init: str = "default", V: int = 16):
    """The chapter's encoder-only stack, with PyTorch's default or Xavier's init."""
    C, H, F_ = 64, 4, 128
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
    if init == "xavier":  # Glorot and Bengio's uniform init on every weight matrix
        for name, p in model.named_parameters():
            if p.dim() == 2 and not name.startswith("emb"):
                nn.init.xavier_uniform_(p)
    nn.init.normal_(model["emb"].weight, std=C**-0.5)
    model.pos = make_positional("sinusoidal", d_model=C)
    return model


def init_gradients(depth: int, norm_first: bool, seed: int, init: str) -> dict:
    """Per-block gradient norms at initialisation: of W2, and of the whole block."""
    seed_everything(seed)
    model = make_stack(depth, norm_first, init)
    g = torch.Generator().manual_seed(seed + 100)
    ids = torch.randint(0, 16, (128, 12), generator=g)  # (B, T)
    labels = torch.randint(0, 16, (128 * 12,), generator=g)  # (B * T,)
    F.cross_entropy(run_stack(model, ids).flatten(0, 1), labels).backward()
    w2, block = [], []
    for layer in model["layers"]:
        w2.append(float(layer.ffn.linear2.weight.grad.norm()))
        block.append(
            math.sqrt(sum(float(p.grad.pow(2).sum()) for p in layer.parameters()))
        )
    return {"w2": w2, "block": block}


def tilt(norms: list[float]) -> float:
    """Top-to-bottom ratio of a line fitted to log(norm) by layer (> 1: it grows)."""
    slope = np.polyfit(np.arange(len(norms)), np.log(norms), 1)[0]
    return float(np.exp(slope * (len(norms) - 1)))


def worst_rise(curve: list[float], k: int = 20) -> tuple[float, int]:
    """The largest rise of the k-step mean loss above its lowest so far; its step."""
    s = np.convolve(curve, np.ones(k) / k, mode="valid")
    rise = s[1:] - np.minimum.accumulate(s)[:-1]
    return max(0.0, float(rise.max())), int(rise.argmax()) + k + 1


def train(data, depth: int, norm_first: bool, warmup: int, seed: int, steps: int):
    """One training run of the chapter's recipe; the loss per step and test accuracy."""
    vocab, (train_src, train_tgt), (test_src, test_tgt) = data
    seed_everything(seed)
    model = make_stack(depth, norm_first, V=len(vocab))
    opt = torch.optim.Adam(model.parameters(), lr=LR, betas=(0.9, 0.98), eps=1e-9)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        (lambda s: warmup_inverse_sqrt(s + 1, warmup)) if warmup else (lambda s: 1.0),
    )
    g = torch.Generator().manual_seed(seed)
    losses = []
    for _ in range(steps):
        idx = torch.randint(0, len(train_src), (BATCH,), generator=g)
        logits = run_stack(model, train_src[idx])  # (B, T, V)
        loss = F.cross_entropy(logits.flatten(0, 1), train_tgt[idx].flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    with torch.no_grad():
        pred = run_stack(model.eval(), test_src).argmax(-1)  # (N, T)
        acc = (pred == test_tgt).float().mean().item()
    return losses, acc


def gradient_table(depths, seeds) -> dict:
    rows = []
    for init in INITS:
        for depth in depths:
            per = {
                nf: [init_gradients(depth, nf, s, init) for s in seeds] for nf in (0, 1)
            }
            row = {"init": init, "depth": depth}
            for nf, kind in ((0, "post"), (1, "pre")):
                w2 = [r["w2"] for r in per[nf]]  # (seeds, depth)
                row[kind] = {
                    "w2": {str(s): v for s, v in zip(seeds, w2)},
                    "block": {str(s): r["block"] for s, r in zip(seeds, per[nf])},
                    "w2_top": seed_spread([v[-1] for v in w2]),
                    "w2_top_over_bottom": seed_spread([v[-1] / v[0] for v in w2]),
                    "w2_tilt": seed_spread([tilt(v) for v in w2]),
                }
            row["top_post_over_pre"] = seed_spread(
                [a["w2"][-1] / b["w2"][-1] for a, b in zip(per[0], per[1])]
            )
            rows.append(row)
            post, pre = row["post"], row["pre"]
            print(
                f"{init:>7} init, {depth:>2} layers: W2 top/bottom post-LN "
                f"{post['w2_top_over_bottom']['mean']:.2f}, pre-LN "
                f"{pre['w2_top_over_bottom']['mean']:.2f}; top post/pre "
                f"{row['top_post_over_pre']['mean']:.2f}",
                flush=True,
            )
    return {"seeds": list(seeds), "depths": list(depths), "rows": rows}


def training_table(depths, seeds, steps) -> dict:
    rows = []
    data = {s: reversal_data(s) for s in seeds}
    for depth in depths:
        for name, (norm_first, warmup) in RECIPES.items():
            runs = {}
            for s in seeds:
                t0 = time.process_time()
                curve, acc = train(data[s], depth, norm_first, warmup, s, steps)
                final = statistics.fmean(curve[-20:])
                rise, at = worst_rise(curve)
                runs[str(s)] = {
                    "final_loss": final,
                    "accuracy": acc,
                    "diverged": bool(
                        not math.isfinite(final) or final > DIVERGED_ABOVE
                    ),
                    "worst_rise": rise,
                    "worst_rise_step": at,
                    "spiked": rise > SPIKE_ABOVE,
                    "cpu_seconds": round(time.process_time() - t0, 2),
                    "loss": [round(v, 5) for v in curve],
                }
                print(
                    f"{depth:>2} layers, {name:<20} seed {s}: final loss {final:.3f}, "
                    f"accuracy {acc:6.1%}, worst rise {rise:.2f} @ {at}",
                    flush=True,
                )
            vals = list(runs.values())
            rows.append(
                {
                    "depth": depth,
                    "recipe": name,
                    "norm_first": norm_first,
                    "warmup": warmup,
                    "per_seed": runs,
                    "final_loss": seed_spread([r["final_loss"] for r in vals]),
                    "accuracy": seed_spread([r["accuracy"] for r in vals]),
                    "n_diverged": sum(r["diverged"] for r in vals),
                    "n_spiked": sum(r["spiked"] for r in vals),
                }
            )
    return {"seeds": list(seeds), "depths": list(depths), "steps": steps, "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--grad-seeds", type=int, default=8, help="seeds at init")
    parser.add_argument("--quick", action="store_true", help="a tiny run, for tests")
    parser.add_argument("--out", default="experiments/results/ch08_depth.json")
    args = parser.parse_args()
    if args.grad_seeds < 1:
        parser.error(f"--grad-seeds must be at least 1, got {args.grad_seeds}")
    if len(args.seeds) < 1 or len(set(args.seeds)) != len(args.seeds):
        parser.error(f"--seeds must name distinct seeds, got {args.seeds}")
    torch.set_num_threads(1)
    depths, steps = ((2, 3), 30) if args.quick else (DEPTHS, STEPS)
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    grads = gradient_table(depths, range(args.grad_seeds))
    training = training_table(depths, args.seeds, steps)
    result = {
        "experiment": "ch08_depth",
        "quick": args.quick,
        "description": "post-LN and pre-LN encoder-only stacks at several depths: "
        "gradient norms at initialisation (per block, W2 and the whole block) and "
        "training on 10-digit reversal at a peak learning rate of 1e-2, with and "
        "without warm-up, over seeds",
        "config": {
            "d_model": 64,
            "heads": 4,
            "d_ff": 128,
            "lr": LR,
            "batch": BATCH,
            "warmup": WARMUP,
            "chance_loss": CHANCE,
            "diverged_above": DIVERGED_ABOVE,
            "spike_above": SPIKE_ABOVE,
            "recipes": {
                k: {"norm_first": v[0], "warmup": v[1]} for k, v in RECIPES.items()
            },
        },
        "gradients": grads,
        "training": training,
        "cpu_seconds": round(time.process_time() - start_cpu, 1),
        "wall_seconds": round(time.perf_counter() - start_wall, 1),
        "machine": machine_summary(),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result) + "\n")
    print(
        f"wrote {out}: {result['cpu_seconds']:.0f} CPU s, {result['wall_seconds']:.0f} "
        "s wall"
    )


if __name__ == "__main__":
    main()
