"""The data sets of the book, generated offline from a seed (chapter 1).

Everything here is generated from a seed, or ships with Python itself, so the
book never downloads anything. The tasks (all string-to-string, so one pipeline
serves every chapter):

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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch.utils.data import DataLoader

from transformer.data import DIGITS, PairDataset, Vocab, collate_pairs

__all__ = [
    "date_formats",
    "DATE_LANGUAGES",
    "load_task",
    "make_pairs",
    "RECALL_KEYS",
    "TaskData",
    "TASKS",
    "text_corpus",
]


# --------------------------------------------------------------------------- tasks


def _digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(DIGITS) for _ in range(n))


def _copy(rng: random.Random, min_len: int = 1, max_len: int = 10) -> tuple[str, str]:
    s = _digits(rng, rng.randint(min_len, max_len))
    return s, s


def _reverse(
    rng: random.Random, min_len: int = 1, max_len: int = 10
) -> tuple[str, str]:
    s = _digits(rng, rng.randint(min_len, max_len))
    return s, s[::-1]


def _sort(rng: random.Random, min_len: int = 1, max_len: int = 10) -> tuple[str, str]:
    s = _digits(rng, rng.randint(min_len, max_len))
    return s, "".join(sorted(s))


RECALL_KEYS = "abcdefghijklmnopqrstuvwxyz"


def _recall(rng: random.Random, gap: int = 10, n_keys: int = 8) -> tuple[str, str]:
    if not 2 <= n_keys <= len(RECALL_KEYS):
        raise ValueError(
            f"n_keys must be between 2 and {len(RECALL_KEYS)}, got {n_keys}"
        )
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
        raise ValueError(
            f"unsupported date language {lang!r}; choose from {DATE_LANGUAGES}"
        )
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
    raise ValueError(
        f"unsupported date language {lang!r}; choose from {DATE_LANGUAGES}"
    )


_DATE_START, _DATE_DAYS = (
    _dt.date(1950, 1, 1),
    (_dt.date(2049, 12, 31) - _dt.date(1950, 1, 1)).days,
)


class _DateGenerator:
    def __init__(self, languages: Sequence[str]) -> None:
        if isinstance(languages, str):  # "en" is one language, not "e" and "n"
            languages = (languages,)
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
            raise ValueError(
                f"need 1 <= min_len <= max_len, got min_len={lo}, max_len={hi}"
            )
        fn = {"copy": _copy, "reverse": _reverse, "sort": _sort}[name]
        return (lambda rng: fn(rng, lo, hi)), list(DIGITS), list(DIGITS)
    if name == "recall":
        gap, n_keys = kwargs.get("gap", 10), kwargs.get("n_keys", 8)
        _recall(random.Random(0), gap, n_keys)  # validate arguments early
        src = sorted(set(RECALL_KEYS[:n_keys] + DIGITS + "?"))
        return (lambda rng: _recall(rng, gap, n_keys)), src, list(RECALL_KEYS[:n_keys])
    gen = _DateGenerator(kwargs.get("languages", DATE_LANGUAGES))
    return gen, gen.source_alphabet(), list(DIGITS + "-")


def make_pairs(
    name: str, n: int, seed: int = 0, **task_kwargs
) -> list[tuple[str, str]]:
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
                f"task {name!r} with {task_kwargs} produced only {len(seen)} distinct "
                f"sources in {attempts} draws; ask for fewer examples or allow longer "
                "sequences"
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
        self,
        split: str,
        batch_size: int = 64,
        shuffle: bool | None = None,
        seed: int = 0,
    ) -> DataLoader:
        """A DataLoader of :class:`~transformer.data.Batch` es; shuffles (reproducibly)
        only ``train`` by default."""
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
