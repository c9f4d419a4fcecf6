"""The key/value cache of incremental decoding (chapter 9).

At generation time a decoder produces one token per step. Without a cache every
step re-runs attention over the whole prefix, recomputing keys and values it has
computed before: O(T^2) projections for T tokens. A cache keeps each layer's keys
and values, so a step projects only the newest position and attends over what is
stored: O(T) work per step, O(T^2) attention scores over a whole sequence instead
of O(T^3).

Shape letters: B batch, H heads, S cached positions, D head size.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "KVCache",
]


class KVCache:
    """Keys and values kept between decoding steps, so each step projects only new
    tokens.

    * A growing cache (``static=False``, self-attention in a decoder): every call of
      :class:`~transformer.multihead.MultiHeadAttention` appends the keys and values of
      the new tokens and attends over everything cached so far.
    * A static cache (``static=True``, cross-attention): the encoder memory is
      projected into keys and values on the first call and reused afterwards.

    A growing cache writes into preallocated storage whose capacity doubles when it
    fills up (as a Python list does), so appending one position copies one position,
    not the whole history: ``torch.cat`` at every step would copy O(T) values per step
    and O(T^2) over a sequence.

    Attributes:
        k, v: cached projected keys and values, or ``None`` before the first call
            (for a growing cache, views of the filled part of the storage).
        capacity: positions the storage holds before it must grow.

    Shape:
        k, v: (B, H, S, D) with S the number of cached positions.
    """

    def __init__(self, static: bool = False) -> None:
        self.static = static
        self._k: Tensor | None = None  # (B, H, capacity, D)
        self._v: Tensor | None = None
        self._len = 0

    @property
    def k(self) -> Tensor | None:
        return None if self._k is None else self._k[:, :, : self._len]

    @k.setter
    def k(self, value: Tensor | None) -> None:
        self._k = value
        self._len = 0 if value is None else value.shape[-2]

    @property
    def v(self) -> Tensor | None:
        return None if self._v is None else self._v[:, :, : self._len]

    @v.setter
    def v(self, value: Tensor | None) -> None:
        self._v = value

    @property
    def capacity(self) -> int:
        return 0 if self._k is None else self._k.shape[-2]

    def __len__(self) -> int:
        return self._len

    def __repr__(self) -> str:
        kind = "static" if self.static else "growing"
        k = self.k
        shape = None if k is None else tuple(k.shape)
        return f"KVCache({kind}, k={shape})"

    @property
    def is_empty(self) -> bool:
        return self._k is None

    def append(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Add new keys/values (B, H, S_new, D) and return all of them (B, H, S, D).

        When autograd records the new keys or values (training through a cache, e.g.
        a loss over several cached steps), the cache concatenates instead of writing
        in place, so backward sees every step's tensors unchanged: the same numbers
        as ``torch.cat``, at ``torch.cat``'s cost. Inference writes in place.
        """
        n = k.shape[2]
        if torch.is_grad_enabled() and (k.requires_grad or v.requires_grad):
            return self._append_for_autograd(k, v)
        if self._k is None or self._v is None:
            self._k = k.new_empty(k.shape[0], k.shape[1], max(16, 2 * n), k.shape[3])
            self._v = v.new_empty(v.shape[0], v.shape[1], max(16, 2 * n), v.shape[3])
        elif k.shape[:2] != self._k.shape[:2] or k.shape[3] != self._k.shape[3]:
            raise ValueError(
                f"new keys {tuple(k.shape)} do not match the cached "
                f"{tuple(self._k.shape)} in batch, heads or head size"
            )
        start, end = self._len, self._len + n
        if end > self._k.shape[2]:  # full: move to storage twice as large
            self._k = self._grown(self._k, end)
            self._v = self._grown(self._v, end)
        self._k.narrow(2, start, n).copy_(k)
        self._v.narrow(2, start, n).copy_(v)
        self._len = end
        return self._k.narrow(2, 0, end), self._v.narrow(2, 0, end)  # (B, H, S, D)

    def _append_for_autograd(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        if self._k is not None and self._v is not None:
            if k.shape[:2] != self._k.shape[:2] or k.shape[3] != self._k.shape[3]:
                raise ValueError(
                    f"new keys {tuple(k.shape)} do not match the cached "
                    f"{tuple(self._k.shape)} in batch, heads or head size"
                )
            k = torch.cat([self._k.narrow(2, 0, self._len), k], dim=2)  # (B, H, S, D)
            v = torch.cat([self._v.narrow(2, 0, self._len), v], dim=2)
        # exactly full: next append grows
        self._k, self._v, self._len = k, v, k.shape[2]
        return k, v

    def _grown(self, storage: Tensor, needed: int) -> Tensor:
        B, H, capacity, D = storage.shape
        grown = storage.new_empty(B, H, max(needed, 2 * capacity), D)
        grown.narrow(2, 0, self._len).copy_(storage.narrow(2, 0, self._len))
        return grown

    def reorder(self, index: Tensor) -> None:
        """Keep batch rows ``index`` (B',) long, in place (see :meth:`select`)."""
        picked = self.select(index)
        self._k, self._v = picked._k, picked._v

    def select(self, index: Tensor) -> KVCache:
        """A new cache holding rows ``index`` (B',) of this one, which is left
        untouched."""
        new = KVCache(static=self.static)
        if self._k is not None and self._v is not None:
            new._k = self._k.index_select(0, index)  # (B', H, capacity, D)
            new._v = self._v.index_select(0, index)
            new._len = self._len
        return new

    def reset(self) -> None:
        self._k = self._v = None
        self._len = 0
