"""Chapter 13's attentions by name, inside chapter 6's layer, and what they cost.

:data:`METHODS` names every implementation of :mod:`transformer.efficient`,
:mod:`transformer.sparse_attention` and :mod:`transformer.linear_attention`;
:func:`efficient_attention` calls one by name. :class:`EfficientSelfAttention`
is chapter 6's :class:`~transformer.multihead.MultiHeadAttention` (the same
projections, the same parameters) with the attention itself replaced, and
:func:`use_efficient_attention` swaps it into a built model, so chapter 8-10's
models train with any of them. :func:`peak_memory` and :func:`wall_time` measure
a call.

Shape letters: B batch, H heads, T length, D head size, C model size.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor, nn

from transformer.efficient import full_attention, fused_full_attention, tiled_attention
from transformer.linear_attention import (
    linear_attention,
    linear_attention_recurrent,
    linformer_attention,
    orthogonal_random_features,
    performer_attention,
)
from transformer.multihead import MultiHeadAttention
from transformer.sparse_attention import (
    dilated_attention,
    global_local_attention,
    sliding_window_attention,
)

__all__ = [
    "CAUSAL_METHODS",
    "EfficientSelfAttention",
    "METHODS",
    "efficient_attention",
    "peak_memory",
    "use_efficient_attention",
    "wall_time",
]

#: Every implementation, by name; each is ``fn(q, k, v, *, causal, key_mask, ...)``.
METHODS: dict[str, Callable[..., Tensor]] = {
    "full": full_attention,
    "fused": fused_full_attention,
    "tiled": tiled_attention,
    "window": sliding_window_attention,
    "dilated": dilated_attention,
    "global": global_local_attention,
    "linformer": linformer_attention,
    "linear": linear_attention,
    "linear_recurrent": linear_attention_recurrent,
    "performer": performer_attention,
}
#: The methods that can hide the future (all but Linformer).
CAUSAL_METHODS = tuple(name for name in METHODS if name != "linformer")


def efficient_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    method: str = "full",
    *,
    causal: bool = False,
    key_mask: Tensor | None = None,
    **options: Any,
) -> Tensor:
    """Attention by the implementation named ``method`` (a key of :data:`METHODS`).

    Args:
        q, k, v: queries, keys and values, split into heads.
        method: which implementation.
        causal: hide later positions (refused by Linformer).
        key_mask: bool padding mask over the keys, (B, S) or (B, 1, 1, S).
        options: the method's own arguments (``window``, ``proj_k``, ``features``...).

    Shape:
        q (B, H, T, D), k (B, H, S, D), v (B, H, S, Dv) -> (B, H, T, Dv).
    """
    if method not in METHODS:
        raise ValueError(
            f"unknown attention method {method!r}; choose from {list(METHODS)}"
        )
    if method == "linear_recurrent":
        if not causal:
            raise ValueError("the recurrent form of linear attention is causal only")
        return linear_attention_recurrent(q, k, v, key_mask=key_mask, **options)
    return METHODS[method](q, k, v, causal=causal, key_mask=key_mask, **options)


class EfficientSelfAttention(MultiHeadAttention):
    """Chapter 6's multi-head self-attention with the attention itself swapped.

    The four projections are those of :class:`~transformer.multihead.MultiHeadAttention`
    (same names, so a state dict loads either way); only the step from (q, k, v)
    to the output goes through :func:`efficient_attention`. Linformer's length
    projections (``proj_len`` x ``max_len``, one pair shared by the heads) and
    Performer's random features (a buffer, drawn once) belong to the layer.

    Args:
        d_model, n_heads, bias: as :class:`~transformer.multihead.MultiHeadAttention`.
        method: a key of :data:`METHODS`.
        max_len: the longest sequence (Linformer's projections need it).
        proj_len: Linformer's K.
        n_features: Performer's M.
        options: passed to the method (``window``, ``dilation``, ``n_global``...).

    Shape:
        forward: query (B, T, C), mask None or a key padding mask (B, 1, 1, T)
        -> output (B, T, C), None.
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        method: str,
        *,
        bias: bool = True,
        max_len: int | None = None,
        proj_len: int = 32,
        n_features: int = 64,
        **options: Any,
    ) -> None:
        super().__init__(d_model, n_heads, dropout=0.0, bias=bias)
        if method not in METHODS or method == "linear_recurrent":
            raise ValueError(
                f"unknown layer method {method!r}; choose from {list(METHODS)}"
            )
        self.method, self.options = method, options
        if method == "linformer":
            if max_len is None:
                raise ValueError("Linformer's projections need max_len (the longest T)")
            self.proj_k = nn.Parameter(torch.randn(proj_len, max_len) / proj_len**0.5)
            self.proj_v = nn.Parameter(torch.randn(proj_len, max_len) / proj_len**0.5)
        if method == "performer":
            features = orthogonal_random_features(n_features, self.head_dim)
            self.register_buffer("features", features, persistent=False)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, method={self.method!r}, options={self.options}"

    def forward(
        self,
        query: Tensor,
        key: Tensor | None = None,
        value: Tensor | None = None,
        mask: Tensor | None = None,
        *,
        is_causal: bool = False,
        need_weights: bool = False,
        **unsupported: Any,
    ) -> tuple[Tensor, None]:
        """Self-attention over ``query`` (B, T, C); returns ``(output, None)``."""
        if key is not None or value is not None:
            raise ValueError("EfficientSelfAttention is self-attention: pass key=None")
        # chapter 8's layers pass these; without positional hooks q_pos means nothing
        unsupported.pop("average_weights", None)
        unsupported.pop("q_pos", None)
        used = [name for name, val in unsupported.items() if val is not None]
        if need_weights or used:
            raise ValueError(
                f"{self.method} attention keeps no weights, caches or positional hooks "
                f"(got {used or 'need_weights'}); use chapter 6's MultiHeadAttention"
            )
        self._check_inputs(query, None, None)
        B, T, _ = query.shape
        q = self._split_heads(self.q_proj(query))  # (B, H, T, D)
        k = self._split_heads(self.k_proj(query))
        v = self._split_heads(self.v_proj(query))
        options = dict(self.options)
        if self.method == "linformer":
            options.update(proj_k=self.proj_k, proj_v=self.proj_v)
        if self.method == "performer":
            options["features"] = self.features
        out = efficient_attention(
            q, k, v, self.method, causal=is_causal, key_mask=mask, **options
        )  # (B, H, T, D)
        out = out.transpose(1, 2).reshape(B, T, self.d_model)  # (B, T, C)
        return self.out_proj(out), None


