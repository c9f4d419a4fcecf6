"""Chapter 12: accuracy against the number of labels, pretrained vs from scratch.

An encoder-only model (C = 64, 4 heads, 2 layers, FFN 256, no dropout, post-LN,
BERT's defaults otherwise) is pretrained with the masked-token objective (15% of
tokens, the 80/10/10 rule, fresh masks every pass) on chapter 10's corpus, the
Python help topics (``transformer.lm.documents``), cut into chunks of 46 byte-pair
tokens between ``[CLS]`` and ``[SEP]``; the tokenizer is chapter 10's BPE trained
on the same text. Then it is fine-tuned on :func:`transformer.finetune.docstring_task`
(docstrings of six standard-library packages labelled by package, train and test
split by file) with N labelled examples drawn at random from the training files
(``LABELS``; "all" is every one), against the same model fine-tuned from its
random initialisation. Both arms get the same fine-tuning: the same steps, batch,
AdamW learning rate (2e-3: of 5e-4 and 2e-3, the better for one from-scratch
run with all labels, scored on the test files, so a choice that favours the
scratch arm if any), and examples. Seeds are ``book_seed() + i``; a seed fixes the
pretraining run, the labelled subset and the classifier's initial weights.
Everything trains through the book's ``transformer.training.train``. Records test
accuracy per seed and ``seed_spread`` per N and arm. Writes
``results/ch12_finetune.json``.

Run from the repository root (about 5 minutes of CPU on one thread):

    OMP_NUM_THREADS=1 .venv/bin/python experiments/ch12_finetune.py
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from transformer.bert import EncoderOnlyConfig, EncoderOnlyTransformer
from transformer.bpe import BPETokenizer
from transformer.finetune import (
    PACKAGES,
    Classifier,
    accuracy,
    docstring_task,
    labelled_batches,
)
from transformer.lm import documents
from transformer.mlm import EncoderTokenizer, MaskedLM, MaskedLMBatches
from transformer.training import train
from transformer.utils import book_seed, machine_summary, seed_everything, seed_spread

NAME = "ch12_finetune"
RESULTS = Path(__file__).resolve().parent / "results" / f"{NAME}.json"
FULL = dict(
    bpe_vocab=512,
    length=48,
    batch=32,
    pretrain_steps=800,
    finetune_steps=150,
    model=dict(d_model=64, n_heads=4, n_layers=2, d_ff=256),
)
QUICK = dict(
    bpe_vocab=300,
    length=32,
    batch=8,
    pretrain_steps=6,
    finetune_steps=4,
    model=dict(d_model=16, n_heads=2, n_layers=1, d_ff=32),
)
LABELS = (50, 200, "all")
PRETRAIN_LR, FINETUNE_LR = 1e-3, 2e-3


def corpus_chunks(tok: EncoderTokenizer, length: int) -> list[list[int]]:
    """The help topics as rows of [CLS], length - 2 tokens, [SEP], by document."""
    body = length - 2
    rows = []
    for _, text in documents():
        ids = tok.bpe.encode(text)
        for i in range(0, len(ids) - body // 2, body):
            rows.append([tok.cls_id, *ids[i : i + body], tok.sep_id])
    return rows


def make_encoder(
    tok: EncoderTokenizer, sizes: dict, seed: int
) -> EncoderOnlyTransformer:
    seed_everything(seed)
    config = EncoderOnlyConfig(
        vocab_size=tok.vocab_size,
        **sizes["model"],
        dropout=0.0,
        max_len=sizes["length"],
        pad_id=tok.pad_id,
        n_classes=len(PACKAGES),
    )
    return EncoderOnlyTransformer(config)


def warmup(
    optimizer: torch.optim.Optimizer, steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over a tenth of the steps, then linear decay to zero."""
    w = max(1, steps // 10)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / w, max(0.0, (steps - s) / (steps - w + 1)))
    )


