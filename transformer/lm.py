"""Language-modelling data and metrics: the plumbing of chapter 10.

A language model assigns a probability to every next token given the tokens
before it. Training it needs three things this module provides:

* **text split by document**, so that validation text was never seen, not
  even as the second half of a paragraph whose first half was trained on
  (:func:`documents`, :func:`split_documents`);
* **shifted targets**: the target at position ``t`` is the input at ``t + 1``,
  so one forward pass under a causal mask trains every position at once
  (teacher forcing in parallel; :func:`shifted_targets`, :func:`lm_batches`,
  :func:`iter_eval_blocks`);
* **metrics** that can be compared across tokenizers: cross-entropy in nats
  per token, perplexity, and bits per character (:func:`lm_loss`,
  :func:`perplexity`, :func:`bits_per_char`).

Shape letters: B batch, T block (context) length, V vocabulary size, N the
length of a whole token stream.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F

Document = tuple[str, str]


def documents() -> list[Document]:
    """The book's language-modelling corpus as ``(name, text)`` documents.

    The help topics that ship with every Python (``pydoc_data.topics``): 79
    documents on Python 3.11, about 465,000 characters of technical English,
    one per topic, in sorted topic order. Each text is stripped and runs of
    blank lines are collapsed to one blank line, as in
    ``transformer.data.text_corpus``, whose text is these documents joined by
    a blank line.
    """
    from pydoc_data.topics import topics

    docs = []
    for name in sorted(topics):
        text = topics[name].strip()
        while "\n\n\n" in text:
            text = text.replace("\n\n\n", "\n\n")
        docs.append((name, text))
    return docs


def split_documents(
    docs: Sequence[Document], valid_fraction: float = 0.1, seed: int = 0
) -> tuple[list[Document], list[Document]]:
    """Split documents into training and validation sets, whole documents apart.

    ``round(valid_fraction * len(docs))`` documents (at least one) are drawn
    at random for validation; the rest are for training. Both lists keep the
    original order. With the 79 Python help topics and the defaults that is
    71 training and 8 validation documents. The split depends only on
    ``seed`` and the number of documents.

    Args:
        docs: ``(name, text)`` pairs, e.g. from :func:`documents`.
        valid_fraction: share of documents (not characters) for validation,
            strictly between 0 and 1.
        seed: seeds the draw; the same seed gives the same split.

    Raises:
        ValueError: fewer than two documents, or a fraction outside (0, 1).
    """
    if not 0.0 < valid_fraction < 1.0:
        raise ValueError(f"valid_fraction must be in (0, 1), got {valid_fraction}")
    if len(docs) < 2:
        raise ValueError(f"need at least two documents to split, got {len(docs)}")
    n_valid = min(len(docs) - 1, max(1, round(valid_fraction * len(docs))))
    chosen = set(random.Random(seed).sample(range(len(docs)), n_valid))
    train = [d for i, d in enumerate(docs) if i not in chosen]
    valid = [d for i, d in enumerate(docs) if i in chosen]
    return train, valid


def shifted_targets(ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and next-token targets of a token sequence.

    ``inputs = ids[..., :-1]`` and ``targets = ids[..., 1:]``: the model reads
    tokens ``0 .. T-1`` and must predict tokens ``1 .. T``, so position ``t``
    of the output is scored against the token that follows position ``t``.

    Shape:
        ids: (..., T + 1) -> inputs, targets: (..., T)

    Raises:
        ValueError: fewer than two tokens along the last dimension.
    """
    if ids.dim() == 0 or ids.shape[-1] < 2:
        shape = tuple(ids.shape)
        raise ValueError(f"need at least 2 tokens to shift, got shape {shape}")
    return ids[..., :-1], ids[..., 1:]


def _check_stream(ids: torch.Tensor, block_size: int) -> None:
    if ids.dim() != 1:
        raise ValueError(f"expected a 1-D token stream, got shape {tuple(ids.shape)}")
    if block_size < 1:
        raise ValueError(f"block_size must be >= 1, got {block_size}")
    if ids.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
        raise ValueError(f"token ids must be an integer tensor, got {ids.dtype}")


