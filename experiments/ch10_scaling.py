"""Chapter 10: the book's own small scaling law, validation loss against training
compute.

Five character-level ``DecoderOnlyTransformer`` models of growing size (``SIZES``:
C = 32 to 192, 2 to 4 layers, FFN 4C, block 64) learn the Python help topics
(``transformer.lm.documents()``, validation documents from ``split_documents(...,
seed=0)``, never trained on). Each trains for the same number of tokens with AdamW at
a constant learning rate after 50 warm-up steps (constant, so that one run gives a
point of the loss-compute curve at every checkpoint, as in Kaplan et al. 2020's
envelope of training curves), batches of 16 x 64 characters (the shape
``ch10_baselines.py`` uses: more, smaller steps learned faster there), no dropout. At
checkpoints after 1/8, 1/4, 1/2 and all of the tokens it is scored on the whole
validation stream (``iter_eval_blocks``, context 64): nats per character and bits
per character. Character id 0 is a padding symbol that never occurs (see
``ch10_baselines.py``: otherwise the newline would be the padding id).

Training FLOPs are counted with ``torch.utils.flop_counter.FlopCounterMode`` on one
training step (forward and backward, attention through the readable path, whose
matrix products the counter sees; the optimizer's elementwise work is not counted)
and multiplied by the number of steps. Alongside, the estimate 6 N D of Kaplan et al.
(N: parameters in the matrix products, the tied output matrix included, position
table excluded; D: tokens) plus their attention term 6 L T C per token; the table stores
the ratio of the count to each. Every size runs with two seeds (``book_seed() + i``);
the table holds the mean loss over seeds at each checkpoint and its spread. The
frontier is the lowest mean loss reached at or below each compute; a power law
``loss = a * C^-b`` is fitted to it by least squares in log space, with its R^2 in
log space stored, so a reader can judge whether a straight line fits at all.

Run from the repository root (about 8 minutes of CPU on one thread):

    OMP_NUM_THREADS=1 .venv/bin/python experiments/ch10_scaling.py
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from transformer.gpt import DecoderOnlyConfig, DecoderOnlyTransformer
from transformer.lm import (
    documents,
    iter_eval_blocks,
    lm_batches,
    lm_loss,
    split_documents,
)
from transformer.utils import book_seed, machine_summary, seed_everything, seed_spread

NAME = "ch10_scaling"
RESULTS = Path(__file__).resolve().parent / "results" / f"{NAME}.json"
SIZES = [  # (d_model, n_layers, n_heads)
    (32, 2, 2),
    (64, 2, 4),
    (96, 3, 4),
    (128, 4, 4),
    (192, 4, 6),
]
FULL = dict(tokens=320_000, batch=16, block=64)
QUICK = dict(tokens=2_048, batch=4, block=32)
QUICK_SIZES = [(16, 1, 2), (32, 1, 2)]
LR, WARMUP, CLIP, WEIGHT_DECAY = 3e-3, 50, 1.0, 0.01
FRACTIONS = (0.125, 0.25, 0.5, 1.0)


@torch.no_grad()
def evaluate_nats(model: nn.Module, ids: torch.Tensor, block: int) -> float:
    """Mean nats per predicted character over the stream (context restarts every
    block)."""
    model.eval()
    total, n = 0.0, 0
    for x, y in iter_eval_blocks(ids, block, batch_size=64):
        total += lm_loss(model(x), y).item() * y.numel()
        n += y.numel()
    model.train()
    return total / n


def matmul_params(model: DecoderOnlyTransformer) -> int:
    """N of 6 N D: weights of the blocks' linear layers and the output matrix."""
    blocks = sum(
        m.weight.numel()
        for layer in model.layers
        for m in layer.modules()
        if isinstance(m, nn.Linear)
    )
    return blocks + model.output.weight.numel()


