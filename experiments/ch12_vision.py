"""Chapter 12: a Vision Transformer, a small CNN and an MLP on scikit-learn's digits.

The 1,797 digits of 8 x 8 pixels (``transformer.vit.digits``: a seeded split, 20%
held out for test, the same split for every model and seed) are learned by

* ``vit``: patches of 2 x 2 (16 tokens and a class token), C = 64, 4 heads, 2 pre-LN
  layers, FFN 128, no dropout;
* ``cnn``: two 3 x 3 convolutions of 32 channels, pooling, a linear layer;
* ``mlp``: the 64 pixels, one hidden layer of 128.

Every model gets the same budget: the same optimizer steps (``STEPS``) with the same
batches of 64 images, AdamW at its own learning rate (the best of ``LR_SWEEP`` on a
validation slice cut from the training images, seed ``book_seed()``), a linear
warm-up over 10% of the steps and a linear decay, and no augmentation. The first
table reports test accuracy over seeds with ``seed_spread``, with the parameter
counts and CPU seconds. The second trains ViT and CNN on the first N training
images (``SIZES``; a seed draws which ones) for the same steps: accuracy against
training-set size, the inductive-bias argument of Dosovitskiy et al. (2021).
Seeds are ``book_seed() + i``. Everything trains through
``transformer.training.train``. Writes ``results/ch12_vision.json``.

Run from the repository root (about 5 minutes of CPU on one thread):

    OMP_NUM_THREADS=1 .venv/bin/python experiments/ch12_vision.py
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from transformer.finetune import Classifier, accuracy, labelled_batches
from transformer.training import train
from transformer.utils import book_seed, machine_summary, seed_everything, seed_spread
from transformer.vit import (
    MLP,
    SmallCNN,
    VisionTransformer,
    VisionTransformerConfig,
    digits,
)

NAME = "ch12_vision"
RESULTS = Path(__file__).resolve().parent / "results" / f"{NAME}.json"
FULL = dict(steps=600, batch=64, sweep_steps=300, sizes=(100, 300, "all"))
QUICK = dict(steps=5, batch=16, sweep_steps=3, sizes=(50, "all"))
LR_SWEEP = (3e-4, 1e-3, 3e-3)
MODELS = ("vit", "cnn", "mlp")
VIT = dict(
    image_size=8,
    patch_size=2,
    n_classes=10,
    d_model=64,
    n_heads=4,
    d_ff=128,
    n_layers=2,
    dropout=0.0,
)


def make_model(name: str, seed: int) -> nn.Module:
    seed_everything(seed)
    if name == "vit":
        return VisionTransformer(VisionTransformerConfig(**VIT))
    if name == "cnn":
        return SmallCNN(10)
    return MLP(64, 10)


def schedule(
    optimizer: torch.optim.Optimizer, steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    w = max(1, steps // 10)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / w, max(0.0, (steps - s) / (steps - w + 1)))
    )


def fit(
    name: str, x, y, steps: int, batch: int, lr: float, seed: int
) -> tuple[nn.Module, float]:
    clf = Classifier(make_model(name, seed))
    opt = torch.optim.AdamW(clf.parameters(), lr=lr, weight_decay=0.01)
    t0 = time.process_time()
    train(
        clf,
        labelled_batches(x, y, batch, seed=seed),
        steps=steps,
        optimizer=opt,
        scheduler=schedule(opt, steps),
        loss_fn=F.cross_entropy,
        log_every=steps,
        progress=False,
    )
    return clf, time.process_time() - t0


def score(clf: nn.Module, x, y) -> float:
    return accuracy(clf, labelled_batches(x, y, 512, shuffle=False))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="seeds")
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes, seconds in all"
    )
    parser.add_argument(
        "--out", type=Path, default=RESULTS, help="where to write the JSON"
    )
    args = parser.parse_args()
    if args.seeds < 1:
        parser.error("--seeds must be at least 1")
    sizes = QUICK if args.quick else FULL
    cpu0, wall0 = time.process_time(), time.perf_counter()
    x, y, xt, yt = digits()
    seeds = [book_seed() + i for i in range(args.seeds)]
    n_val = len(x) // 5
    sweep: dict[str, dict[str, float]] = {}
    for name in MODELS:
        sweep[name] = {}
        for lr in LR_SWEEP:
            clf, _ = fit(
                name,
                x[n_val:],
                y[n_val:],
                sizes["sweep_steps"],
                sizes["batch"],
                lr,
                seeds[0],
            )
            sweep[name][str(lr)] = score(clf, x[:n_val], y[:n_val])
    best = {
        name: float(max(sweep[name], key=lambda k: sweep[name][k])) for name in MODELS
    }
    rows = []
    for name in MODELS:
        per_seed = {}
        for seed in seeds:
            clf, cpu = fit(name, x, y, sizes["steps"], sizes["batch"], best[name], seed)
            per_seed[str(seed)] = {"accuracy": score(clf, xt, yt), "cpu_seconds": cpu}
        params = sum(p.numel() for p in make_model(name, 0).parameters())
        accs = [r["accuracy"] for r in per_seed.values()]
        rows.append(
            {
                "name": name,
                "params": params,
                "lr": best[name],
                "accuracy": seed_spread(accs),
                "per_seed": per_seed,
            }
        )
        print(name, seed_spread(accs), flush=True)
    curve: dict[str, dict] = {"vit": {}, "cnn": {}}
    for name in curve:
        for n in sizes["sizes"]:
            k = len(x) if n == "all" else n
            accs = []
            for seed in seeds:
                idx = torch.randperm(
                    len(x), generator=torch.Generator().manual_seed(seed)
                )[:k]
                clf, _ = fit(
                    name,
                    x[idx],
                    y[idx],
                    sizes["steps"],
                    sizes["batch"],
                    best[name],
                    seed,
                )
                accs.append(score(clf, xt, yt))
            curve[name][str(k)] = {"per_seed": accs, **seed_spread(accs)}
            print(name, k, seed_spread(accs), flush=True)
    out = {
        "quick": args.quick,
        "seeds": seeds,
        "data": {
            "source": "sklearn.datasets.load_digits",
            "n_train": len(x),
            "n_test": len(xt),
            "image": "1 x 8 x 8, scaled to 0-1",
        },
        "vit": VIT,
        "training": {
            "steps": sizes["steps"],
            "batch_size": sizes["batch"],
            "optimizer": "AdamW, weight decay 0.01",
            "schedule": "linear warm-up over 10% of the steps, then linear decay",
            "lr_sweep": {
                "rates": list(LR_SWEEP),
                "steps": sizes["sweep_steps"],
                "validation_images": n_val,
                "accuracy": sweep,
            },
        },
        "rows": rows,
        "size_curve": curve,
        "notes": (
            "Same optimizer steps and batches for every model; each at the best rate "
            "of the sweep. size_curve: test accuracy after training on the first N "
            "images of a seeded shuffle of the training set, the same number of steps."
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
