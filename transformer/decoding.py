"""Turning a trained sequence-to-sequence model into output sequences.

At inference time there is no target to feed the decoder, so it must write the
output one token at a time, feeding each prediction back in as the next input
(Sutskever et al., 2014). Every decoder in this package exposes the same two
methods for this, so one decoding function serves every model of the book:

- ``state = model.start(src)`` reads the source once (the encoder);
- ``logits, state = model.step(prev_tokens, state)`` predicts the next token
  from the previous one and the running state.

Shape letters: B batch, S source length, L generated length, V vocabulary.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from transformer.data import Vocab

__all__ = ["decode_defaults", "greedy_decode"]


def _check_decode_args(src: torch.Tensor, max_len: int, ids: dict[str, int]) -> None:
    if not isinstance(src, torch.Tensor):
        raise TypeError(
            f"src must be a torch.Tensor of token ids, got {type(src).__name__}"
        )
    if src.dim() != 2:
        raise ValueError(
            "src must have shape (B, S) (a batch of id sequences), got shape "
            f"{tuple(src.shape)}"
        )
    if src.dtype != torch.long:
        raise TypeError(f"src must hold token ids as torch.long, got {src.dtype}")
    if src.shape[0] == 0:
        raise ValueError("src is an empty batch (0 rows): there is nothing to decode")
    if isinstance(max_len, bool) or not isinstance(max_len, int) or max_len < 1:
        raise ValueError(f"max_len must be a positive int, got {max_len!r}")
    for name, value in ids.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(
                f"{name} must be a non-negative int token id, got {value!r}"
            )


def _output_vocab_size(model: nn.Module) -> int | None:
    """The size of the model's output vocabulary, if it says."""
    config = getattr(model, "config", None)
    for owner, name in (
        (config, "tgt_vocab_size"),
        (config, "vocab_size"),
        (model, "tgt_vocab_size"),
    ):
        size = getattr(owner, name, None)
        if isinstance(size, int):
            return size
    return None


def decode_defaults(
    model: nn.Module,
    src: torch.Tensor,
    max_len: int | None,
    bos_id: int | None,
    eos_id: int | None,
    pad_id: int | None,
) -> tuple[int, int, int, int]:
    """Fill in what the caller left out, from the model, and check it.

    The special ids default to the model's ``bos_id``/``eos_id``/``pad_id`` (every
    :class:`~transformer.data.Vocab` uses 1, 2 and 0). ``max_len`` defaults to the
    model's ``config.max_len`` if it has one, else twice the source length plus 10.

    Returns:
        ``(max_len, bos_id, eos_id, pad_id)``.
    """
    fixed = {"bos_id": Vocab.bos_id, "eos_id": Vocab.eos_id, "pad_id": Vocab.pad_id}
    given = {"bos_id": bos_id, "eos_id": eos_id, "pad_id": pad_id}
    ids = {k: getattr(model, k, fixed[k]) if v is None else v for k, v in given.items()}
    if max_len is None:
        limit = getattr(getattr(model, "config", None), "max_len", None)
        width = src.shape[1] if isinstance(src, torch.Tensor) and src.dim() == 2 else 0
        max_len = limit if isinstance(limit, int) else 2 * width + 10
    _check_decode_args(src, max_len, ids)
    size = _output_vocab_size(model)
    for name, value in ids.items():
        if size is not None and value >= size:
            raise ValueError(
                f"{name}={value} is not an id of the model's output vocabulary "
                f"({size} entries, ids 0..{size - 1})"
            )
    return max_len, ids["bos_id"], ids["eos_id"], ids["pad_id"]


@torch.no_grad()
def greedy_decode(
    model: nn.Module,
    src: torch.Tensor,
    max_len: int | None = None,
    bos_id: int | None = None,
    eos_id: int | None = None,
    pad_id: int | None = None,
) -> torch.Tensor:
    """Decode a batch greedily: at every step emit the single most likely token.

    Each row stops on its own when it emits ``eos_id``; from then on it receives
    ``pad_id``. The loop ends early as soon as every row has finished, so the
    result can be shorter than ``max_len``. The model is put in evaluation mode
    (no dropout) while decoding and given back in the mode it had.

    Greedy decoding is the simplest search: it commits to each token and never
    revisits a choice, so one early mistake is fed back in and can derail the
    rest of the sequence. Beam search (chapter 9) keeps several candidates.

    Args:
        model: a sequence-to-sequence model with ``start(src) -> state`` and
            ``step(prev (B,) long, state) -> (logits (B, V), state)``.
        src: source token ids, padded with the model's source padding id.
        max_len: the most tokens to generate per row (the end-of-sequence token
            included); default: see :func:`decode_defaults`.
        bos_id: the beginning-of-sequence id fed as the first decoder input.
        eos_id: the end-of-sequence id; it is kept in the output.
        pad_id: the id written after a row's end-of-sequence token. The three ids
            default to the model's (``model.bos_id``, ...) or the
            :class:`~transformer.data.Vocab` layout.

    Returns:
        Generated ids, the eos token kept and pad after it.

    Shape:
        src: (B, S) long -> returns (B, L) long with 1 <= L <= max_len.
    """
    max_len, bos_id, eos_id, pad_id = decode_defaults(
        model, src, max_len, bos_id, eos_id, pad_id
    )
    was_training = model.training
    model.eval()
    # start and step: the decoding protocol, beyond nn.Module's types
    seq2seq: Any = model
    try:
        state: Any = seq2seq.start(src)
        batch = src.size(0)
        prev = torch.full((batch,), bos_id, dtype=torch.long, device=src.device)  # (B,)
        finished = torch.zeros(batch, dtype=torch.bool, device=src.device)  # (B,)
        generated: list[torch.Tensor] = []
        for _ in range(max_len):
            logits, state = seq2seq.step(prev, state)  # (B, V)
            if logits.dim() != 2 or logits.size(0) != batch:
                raise ValueError(
                    f"model.step must return logits of shape (B, V) = ({batch}, V), "
                    f"got {tuple(logits.shape)}"
                )
            token = logits.argmax(dim=-1)  # (B,)
            # A finished row keeps writing padding, whatever the model says.
            token = token.masked_fill(finished, pad_id)
            generated.append(token)
            finished = finished | (token == eos_id)
            if bool(finished.all()):  # one sync per step buys the early stop
                break
            prev = token
        return torch.stack(generated, dim=1)  # (B, L)
    finally:
        model.train(was_training)


# --------------------------------------------------------------------------------------
# Chapter 9: key/value cache switch and beam search
# --------------------------------------------------------------------------------------
