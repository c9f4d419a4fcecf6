"""Chapter 11: from the GPT-2 block to Llama's, one change at a time, on chapter 10's
corpus.

Six character-level decoder-only models learn the Python help topics with chapter
10's data (``ch10_baselines.load_data``: the same documents, the same split, the
same vocabulary with the padding id 0) and chapter 10's Transformer size: C = 64,
4 heads, 2 layers, block 64, no dropout, the output tied to the embedding. Each
row adds one change to the row above it:

1. ``gpt2``: chapter 10's block, ``ModernDecoderConfig(norm="layer", ffn="mlp",
   positional="learned", bias=True, activation="gelu")``, FFN 256 (4C).
2. ``+rmsnorm``: RMSNorm instead of LayerNorm (in the blocks and at the end).
3. ``+swiglu``: the SwiGLU network (SiLU gate) instead of the GELU MLP, and no
   biases in any linear layer, as in Llama.
4. ``+rope``: rotary positions instead of the learned table.
5. ``+gqa``: grouped-query attention, 4 query heads sharing 2 key/value heads.
6. ``mqa``: the same with 1 key/value head (multi-query), for the cost of fewer
   key/value heads.

Parameters are matched: a SwiGLU row's hidden size F is the one (searched near
2/3 of 4C) whose total parameter count comes closest to the GPT-2 block's, so the
parameters that a row drops (biases, the position table, key/value projections)
go back into its feed-forward network. The counts are in the table.

Every run gets the same budget of CPU seconds of this process
(``time.process_time()``, one thread, evaluation not counted), the same batches
(16 x 64 characters, ``lm_batches`` seeded by the run's seed), and chapter 10's
optimizer: AdamW (weight decay 0.01 on matrices, gradients clipped at norm 1), 20
linear warm-up steps, then a cosine decay to a tenth of the peak over the budget.
All rows share one peak learning rate: the best of a short sweep on the GPT-2
block (``LR_SWEEP``, ``sweep_seconds`` each, seed ``book_seed()``, scored on the
first 20,000 validation characters; a short sweep can favour rates that learn
fast early). Seeds are ``book_seed() + i``; a seed fixes the initial weights and
the batches, the same for every row. Each run is scored on the whole validation
stream with ``iter_eval_blocks`` at context 64. Records per row: validation bits
per character over the seeds (``seed_spread``: mean, std, min, max), optimizer
steps and training tokens per CPU second. Writes ``results/ch11_ablation.json``.

Run from the repository root (about 13 minutes of CPU on one thread: a sweep of
3 rates x 15 s, then 6 rows x 3 seeds x 35 s, plus evaluation):

    OMP_NUM_THREADS=1 .venv/bin/python experiments/ch11_ablation.py
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

from transformer.lm import lm_batches, lm_loss
from transformer.modern import ModernDecoder, ModernDecoderConfig
from transformer.utils import book_seed, machine_summary, seed_everything, seed_spread

NAME = "ch11_ablation"
RESULTS = Path(__file__).resolve().parent / "results" / f"{NAME}.json"
FULL = dict(
    budget=35.0,
    batch=16,
    block=64,
    sweep_seconds=15.0,
    curve_chars=20000,
    model=dict(d_model=64, n_heads=4, n_layers=2, d_ff=256),
    gqa_kv_heads=2,
)
QUICK = dict(
    budget=0.5,
    batch=4,
    block=32,
    sweep_seconds=0.2,
    curve_chars=2000,
    model=dict(d_model=32, n_heads=4, n_layers=1, d_ff=128),
    gqa_kv_heads=2,
)
LR_SWEEP = (1e-3, 3e-3, 1e-2)
GPT2_BLOCK = dict(
    norm="layer", ffn="mlp", positional="learned", bias=True, activation="gelu"
)
# each row: (name, what it changes, the config fields that differ from the GPT-2 block)
ROWS = (
    ("gpt2", "chapter 10's GPT-2 block", {}),
    ("+rmsnorm", "RMSNorm instead of LayerNorm", dict(norm="rms")),
    (
        "+swiglu",
        "SwiGLU instead of the GELU MLP, no biases",
        dict(norm="rms", ffn="swiglu", activation="silu", bias=False),
    ),
    (
        "+rope",
        "rotary positions instead of the learned table",
        dict(
            norm="rms", ffn="swiglu", activation="silu", bias=False, positional="rope"
        ),
    ),
    (
        "+gqa",
        "grouped-query attention (H / G key/value heads)",
        dict(
            norm="rms",
            ffn="swiglu",
            activation="silu",
            bias=False,
            positional="rope",
            n_kv_heads="gqa",
        ),
    ),
    (
        "mqa",
        "multi-query attention (one key/value head)",
        dict(
            norm="rms",
            ffn="swiglu",
            activation="silu",
            bias=False,
            positional="rope",
            n_kv_heads=1,
        ),
    ),
)


def make_config(
    fields: dict, vocab_size: int, sizes: dict, d_ff: int
) -> ModernDecoderConfig:
    fields = {**GPT2_BLOCK, **fields}
    if fields.get("n_kv_heads") == "gqa":
        fields["n_kv_heads"] = sizes["gqa_kv_heads"]
    model = {**sizes["model"], "d_ff": d_ff}
    return ModernDecoderConfig(
        vocab_size=vocab_size,
        max_len=sizes["block"],
        dropout=0.0,
        mask_pad=False,
        tie_output=True,
        layer_norm_eps=1e-5,
        **model,
        **fields,
    )


def count_params(config: ModernDecoderConfig) -> int:
    with torch.device("meta"):  # shapes only, no memory, no random numbers drawn
        return sum(p.numel() for p in ModernDecoder(config).parameters())


def matched_d_ff(fields: dict, vocab_size: int, sizes: dict, target: int) -> int:
    """The FFN size of this row whose parameter count is nearest ``target``."""
    if fields.get("ffn", "mlp") == "mlp":
        return sizes["model"]["d_ff"]
    guess = round(2 * sizes["model"]["d_ff"] / 3)
    candidates = range(max(1, guess - guess // 2), guess + guess // 2 + 1)
    return min(
        candidates,
        key=lambda f: (
            abs(count_params(make_config(fields, vocab_size, sizes, f)) - target),
            f,
        ),
    )


def train_for(
    config: ModernDecoderConfig,
    seed: int,
    lr: float,
    budget: float,
    data: dict,
    sizes: dict,
) -> tuple[nn.Module, dict]:
    """Train one model for ``budget`` CPU seconds; return it and its record."""
    seed_everything(seed)
    model = ModernDecoder(config)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    rest = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": WEIGHT_DECAY},
            {"params": rest, "weight_decay": 0.0},
        ],
        lr=lr,
    )
    g = torch.Generator().manual_seed(seed)
    batches = lm_batches(data["train"], sizes["block"], sizes["batch"], generator=g)
    used, steps = 0.0, 0
    model.train()
    while used < budget:
        t0 = time.process_time()
        frac = min(1.0, used / budget)
        scale = min(1.0, (steps + 1) / WARMUP) * (
            0.1 + 0.45 * (1 + math.cos(math.pi * frac))
        )
        for group in optimizer.param_groups:
            group["lr"] = lr * scale
        x, y = next(batches)
        loss = lm_loss(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), CLIP)
        optimizer.step()
        used += time.process_time() - t0
        steps += 1
    tokens = steps * sizes["batch"] * sizes["block"]
    record = {
        "cpu_seconds": used,
        "steps": steps,
        "tokens": tokens,
        "tokens_per_second": tokens / used,
    }
    return model, record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="seeds per row")
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
    budget = sizes["budget"]
    data = load_data(args.quick, sizes["block"], sizes["curve_chars"])
    vocab = len(data["chars"])
    seeds = [book_seed() + i for i in range(args.seeds)]

    target = count_params(make_config({}, vocab, sizes, sizes["model"]["d_ff"]))
    configs = {}
    for name, _, fields in ROWS:
        d_ff = matched_d_ff(fields, vocab, sizes, target)
        configs[name] = make_config(fields, vocab, sizes, d_ff)

    # one shared learning-rate sweep, on the GPT-2 block
    sweep = {}
    for lr in LR_SWEEP:
        model, _ = train_for(
            configs["gpt2"], seeds[0], lr, sizes["sweep_seconds"], data, sizes
        )
        sweep[str(lr)] = evaluate_bpc(model, data["curve"], sizes["block"])
    best_lr = float(min(sweep, key=sweep.get))
    print(
        f"sweep on the GPT-2 block: {sweep}; lr {best_lr:g} for every row", flush=True
    )

    rows = []
    for name, change, _ in ROWS:
        config = configs[name]
        per_seed = {}
        for seed in seeds:
            model, record = train_for(config, seed, best_lr, budget, data, sizes)
            record["bpc"] = evaluate_bpc(model, data["valid"], sizes["block"])
            per_seed[str(seed)] = record
            print(
                f"{name:>9} seed {seed}: {record['bpc']:.3f} bpc, {record['steps']} "
                f"steps, {record['tokens_per_second']:,.0f} tokens/s",
                flush=True,
            )
        runs = list(per_seed.values())
        rows.append(
            {
                "name": name,
                "change": change,
                "norm": config.norm,
                "ffn": config.ffn,
                "positional": config.positional,
                "bias": config.bias,
                "activation": config.activation,
                "n_heads": config.n_heads,
                "n_kv_heads": config.kv_heads,
                "d_ff": config.d_ff,
                "params": count_params(config),
                "per_seed": per_seed,
                "summary": {
                    "bpc": seed_spread([r["bpc"] for r in runs]),
                    "steps": seed_spread([r["steps"] for r in runs]),
                    "tokens_per_second": seed_spread(
                        [r["tokens_per_second"] for r in runs]
                    ),
                },
            }
        )
    header = f"{'row':>9} {'params':>8} {'F':>4} {'bpc mean ± std':>16} {'steps':>6}"
    print(f"\n{header} {'tokens/s':>9}")
    for row in rows:
        s = row["summary"]
        print(
            f"{row['name']:>9} {row['params']:>8,} {row['d_ff']:>4} "
            f"{s['bpc']['mean']:>8.3f} ± {s['bpc']['std']:.3f} "
            f"{s['steps']['mean']:>6.0f} {s['tokens_per_second']['mean']:>9,.0f}"
        )

    out = {
        "name": NAME,
        "description": __doc__.split("\n\n")[0],
        "quick": args.quick,
        "seeds": seeds,
        "data": {
            "corpus": (
                "Python help topics, transformer.lm.documents() (chapter 10's split)"
            ),
            "split_seed": 0,
            "n_train_chars": len(data["train_text"]),
            "n_valid_chars": len(data["valid_text"]),
            "vocab_size": vocab,
            "pad_id": 0,
            "eval_context": sizes["block"],
        },
        "budget_cpu_seconds": budget,
        "model": {
            **sizes["model"],
            "block": sizes["block"],
            "tie_output": True,
            "dropout": 0.0,
        },
        "params_target": target,
        "training": {
            "batch_size": sizes["batch"],
            "block": sizes["block"],
            "tokens_per_batch": sizes["batch"] * sizes["block"],
            "optimizer": "AdamW",
            "weight_decay": WEIGHT_DECAY,
            "clip_norm": CLIP,
            "schedule": (
                f"{WARMUP} linear warm-up steps, then cosine to 0.1x over the budget"
            ),
            "lr": best_lr,
            "lr_sweep": {
                "on": "gpt2",
                "cpu_seconds_each": sizes["sweep_seconds"],
                "seed": seeds[0],
                "curve_chars": sizes["curve_chars"],
                "bpc_on_curve_slice": sweep,
            },
        },
        "rows": rows,
        "notes": (
            "Rows are cumulative: each adds one change to the row above, except mqa, "
            "which is +gqa with one key/value head. bpc is bits per predicted "
            "character of the whole validation stream, the context restarting every "
            "eval_context characters. tokens_per_second: training characters per CPU "
            "second of training, one thread."
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
