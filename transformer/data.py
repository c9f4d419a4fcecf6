"""Vocabularies, batching and the data sets used all through the book.

Everything here is generated offline from a seed, or ships with Python itself,
so the book never downloads anything.

Shape letters: B batch, S source length, T target length, L padded length.

The tasks (all string-to-string, so one pipeline serves every chapter):

* ``copy``, ``reverse``, ``sort``: digit strings, e.g. ``"4071" -> "1704"``.
* ``recall``: a key symbol, ``gap`` noise digits, then ``?``; the answer is
  the key. It isolates one thing: carrying information across a distance.
* ``dates``: human-written dates in English, French, German and Spanish
  (``"mardi 3 mars 1998"``, ``"March 3, 1998"``, ``"03.03.1998"``, ...) to
  ISO 8601 (``"1998-03-03"``): a small but real many-to-many unaligned
  "translation". Month and day names come from the Unicode CLDR data that
  ships with Babel.
* :func:`text_corpus`: English prose (Python's own help topics) for language
  modelling.
"""

from __future__ import annotations

import datetime as _dt
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

__all__ = [
    "Vocab",
    "Batch",
    "PairDataset",
    "TaskData",
    "TASKS",
    "load_task",
    "make_pairs",
    "pad_sequences",
    "lengths_to_mask",
    "collate_pairs",
    "text_corpus",
    "DATE_LANGUAGES",
    "date_formats",
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
                raise TypeError(f"vocabulary symbols must be non-empty strings, got {s!r}")
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
        """Build a vocabulary of every symbol in ``texts`` (sorted, so it is reproducible).

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
        preview = "".join(self.itos[4:24]) if self.sep == "" else " ".join(self.itos[4:12])
        return f"Vocab(size={len(self)}, symbols={preview!r}{'...' if len(self) > 24 else ''})"

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
                raise ValueError(f"decode expects one sequence (1-D), got shape {tuple(ids.shape)}")
            ids = ids.tolist()
        out: list[str] = []
        for i in ids:
            i = int(i)
            if not 0 <= i < len(self.itos):
                raise ValueError(f"id {i} is outside this vocabulary of size {len(self)}")
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
    padded = torch.full((len(seqs), int(lengths.max())), pad_id, dtype=torch.long)  # (B, L)
    for row, s in enumerate(seqs):
        padded[row, : len(s)] = torch.as_tensor(s, dtype=torch.long)
    return padded, lengths


def lengths_to_mask(lengths: Tensor, max_len: int | None = None) -> Tensor:
    """Boolean mask, ``True`` at real tokens and ``False`` at padding.

    Shape:
        lengths ``(B,)`` -> mask ``(B, L)`` with ``L = max_len or lengths.max()``.
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
        """Decoder input for teacher forcing: ``<bos>`` y1 ... yn, shape ``(B, T)``."""
        return self.tgt[:, :-1]

    @property
    def tgt_out(self) -> Tensor:
        """Labels: y1 ... yn ``<eos>``, shifted one step left, shape ``(B, T)``."""
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


class PairDataset(Dataset):
    """(source, target) string pairs, encoded once up front."""

    def __init__(self, pairs: Sequence[tuple[str, str]], src_vocab: Vocab, tgt_vocab: Vocab):
        if src_vocab.pad_id != tgt_vocab.pad_id:
            raise ValueError("source and target vocabularies must share the pad id")
        self.pairs = list(pairs)
        self.src_vocab, self.tgt_vocab = src_vocab, tgt_vocab
        self.src_ids = [src_vocab.encode(s) for s, _ in self.pairs]
        self.tgt_ids = [tgt_vocab.encode(t, add_bos=True, add_eos=True) for _, t in self.pairs]

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> tuple[list[int], list[int]]:
        return self.src_ids[i], self.tgt_ids[i]


def collate_pairs(
    items: Sequence[tuple[Sequence[int], Sequence[int]]], pad_id: int = Vocab.pad_id
) -> Batch:
    """Pad a list of (source ids, target ids) into a :class:`Batch`."""
    src, src_lengths = pad_sequences([s for s, _ in items], pad_id)
    tgt, tgt_lengths = pad_sequences([t for _, t in items], pad_id)
    return Batch(src, tgt, src_lengths, tgt_lengths, pad_id)


# --------------------------------------------------------------------------- tasks


def _digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(DIGITS) for _ in range(n))


