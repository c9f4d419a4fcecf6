"""Masked-token pretraining: how a bidirectional model learns (chapter 12).

A causal model learns by predicting the next token: it cannot see it. A model
that sees every position cannot be asked that question, since the answer is in
its input. BERT (Devlin et al., 2019) hides the answer instead: about 15% of the
tokens are chosen, and the model must recover each chosen token from the rest.
Of the chosen tokens,

* 80% are replaced by ``[MASK]``,
* 10% by a random ordinary token,
* 10% are left unchanged,

so that the model cannot rely on ``[MASK]`` marking the positions that count
(fine-tuning inputs have no ``[MASK]``), and must keep a good representation of
every token, even one that looks normal. The loss is the cross-entropy at the
chosen positions only.

:func:`mask_tokens` draws the masks; :class:`EncoderTokenizer` adds ``[PAD]``,
``[CLS]``, ``[SEP]`` and ``[MASK]`` to chapter 10's byte-pair tokenizer;
:class:`MaskedLMBatches` and :class:`MaskedLM` let the book's
:func:`~transformer.training.train` run the pretraining unchanged: a batch's
``src`` is the masked ids, ``tgt_in`` the attention mask and ``tgt_out`` the
labels, with ``pad_id`` where there is nothing to predict.

Shape letters: B batch, T length, V vocabulary.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from transformer.bert import EncoderOnlyTransformer
from transformer.bpe import BPETokenizer

__all__ = [
    "EncoderBatch",
    "EncoderTokenizer",
    "MaskedLM",
    "MaskedLMBatches",
    "mask_tokens",
]


def mask_tokens(
    ids: Tensor,
    *,
    mask_id: int,
    n_ordinary: int,
    special_ids: Sequence[int] = (),
    ignore_id: int,
    p: float = 0.15,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """BERT's masking: choose tokens with probability ``p``, then the 80/10/10 rule.

    Args:
        ids: the token ids.
        mask_id: the ``[MASK]`` id.
        n_ordinary: random replacements are drawn from ids ``0 .. n_ordinary - 1``
            (the ordinary tokens, not the special ones).
        special_ids: ids never chosen (padding, ``[CLS]``, ``[SEP]``).
        ignore_id: the label of a position that is not chosen.
        p: the probability that an ordinary token is chosen.
        generator: a ``torch.Generator`` for reproducible masks.

    Returns:
        ``(inputs, labels)``: the corrupted ids, and the original id at each chosen
        position with ``ignore_id`` elsewhere.

    Shape:
        ids: (B, T) long -> inputs (B, T), labels (B, T).
    """
    if not isinstance(ids, Tensor) or ids.dtype != torch.long:
        raise TypeError("ids must be a torch.long tensor of token ids")
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1), got {p}")
    if n_ordinary < 1:
        raise ValueError(f"n_ordinary must be positive, got {n_ordinary}")
    maskable = torch.ones_like(ids, dtype=torch.bool)
    for s in special_ids:
        maskable &= ids != s
    device = ids.device
    chosen = (torch.rand(ids.shape, generator=generator, device=device) < p) & maskable
    u = torch.rand(ids.shape, generator=generator, device=device)  # which of 80/10/10
    random_ids = torch.randint(
        n_ordinary, ids.shape, generator=generator, device=device
    )
    inputs = torch.where(chosen & (u < 0.8), torch.full_like(ids, mask_id), ids)
    inputs = torch.where(chosen & (u >= 0.8) & (u < 0.9), random_ids, inputs)
    labels = torch.where(chosen, ids, torch.full_like(ids, ignore_id))
    return inputs, labels


class EncoderTokenizer:
    """A byte-pair tokenizer with BERT's four special tokens after its own ids.

    Args:
        bpe: a trained :class:`~transformer.bpe.BPETokenizer` (chapter 10); its ids
            ``0 .. n - 1`` are the ordinary tokens, and ``[PAD]``, ``[CLS]``,
            ``[SEP]``, ``[MASK]`` get ``n .. n + 3``.
    """

    def __init__(self, bpe: BPETokenizer) -> None:
        self.bpe = bpe
        self.n_ordinary = bpe.vocab_size
        self.pad_id, self.cls_id, self.sep_id, self.mask_id = range(
            self.n_ordinary, self.n_ordinary + 4
        )
        self.vocab_size = self.n_ordinary + 4

    @property
    def special_ids(self) -> tuple[int, int, int]:
        """The ids masking never chooses: ``[PAD]``, ``[CLS]``, ``[SEP]``."""
        return (self.pad_id, self.cls_id, self.sep_id)

    def encode(self, text: str, max_len: int) -> list[int]:
        """``[CLS] tokens [SEP]``, the tokens cut so that the whole fits ``max_len``."""
        if max_len < 3:
            raise ValueError(
                f"max_len must leave room for [CLS], a token and [SEP], got {max_len}"
            )
        return [self.cls_id, *self.bpe.encode(text)[: max_len - 2], self.sep_id]

    def pad(self, rows: Sequence[Sequence[int]]) -> tuple[Tensor, Tensor]:
        """Pad rows to one length: ``(ids (B, T), attention_mask (B, T) bool)``."""
        if not rows:
            raise ValueError("nothing to pad: no rows")
        T = max(len(r) for r in rows)
        ids = torch.full((len(rows), T), self.pad_id, dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        return ids, ids != self.pad_id

    def decode(self, ids: Sequence[int] | Tensor) -> str:
        """Text of the ordinary ids, with the special ones written as ``[MASK]`` etc."""
        names = {self.pad_id: "", self.cls_id: "[CLS]", self.sep_id: "[SEP]"}
        names[self.mask_id] = "[MASK]"
        out: list[str] = []
        run: list[int] = []
        for i in [int(i) for i in ids]:
            if i in names:
                out.append(self.bpe.decode(run) + names[i])
                run = []
            else:
                run.append(i)
        return "".join(out) + self.bpe.decode(run)


@dataclass
class EncoderBatch:
    """A batch in the shape :func:`~transformer.training.train` reads.

    ``src``: the model's input (ids (B, T), or images); ``tgt_in``: the attention
    mask (B, T) or ``None``; ``tgt_out``: the labels ((B, T) token labels for
    masked-token training, (B,) classes for classification).
    """

    src: Tensor
    tgt_in: Tensor | None
    tgt_out: Tensor

    def to(self, device: torch.device | str) -> EncoderBatch:
        mask = None if self.tgt_in is None else self.tgt_in.to(device)
        return EncoderBatch(self.src.to(device), mask, self.tgt_out.to(device))

    def __len__(self) -> int:
        return len(self.src)


class MaskedLMBatches:
    """Batches of text chunks with fresh masks at every pass (dynamic masking).

    Args:
        chunks: token-id rows, each ``[CLS] ... [SEP]`` (see
            :meth:`EncoderTokenizer.encode`).
        tokenizer: the :class:`EncoderTokenizer` that made them.
        batch_size: rows per batch.
        p: the masking probability of :func:`mask_tokens`.
        seed: the seed of the shuffling and of the masks.
    """

    def __init__(
        self,
        chunks: Sequence[Sequence[int]],
        tokenizer: EncoderTokenizer,
        batch_size: int = 32,
        p: float = 0.15,
        seed: int = 0,
    ) -> None:
        if not chunks:
            raise ValueError("no chunks to batch")
        self.chunks, self.tok, self.batch_size, self.p = (
            list(chunks),
            tokenizer,
            batch_size,
            p,
        )
        self.rng = random.Random(seed)
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return -(-len(self.chunks) // self.batch_size)

    def __iter__(self) -> Iterator[EncoderBatch]:
        order = list(range(len(self.chunks)))
        self.rng.shuffle(order)
        for start in range(0, len(order), self.batch_size):
            rows = [self.chunks[i] for i in order[start : start + self.batch_size]]
            ids, attention = self.tok.pad(rows)  # (B, T)
            inputs, labels = mask_tokens(
                ids,
                mask_id=self.tok.mask_id,
                n_ordinary=self.tok.n_ordinary,
                special_ids=self.tok.special_ids,
                ignore_id=self.tok.pad_id,
                p=self.p,
                generator=self.generator,
            )
            yield EncoderBatch(inputs, attention, labels)


class MaskedLM(nn.Module):
    """An encoder seen through :func:`~transformer.training.train`'s protocol.

    ``forward(ids, attention_mask)`` returns the token logits (B, T, V), and
    ``pad_id`` is the label that means "nothing to predict", so ``train``'s
    default loss is the cross-entropy at the chosen positions only.
    """

    def __init__(self, encoder: EncoderOnlyTransformer) -> None:
        super().__init__()
        self.encoder = encoder
        self.pad_id = encoder.pad_id

    def forward(self, ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        return self.encoder.token_logits(ids, attention_mask)  # (B, T, V)
