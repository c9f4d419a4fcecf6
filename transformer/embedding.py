"""Token embeddings and the input checks every Transformer of the book shares (chapter
9).

:class:`TokenEmbedding` maps ids to vectors scaled by sqrt(C), as Vaswani et al.
(2017, section 3.4) do; :func:`check_ids` refuses ids a model cannot read with a
message that says why; :func:`has_attention_hooks` tells whether a positional
scheme must be called inside attention.

Shape letters: B batch, T length, C model size (d_model).
"""

from __future__ import annotations

import math
from typing import cast

import torch
from torch import Tensor, nn

from transformer.positional import PositionalScheme

__all__ = ["TokenEmbedding", "check_ids", "has_attention_hooks"]


def check_ids(
    ids: Tensor, name: str, vocab_size: int, device: torch.device | None = None
) -> None:
    """Refuse what is not a (B, length) long tensor of ids below ``vocab_size``.

    With ``device``, the ids must also be there (the model's device).
    """
    if not isinstance(ids, Tensor):
        raise TypeError(
            f"{name} must be a torch.Tensor of token ids, got {type(ids).__name__}"
        )
    if ids.dim() != 2:
        raise ValueError(f"{name} must have shape (B, length), got {tuple(ids.shape)}")
    if ids.dtype != torch.long:
        raise TypeError(f"{name} must hold token ids as torch.long, got {ids.dtype}")
    if device is not None and ids.device != device:
        raise ValueError(
            f"{name} is on {ids.device} but the model is on {device}; "
            f"move it with {name}.to('{device}')"
        )
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= vocab_size):
        raise ValueError(
            f"{name} holds ids in [{int(ids.min())}, {int(ids.max())}] but the "
            f"vocabulary has {vocab_size} entries (ids 0..{vocab_size - 1})"
        )


class TokenEmbedding(nn.Module):
    """Token embedding scaled by sqrt(C), as in the paper (section 3.4).

    The weights start at N(0, 1/C), so after the sqrt(C) scaling every coordinate
    has unit scale, the same as a sinusoidal position code. (PyTorch's default
    N(0, 1) times sqrt(C) would be sqrt(C) times larger and drown the positions.)

    Shape:
        ids: (B, T) long -> (B, T, C)
    """

    def __init__(self, vocab_size: int, d_model: int, pad_id: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, d_model, padding_idx=pad_id)
        self.scale = math.sqrt(d_model)
        nn.init.normal_(self.embedding.weight, mean=0.0, std=d_model**-0.5)
        with torch.no_grad():
            self.embedding.weight[pad_id].zero_()

    @property
    def weight(self) -> nn.Parameter:
        return cast(nn.Parameter, self.embedding.weight)  # typed as a Tensor by torch

    def unscaled_(self, std: float = 0.02) -> TokenEmbedding:
        """No sqrt(C) scaling, weights redrawn at ``std`` (GPT-2's and BERT's
        choice)."""
        self.scale = 1.0
        nn.init.normal_(self.weight, std=std)
        return self

    def forward(self, ids: Tensor) -> Tensor:
        return self.embedding(ids) * self.scale  # (B, T, C)


def has_attention_hooks(positional: PositionalScheme) -> bool:
    """Whether attention must call the scheme's hooks (not for purely additive
    schemes)."""
    cls = type(positional)
    overrides = (
        cls.rotate is not PositionalScheme.rotate
        or cls.score_bias is not PositionalScheme.score_bias
    )
    return overrides
