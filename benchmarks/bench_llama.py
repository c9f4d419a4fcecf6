"""Benchmarks of the chapter 11 modern decoder against Hugging Face's Llama.

Writes a markdown table to ``benchmarks/results/llama.md``. As in ``bench_gpt.py``,
every comparison is a ratio measured in one process, the sides interleaved, medians
of repeats, so that load from other programs affects them alike.

1. Greedy generation with the key/value cache, 128 new tokens after a 16-token
   prompt, batch 1 and 32: ``transformer.gpt.generate(..., temperature=0.0)`` on a
   ``DecoderOnlyTransformer(config_from_llama(...))`` against
   ``LlamaForCausalLM.generate(do_sample=False)`` on the same weights (copied with
   ``load_llama_state_dict``); the tokens must be equal. Both come from one small
   ``transformers.LlamaConfig`` (hidden 128, 4 query heads sharing 2 key/value
   heads, 4 layers, intermediate 344, vocabulary 512, 256 positions), fp32, eval
   mode. Ours runs on the fast path (``transformer.fast_modern.FastModernLM``) and as
   the plain model the book teaches. Goal: >= 2x at batch 1.
2. RMSNorm against LayerNorm, forward and backward of a (16 x 128, C) batch:
   :class:`transformer.modern.RMSNorm` (the book's, written out) and
   ``torch.nn.RMSNorm`` against ``torch.nn.LayerNorm``, for C = 128 and 1024.

Usage: ``python benchmarks/bench_llama.py [--quick] [--threads N]``
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"

import torch  # noqa: E402
import transformers  # noqa: E402
from _common import interleaved, write_table  # noqa: E402
from torch import nn  # noqa: E402

from transformer.fast_modern import FastModernLM  # noqa: E402
from transformer.gpt import DecoderOnlyTransformer, generate  # noqa: E402
from transformer.llama import config_from_llama, load_llama_state_dict  # noqa: E402
from transformer.modern import RMSNorm  # noqa: E402
from transformer.utils import seed_everything  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "llama.md"
VOCAB = 512
PROMPT_LEN, NEW = 16, 128


def hf_config() -> transformers.LlamaConfig:
    return transformers.LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=128,
        intermediate_size=344,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        bos_token_id=VOCAB - 1,
        eos_token_id=VOCAB - 1,
        pad_token_id=VOCAB - 1,
    )


def bench_generation(repeats: int) -> list[tuple[str, str, str]]:
    seed_everything(0)
    hf = transformers.LlamaForCausalLM(hf_config()).eval()
    ours = DecoderOnlyTransformer(config_from_llama(hf.config)).eval()
    load_llama_state_dict(ours, hf.state_dict())
    fast = FastModernLM(ours).eval()
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
                f"{NEW} tokens after {PROMPT_LEN}: ours (FastModernLM) "
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


def bench_norms(repeats: int) -> list[tuple[str, str, str]]:
    rows = []
    for C in (128, 1024):
        seed_everything(C)
        x = torch.randn(16 * 128, C, requires_grad=True)
        grad = torch.randn(16 * 128, C)
        norms = {
            "ours": RMSNorm(C),
            "torch_rms": nn.RMSNorm(C, eps=1e-6),
            "layer": nn.LayerNorm(C),
        }

        def fwd_bwd(
            norm: nn.Module, x: torch.Tensor = x, grad: torch.Tensor = grad
        ) -> None:
            x.grad = None
            norm.zero_grad(set_to_none=True)
            norm(x).backward(grad)

        fns = {k: (lambda n=n: fwd_bwd(n)) for k, n in norms.items()}
        med = interleaved(fns, repeats, inner=20)
        rows.append(
            (
                f"RMSNorm (ours) / LayerNorm time, C = {C}",
                f"{med['ours'] / med['layer']:.2f}",
                f"forward + backward of 2,048 x {C}: ours {med['ours'] * 1e6:.0f} us, "
                f"LayerNorm {med['layer'] * 1e6:.0f} us (below 1: RMSNorm is faster)",
            )
        )
        rows.append(
            (
                f"torch.nn.RMSNorm / LayerNorm time, C = {C}",
                f"{med['torch_rms'] / med['layer']:.2f}",
                f"torch.nn.RMSNorm {med['torch_rms'] * 1e6:.0f} us",
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
    rows = bench_generation(2 if args.quick else 7)
    print(*rows, sep="\n", flush=True)
    rows += bench_norms(3 if args.quick else 11)
    print(*rows[-4:], sep="\n", flush=True)
    write_table(
        args.out,
        "Modern decoder benchmarks (chapter 11)",
        rows,
        args.quick,
        time.perf_counter() - start,
    )


if __name__ == "__main__":
    sys.exit(main())
