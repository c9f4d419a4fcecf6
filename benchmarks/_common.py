"""What the Hugging Face comparisons (``bench_gpt.py``, ``bench_llama.py``) share:
interleaved timing and the results table."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
import transformers


def interleaved(fns: dict[str, Callable[[], object]], repeats: int, inner: int = 1):
    """Median seconds per call of each function, the functions taking turns."""
    for fn in fns.values():
        fn()  # warm-up
    samples: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t = time.perf_counter()
            for _ in range(inner):
                fn()
            samples[name].append((time.perf_counter() - t) / inner)
    return {k: statistics.median(v) for k, v in samples.items()}


def write_table(
    out: Path, title: str, rows: list[tuple[str, str, str]], quick: bool, seconds: float
) -> None:
    """Write ``rows`` (measurement, value, notes) under ``title`` and the run's
    setup."""
    threads = torch.get_num_threads()
    lines = [
        f"# {title}",
        "",
        f"torch {torch.__version__}, transformers {transformers.__version__}, "
        f"{threads} thread{'s' if threads != 1 else ''}, "
        f"{platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs visible; {'quick' if quick else 'full'} run, "
        f"{seconds:.0f} s in all. Ratios come from interleaved runs in "
        "one process (medians); absolute numbers depend on machine load.",
        "",
        "| measurement | value | notes |",
        "|---|---|---|",
        *[f"| {a} | {b} | {c} |" for a, b, c in rows],
        "",
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".md.tmp")
    tmp.write_text("\n".join(lines))
    os.replace(tmp, out)
    print(f"wrote {out}")
