"""The training entry point: chapter 10's GPT on its corpus, at scale (chapter 14).

Run it alone or under ``torchrun``; the same code serves one process and many::

    python -m transformer.train --steps 200 --out runs/a
    torchrun --standalone --nproc_per_node=2 -m transformer.train --out runs/b

Flags override a JSON config file (``--config run.json``). What it adds to the
training loop of chapter 4 is what scale needs:

* **mixed precision**: ``bf16`` autocast, or ``fp16`` with a gradient scaler on CUDA
  (Micikevicius et al., 2018);
* ``torch.compile`` and **activation checkpointing** (Chen et al., 2016) as options;
* **gradient accumulation** whose non-final micro-steps skip DDP's all-reduce;
* **checkpoints that resume exactly**: model, optimizer, scheduler, the Python,
  NumPy, torch (and CUDA) random states of every rank, the data position and the
  scaler, written atomically and read with ``weights_only=True``.

The text is the UTF-8 bytes of chapter 10's corpus (the 256 symbols that chapter
10's byte-level BPE starts from), so no tokenizer has to be trained first.

Shape letters: B windows per micro-batch, T block length, V vocabulary (256).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import math
import os
import random
import sys
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.checkpoint import checkpoint

from transformer.checkpoint import save_checkpoint
from transformer.distributed import (
    DistInfo,
    WindowDataset,
    WindowShards,
    all_gather,
    all_reduce_mean,
    cleanup,
    init_distributed,
    make_optimizer,
    micro_step,
    optimizer_state_bytes,
    spawn,
)
from transformer.gpt import DecoderOnlyConfig, DecoderOnlyTransformer
from transformer.lm import documents, iter_eval_blocks, lm_loss, split_documents
from transformer.resume import load_train_state, save_train_state, set_rng_state

__all__ = [
    "TrainConfig",
    "build_model",
    "corpus_bytes",
    "enable_activation_checkpointing",
    "main",
    "run",
    "run_spawned",
]

log = logging.getLogger("transformer.train")
PRECISIONS = ("fp32", "bf16", "fp16", "fp64")


@dataclass(frozen=True)
class TrainConfig:
    """Every setting of a training run; each field is also a command-line flag.

    Args:
        d_model, n_heads, n_layers, d_ff, dropout: chapter 10's GPT.
        block_size: context length T.
        batch_size: windows per micro-batch on each rank (B).
        accum: micro-batches per optimizer step; the step sees
            ``batch_size * accum * world_size`` windows.
        steps: optimizer steps in all (a resumed run continues to it).
        lr, warmup, weight_decay, grad_clip: AdamW with linear warm-up and cosine
            decay to a tenth of ``lr``; gradients clipped to this norm (0: off).
        precision: ``"fp32"``, ``"bf16"`` autocast, ``"fp16"`` (CUDA only), or
            ``"fp64"``, the whole model in double precision (for exact comparisons).
        compile: ``torch.compile`` the model.
        activation_checkpointing: recompute each block's activations in the backward.
        zero: shard AdamW's state across ranks (ZeroRedundancyOptimizer).
        seed: the model, data order and dropout follow from it.
        out: folder for ``state.pt``, ``model.pt`` and ``log.jsonl`` (None: none).
        save_every: also save every this many steps (0: only at the end).
        resume: continue from ``out/state.pt`` when it exists.
        stop_after: stop (after saving) once this step is done, as if killed.
        log_every: print the loss every this many steps (``log.jsonl`` gets all).
        eval_blocks: validation blocks scored at the end (0: none).
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
    """

    d_model: int = 64
    n_heads: int = 4
    n_layers: int = 2
    d_ff: int = 256
    dropout: float = 0.0
    block_size: int = 64
    batch_size: int = 8
    accum: int = 1
    steps: int = 20
    lr: float = 3e-3
    warmup: int = 10
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    precision: str = "fp32"
    compile: bool = False
    activation_checkpointing: bool = False
    zero: bool = False
    seed: int = 0
    out: str | None = None
    save_every: int = 0
    resume: bool = False
    stop_after: int | None = None
    log_every: int = 10
    eval_blocks: int = 8
    device: str = "auto"

    def __post_init__(self) -> None:
        for name in ("d_model", "n_heads", "n_layers", "d_ff", "block_size"):
            _positive(name, getattr(self, name))
        for name in ("batch_size", "accum", "steps", "log_every"):
            _positive(name, getattr(self, name))
        if self.precision not in PRECISIONS:
            got = self.precision
            raise ValueError(f"precision must be one of {PRECISIONS}, got {got!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        counts = (self.warmup, self.save_every, self.eval_blocks)
        if self.lr <= 0 or min(counts) < 0:
            raise ValueError("lr must be > 0; warmup, save_every, eval_blocks >= 0")
        if self.stop_after is not None and not 1 <= self.stop_after <= self.steps:
            raise ValueError(f"stop_after must be in 1..steps, got {self.stop_after}")
        if (self.resume or self.save_every or self.stop_after) and self.out is None:
            raise ValueError("resume, save_every and stop_after need an out folder")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _positive(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


@cache
def corpus_bytes() -> tuple[torch.Tensor, torch.Tensor]:
    """Chapter 10's training and validation documents as byte streams (uint8, (N,))."""
    train, valid = split_documents(documents())
    as_ids = [
        torch.tensor(list("\n\n".join(t for _, t in part).encode()), dtype=torch.uint8)
        for part in (train, valid)
    ]
    return as_ids[0], as_ids[1]


