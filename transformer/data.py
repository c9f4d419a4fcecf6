"""Vocabularies, padding and batches: from strings to the tensors a model reads (chapter
1).

A :class:`Vocab` maps symbols to ids with four fixed special ids (``<pad>`` 0,
``<bos>`` 1, ``<eos>`` 2, ``<unk>`` 3); :func:`pad_sequences` right-pads id lists
into one tensor; a :class:`Batch` holds a padded source and a ``<bos>``-framed
target with the views teacher forcing needs (``tgt_in``, ``tgt_out``).
:func:`pair_loader` is the path from your own (source, target) pairs, strings or
id lists, to batches for :func:`transformer.training.train`.

The generated tasks of the book (copy, reverse, dates, ...) are in
:mod:`transformer.tasks`.

Shape letters: B batch, S source length, T target length, L padded length.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

__all__ = [
    "Batch",
    "collate_pairs",
    "DIGITS",
    "lengths_to_mask",
    "pad_sequences",
    "pair_loader",
    "pair_vocabs",
    "PairDataset",
    "SPECIALS",
    "Vocab",
]


PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIALS = (PAD, BOS, EOS, UNK)
DIGITS = "0123456789"


class Vocab:
    """A mapping between symbols and integer ids, with four special symbols.

    Ids 0-3 are always ``<pad>`` (filler for batching), ``<bos>`` (begin of
    sequence), ``<eos>`` (end of sequence) and ``<unk>`` (anything unseen);
    the symbols follow in the order given.

    Args:
        symbols: the ordinary symbols (characters or words). Duplicates and
            special symbols are rejected so that ids are unambiguous.
        sep: how :meth:`decode` joins symbols and how :meth:`encode` splits a
            string: ``""`` for characters, ``" "`` for words. By default
            ``""`` if every symbol is a single character, else ``" "``.

    Example:
        >>> v = Vocab("abc")
        >>> v.encode("cab", add_eos=True)
        [6, 4, 5, 2]
        >>> v.decode([6, 4, 5, 2, 0, 0])
        'cab'
    """

    pad_id, bos_id, eos_id, unk_id = 0, 1, 2, 3

    def __init__(self, symbols: Iterable[str], sep: str | None = None) -> None:
        symbols = list(symbols)
        for s in symbols:
            if not isinstance(s, str) or not s:
                raise TypeError(
                    f"vocabulary symbols must be non-empty strings, got {s!r}"
                )
            if s in SPECIALS:
                raise ValueError(f"{s!r} is a reserved special symbol; do not list it")
        if len(set(symbols)) != len(symbols):
            dupes = sorted({s for s in symbols if symbols.count(s) > 1})
            raise ValueError(f"duplicate symbols in vocabulary: {dupes[:10]}")
        self.itos: list[str] = [*SPECIALS, *symbols]
        self.stoi: dict[str, int] = {s: i for i, s in enumerate(self.itos)}
        if sep is None:  # characters decode by concatenation, words with spaces
            sep = "" if all(len(s) == 1 for s in symbols) else " "
        if sep not in ("", " "):
            raise ValueError(f"sep must be '' (characters) or ' ' (words), got {sep!r}")
        self.sep = sep

    @classmethod
    def from_texts(
        cls,
        texts: Iterable[str],
        tokenize: Callable[[str], list[str]] = list,
        sep: str | None = None,
    ) -> Vocab:
        """Build a vocabulary of every symbol in ``texts`` (sorted, so it is
        reproducible).

        With ``tokenize=str.split`` the vocabulary is word level (``sep=" "``)
        even if every word happens to be one character long.
        """
        seen: set[str] = set()
        for t in texts:
            seen.update(tokenize(t))
        if sep is None and tokenize is str.split:
            sep = " "
        return cls(sorted(seen), sep=sep)

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, symbol: str) -> bool:
        return symbol in self.stoi

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and self.itos == other.itos

    def __hash__(self) -> int:
        return hash(tuple(self.itos))

    def __repr__(self) -> str:
        preview = (
            "".join(self.itos[4:24]) if self.sep == "" else " ".join(self.itos[4:12])
        )
        more = "..." if len(self) > 24 else ""
        return f"Vocab(size={len(self)}, symbols={preview!r}{more})"

    def encode(
        self, seq: str | Sequence[str], add_bos: bool = False, add_eos: bool = False
    ) -> list[int]:
        """Turn a string (split into characters) or a list of tokens into ids.

        Unknown symbols map to ``unk_id``.
        """
        if isinstance(seq, str):
            tokens: Sequence[str] = list(seq) if self.sep == "" else seq.split()
        else:
            tokens = seq
        ids = [self.stoi.get(t, self.unk_id) for t in tokens]
        if add_bos:
            ids.insert(0, self.bos_id)
        if add_eos:
            ids.append(self.eos_id)
        return ids

    def decode(self, ids: Iterable[int] | Tensor, strip_special: bool = True) -> str:
        """Turn ids back into a string.

        With ``strip_special`` (the default) decoding stops at the first
        ``<eos>`` and drops ``<pad>`` and ``<bos>``, which is what you want for
        model outputs. Raises ``ValueError`` for ids outside the vocabulary.
        """
        if isinstance(ids, Tensor):
            if ids.dim() != 1:
                raise ValueError(
                    f"decode expects one sequence (1-D), got shape {tuple(ids.shape)}"
                )
            ids = ids.tolist()
        out: list[str] = []
        for i in ids:
            i = int(i)
            if not 0 <= i < len(self.itos):
                raise ValueError(
                    f"id {i} is outside this vocabulary of size {len(self)}"
                )
            if strip_special:
                if i == self.eos_id:
                    break
                if i in (self.pad_id, self.bos_id):
                    continue
            out.append(self.itos[i])
        return self.sep.join(out)


def pad_sequences(
    seqs: Sequence[Sequence[int]], pad_id: int = Vocab.pad_id
) -> tuple[Tensor, Tensor]:
    """Stack variable-length id lists into one right-padded tensor.

    Returns:
        ``(padded, lengths)`` with shapes ``(B, L)`` and ``(B,)``, where ``L``
        is the longest length in the batch.
    """
    if len(seqs) == 0:
        raise ValueError("pad_sequences needs at least one sequence")
    lengths = torch.tensor([len(s) for s in seqs], dtype=torch.long)  # (B,)
    # (B, L)
    padded = torch.full((len(seqs), int(lengths.max())), pad_id, dtype=torch.long)
    for row, s in enumerate(seqs):
        padded[row, : len(s)] = torch.as_tensor(s, dtype=torch.long)
    return padded, lengths


def lengths_to_mask(lengths: Tensor, max_len: int | None = None) -> Tensor:
    """Boolean mask, ``True`` at real tokens and ``False`` at padding.

    Shape:
        lengths: (B,) -> mask (B, L), with L = ``max_len`` or the longest length.
    """
    if lengths.dim() != 1:
        raise ValueError(f"lengths must be 1-D (B,), got shape {tuple(lengths.shape)}")
    max_len = int(lengths.max()) if max_len is None else max_len
    if lengths.numel() and int(lengths.max()) > max_len:
        raise ValueError(f"max_len={max_len} is shorter than the longest sequence")
    positions = torch.arange(max_len, device=lengths.device)  # (L,)
    return positions[None, :] < lengths[:, None]  # (B, L)


@dataclass
class Batch:
    """A padded mini-batch of (source, target) pairs.

    Attributes:
        src: source ids ``(B, S)``, right-padded with ``pad_id``.
        tgt: ``<bos>`` + target ids + ``<eos>``, right-padded, ``(B, T + 1)``.
        src_lengths: real source lengths ``(B,)``.
        tgt_lengths: real lengths of ``tgt`` including ``<bos>``/``<eos>`` ``(B,)``.
        pad_id: the padding id.
    """

    src: Tensor
    tgt: Tensor
    src_lengths: Tensor
    tgt_lengths: Tensor
    pad_id: int = Vocab.pad_id

    @property
    def tgt_in(self) -> Tensor:
        """The decoder input for teacher forcing, ``<bos>`` y1 ... yn, shape ``(B,
        T)``."""
        return self.tgt[:, :-1]

    @property
    def tgt_out(self) -> Tensor:
        """The labels, y1 ... yn ``<eos>`` (the input shifted one step left), ``(B,
        T)``."""
        return self.tgt[:, 1:]

    @property
    def src_key_mask(self) -> Tensor:
        """``(B, 1, 1, S)`` boolean, ``True`` where the source holds a real token.

        Shaped to broadcast over heads and queries, so it can be passed straight to
        attention as a key mask. A bare ``(B, S)`` tensor would be read as a
        (queries, keys) mask whenever B happened to equal the number of queries.
        """
        return (self.src != self.pad_id)[:, None, None, :]

    @property
    def n_tokens(self) -> int:
        """Number of real (non-pad) target tokens the loss is computed over."""
        return int((self.tgt_out != self.pad_id).sum())

    def to(self, device: torch.device | str) -> Batch:
        return Batch(
            self.src.to(device),
            self.tgt.to(device),
            self.src_lengths.to(device),
            self.tgt_lengths.to(device),
            self.pad_id,
        )

    def __len__(self) -> int:
        return self.src.shape[0]


Pair = tuple[str | Sequence[int], str | Sequence[int]]


class PairDataset(Dataset):
    """(source, target) pairs, encoded once up front, targets framed by bos and eos.

    A pair holds strings (encoded with the vocabularies) or lists of ids (checked
    against them). Every target becomes ``<bos> y1 ... yn <eos>``, what teacher
    forcing and decoding expect; a source is left as it is.
    """

    def __init__(self, pairs: Sequence[Pair], src_vocab: Vocab, tgt_vocab: Vocab):
        if src_vocab.pad_id != tgt_vocab.pad_id:
            raise ValueError("source and target vocabularies must share the pad id")
        self.pairs = list(pairs)
        self.src_vocab, self.tgt_vocab = src_vocab, tgt_vocab
        self.src_ids = [
            _ids(s, src_vocab, i, "source") for i, (s, _) in enumerate(self.pairs)
        ]
        self.tgt_ids = [
            [tgt_vocab.bos_id, *_ids(t, tgt_vocab, i, "target"), tgt_vocab.eos_id]
            for i, (_, t) in enumerate(self.pairs)
        ]

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> tuple[list[int], list[int]]:
        return self.src_ids[i], self.tgt_ids[i]


def _ids(item: str | Sequence[int], vocab: Vocab, i: int, side: str) -> list[int]:
    """Encode a string, or check a list of ids against ``vocab``."""
    if isinstance(item, str):
        return vocab.encode(item)
    ids = list(item)
    if not all(isinstance(t, int) and not isinstance(t, bool) for t in ids):
        raise TypeError(f"the {side} of pair {i} must be a str or a list of int ids")
    bad = [t for t in ids if not 0 <= t < len(vocab)]
    if bad:
        raise ValueError(
            f"the {side} of pair {i} holds ids {bad[:5]} outside its vocabulary "
            f"(ids 0..{len(vocab) - 1})"
        )
    return ids


def collate_pairs(
    items: Sequence[tuple[Sequence[int], Sequence[int]]],
    pad_id: int = Vocab.pad_id,
    *,
    bos_id: int = Vocab.bos_id,
    eos_id: int = Vocab.eos_id,
) -> Batch:
    """Pad a list of (source ids, framed target ids) into a :class:`Batch`.

    Every target must already be ``<bos> ... <eos>`` (:class:`PairDataset` frames
    them): without the frame, training silently learns the wrong task, so an
    unframed target is refused here.
    """
    for i, (_, t) in enumerate(items):
        if len(t) < 2 or t[0] != bos_id or t[-1] != eos_id:
            raise ValueError(
                f"target {i} is not framed as <bos> ... <eos> (ids {bos_id} and "
                f"{eos_id}): build batches with PairDataset or pair_loader, which add "
                "them"
            )
    src, src_lengths = pad_sequences([s for s, _ in items], pad_id)
    tgt, tgt_lengths = pad_sequences([t for _, t in items], pad_id)
    return Batch(src, tgt, src_lengths, tgt_lengths, pad_id)


def pair_vocabs(pairs: Sequence[tuple[str, str]]) -> tuple[Vocab, Vocab]:
    """Character vocabularies of the sources and of the targets of string pairs."""
    if not pairs:
        raise ValueError("pair_vocabs needs at least one pair")
    return Vocab.from_texts(s for s, _ in pairs), Vocab.from_texts(t for _, t in pairs)


def pair_loader(
    pairs: Sequence[Pair],
    src_vocab: Vocab | None = None,
    tgt_vocab: Vocab | None = None,
    *,
    batch_size: int = 64,
    shuffle: bool = True,
    seed: int = 0,
) -> DataLoader:
    """Your own (source, target) pairs as batches for
    :func:`~transformer.training.train`.

    Args:
        pairs: strings, or lists of ids (then give the vocabularies).
        src_vocab, tgt_vocab: default: character vocabularies of the pairs
            (:func:`pair_vocabs`); reach them as ``loader.dataset.src_vocab``.
        batch_size: pairs per batch.
        shuffle: reshuffle every epoch, reproducibly from ``seed``.

    Example:
        >>> loader = pair_loader([("abc", "cba"), ("ab", "ba")], batch_size=2)
        >>> batch = next(iter(loader)); batch.tgt_in.shape
        torch.Size([2, 4])
    """
    if src_vocab is None or tgt_vocab is None:
        if not all(isinstance(s, str) and isinstance(t, str) for s, t in pairs):
            raise ValueError("pairs of id lists need src_vocab= and tgt_vocab=")
        built = pair_vocabs(pairs)  # type: ignore[arg-type]  # str pairs, checked above
        src_vocab = built[0] if src_vocab is None else src_vocab
        tgt_vocab = built[1] if tgt_vocab is None else tgt_vocab
    if (
        isinstance(batch_size, bool)
        or not isinstance(batch_size, int)
        or batch_size < 1
    ):
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    dataset = PairDataset(pairs, src_vocab, tgt_vocab)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        generator=torch.Generator().manual_seed(seed) if shuffle else None,
        collate_fn=collate_pairs,
    )