def use_efficient_attention(
    model: nn.Module, method: str, *, max_len: int | None = None, **options: Any
) -> nn.Module:
    """Replace every self-attention of ``model`` by :class:`EfficientSelfAttention`.

    Walks the modules that hold a ``self_attn`` (chapter 8's layers), keeps their
    projection weights, and returns the model (changed in place).
    """
    swapped = 0
    for module in model.modules():
        old = getattr(module, "self_attn", None)
        if not isinstance(old, MultiHeadAttention) or isinstance(
            old, EfficientSelfAttention
        ):
            continue
        if old.kdim != old.d_model or old.vdim != old.d_model:
            raise ValueError("only self-attention layers can be swapped")
        new = EfficientSelfAttention(
            old.d_model,
            old.n_heads,
            method,
            bias=old.q_proj.bias is not None,
            max_len=max_len,
            **options,
        )
        new.load_state_dict(old.state_dict(), strict=False)
        module.self_attn = new.to(old.q_proj.weight.device)
        swapped += 1
    if swapped == 0:
        raise ValueError(
            "the model has no chapter 6 self-attention (self_attn) to swap"
        )
    return model


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence file descriptor 2: the profiler's C++ side logs every start and stop."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def peak_memory(fn: Callable[[], Any]) -> int:
    """Peak bytes allocated during ``fn()``, measured, beyond what existed before.

    On CUDA: ``torch.cuda.max_memory_allocated``. On a CPU: PyTorch's profiler
    with ``profile_memory=True`` records every allocation and free with the
    allocator's running total; the peak of that total, less its value at the
    start, is the memory the call needed at its worst moment (its result
    included).
    """
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - before
    from torch.profiler import ProfilerActivity, profile

    with (
        _quiet_stderr(),
        profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof,
    ):
        fn()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "trace.json")
        prof.export_chrome_trace(path)
        with open(path) as f:
            events = json.load(f)["traceEvents"]
    memory = [e["args"] for e in events if e.get("name") == "[memory]"]
    memory = [a for a in memory if a.get("Device Type", 0) == 0]  # the CPU's
    if not memory:
        return 0
    start = memory[0]["Total Allocated"] - memory[0]["Bytes"]
    return max(a["Total Allocated"] for a in memory) - start


def wall_time(fn: Callable[[], Any], repeats: int = 3) -> float:
    """Median seconds of ``repeats`` calls of ``fn`` (after one untimed warm-up)."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)