def _copy(rng: random.Random, min_len: int = 1, max_len: int = 10) -> tuple[str, str]:
    s = _digits(rng, rng.randint(min_len, max_len))
    return s, s


def _reverse(rng: random.Random, min_len: int = 1, max_len: int = 10) -> tuple[str, str]:
    s = _digits(rng, rng.randint(min_len, max_len))
    return s, s[::-1]


def _sort(rng: random.Random, min_len: int = 1, max_len: int = 10) -> tuple[str, str]:
    s = _digits(rng, rng.randint(min_len, max_len))
    return s, "".join(sorted(s))


RECALL_KEYS = "abcdefghijklmnopqrstuvwxyz"


def _recall(rng: random.Random, gap: int = 10, n_keys: int = 8) -> tuple[str, str]:
    if not 2 <= n_keys <= len(RECALL_KEYS):
        raise ValueError(f"n_keys must be between 2 and {len(RECALL_KEYS)}, got {n_keys}")
    if gap < 0:
        raise ValueError(f"gap must be >= 0, got {gap}")
    key = rng.choice(RECALL_KEYS[:n_keys])
    return key + _digits(rng, gap) + "?", key


DATE_LANGUAGES = ("en", "fr", "de", "es")


def _date_names(lang: str) -> dict[str, dict[int, str]]:
    """Month and weekday names from CLDR via Babel (shipped with the install)."""
    from babel import Locale

    loc = Locale.parse(lang)
    return {
        "month": dict(loc.months["format"]["wide"]),
        "mon": dict(loc.months["format"]["abbreviated"]),
        "day": dict(loc.days["format"]["wide"]),  # 0 = Monday
    }


def date_formats(date: _dt.date, lang: str) -> list[str]:
    """Every way the ``dates`` task may write ``date`` in language ``lang``.

    Example:
        >>> date_formats(datetime.date(1983, 1, 25), "de")[0]
        '25. Januar 1983'
    """
    if lang not in DATE_LANGUAGES:
        raise ValueError(f"unsupported date language {lang!r}; choose from {DATE_LANGUAGES}")
    names = _date_names(lang)
    return [fmt(date, names) for fmt in _date_formats(lang)]


def _date_formats(lang: str) -> list[Callable[[_dt.date, dict], str]]:
    """Ways a person might write a date in ``lang``; the numeric ones are day first
    (except none in English, to keep every source unambiguous)."""

    def day(d: _dt.date, n: dict) -> str:
        return n["day"][d.weekday()]

    if lang == "en":
        return [
            lambda d, n: f"{n['month'][d.month]} {d.day}, {d.year}",
            lambda d, n: f"{n['mon'][d.month]} {d.day}, {d.year}",
            lambda d, n: f"{d.day} {n['month'][d.month]} {d.year}",
            lambda d, n: f"{d.day} {n['mon'][d.month]} {d.year}",
            lambda d, n: f"{day(d, n)}, {n['month'][d.month]} {d.day}, {d.year}",
            lambda d, n: f"{n['month'][d.month].lower()} {d.day} {d.year}",
        ]
    if lang == "fr":
        return [
            lambda d, n: f"{d.day} {n['month'][d.month]} {d.year}",
            lambda d, n: f"{day(d, n)} {d.day} {n['month'][d.month]} {d.year}",
            lambda d, n: f"{d.day} {n['mon'][d.month]} {d.year}",
            lambda d, n: f"{d.day:02d}/{d.month:02d}/{d.year}",
            lambda d, n: f"le {d.day} {n['month'][d.month]} {d.year}",
        ]
    if lang == "de":
        return [
            lambda d, n: f"{d.day}. {n['month'][d.month]} {d.year}",
            lambda d, n: f"{day(d, n)}, {d.day}. {n['month'][d.month]} {d.year}",
            lambda d, n: f"{d.day}. {n['mon'][d.month]} {d.year}",
            lambda d, n: f"{d.day:02d}.{d.month:02d}.{d.year}",
            lambda d, n: f"{d.day}.{d.month}.{d.year}",
        ]
    if lang == "es":
        return [
            lambda d, n: f"{d.day} de {n['month'][d.month]} de {d.year}",
            lambda d, n: f"{day(d, n)}, {d.day} de {n['month'][d.month]} de {d.year}",
            lambda d, n: f"{d.day} {n['mon'][d.month]} {d.year}",
            lambda d, n: f"{d.day:02d}/{d.month:02d}/{d.year}",
        ]
    raise ValueError(f"unsupported date language {lang!r}; choose from {DATE_LANGUAGES}")


