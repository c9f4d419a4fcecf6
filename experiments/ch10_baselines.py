"""Chapter 10: a character-level Transformer against n-gram counts and an LSTM.

Every model learns the Python help topics (``transformer.lm.documents()``) one
character at a time, and every model is scored in bits per character on the same
validation documents (``split_documents(..., seed=0)``: 8 of 79 topics, never
trained on), joined into one stream by blank lines:

* interpolated Kneser-Ney n-grams (``transformer.ngram.KneserNeyLM``) of orders 3,
  5 and 7, counted on the training documents; deterministic, one value each. They
  read the validation stream as one document (their context never restarts).
* the chapter 3 LSTM: embedding (128) -> ``transformer.gated.LSTM`` (one layer,
  hidden 384) -> linear, 0.84M parameters.
* the chapter 10 ``DecoderOnlyTransformer``: C = 64, 4 heads, 2 layers, FFN 256,
  block 64, no dropout, 0.11M parameters. Smaller than the LSTM on purpose: at this
  budget the number of optimizer steps decides, and a C = 128, 4-layer model
  manages about 2 steps a second here (measured at 30 CPU s, lr 3e-3: 58 steps and
  4.26 bpc on the curve slice, against 1,015 steps and 2.63 bpc for this one).

The two networks get the same training budget in CPU seconds of this process
(``time.process_time()``, one thread, so load from other programs does not change
it; evaluation is not counted), the same batches of 16 x 64 characters drawn by
``lm_batches`` (smaller batches than 32 x 128 give both networks more steps, and both
learned faster per CPU second with them), and the same optimizer: AdamW (weight decay
0.01, gradients clipped at norm 1), 20 linear warm-up steps, then a cosine decay to a
tenth of the peak over the CPU-time budget. Each one's peak learning rate is the best
of the same sweep (``LR_SWEEP``: the same four rates for both, the same schedule over
a third of the budget, seed ``book_seed()``, scored on the curve slice; stored; a
short sweep can favour rates that learn fast early). Both are scored with
``iter_eval_blocks`` at context 64, the training block (the LSTM's state restarts at
every block too). Training curves are scored on the first 20,000 validation
characters, the final value on all of them.

Character id 0 is a padding symbol that never occurs in the text: the Transformer's
embedding treats ``pad_id`` (0) as padding, whose row gets no gradient, and without
the reserved id that row would be the newline's.

Seeds are ``book_seed() + i``; a seed fixes the initial weights and the batches.
If the Transformer does not beat both baselines at the budget, both networks are
trained once more (one seed) at each multiple of the budget in ``FULL["extended"]``
(twice it), stopping at the first budget where it wins; the table says which won at
which budget. Writes ``results/ch10_baselines.json``.

Run from the repository root (about 14 minutes of CPU on one thread):

    OMP_NUM_THREADS=1 .venv/bin/python experiments/ch10_baselines.py
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
from torch import Tensor, nn

from transformer.gated import LSTM
from transformer.gpt import DecoderOnlyConfig, DecoderOnlyTransformer
from transformer.lm import (
    documents,
    iter_eval_blocks,
    lm_batches,
    lm_loss,
    split_documents,
)
from transformer.ngram import KneserNeyLM
from transformer.sampling import sample_next
from transformer.utils import book_seed, machine_summary, seed_everything, seed_spread

NAME = "ch10_baselines"
RESULTS = Path(__file__).resolve().parent / "results" / f"{NAME}.json"
PROMPT = "An object is "
FULL = dict(
    budget=60.0,
    orders=(3, 5, 7),
    batch=16,
    block=64,
    sweep_seconds=20.0,
    lstm=dict(embed=128, hidden=384),
    curve_chars=20000,
    sample_chars=100,
    transformer=dict(d_model=64, n_heads=4, n_layers=2, d_ff=256),
    extended=(2,),
)
QUICK = dict(
    budget=1.0,
    orders=(2, 3),
    batch=4,
    block=32,
    sweep_seconds=0.3,
    lstm=dict(embed=16, hidden=32),
    curve_chars=2000,
    sample_chars=40,
    transformer=dict(d_model=32, n_heads=2, n_layers=1, d_ff=64),
    extended=(),
)
LR_SWEEP = {"lstm": (1e-3, 3e-3, 1e-2, 3e-2), "transformer": (1e-3, 3e-3, 1e-2, 3e-2)}
PAD = "\0"  # id 0: the padding symbol, never in the text
WARMUP, CLIP, WEIGHT_DECAY, N_CURVE = 20, 1.0, 0.01, 10
SAMPLES = (
    ("greedy", 0.0, 0),
    ("temperature_0.8_seed_0", 0.8, 0),
    ("temperature_0.8_seed_1", 0.8, 1),
)


class CharLSTM(nn.Module):
    """Embedding -> our LSTM -> linear: chapter 3's recurrent language model.

    Shape: ids (B, T) -> logits (B, T, V), and the final state for generation.
    """

    def __init__(self, vocab_size: int, embed: int, hidden: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed)
        self.rnn = LSTM(embed, hidden)
        self.output = nn.Linear(hidden, vocab_size)

    def forward(self, ids: Tensor, state=None) -> Tensor:
        return self.run(ids, state)[0]

    def run(self, ids: Tensor, state=None) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        out, state = self.rnn(self.embedding(ids), state)  # (B, T, H)
        return self.output(out), state  # (B, T, V)


def build(kind: str, vocab_size: int, sizes: dict) -> nn.Module:
    if kind == "lstm":
        return CharLSTM(vocab_size, **sizes["lstm"])
    config = DecoderOnlyConfig(
        vocab_size=vocab_size,
        dropout=0.0,
        max_len=sizes["block"],
        mask_pad=False,
        **sizes["transformer"],
    )
    return DecoderOnlyTransformer(config)


@torch.no_grad()
def evaluate_bpc(model: nn.Module, ids: Tensor, block: int) -> float:
    """Bits per predicted character over the stream, context restarting every block."""
    was = model.training
    model.eval()
    total, n = 0.0, 0
    for x, y in iter_eval_blocks(ids, block, batch_size=64):
        total += lm_loss(model(x), y).item() * y.numel()
        n += y.numel()
    model.train(was)
    return total / (n * math.log(2))


@torch.no_grad()
def continue_text(
    model: nn.Module, prompt: Tensor, n: int, temperature: float, seed: int
):
    """n new ids after prompt (1, T): greedy at temperature 0, else sampled.

    The Transformer sees at most its last ``max_len`` ids (a sliding window: its
    learned positions stop there), the LSTM its whole past through its state.
    """
    g = torch.Generator().manual_seed(seed)
    model.eval()
    if isinstance(model, DecoderOnlyTransformer):
        window, seq = model.config.max_len, prompt
        for _ in range(n):
            logits = model(seq[:, -window:])[:, -1]  # (1, V)
            token = sample_next(logits, temperature=temperature, generator=g)  # (1,)
            seq = torch.cat([seq, token[:, None]], dim=1)
        return seq[0, -n:]
    logits, state = model.run(prompt)
    out = []
    for _ in range(n):
        token = sample_next(logits[:, -1], temperature=temperature, generator=g)  # (1,)
        out.append(token)
        logits, state = model.run(token[:, None], state)
    return torch.cat(out)


def adamw(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW with weight decay on the matrices only (not on biases, norms' gains)."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    rest = [p for p in model.parameters() if p.dim() < 2]
    return torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": weight_decay},
            {"params": rest, "weight_decay": 0.0},
        ],
        lr=lr,
    )


def train_budget(
    model: nn.Module,
    forward,
    optimizer,
    batches,
    lr: float,
    budget: float,
    warmup: int,
    score=None,
    report=None,
) -> tuple[float, int, list]:
    """Train for ``budget`` CPU seconds of this process (evaluation not counted).

    The loop of both chapter 10 scripts: linear warm-up over ``warmup`` steps, then a
    cosine from the peak ``lr`` to a tenth of it over the budget, clipping at
    ``CLIP``. ``forward`` maps a batch of ids to logits (the model, or a faster
    path to the same parameters). With ``score``, the model is scored at
    ``N_CURVE`` points of the budget; ``report(used, bpc)`` hears of each.
    Returns the CPU seconds used, the steps and the curve
    ``[CPU seconds, tokens seen, score]``.
    """
    points, used, steps, next_point = [], 0.0, 0, budget / N_CURVE
    model.train()
    while used < budget:
        t0 = time.process_time()
        frac = min(1.0, used / budget)
        scale = min(1.0, (steps + 1) / warmup) * (
            0.1 + 0.45 * (1 + math.cos(math.pi * frac))
        )
        for group in optimizer.param_groups:
            group["lr"] = lr * scale
        x, y = next(batches)
        loss = lm_loss(forward(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), CLIP)
        optimizer.step()
        used += time.process_time() - t0
        steps += 1
        if score is not None and (used >= next_point or used >= budget):
            value = score(model)
            points.append([round(used, 2), steps * x.numel(), value])
            next_point += budget / N_CURVE
            if report is not None:
                report(used, value)
    return used, steps, points


def train_for(
    kind: str, seed: int, lr: float, budget: float, data: dict, sizes: dict, curve: bool
) -> tuple[nn.Module, dict]:
    """Train one network for ``budget`` CPU seconds; return it and its record."""
    seed_everything(seed)
    model = build(kind, len(data["chars"]), sizes)
    optimizer = adamw(model, lr, WEIGHT_DECAY)
    g = torch.Generator().manual_seed(seed)
    batches = lm_batches(data["train"], sizes["block"], sizes["batch"], generator=g)
    score = (
        (lambda m: evaluate_bpc(m, data["curve"], sizes["block"])) if curve else None
    )
    used, steps, points = train_budget(
        model, model, optimizer, batches, lr, budget, WARMUP, score
    )
    n_params = sum(p.numel() for p in model.parameters())
    record = {
        "cpu_seconds": used,
        "steps": steps,
        "tokens": steps * sizes["batch"] * sizes["block"],
        "params": n_params,
        "lr": lr,
    }
    if curve:
        record["curve"] = points
    return model, record


def load_data(quick: bool, block: int, curve_chars: int) -> dict:
    docs = documents()
    if quick:  # tiny: a few documents, cut short, so the run takes seconds
        docs = [(name, text[:3000]) for name, text in docs[:20]]
    train_docs, valid_docs = split_documents(docs, seed=0)
    chars = [PAD, *sorted({c for _, text in docs for c in text})]
    if PAD in chars[1:]:
        raise ValueError("the padding symbol occurs in the text")
    index = {c: i for i, c in enumerate(chars)}
    train_text = "\n\n".join(t for _, t in train_docs)
    valid_text = "\n\n".join(t for _, t in valid_docs)

    def encode(text: str) -> Tensor:
        return torch.tensor([index[c] for c in text], dtype=torch.long)

    valid = encode(valid_text)
    return {
        "chars": chars,
        "index": index,
        "train_docs": [t for _, t in train_docs],
        "train_text": train_text,
        "valid_text": valid_text,
        "train": encode(train_text),
        "valid": valid,
        "curve": valid[: curve_chars + 1],
        "valid_names": [n for n, _ in valid_docs],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="seeds per network")
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes, seconds in all"
    )
    parser.add_argument(
        "--out", type=Path, default=RESULTS, help="where to write the JSON"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    sizes = QUICK if args.quick else FULL
    budget = sizes["budget"]
    data = load_data(args.quick, sizes["block"], sizes["curve_chars"])
    seeds = [book_seed() + i for i in range(args.seeds)]
    decode = "".join
    prompt = torch.tensor([[data["index"][c] for c in PROMPT]])
    n_sample = sizes["sample_chars"]

    # n-grams: the stream scored as one document, every character predicted
    ngram = {}
    for order in sizes["orders"]:
        t = time.process_time()
        lm = KneserNeyLM.fit(data["train_docs"], order=order)
        ngram[str(order)] = {
            "bpc": lm.bits_per_char(data["valid_text"]),
            "fit_and_score_cpu_seconds": time.process_time() - t,
            "samples": {
                f"seed_{s}": PROMPT + lm.sample(n_sample, seed=s, prompt=PROMPT)
                for s in (0, 1)
            },
        }
        print(
            f"Kneser-Ney order {order}: {ngram[str(order)]['bpc']:.3f} bpc", flush=True
        )

    # learning-rate sweep: short runs, scored on the curve slice
    sweep = {}
    for kind, lrs in LR_SWEEP.items():
        sweep[kind] = {}
        for lr in lrs:
            model, _ = train_for(
                kind, seeds[0], lr, sizes["sweep_seconds"], data, sizes, False
            )
            sweep[kind][str(lr)] = evaluate_bpc(model, data["curve"], sizes["block"])
        print(f"sweep {kind}: {sweep[kind]}", flush=True)
    best_lr = {k: float(min(v, key=v.get)) for k, v in sweep.items()}

    def run_model(kind: str, seed: int, budget: float) -> dict:
        model, record = train_for(kind, seed, best_lr[kind], budget, data, sizes, True)
        record["bpc"] = evaluate_bpc(model, data["valid"], sizes["block"])
        record["samples"] = {
            name: PROMPT
            + decode(
                data["chars"][i]
                for i in continue_text(model, prompt, n_sample, temp, s)
            )
            for name, temp, s in SAMPLES
        }
        print(
            f"{kind} seed {seed}, {budget:.0f} s: {record['bpc']:.3f} bpc", flush=True
        )
        return record

    models = {}
    for kind in ("lstm", "transformer"):
        per_seed = {str(s): run_model(kind, s, budget) for s in seeds}
        models[kind] = {
            "sizes": sizes[kind],
            "params": next(iter(per_seed.values()))["params"],
            "lr": best_lr[kind],
            "per_seed": per_seed,
            "summary": {"bpc": seed_spread([r["bpc"] for r in per_seed.values()])},
        }
    mean = {k: m["summary"]["bpc"]["mean"] for k, m in models.items()}
    best_ngram = min(ngram, key=lambda o: ngram[o]["bpc"])
    mean["ngram"] = ngram[best_ngram]["bpc"]
    winner = min(mean, key=mean.get)
    verdicts = [
        {
            "budget_cpu_seconds": budget,
            "seeds": len(seeds),
            "bpc": mean,
            "best_ngram_order": int(best_ngram),
            "winner": winner,
        }
    ]
    extended = []
    for factor in sizes["extended"]:
        if verdicts[-1]["winner"] == "transformer":
            break
        ext_budget = factor * budget
        ext = {
            "budget_cpu_seconds": ext_budget,
            "seed": seeds[0],
            "runs": {
                k: run_model(k, seeds[0], ext_budget) for k in ("lstm", "transformer")
            },
        }
        extended.append(ext)
        ext_bpc = {k: r["bpc"] for k, r in ext["runs"].items()}
        ext_bpc["ngram"] = mean["ngram"]
        verdicts.append(
            {
                "budget_cpu_seconds": ext_budget,
                "seeds": 1,
                "bpc": ext_bpc,
                "best_ngram_order": int(best_ngram),
                "winner": min(ext_bpc, key=ext_bpc.get),
            }
        )
    for v in verdicts:
        print(
            f"at {v['budget_cpu_seconds']:.0f} CPU s: winner {v['winner']}, {v['bpc']}"
        )

    out = {
        "name": NAME,
        "description": __doc__.split("\n\n")[0],
        "quick": args.quick,
        "seeds": seeds,
        "data": {
            "corpus": "Python help topics, transformer.lm.documents()",
            "split_seed": 0,
            "n_train_chars": len(data["train_text"]),
            "n_valid_chars": len(data["valid_text"]),
            "valid_documents": data["valid_names"],
            "vocab_size": len(data["chars"]),
            "pad_id": 0,
            "eval_context": sizes["block"],
            "curve_chars": sizes["curve_chars"],
        },
        "budget_cpu_seconds": budget,
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
            "dropout": 0.0,
            "lr_sweep": {
                "cpu_seconds_each": sizes["sweep_seconds"],
                "seed": seeds[0],
                "bpc_on_curve_slice": sweep,
            },
        },
        "prompt": PROMPT,
        "ngram": ngram,
        "models": models,
        "extended": extended,
        "verdicts": verdicts,
        "notes": (
            "bpc is bits per predicted character of the validation stream. n-grams "
            "predict every character with an unbroken context; the networks predict "
            "all but the first, with the context restarting every eval_context "
            "characters. Curves: [CPU seconds of training, tokens seen, bpc on the "
            "first curve_chars validation characters]. Extended runs (a list, empty if "
            "the Transformer won at the budget) are one seed each."
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