def build_model(config: TrainConfig) -> DecoderOnlyTransformer:
    """Chapter 10's GPT for a byte vocabulary (V = 256), at ``config``'s size."""
    return DecoderOnlyTransformer(
        DecoderOnlyConfig(
            vocab_size=256,
            d_model=config.d_model,
            n_heads=config.n_heads,
            n_layers=config.n_layers,
            d_ff=config.d_ff,
            dropout=config.dropout,
            max_len=config.block_size,
            mask_pad=False,
        )
    )


def enable_activation_checkpointing(model: DecoderOnlyTransformer) -> None:
    """Recompute each block's activations in the backward pass instead of storing them.

    Every block keeps only its input; its inner activations are rebuilt when the
    backward pass reaches it (Chen et al., 2016), trading about one more forward
    pass for memory that no longer grows with the block's internals. The random
    state is replayed, so dropout masks and gradients are the same as without.
    The weights and their names are untouched.
    """
    for layer in model.layers:
        forward = layer.forward

        def run(*args: Any, _forward: Any = forward, **kwargs: Any) -> Any:
            if not torch.is_grad_enabled():
                return _forward(*args, **kwargs)
            return checkpoint(_forward, *args, use_reentrant=False, **kwargs)

        layer.forward = run


def _lr_factor(step: int, warmup: int, steps: int) -> float:
    """Linear warm-up to 1, then cosine decay to 0.1 at the last step."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return 0.1 + 0.45 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def _autocast(config: TrainConfig, device: torch.device) -> Any:
    if config.precision in ("fp32", "fp64"):
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if config.precision == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


def _full(logits: torch.Tensor) -> torch.Tensor:
    """Logits in at least float32: the loss of 256 classes is not taken in 16 bits."""
    return logits.float() if logits.dtype in (torch.bfloat16, torch.float16) else logits


def run(config: TrainConfig, init_method: str | None = None) -> dict[str, Any]:
    """Train per ``config`` in this process (one rank of a group when launched so).

    Returns:
        On every rank: ``losses`` (the loss of every step, averaged over ranks and
        micro-steps, including the steps before a resume), ``tokens_per_s``,
        ``optimizer_state_bytes`` (this rank's), ``valid_loss`` (or None),
        ``params`` (the final weights, on the CPU), ``world_size`` and ``step``.
    """
    auto = config.device == "auto"
    gpu = torch.cuda.is_available() if auto else config.device == "cuda"
    if config.precision == "fp16" and not gpu:
        raise ValueError("fp16 with a gradient scaler needs CUDA; on a CPU use bf16")
    info = init_distributed(config.device, init_method)
    try:
        return _train(config, info)
    finally:
        cleanup()


def _train(config: TrainConfig, info: DistInfo) -> dict[str, Any]:
    torch.manual_seed(config.seed)  # the same initial weights on every rank
    raw = build_model(config).to(info.device)
    if config.precision == "fp64":
        raw.double()
    if config.activation_checkpointing:
        enable_activation_checkpointing(raw)
    model: nn.Module = raw
    if config.compile:
        model = cast(nn.Module, torch.compile(raw))
    if info.world_size > 1:
        ids = [info.device.index] if info.device.type == "cuda" else None
        model = DistributedDataParallel(model, device_ids=ids)
    optimizer = make_optimizer(raw, config.lr, config.weight_decay, zero=config.zero)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: _lr_factor(s, config.warmup, config.steps)
    )
    scaler = torch.amp.GradScaler("cuda", enabled=config.precision == "fp16")
    train_ids, valid_ids = corpus_bytes()
    shards = WindowShards(
        WindowDataset(train_ids, config.block_size),
        info.rank,
        info.world_size,
        config.seed,
    )
    # every rank its own dropout stream, reproducible from the seed
    random.seed(config.seed + info.rank)
    np.random.seed(config.seed + info.rank)
    torch.manual_seed(config.seed + 1000 * (info.rank + 1))
    out = Path(config.out) if config.out else None
    losses: list[float] = []
    start = 0
    if out is not None and config.resume and (out / "state.pt").is_file():
        state = load_train_state(out / "state.pt", config.to_dict(), info.world_size)
        raw.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        shards.load_state_dict(state["data"])
        set_rng_state(state["rng"][info.rank])
        losses, start = list(state["losses"]), int(state["step"])
        if info.is_main:
            log.info(f"resumed from {out / 'state.pt'} at step {start}")

    def save(step: int) -> None:
        if out is None:
            return
        if config.zero:  # gather the shards of the optimizer state on rank 0
            optimizer.consolidate_state_dict(to=0)  # type: ignore[attr-defined]
        parts = dict(
            config=config.to_dict(),
            step=step,
            losses=losses,
            model={k: v.detach().cpu() for k, v in raw.state_dict().items()},
            optimizer=optimizer.state_dict() if info.is_main else None,
            scheduler=scheduler.state_dict(),
            scaler=scaler.state_dict(),
            data=shards.state_dict(),
        )
        save_train_state(out / "state.pt", parts)

    tokens_per_step = config.batch_size * config.block_size * config.accum
    tokens_per_step *= info.world_size
    end = config.steps if config.stop_after is None else config.stop_after
    model.train()
    t0 = time.perf_counter()
    for step in range(start, end):
        total = torch.zeros((), dtype=torch.float64, device=info.device)
        for micro in range(config.accum):
            x, y = shards.next_batch(config.batch_size)  # (B, T), (B, T)
            x, y = x.to(info.device), y.to(info.device)
            with micro_step(model, last=micro == config.accum - 1):
                with _autocast(config, info.device):
                    loss = lm_loss(_full(model(x)), y) / config.accum
                scaler.scale(loss).backward()
            total += loss.detach()
        if config.grad_clip > 0:
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(raw.parameters(), config.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()
        losses.append(float(all_reduce_mean(total)))
        done = step + 1
        lr = scheduler.get_last_lr()[0]
        if info.is_main and out is not None:  # every step, for plots and comparisons
            out.mkdir(parents=True, exist_ok=True)
            with open(out / "log.jsonl", "a") as f:
                f.write(json.dumps(dict(step=done, loss=losses[-1], lr=lr)) + "\n")
        if info.is_main and (done % config.log_every == 0 or done == end):
            rate = tokens_per_step * (done - start) / (time.perf_counter() - t0)
            log.info(
                f"step {done:>5}/{config.steps}  loss {losses[-1]:.4f}  lr {lr:.2e}  "
                f"{rate:,.0f} tokens/s"
            )
        if config.save_every and done % config.save_every == 0 and done != end:
            save(done)
    seconds = time.perf_counter() - t0
    save(end)
    valid = _validate(raw, valid_ids, config, info) if end == config.steps else None
    if info.is_main and out is not None and end == config.steps:
        save_checkpoint(raw, out / "model.pt", step=end, valid_loss=valid)
    if info.is_main and valid is not None:
        log.info(f"validation loss {valid:.4f} over {config.eval_blocks} blocks")
    state_bytes = all_gather(optimizer_state_bytes(optimizer))
    if info.is_main:
        sizes = ", ".join(f"{b:,}" for b in state_bytes)
        log.info(f"optimizer state per rank: {sizes} bytes")
    return dict(
        losses=losses,
        world_size=info.world_size,
        step=end,
        valid_loss=valid,
        tokens_per_s=tokens_per_step * (end - start) / max(seconds, 1e-9),
        optimizer_state_bytes=optimizer_state_bytes(optimizer),
        params={k: v.detach().cpu().clone() for k, v in raw.state_dict().items()},
    )


@torch.no_grad()
def _validate(
    model: nn.Module, ids: torch.Tensor, config: TrainConfig, info: DistInfo
) -> float | None:
    if config.eval_blocks == 0:
        return None
    model.eval()
    nll, count = 0.0, 0
    blocks = iter_eval_blocks(ids, config.block_size, batch_size=config.eval_blocks)
    x, y = next(blocks)  # the first eval_blocks blocks of the validation text
    with _autocast(config, info.device):
        logits = _full(model(x.to(info.device)))
    nll += float(lm_loss(logits, y.to(info.device))) * y.numel()
    count += y.numel()
    model.train()
    return nll / count


def _rank_entry(init_method: str, configs: list[TrainConfig], folder: str) -> None:
    results = [run(c, f"{init_method}-{i}") for i, c in enumerate(configs)]
    torch.save(results, Path(folder) / f"rank{os.environ['RANK']}.pt")


def run_spawned(
    configs: TrainConfig | list[TrainConfig],
    world_size: int,
    folder: str | os.PathLike[str],
    timeout_s: float = 120,
) -> list[list[dict[str, Any]]]:
    """:func:`run` in ``world_size`` local processes, for one config or several in turn.

    The ranks meet at a file store in ``folder`` (no network port) and must finish
    within ``timeout_s`` (see :func:`~transformer.distributed.spawn`); several configs
    share the processes' start-up cost.

    Returns:
        ``results[i][r]``: config ``i``'s result on rank ``r``.
    """
    configs = [configs] if isinstance(configs, TrainConfig) else list(configs)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    store = folder / f"store-{time.time_ns()}"
    spawn(_rank_entry, world_size, str(store), (configs, str(folder)), timeout_s)
    paths = [folder / f"rank{r}.pt" for r in range(world_size)]
    per_rank = [torch.load(p, weights_only=True) for p in paths]
    for p in paths:
        p.unlink()
    return [[per_rank[r][i] for r in range(world_size)] for i in range(len(configs))]


def parse_args(argv: list[str] | None = None) -> TrainConfig:
    """A :class:`TrainConfig` from a JSON ``--config`` file and flags (flags win)."""
    parser = argparse.ArgumentParser(
        prog="python -m transformer.train",
        description="Train chapter 10's GPT on chapter 10's corpus (bytes).",
    )
    parser.add_argument("--config", help="a JSON file of TrainConfig fields")
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        kind = str(f.type)
        if kind == "bool":
            switch = argparse.BooleanOptionalAction
            parser.add_argument(flag, action=switch, default=None)
        else:
            parse = int if kind.startswith("int") else float if kind == "float" else str
            parser.add_argument(flag, type=parse, default=None, dest=f.name)
    args = vars(parser.parse_args(argv))
    fields: dict[str, Any] = {}
    config_path = args.pop("config")
    if config_path:
        fields = json.loads(Path(config_path).read_text())
        unknown = set(fields) - {f.name for f in dataclasses.fields(TrainConfig)}
        if unknown:
            parser.error(f"{config_path} has unknown settings {sorted(unknown)}")
    fields.update({k: v for k, v in args.items() if v is not None})
    try:
        return TrainConfig(**fields)
    except (TypeError, ValueError) as e:
        parser.error(str(e))


def main(argv: list[str] | None = None) -> int:
    """The command line: parse, train, report."""
    config = parse_args(argv)
    rank = int(os.environ.get("RANK", "0"))
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(logging.INFO if rank == 0 else logging.WARNING)  # rank 0 speaks
    log.propagate = False
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if rank == 0:
        log.info(f"{world} process(es), {config.precision}, accum {config.accum}")
    run(config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
