"""Benchmarks of the chapter 9 Transformer against torch.nn.Transformer on this CPU.

Writes a markdown table to ``benchmarks/results/transformer.md``. Every comparison
is a ratio measured in one process, ours and theirs interleaved, medians of repeats,
so that load from other programs affects both sides alike.

1. Training throughput (tokens/s) of our model against ``torch.nn.Transformer`` of
   the same size and dropout, with the same embeddings and output layer; and the
   fraction of this CPU's measured fp32 matmul peak our training step reaches.
2. Greedy decoding of 128 new tokens with the key/value cache against recomputing
   the prefix at every step, at batch 1 and 32. The cached decoder runs the
   one-position inference step of ``transformer.fast.FastDecoding``; the same cache
   through the general layers (``Transformer.step``, the teaching path) is timed
   alongside, to show what each part buys. The random model picks the most likely
   non-special token, as a trained one would, so no padding is fed.
3. Wall time until 99% exact match on reversing 10-20 digits: our recipe against
   ``torch.nn.Transformer`` trained with plain Adam (capped; ``--quick`` for a short
   cap).

Usage: ``python benchmarks/bench_transformer.py [--quick] [--cap SECONDS] [--threads
    N]``
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from transformer.config import TransformerConfig
from transformer.fast import FastDecoding, use_fast_dropout
from transformer.model import Transformer
from transformer.schedules import warmup_inverse_sqrt_scheduler
from transformer.tasks import load_task
from transformer.training import evaluate, sequence_cross_entropy
from transformer.utils import seed_everything

RESULTS = Path(__file__).resolve().parent / "results" / "transformer.md"


# ----------------------------------------------------------------------------- models
class TorchSeq2Seq(nn.Module):
    """torch.nn.Transformer with the same embeddings, positions and output layer as
    ours."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        c = config
        self.pad_id = c.pad_id
        shell = Transformer(c)  # borrow identical embedding/positional/output modules
        self.src_emb, self.tgt_emb = shell.encoder.embedding, shell.decoder.embedding
        self.positional, self.output = shell.encoder.positional, shell.decoder.output
        self.dropout = nn.Dropout(c.dropout)
        self.core = nn.Transformer(
            c.d_model,
            c.n_heads,
            c.n_encoder_layers,
            c.n_decoder_layers,
            c.d_ff,
            dropout=c.dropout,
            batch_first=True,
            norm_first=c.norm_first,
        )

    def _embed(self, emb: nn.Module, ids: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(ids.shape[1], device=ids.device)
        return self.dropout(self.positional.embed(emb(ids), pos))

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        causal = nn.Transformer.generate_square_subsequent_mask(
            tgt_in.shape[1], device=src.device, dtype=torch.bool
        )
        h = self.core(
            self._embed(self.src_emb, src),
            self._embed(self.tgt_emb, tgt_in),
            tgt_mask=causal,
            src_key_padding_mask=src == self.pad_id,
            tgt_key_padding_mask=tgt_in == self.pad_id,
            memory_key_padding_mask=src == self.pad_id,
        )
        return self.output(h)

    # Decoding protocol without a cache: re-run the decoder on the whole prefix.
    def start(
        self, src: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        memory = self.core.encoder(
            self._embed(self.src_emb, src), src_key_padding_mask=src == self.pad_id
        )
        return (
            memory,
            src,
            torch.empty(src.shape[0], 0, dtype=torch.long, device=src.device),
        )

    def step(self, prev: torch.Tensor, state: tuple) -> tuple[torch.Tensor, tuple]:
        memory, src, tokens = state
        tokens = torch.cat([tokens, prev[:, None]], 1)
        causal = nn.Transformer.generate_square_subsequent_mask(
            tokens.shape[1], device=src.device, dtype=torch.bool
        )
        h = self.core.decoder(
            self._embed(self.tgt_emb, tokens),
            memory,
            tgt_mask=causal,
            memory_key_padding_mask=src == self.pad_id,
        )
        return self.output(h[:, -1]), (memory, src, tokens)


# ------------------------------------------------------------------------------ utils
def median_time(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def matmul_peak_gflops(n: int = 1024, repeats: int = 15) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    t = median_time(lambda: a @ b, repeats)
    return 2 * n**3 / t / 1e9


def random_batch(config: TransformerConfig, B: int, L: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(4, config.src_vocab_size, (B, L), generator=g)
    tgt = torch.randint(4, config.tgt_vocab_size, (B, L + 1), generator=g)
    tgt[:, 0] = 1
    return src, tgt[:, :-1], tgt[:, 1:]


# ------------------------------------------------------------------------ benchmarks
def bench_training(repeats: int) -> list[tuple[str, str, str]]:
    seed_everything(0)
    config = TransformerConfig(
        src_vocab_size=64,
        tgt_vocab_size=64,
        d_model=128,
        n_heads=4,
        d_ff=512,
        dropout=0.1,
    )
    B, L = 64, 24
    src, tgt_in, tgt_out = random_batch(config, B, L)
    fast = Transformer(config)
    use_fast_dropout(fast)  # transformer.fast: same semantics, cheaper random mask
    models = {
        "ours": fast,
        "ours, nn.Dropout": Transformer(config),
        "torch": TorchSeq2Seq(config),
    }
    opts = {k: torch.optim.Adam(m.parameters(), lr=1e-4) for k, m in models.items()}

    def step(name: str) -> None:
        m, opt = models[name], opts[name]
        loss = sequence_cross_entropy(m(src, tgt_in), tgt_out, 0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for name in models:
        models[name].train()
        for _ in range(5):
            step(name)
    steps_per_sample = 5
    samples: dict[str, list[float]] = {k: [] for k in models}
    for _ in range(repeats):  # interleaved
        for name in models:
            t = time.perf_counter()
            for _ in range(steps_per_sample):
                step(name)
            samples[name].append((time.perf_counter() - t) / steps_per_sample)
    tokens = B * (2 * L)  # source + target tokens per step
    tps = {k: tokens / statistics.median(v) for k, v in samples.items()}
    with FlopCounterMode(display=False) as counter:
        step("ours")
    flops = counter.get_total_flops()
    peak = matmul_peak_gflops()
    achieved = flops / statistics.median(samples["ours"]) / 1e9
    return [
        (
            "training tokens/s, ours",
            f"{tps['ours']:,.0f}",
            "d_model 128, 4 heads, 2+2, FFN 512; FastDropout (transformer.fast)",
        ),
        (
            "training tokens/s, ours with nn.Dropout",
            f"{tps['ours, nn.Dropout']:,.0f}",
            f"the default model: {tps['ours, nn.Dropout'] / tps['torch']:.2f}x torch",
        ),
        (
            "training tokens/s, torch.nn.Transformer",
            f"{tps['torch']:,.0f}",
            "same size, p=0.1",
        ),
        (
            "**speed-up ours / torch**",
            f"**{tps['ours'] / tps['torch']:.2f}x**",
            "goal >= 1.2x",
        ),
        ("fp32 matmul peak (1024^3)", f"{peak:.0f} GFLOP/s", "measured in this run"),
        (
            "our training step",
            f"{achieved:.0f} GFLOP/s",
            f"{flops / 1e9:.2f} GFLOP per step",
        ),
        (
            "**fraction of peak**",
            f"**{achieved / peak:.0%}**",
            "FlopCounterMode count / time",
        ),
    ]


def bench_kv_cache(repeats: int) -> list[tuple[str, str, str]]:
    """Greedy decoding of 128 tokens: cached (one-position step), cached through the
    general layers, and recomputing the prefix; interleaved, medians of ``repeats``."""
    seed_everything(0)
    config = TransformerConfig(
        src_vocab_size=64,
        tgt_vocab_size=64,
        d_model=128,
        n_heads=4,
        d_ff=512,
        dropout=0.1,
    )
    model = Transformer(config).eval()
    fast = FastDecoding(model)  # the one-position inference path of transformer.fast
    # A trained model writes real tokens; this random one would also pick <pad>,
    # <bos> and <eos>, and a fed <pad> adds a padding mask to every later step.
    # Choosing among the real tokens times the decoding a trained model does.
    specials = torch.tensor([model.pad_id, model.bos_id, model.eos_id])
    n_new = 128
    rows = []
    for B, context, label in (
        (1, torch.no_grad, "no_grad"),
        (1, torch.inference_mode, "inference_mode"),
        (32, torch.no_grad, "no_grad"),
    ):
        src, _, _ = random_batch(config, B, 24, seed=B)

        def run(
            kind: str, src: torch.Tensor = src, context: Callable = context
        ) -> torch.Tensor:
            with context():
                decoder = fast if kind == "step" else model
                if kind == "step":
                    state: Any = fast.start(src)
                else:
                    state = model.start(src, use_cache=kind != "recompute")
                prev = torch.full((src.shape[0],), 1, dtype=torch.long)
                out = []
                for _ in range(n_new):  # no early stop: exactly 128 new tokens
                    logits, state = decoder.step(prev, state)
                    prev = logits.index_fill(-1, specials, float("-inf")).argmax(-1)
                    out.append(prev)
                return torch.stack(out, 1)

        kinds = ("step", "general", "recompute")
        outputs = {k: run(k) for k in kinds}  # warm-up, and the three must agree
        assert all(torch.equal(outputs["step"], o) for o in outputs.values())
        times: dict[str, list[float]] = {k: [] for k in kinds}
        for r in range(repeats):
            for k in kinds[r % 3 :] + kinds[: r % 3]:  # rotate the order against drift
                times[k].append(median_time(lambda k=k: run(k), 1))
        med = {k: statistics.median(v) for k, v in times.items()}
        goal = " Goal >= 5x." if B == 1 else ""
        rows.append(
            (
                f"**KV cache speed-up, batch {B}** ({label})",
                f"**{med['recompute'] / med['step']:.1f}x**",
                f"{n_new} tokens: {med['step'] * 1e3:.0f} ms cached vs "
                f"{med['recompute'] * 1e3:.0f} ms recomputed. Cache through the "
                f"general layers (the teaching path): {med['general'] * 1e3:.0f} ms "
                f"({med['recompute'] / med['general']:.1f}x).{goal}",
            )
        )
    return rows


def _time_to_target(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler,
    task,
    cap: float,
    target: float = 0.99,
    eval_every: int = 100,
) -> tuple[float | None, int, float]:
    """Train until exact match on the validation set reaches ``target`` or ``cap``
    seconds."""
    loader = task.loader("train", batch_size=64, shuffle=True)
    val = task.loader("val", batch_size=500)
    pad = model.pad_id
    train_seconds, step, best = 0.0, 0, 0.0
    while train_seconds < cap:
        for batch in loader:
            model.train()
            t = time.perf_counter()
            loss = sequence_cross_entropy(
                model(batch.src, batch.tgt_in), batch.tgt_out, pad
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            train_seconds += time.perf_counter() - t
            step += 1
            if step % eval_every == 0:
                t = time.perf_counter()
                em = evaluate(model, val)["exact_match"]
                # evaluation counts: it is needed
                train_seconds += time.perf_counter() - t
                best = max(best, em)
                if em >= target:
                    return train_seconds, step, em
            if train_seconds >= cap:
                break
    return None, step, best


def bench_reversal(cap: float) -> list[tuple[str, str, str]]:
    task = load_task(
        "reverse", n_train=20000, n_val=500, n_test=500, min_len=10, max_len=20
    )
    V = len(task.src_vocab)
    rows = []
    # Ours: the book's recipe (no dropout, small model, warm-up then inverse sqrt, large
    # LR).
    seed_everything(0)
    ours_cfg = TransformerConfig(
        src_vocab_size=V, tgt_vocab_size=V, d_model=64, n_heads=4, d_ff=256, dropout=0.0
    )
    ours = Transformer(ours_cfg)
    opt = torch.optim.Adam(ours.parameters(), lr=3e-3, betas=(0.9, 0.98), eps=1e-9)
    res_ours = _time_to_target(
        ours, opt, warmup_inverse_sqrt_scheduler(opt, 200), task, cap
    )
    # Theirs: torch.nn.Transformer, d_model 128, dropout 0.1, plain Adam 1e-3.
    seed_everything(0)
    ref_cfg = TransformerConfig(
        src_vocab_size=V,
        tgt_vocab_size=V,
        d_model=128,
        n_heads=4,
        d_ff=512,
        dropout=0.1,
    )
    ref = TorchSeq2Seq(ref_cfg)
    ref_opt = torch.optim.Adam(ref.parameters(), lr=1e-3)
    res_ref = _time_to_target(ref, ref_opt, None, task, cap)
    for label, (secs, steps, em) in (
        ("ours (recipe)", res_ours),
        ("torch, plain Adam", res_ref),
    ):
        if secs is None:
            value = f"not reached in {cap:.0f} s"
            note = f"best exact match {em:.1%} after {steps} steps"
        else:
            value = f"{secs:.0f} s"
            note = f"{em:.1%} after {steps} steps"
        rows.append((f"reversal 10-20 digits to 99%, {label}", value, note))
    if res_ours[0] is not None and res_ref[0] is not None:
        rows.append(
            ("**time ratio torch / ours**", f"**{res_ref[0] / res_ours[0]:.1f}x**", "")
        )
    elif res_ours[0] is not None:
        rows.append(
            ("**time ratio torch / ours**", f"**> {cap / res_ours[0]:.1f}x**", "capped")
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="fewer repeats, short time cap"
    )
    parser.add_argument(
        "--cap", type=float, default=None, help="seconds per reversal run"
    )
    parser.add_argument(
        "--threads", type=int, default=2, help="torch threads (default 2)"
    )
    parser.add_argument("--skip-reversal", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    repeats = 5 if args.quick else 15
    cap = args.cap if args.cap is not None else (90.0 if args.quick else 600.0)
    start = time.perf_counter()
    rows = bench_training(repeats)
    print(*rows, sep="\n", flush=True)
    rows += bench_kv_cache(3 if args.quick else 7)
    print(*rows[-3:], sep="\n", flush=True)
    if not args.skip_reversal:
        rows += bench_reversal(cap)
        print(*rows[-3:], sep="\n", flush=True)
    lines = [
        "# Transformer benchmarks (chapter 9)",
        "",
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs "
        f"visible; {'quick' if args.quick else 'full'} run, "
        f"{time.perf_counter() - start:.0f} s in all. Ratios come from interleaved "
        "runs in one process (medians); absolute numbers depend on machine load.",
        "",
        "| measurement | value | notes |",
        "|---|---|---|",
        *[f"| {a} | {b} | {c} |" for a, b, c in rows],
        "",
    ]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    tmp = RESULTS.with_suffix(".md.tmp")
    tmp.write_text("\n".join(lines))
    os.replace(tmp, RESULTS)
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    sys.exit(main())