def counted_step_flops(
    model: DecoderOnlyTransformer, x: torch.Tensor, y: torch.Tensor
) -> int:
    """FLOPs of one forward and backward pass, counted by FlopCounterMode.

    Counted on a copy whose attention runs the readable path (plain matrix products):
    the counter has no formula for PyTorch's fused CPU attention kernel and would
    count it as zero. The readable path computes every score of the T x T matrix,
    as the fused kernel's FLOP formula also assumes.
    """
    probe = copy.deepcopy(model)
    for module in probe.modules():
        if hasattr(module, "fused"):
            module.fused = False
    with FlopCounterMode(display=False) as counter:
        lm_loss(probe(x), y).backward()
    return counter.get_total_flops()


def run_size(
    d_model: int, n_layers: int, n_heads: int, data: dict, sizes: dict, seed: int
):
    seed_everything(seed)
    block, batch = sizes["block"], sizes["batch"]
    config = DecoderOnlyConfig(
        vocab_size=data["vocab_size"],
        d_model=d_model,
        n_heads=n_heads,
        n_layers=n_layers,
        d_ff=4 * d_model,
        dropout=0.0,
        max_len=block,
        mask_pad=False,
    )
    model = DecoderOnlyTransformer(config)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    rest = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": WEIGHT_DECAY},
            {"params": rest, "weight_decay": 0.0},
        ],
        lr=LR,
    )
    tokens_per_step = batch * block
    total_steps = max(1, sizes["tokens"] // tokens_per_step)
    checkpoints = sorted({max(1, round(f * total_steps)) for f in FRACTIONS})
    g = torch.Generator().manual_seed(seed)
    batches = lm_batches(data["train"], block, batch, generator=g)

    def step(x: torch.Tensor, y: torch.Tensor, k: int) -> None:
        for group in optimizer.param_groups:
            group["lr"] = LR * min(1.0, k / WARMUP)
        loss = lm_loss(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), CLIP)
        optimizer.step()

    model.train()
    flops_step = counted_step_flops(model, *next(batches))
    n_matmul = matmul_params(model)
    six_nd = 6 * n_matmul * tokens_per_step
    attention = 6 * n_layers * block * d_model * tokens_per_step
    points, used = [], 0.0
    for k in range(1, total_steps + 1):
        x, y = next(batches)
        t = time.process_time()
        step(x, y, k)
        used += time.process_time() - t
        if k in checkpoints:
            nats = evaluate_nats(model, data["valid"], block)
            points.append(
                {
                    "steps": k,
                    "tokens": k * tokens_per_step,
                    "flops": k * flops_step,
                    "val_nats_per_char": nats,
                    "val_bpc": nats / math.log(2),
                    "cpu_seconds": used,
                }
            )
            print(
                f"C={d_model} L={n_layers} step {k}: {nats:.3f} nats/char", flush=True
            )
    return {
        "name": f"C{d_model}-L{n_layers}",
        "d_model": d_model,
        "n_layers": n_layers,
        "n_heads": n_heads,
        "d_ff": 4 * d_model,
        "params": model.num_parameters(),
        "matmul_params": n_matmul,
        "flops_per_step_counted": flops_step,
        "flops_per_step_6nd": six_nd,
        "flops_per_step_6nd_plus_attention": six_nd + attention,
        "counted_over_6nd": flops_step / six_nd,
        "counted_over_6nd_plus_attention": flops_step / (six_nd + attention),
        "attention_share_of_counted": 1 - six_nd / flops_step,
        "tokens_per_second": total_steps * tokens_per_step / max(used, 1e-9),
        "points": points,
    }