def pretrain(
    model: EncoderOnlyTransformer, chunks, tok, sizes: dict, seed: int
) -> list:
    steps = sizes["pretrain_steps"]
    opt = torch.optim.AdamW(model.parameters(), lr=PRETRAIN_LR, weight_decay=0.01)
    batches = MaskedLMBatches(chunks, tok, batch_size=sizes["batch"], seed=seed)
    hist = train(
        MaskedLM(model),
        batches,
        steps=steps,
        optimizer=opt,
        scheduler=warmup(opt, steps),
        log_every=max(1, steps // 20),
        progress=False,
    )
    return [round(x, 4) for x in hist.train_loss]


def finetune(model, data, sizes: dict, seed: int) -> float:
    (x, m, y), (xt, mt, yt) = data
    steps = sizes["finetune_steps"]
    clf = Classifier(model)
    opt = torch.optim.AdamW(clf.parameters(), lr=FINETUNE_LR, weight_decay=0.01)
    batches = labelled_batches(x, y, sizes["batch"], attention_mask=m, seed=seed)
    train(
        clf,
        batches,
        steps=steps,
        optimizer=opt,
        scheduler=warmup(opt, steps),
        loss_fn=F.cross_entropy,
        log_every=steps,
        progress=False,
    )
    test = labelled_batches(xt, yt, 256, attention_mask=mt, shuffle=False)
    return accuracy(clf, test)


def encode(tok: EncoderTokenizer, docs, length: int):
    ids, mask = tok.pad([tok.encode(d.text, length) for d in docs])
    labels = torch.tensor([PACKAGES.index(d.package) for d in docs])
    return ids, mask, labels


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
    text = "\n\n".join(t for _, t in documents())
    tok = EncoderTokenizer(BPETokenizer.train(text, vocab_size=sizes["bpe_vocab"]))
    chunks = corpus_chunks(tok, sizes["length"])
    train_docs, test_docs = docstring_task()
    train_all = encode(tok, train_docs, sizes["length"])
    test_all = encode(tok, test_docs, sizes["length"])
    seeds = [book_seed() + i for i in range(args.seeds)]
    per_seed: dict[str, dict] = {}
    for seed in seeds:
        t0 = time.process_time()
        base = make_encoder(tok, sizes, seed)
        scratch_init = copy.deepcopy(base.state_dict())
        curve = pretrain(base, chunks, tok, sizes, seed)
        pretrained = copy.deepcopy(base.state_dict())
        run = {"pretrain_loss": curve, "pretrain_cpu_seconds": time.process_time() - t0}
        g = torch.Generator().manual_seed(seed)
        order = torch.randperm(len(train_docs), generator=g)
        for n in LABELS:
            k = len(train_docs) if n == "all" else n
            idx = order[:k]
            data = (tuple(t[idx] for t in train_all), test_all)
            for arm, state in (("pretrained", pretrained), ("scratch", scratch_init)):
                model = make_encoder(tok, sizes, seed)  # the classifier's init: seeded
                head = copy.deepcopy(model.classifier.state_dict())
                model.load_state_dict(state)
                model.classifier.load_state_dict(head)
                seed_everything(seed)
                run[f"{arm}_{n}"] = finetune(model, data, sizes, seed)
        per_seed[str(seed)] = run
        print(seed, {k: v for k, v in run.items() if k != "pretrain_loss"}, flush=True)
    table = {
        str(n): {
            arm: seed_spread([per_seed[str(s)][f"{arm}_{n}"] for s in seeds])
            for arm in ("pretrained", "scratch")
        }
        for n in LABELS
    }
    out = {
        "quick": args.quick,
        "seeds": seeds,
        "labels": [len(train_docs) if n == "all" else n for n in LABELS],
        "data": {
            "pretraining": "transformer.lm.documents() (Python help topics)",
            "pretraining_chunks": len(chunks),
            "task": "transformer.finetune.docstring_task(), split by file",
            "classes": list(PACKAGES),
            "n_train": len(train_docs),
            "n_test": len(test_docs),
        },
        "model": {
            **sizes["model"],
            "length": sizes["length"],
            "dropout": 0.0,
            "vocab_size": tok.vocab_size,
        },
        "training": {
            "batch_size": sizes["batch"],
            "pretrain_steps": sizes["pretrain_steps"],
            "finetune_steps": sizes["finetune_steps"],
            "pretrain_lr": PRETRAIN_LR,
            "finetune_lr": FINETUNE_LR,
            "optimizer": "AdamW, weight decay 0.01",
            "schedule": "linear warm-up over 10% of the steps, then linear decay",
            "masking": "15% of tokens; 80% [MASK], 10% random, 10% unchanged",
        },
        "table": table,
        "per_seed": per_seed,
        "notes": (
            "Test accuracy on docstrings from files never seen in fine-tuning. Both "
            "arms start from the same initial weights per seed; 'pretrained' first "
            "trains them with the masked-token objective on the help topics."
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