_DATE_START, _DATE_DAYS = _dt.date(1950, 1, 1), (_dt.date(2049, 12, 31) - _dt.date(1950, 1, 1)).days


class _DateGenerator:
    def __init__(self, languages: Sequence[str]) -> None:
        if not languages:
            raise ValueError("languages must name at least one language")
        self.languages = tuple(languages)
        for lang in self.languages:
            if lang not in DATE_LANGUAGES:
                raise ValueError(
                    f"unsupported date language {lang!r}; choose from {DATE_LANGUAGES}"
                )
        self.names = {lang: _date_names(lang) for lang in self.languages}
        self.formats = {lang: _date_formats(lang) for lang in self.languages}

    def __call__(self, rng: random.Random) -> tuple[str, str]:
        d = _DATE_START + _dt.timedelta(days=rng.randint(0, _DATE_DAYS))
        lang = rng.choice(self.languages)
        fmt = rng.choice(self.formats[lang])
        return fmt(d, self.names[lang]), d.isoformat()

    def source_alphabet(self) -> list[str]:
        """Every character any format can produce, so no test source hits ``<unk>``."""
        chars = set(DIGITS + " ,./-'")
        for lang in self.languages:
            for table in self.names[lang].values():
                for name in table.values():
                    chars.update(name)
                    chars.update(name.lower())
            chars.update("lede")  # "le", "de"
        return sorted(chars)


#: Name -> (generator factory, keyword arguments it accepts).
TASKS: dict[str, tuple[str, ...]] = {
    "copy": ("min_len", "max_len"),
    "reverse": ("min_len", "max_len"),
    "sort": ("min_len", "max_len"),
    "recall": ("gap", "n_keys"),
    "dates": ("languages",),
}


def _generator(
    name: str, **kwargs
) -> tuple[Callable[[random.Random], tuple[str, str]], list, list]:
    """Return (sample function, source alphabet, target alphabet) for a task."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose one of {sorted(TASKS)}")
    unknown = set(kwargs) - set(TASKS[name])
    if unknown:
        raise TypeError(f"task {name!r} takes {TASKS[name]}, not {sorted(unknown)}")
    if name in ("copy", "reverse", "sort"):
        lo, hi = kwargs.get("min_len", 1), kwargs.get("max_len", 10)
        if not 1 <= lo <= hi:
            raise ValueError(f"need 1 <= min_len <= max_len, got min_len={lo}, max_len={hi}")
        fn = {"copy": _copy, "reverse": _reverse, "sort": _sort}[name]
        return (lambda rng: fn(rng, lo, hi)), list(DIGITS), list(DIGITS)
    if name == "recall":
        gap, n_keys = kwargs.get("gap", 10), kwargs.get("n_keys", 8)
        _recall(random.Random(0), gap, n_keys)  # validate arguments early
        src = sorted(set(RECALL_KEYS[:n_keys] + DIGITS + "?"))
        return (lambda rng: _recall(rng, gap, n_keys)), src, list(RECALL_KEYS[:n_keys])
    gen = _DateGenerator(kwargs.get("languages", DATE_LANGUAGES))
    return gen, gen.source_alphabet(), list(DIGITS + "-")


def make_pairs(name: str, n: int, seed: int = 0, **task_kwargs) -> list[tuple[str, str]]:
    """Draw ``n`` pairs with distinct sources from a task, reproducibly.

    Raises ``ValueError`` if the task cannot produce ``n`` distinct sources
    (for example 5,000 copies of 1-3 digit strings: only 1,110 exist).
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    sample, _, _ = _generator(name, **task_kwargs)
    rng = random.Random(seed)
    seen: dict[str, str] = {}
    attempts, limit = 0, 50 * n + 1000
    while len(seen) < n:
        src, tgt = sample(rng)
        seen.setdefault(src, tgt)
        attempts += 1
        if attempts > limit:
            raise ValueError(
                f"task {name!r} with {task_kwargs} produced only {len(seen)} distinct sources "
                f"in {attempts} draws; ask for fewer examples or allow longer sequences"
            )
    return list(seen.items())