def lm_batches(
    ids: torch.Tensor,
    block_size: int,
    batch_size: int,
    generator: torch.Generator | None = None,
    n_batches: int | None = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Random training windows of a token stream with their shifted targets.

    Each batch holds ``batch_size`` windows of ``block_size + 1`` consecutive
    tokens starting at uniformly random offsets, split by
    :func:`shifted_targets`. Windows may overlap and cross document
    boundaries; a model trained this way sees every offset, not only those
    at multiples of ``block_size``.

    Args:
        ids: the training text as one stream of token ids.
        block_size: context length T.
        batch_size: windows per batch B.
        generator: seeds the offsets (a fixed generator gives fixed batches).
        n_batches: stop after this many batches; ``None`` runs forever.

    Shape:
        ids: (N,) -> yields inputs (B, T) and targets (B, T), ``int64``

    Raises:
        ValueError: the stream is shorter than ``block_size + 1`` tokens.
    """
    _check_stream(ids, block_size)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n_starts = ids.numel() - block_size  # a window needs block_size + 1 tokens
    if n_starts < 1:
        raise ValueError(
            f"a stream of {ids.numel()} tokens is too short for block_size "
            f"{block_size}: it needs at least {block_size + 1}"
        )
    offsets = torch.arange(block_size + 1)  # (T + 1,)
    done = 0
    while n_batches is None or done < n_batches:
        starts = torch.randint(n_starts, (batch_size,), generator=generator)  # (B,)
        windows = ids[starts[:, None] + offsets].long()  # (B, T + 1)
        yield shifted_targets(windows)  # (B, T), (B, T)
        done += 1


def iter_eval_blocks(
    ids: torch.Tensor, block_size: int, batch_size: int = 1
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Deterministic, non-overlapping evaluation windows covering a stream.

    Window ``j`` has inputs ``ids[jT : jT + T]`` and targets one token later,
    so every token after the first is a target exactly once and the summed
    loss over all blocks is the loss of the whole stream (with the context
    restarting at every block: the first predictions of a block see less
    context than the model could use). The last window may be shorter; it
    comes alone, after the full windows, which come ``batch_size`` at a time.

    Args:
        ids: the evaluation text as one stream of token ids.
        block_size: context length T.
        batch_size: full windows per yielded batch.

    Shape:
        ids: (N,) -> yields inputs (B, T) and targets (B, T), with B <=
        ``batch_size``; a final partial window is (1, T') with T' < T.

    Raises:
        ValueError: fewer than two tokens, or a non-positive size.
    """
    _check_stream(ids, block_size)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n_targets = ids.numel() - 1
    if n_targets < 1:
        raise ValueError(f"need at least 2 tokens to evaluate, got {ids.numel()}")
    n_full = n_targets // block_size
    offsets = torch.arange(block_size + 1)  # (T + 1,)
    for first in range(0, n_full, batch_size):
        starts = torch.arange(first, min(first + batch_size, n_full)) * block_size
        yield shifted_targets(ids[starts[:, None] + offsets].long())  # (B, T) twice
    rest = n_targets - n_full * block_size
    if rest:
        tail = ids[n_full * block_size :].long()[None, :]  # (1, T' + 1)
        yield shifted_targets(tail)  # (1, T'), (1, T')


def lm_loss(
    logits: torch.Tensor, targets: torch.Tensor, ignore_index: int | None = None
) -> torch.Tensor:
    """Mean next-token cross-entropy, in nats per predicted token.

    ``-log p(target)`` averaged over every position whose target is not
    ``ignore_index`` (e.g. padding). Minimising it is maximum likelihood.

    Args:
        logits: unnormalised scores over the vocabulary at every position.
        targets: the next token at every position.
        ignore_index: a target id that is not scored; ``None`` scores all.

    Shape:
        logits: (B, T, V) (or any (..., V)), targets: (B, T) -> scalar

    Raises:
        ValueError: shapes that do not match, non-float logits, targets out
            of range, or nothing left to score.
    """
    if not logits.is_floating_point():
        raise ValueError(f"logits must be floating point, got {logits.dtype}")
    if logits.dim() < 2 or logits.shape[:-1] != targets.shape:
        raise ValueError(
            f"logits {tuple(logits.shape)} must be targets {tuple(targets.shape)} "
            "plus a vocabulary dimension"
        )
    vocab = logits.shape[-1]
    flat_logits = logits.reshape(-1, vocab)  # (B*T, V)
    flat_targets = targets.reshape(-1).long()  # (B*T,)
    scored = flat_targets
    if ignore_index is not None:
        scored = flat_targets[flat_targets != ignore_index]
    if scored.numel() == 0:
        raise ValueError("no target left to score: every target equals ignore_index")
    if scored.min() < 0 or scored.max() >= vocab:
        low, high = int(scored.min()), int(scored.max())
        raise ValueError(f"targets must lie in [0, {vocab}), got {low}..{high}")
    # -100 is PyTorch's default ignore_index; no valid target equals it
    ignore = -100 if ignore_index is None else ignore_index
    return F.cross_entropy(flat_logits, flat_targets, ignore_index=ignore)


def perplexity(mean_nll_nats: float | torch.Tensor) -> float:
    """Perplexity ``exp(mean cross-entropy in nats)``.

    The size of a uniform choice that is as uncertain as the model: a model
    that spreads its probability evenly over V tokens has cross-entropy
    ``log V`` and perplexity V. Perplexities are comparable only between
    models with the same tokens.
    """
    value = float(mean_nll_nats)
    if value < 0 or math.isnan(value):
        raise ValueError(f"a mean negative log-likelihood is >= 0, got {value}")
    return math.exp(value)


def bits_per_char(total_nll_nats: float | torch.Tensor, n_chars: int) -> float:
    """Bits per character: a measure that does not depend on the tokenizer.

    The total negative log-likelihood of a text, converted from nats to bits
    and divided by its number of characters::

        bpc = total_nll_nats / (n_chars * ln 2)
            = mean_nll_per_token * n_tokens / (n_chars * ln 2)

    For a character model ``n_tokens == n_chars`` and bpc is the loss per
    token over ``ln 2``. A BPE model makes fewer, harder predictions: its loss
    per token is larger, but multiplied by tokens per character it becomes
    the same unit. A uniform model over 256 bytes, on ASCII text (one byte
    per character), scores exactly 8 bits per character.

    Args:
        total_nll_nats: ``-sum log p`` over every predicted token of the text.
        n_chars: characters in the same text.
    """
    if n_chars < 1:
        raise ValueError(f"n_chars must be >= 1, got {n_chars}")
    total = float(total_nll_nats)
    if total < 0 or math.isnan(total):
        raise ValueError(f"a total negative log-likelihood is >= 0, got {total}")
    return total / (n_chars * math.log(2))