def frontier(rows: list[dict]) -> list[dict]:
    """Rows that reach a lower loss than every row of less or equal compute."""
    best, out = math.inf, []
    for row in sorted(rows, key=lambda r: (r["flops"], r["val_nats_per_char"])):
        if row["val_nats_per_char"] < best:
            best = row["val_nats_per_char"]
            out.append(row)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=2, help="seeds per model size")
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes, seconds in all"
    )
    parser.add_argument(
        "--out", type=Path, default=RESULTS, help="where to write the JSON"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    sizes, shapes = (QUICK, QUICK_SIZES) if args.quick else (FULL, SIZES)
    docs = documents()
    if args.quick:
        docs = [(name, text[:2000]) for name, text in docs[:20]]
    train_docs, valid_docs = split_documents(docs, seed=0)
    chars = ["\0", *sorted({c for _, text in docs for c in text})]  # id 0: padding
    index = {c: i for i, c in enumerate(chars)}

    def encode(parts: list[tuple[str, str]]) -> torch.Tensor:
        return torch.tensor([index[c] for c in "\n\n".join(t for _, t in parts)])

    data = {
        "train": encode(train_docs),
        "valid": encode(valid_docs),
        "vocab_size": len(chars),
    }
    seeds = [book_seed() + i for i in range(args.seeds)]
    runs = {
        str(s): [run_size(*shape, data, sizes, s) for shape in shapes] for s in seeds
    }
    first = runs[str(seeds[0])]
    table = []
    for i, m in enumerate(first):
        for j, p in enumerate(m["points"]):
            by_seed = [runs[str(s)][i]["points"][j]["val_nats_per_char"] for s in seeds]
            nats = seed_spread(by_seed)
            table.append(
                {
                    "model": m["name"],
                    "params": m["params"],
                    "matmul_params": m["matmul_params"],
                    "tokens": p["tokens"],
                    "flops": p["flops"],
                    "val_nats_per_char": nats["mean"],
                    "val_bpc": nats["mean"] / math.log(2),
                    "val_nats_std": nats["std"],
                    "val_nats_by_seed": by_seed,
                }
            )
    front = frontier(table)
    fit = None
    if len(front) >= 2:
        log_c = np.log([r["flops"] for r in front])
        log_l = np.log([r["val_nats_per_char"] for r in front])
        slope, intercept = np.polyfit(log_c, log_l, 1)
        resid = log_l - (slope * log_c + intercept)
        r2 = 1 - float(np.sum(resid**2)) / max(
            float(np.sum((log_l - log_l.mean()) ** 2)), 1e-30
        )
        fit = {
            "a": float(math.exp(intercept)),
            "b": float(-slope),
            "r2_log": r2,
            "n_points": len(front),
            "form": "val_nats_per_char = a * flops ** -b, on the frontier",
        }
    for row in table:
        mark = "*" if row in front else " "
        print(
            f"{mark} {row['model']:>8} {row['params']:>9,} params {row['tokens']:>9,} "
            f"tokens {row['flops']:.2e} FLOPs: {row['val_nats_per_char']:.3f} +- "
            f"{row['val_nats_std']:.3f} nats/char"
        )
    out = {
        "name": NAME,
        "description": __doc__.split("\n\n")[0],
        "quick": args.quick,
        "seeds": seeds,
        "data": {
            "corpus": "Python help topics, transformer.lm.documents()",
            "split_seed": 0,
            "n_train_chars": int(data["train"].numel()),
            "n_valid_chars": int(data["valid"].numel()),
            "vocab_size": len(chars),
            "eval_context": sizes["block"],
        },
        "training": {
            "tokens": sizes["tokens"],
            "batch_size": sizes["batch"],
            "block": sizes["block"],
            "tokens_per_step": sizes["batch"] * sizes["block"],
            "optimizer": "AdamW",
            "lr": LR,
            "weight_decay": WEIGHT_DECAY,
            "clip_norm": CLIP,
            "schedule": f"{WARMUP} linear warm-up steps, then constant",
            "dropout": 0.0,
            "checkpoint_fractions": list(FRACTIONS),
        },
        "flops_method": (
            "FlopCounterMode on the first training step (forward + backward) times "
            "steps; 6 N D and 6 N D + 6 L T C D stored per model for comparison"
        ),
        "models": first,
        "runs_by_seed": runs if len(seeds) > 1 else None,
        "table": table,
        "frontier": front,
        "fit": fit,
        "notes": (
            "flops in the table are counted FLOPs (FlopCounterMode) up to each "
            "checkpoint; val losses are on the whole validation stream, the mean over "
            "seeds with its sample standard deviation (val_nats_std); models holds the "
            "first seed's runs."
        ),
        "cpu_seconds": time.process_time() - cpu0,
        "wall_seconds": time.perf_counter() - wall0,
        "machine": machine_summary(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(
        f"CPU {out['cpu_seconds']:.0f} s in {out['wall_seconds']:.0f} s wall; wrote "
        f"{args.out}"
    )


if __name__ == "__main__":
    main()