@dataclass
class TaskData:
    """Train/validation/test pairs of one task plus its vocabularies.

    The three splits never share a source string, so a model cannot score on
    the test set by memorising training examples.
    """

    name: str
    train: list[tuple[str, str]]
    val: list[tuple[str, str]]
    test: list[tuple[str, str]]
    src_vocab: Vocab
    tgt_vocab: Vocab
    kwargs: dict = field(default_factory=dict)

    def split(self, split: str) -> list[tuple[str, str]]:
        if split not in ("train", "val", "test"):
            raise ValueError(f"split must be 'train', 'val' or 'test', got {split!r}")
        return getattr(self, split)

    def dataset(self, split: str) -> PairDataset:
        return PairDataset(self.split(split), self.src_vocab, self.tgt_vocab)

    def loader(
        self, split: str, batch_size: int = 64, shuffle: bool | None = None, seed: int = 0
    ) -> DataLoader:
        """A DataLoader of :class:`Batch` es; shuffles (reproducibly) only ``train`` by default."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        shuffle = (split == "train") if shuffle is None else shuffle
        return DataLoader(
            self.dataset(split),
            batch_size=batch_size,
            shuffle=shuffle,
            generator=torch.Generator().manual_seed(seed) if shuffle else None,
            collate_fn=collate_pairs,
        )

    def __repr__(self) -> str:
        return (
            f"TaskData({self.name!r}, train={len(self.train)}, val={len(self.val)}, "
            f"test={len(self.test)}, src_vocab={len(self.src_vocab)}, "
            f"tgt_vocab={len(self.tgt_vocab)})"
        )


def load_task(
    name: str,
    *,
    n_train: int = 5000,
    n_val: int = 500,
    n_test: int = 500,
    seed: int = 0,
    **task_kwargs,
) -> TaskData:
    """Generate a task's train/validation/test splits and vocabularies.

    Args:
        name: one of ``copy``, ``reverse``, ``sort``, ``recall``, ``dates``.
        n_train, n_val, n_test: split sizes.
        seed: the same seed always gives the same data.
        **task_kwargs: ``min_len``/``max_len`` (digit tasks), ``gap``/``n_keys``
            (recall), ``languages`` (dates).

    Example:
        >>> data = load_task("reverse", n_train=100, n_val=10, n_test=10, max_len=5)
        >>> src, tgt = data.train[0]; tgt == src[::-1]
        True
    """
    for label, n in (("n_train", n_train), ("n_val", n_val), ("n_test", n_test)):
        if n < 0:
            raise ValueError(f"{label} must be >= 0, got {n}")
    pairs = make_pairs(name, n_train + n_val + n_test, seed=seed, **task_kwargs)
    random.Random(seed + 1).shuffle(pairs)
    _, src_alpha, tgt_alpha = _generator(name, **task_kwargs)
    if src_alpha == tgt_alpha:
        src_vocab = tgt_vocab = Vocab(src_alpha)
    else:
        src_vocab, tgt_vocab = Vocab(src_alpha), Vocab(tgt_alpha)
    return TaskData(
        name=name,
        train=pairs[:n_train],
        val=pairs[n_train : n_train + n_val],
        test=pairs[n_train + n_val :],
        src_vocab=src_vocab,
        tgt_vocab=tgt_vocab,
        kwargs=dict(task_kwargs),
    )


# --------------------------------------------------------------------------- text


def text_corpus(max_chars: int | None = None) -> str:
    """English prose for language modelling: the help topics that ship with Python.

    About 465,000 characters of technical English (``pydoc_data.topics``),
    identical on every installation of the same Python version. Runs of
    blank lines are collapsed.

    Args:
        max_chars: keep only the first ``max_chars`` characters.
    """
    from pydoc_data.topics import topics

    text = "\n\n".join(topics[key].strip() for key in sorted(topics))
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    if max_chars is not None:
        if max_chars < 1:
            raise ValueError(f"max_chars must be >= 1, got {max_chars}")
        text = text[:max_chars]
    return text
