"""Benchmarks of the chapter 10 decoder-only Transformer against Hugging Face's GPT-2.

Writes a markdown table to ``benchmarks/results/gpt.md``. As in
``bench_transformer.py``, every comparison is a ratio measured in one process, the
two sides interleaved, medians of repeats, so that load from other programs affects
both alike. Both models come from one small ``transformers.GPT2Config`` (n_embd 128,
4 heads, 4 layers, 256 positions, vocabulary 512, dropout 0.1), ours through
``transformer.gpt2.config_from_gpt2``.

1. Training throughput (tokens/s): AdamW steps (lr 1e-4, the same for all) on the
   same batches of 16 x 128 tokens, fp32, every model in train mode with dropout 0.1:
   ours on the fast path (``transformer.fast_lm.FastLM``), the plain model the book
   teaches (``nn.Dropout``), and ``GPT2LMHeadModel`` with its default attention
   implementation (sdpa). Goal: >= 1.3x.
2. Greedy generation with the key/value cache, 128 new tokens after a 16-token
   prompt, batch 1 and 32: ``transformer.gpt.generate(..., temperature=0.0)`` on the
   fast path and on the plain model, against
   ``GPT2LMHeadModel.generate(do_sample=False)`` on the same weights (copied with
   ``load_gpt2_state_dict``); the tokens must be equal. Goal: >= 2x at batch 1.

Usage: ``python benchmarks/bench_gpt.py [--quick] [--threads N]``
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import transformers  # noqa: E402
from _common import interleaved, write_table  # noqa: E402

from transformer.fast_lm import FastLM  # noqa: E402
from transformer.gpt import DecoderOnlyTransformer, generate  # noqa: E402
from transformer.gpt2 import config_from_gpt2, load_gpt2_state_dict  # noqa: E402
from transformer.utils import seed_everything  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "gpt.md"
VOCAB, B, T = 512, 16, 128
PROMPT_LEN, NEW = 16, 128


def hf_config(dropout: float = 0.1) -> transformers.GPT2Config:
    return transformers.GPT2Config(
        vocab_size=VOCAB,
        n_positions=256,
        n_embd=128,
        n_layer=4,
        n_head=4,
        resid_pdrop=dropout,
        embd_pdrop=dropout,
        attn_pdrop=dropout,
        bos_token_id=VOCAB - 1,
        eos_token_id=VOCAB - 1,
    )


def bench_training(repeats: int) -> list[tuple[str, str, str]]:
    seed_everything(0)
    hf = transformers.GPT2LMHeadModel(hf_config())
    plain = DecoderOnlyTransformer(config_from_gpt2(hf.config))
    fast = FastLM(DecoderOnlyTransformer(config_from_gpt2(hf.config)))
    models = {"ours": fast, "ours, plain": plain, "hf": hf}
    opts = {k: torch.optim.AdamW(m.parameters(), lr=1e-4) for k, m in models.items()}
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(VOCAB, (B, T + 1), generator=g)
    x, y = ids[:, :-1], ids[:, 1:]

    def step(name: str) -> None:
        m = models[name]
        logits = m(input_ids=x).logits if name == "hf" else m(x)  # (B, T, V)
        loss = F.cross_entropy(logits.reshape(-1, VOCAB), y.reshape(-1))
        opts[name].zero_grad(set_to_none=True)
        loss.backward()
        opts[name].step()

    for m in models.values():
        m.train()
    med = interleaved({k: (lambda k=k: step(k)) for k in models}, repeats, inner=3)
    tps = {k: B * T / v for k, v in med.items()}
    attn = hf.config._attn_implementation
    return [
        (
            "training tokens/s, ours",
            f"{tps['ours']:,.0f}",
            "transformer.fast_lm.FastLM: one (3C, C) QKV product, no mask (causal in "
            "the kernel), attention dropout by CausalDropoutAttention (15-bit masks, "
            "64-query blocks), dropout scales folded into weights",
        ),
        (
            "training tokens/s, ours, plain model",
            f"{tps['ours, plain']:,.0f}",
            "the model the book teaches (nn.Dropout, SDPA is_causal with dropout_p): "
            f"**{tps['ours, plain'] / tps['hf']:.2f}x** HF",
        ),
        (
            "training tokens/s, GPT2LMHeadModel",
            f"{tps['hf']:,.0f}",
            f"transformers {transformers.__version__}, attn_implementation={attn!r}, "
            "train mode, dropout 0.1",
        ),
        (
            "**training speed-up ours / HF**",
            f"**{tps['ours'] / tps['hf']:.2f}x**",
            f"batch {B} x {T}, AdamW; goal >= 1.3x",
        ),
    ]


def bench_generation(repeats: int) -> list[tuple[str, str, str]]:
    seed_everything(0)
    hf = transformers.GPT2LMHeadModel(hf_config()).eval()
    ours = DecoderOnlyTransformer(config_from_gpt2(hf.config))
    load_gpt2_state_dict(ours, hf.state_dict())
    ours.eval()
    fast = FastLM(ours).eval()
    rows = []
    for batch in (1, 32):
        g = torch.Generator().manual_seed(batch)
        prompt = torch.randint(VOCAB - 1, (batch, PROMPT_LEN), generator=g)
        mask = torch.ones_like(prompt)

        def run_ours(prompt: torch.Tensor = prompt) -> torch.Tensor:
            return generate(fast, prompt, NEW, temperature=0.0)  # type: ignore[arg-type]

        def run_plain(prompt: torch.Tensor = prompt) -> torch.Tensor:
            return generate(ours, prompt, NEW, temperature=0.0)

        def run_hf(
            prompt: torch.Tensor = prompt, mask: torch.Tensor = mask
        ) -> torch.Tensor:
            return hf.generate(
                prompt,
                attention_mask=mask,
                do_sample=False,
                max_new_tokens=NEW,
                min_new_tokens=NEW,
                pad_token_id=VOCAB - 1,
            )

        want = run_hf()
        same = torch.equal(run_ours(), want) and torch.equal(run_plain(), want)
        med = interleaved({"ours": run_ours, "plain": run_plain, "hf": run_hf}, repeats)
        goal = "goal >= 2x" if batch == 1 else "no goal"
        rows.append(
            (
                f"**greedy generation speed-up, batch {batch}**",
                f"**{med['hf'] / med['ours']:.2f}x**",
                f"{NEW} tokens after {PROMPT_LEN}: ours (FastLM) "
                f"{med['ours'] * 1e3:.0f} ms ({batch * NEW / med['ours']:,.0f} "
                f"tokens/s), HF {med['hf'] * 1e3:.0f} ms "
                f"({batch * NEW / med['hf']:,.0f} tokens/s); same tokens: "
                f"{'yes' if same else 'NO'}; {goal}",
            )
        )
        rows.append(
            (
                f"greedy generation, plain model, batch {batch}",
                f"{med['hf'] / med['plain']:.2f}x",
                f"the model's own start/step: {med['plain'] * 1e3:.0f} ms",
            )
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument(
        "--threads", type=int, default=2, help="torch threads (default 2)"
    )
    parser.add_argument(
        "--out", type=Path, default=RESULTS, help="where to write the table"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()
    start = time.perf_counter()
    rows = bench_training(3 if args.quick else 11)
    print(*rows, sep="\n", flush=True)
    rows += bench_generation(2 if args.quick else 7)
    print(*rows[-4:], sep="\n", flush=True)
    write_table(
        args.out,
        "Decoder-only benchmarks (chapter 10)",
        rows,
        args.quick,
        time.perf_counter() - start,
    )


if __name__ == "__main__":
    sys.exit(main())
