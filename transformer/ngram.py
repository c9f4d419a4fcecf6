"""An n-gram language model with interpolated Kneser-Ney smoothing.

The baseline every neural language model should beat: predict the next
symbol from counts of what followed the previous ``order - 1`` symbols in the
training text. Symbols are characters (documents given as strings) or any
hashable tokens such as BPE ids (documents given as lists).

Raw counts give probability zero to anything not seen after a context, and
most long contexts were never seen at all. Kneser-Ney smoothing (Kneser & Ney
1995), in the interpolated form that Chen & Goodman (1998) found best, fixes
both. For a context ``h`` and its shorter version ``h'`` (first symbol
dropped)::

    p(w | h) = max(c(h w) - D, 0) / c(h .)  +  D * N(h .) / c(h .) * p(w | h')

* a fixed discount ``D`` (between 0 and 1) is taken from every seen count,
  and the mass it frees, ``D`` times the number ``N(h .)`` of distinct
  symbols seen after ``h``, is spread by the lower-order distribution;
* a context never seen uses ``p(w | h')`` unchanged;
* the lower orders count **continuations**, not occurrences: ``c(h' w)`` is
  the number of distinct symbols seen *before* ``h' w``. A symbol that is
  frequent but only ever after one context ("Francisco" after "San") gets
  little weight when backing off;
* below the unigram level sits the uniform distribution over the vocabulary
  plus one ``<unk>`` symbol, which stands for every symbol not seen in
  training. Every probability is therefore positive and, for every context,
  the probabilities of the vocabulary and ``<unk>`` sum to one.

Each document is preceded by ``order - 1`` start symbols, so its first
symbols are predicted from a context that says "start of document". The end
of a document is not predicted.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Sequence
from typing import Any, cast

import numpy as np

Context = tuple[int, ...]


class KneserNeyLM:
    """Interpolated Kneser-Ney n-gram model. Build it with :meth:`fit`.

    Attributes:
        order: n, the number of symbols in the longest n-gram (context of
            ``order - 1`` symbols).
        symbols: the training vocabulary, sorted; symbol ``symbols[i]`` has
            id ``i``, ``<unk>`` has id ``len(symbols)``.
        discounts: ``D`` for orders 1..n, from Ney, Essen & Kneser's (1994)
            estimate ``n1 / (n1 + 2 n2)`` (``n_r``: n-grams of that order seen
            exactly r times), clipped to [0.05, 0.95].
        counts: ``counts[k][context][id]`` for k = 1..n (index 0 unused):
            occurrences at the highest order, continuation counts below.
    """

    def __init__(self, order: int, symbols: Sequence[Hashable]) -> None:
        if isinstance(order, bool) or not isinstance(order, int) or order < 1:
            raise ValueError(f"order must be an integer >= 1, got {order!r}")
        self.order = order
        self.symbols = list(symbols)
        self.index = {s: i for i, s in enumerate(self.symbols)}
        self.unk = len(self.symbols)
        self.bos = self.unk + 1  # only ever in contexts, never predicted
        levels = range(order + 1)
        self.counts: list[dict[Context, dict[int, int]]] = [{} for _ in levels]
        self.totals: list[dict[Context, tuple[int, int]]] = [{} for _ in levels]
        self.discounts = [0.0] * (order + 1)

    @property
    def vocab_size(self) -> int:
        """How many symbols can be predicted (the training vocabulary and ``<unk>``)."""
        return len(self.symbols) + 1

    def _ids(self, doc: Sequence[Hashable]) -> list[int]:
        start = [self.bos] * (self.order - 1)
        return start + [self.index.get(s, self.unk) for s in doc]

    @classmethod
    def fit(
        cls,
        documents: Sequence[Sequence[Hashable]],
        order: int = 5,
    ) -> KneserNeyLM:
        """Count n-grams of every order up to ``order`` in the training documents.

        Args:
            documents: training documents, each a string (characters are the
                symbols) or a list of tokens.
            order: n; 1 is a (smoothed) unigram model.

        Raises:
            ValueError: no documents, only empty ones, or ``order < 1``.
        """
        if isinstance(documents, str):
            raise ValueError("pass a list of documents, e.g. [text], not one string")
        if not documents or not any(len(d) for d in documents):
            raise ValueError("cannot fit an n-gram model without training symbols")
        vocab: set[Any] = {s for doc in documents for s in doc}  # hashable and sortable
        model = cls(order, sorted(vocab))
        seqs = [model._ids(doc) for doc in documents]
        n = order

        def grams(j: int) -> Counter[Context]:
            # j-grams ending on a real symbol: start at offset n - j of each padded
            # sequence, so the first one ends on the document's first symbol
            found: Counter[Context] = Counter()
            for seq in seqs:
                found.update(zip(*(seq[n - j + i :] for i in range(j))))
            return found

        higher = grams(n)  # occurrences at the top order
        model._store(n, higher)
        for k in range(n - 1, 0, -1):
            raw = grams(k + 1) if k + 1 < n else higher
            # continuation count: distinct symbols seen just before each k-gram
            model._store(k, Counter(g[1:] for g in raw))
        return model

    def _store(self, k: int, grams: Counter[Context]) -> None:
        table = self.counts[k]
        for gram, c in grams.items():
            table.setdefault(gram[:-1], {})[gram[-1]] = c
        self.totals[k] = {h: (sum(f.values()), len(f)) for h, f in table.items()}
        n1 = sum(1 for c in grams.values() if c == 1)
        n2 = sum(1 for c in grams.values() if c == 2)
        d = n1 / (n1 + 2 * n2) if n1 + n2 else 0.5
        self.discounts[k] = min(0.95, max(0.05, d))

    def _prob(self, ids: Sequence[int], i: int) -> float:
        """p(ids[i] | the order - 1 ids before it), interpolated from order 1 up."""
        w = ids[i]
        p = 1.0 / self.vocab_size
        for k in range(1, self.order + 1):
            h = tuple(ids[i - k + 1 : i])
            follow = self.counts[k].get(h)
            if follow is None:
                break  # an unseen context: every longer one is unseen as well
            total, types = self.totals[k][h]
            d = self.discounts[k]
            p = (max(follow.get(w, 0) - d, 0.0) + d * types * p) / total
        return p

    def next_distribution(self, context: Sequence[Hashable] = ()) -> np.ndarray:
        """Probabilities of every next symbol after ``context``.

        Args:
            context: the symbols so far in a document (start of document when
                empty); only the last ``order - 1`` matter.

        Shape:
            returns (vocab_size,): ids of ``symbols``, then ``<unk>``;
            sums to 1.
        """
        ids = self._ids(context)
        p = np.full(self.vocab_size, 1.0 / self.vocab_size)
        for k in range(1, self.order + 1):
            h = tuple(ids[len(ids) - k + 1 :]) if k > 1 else ()
            follow = self.counts[k].get(h)
            if follow is None:
                break
            total, types = self.totals[k][h]
            d = self.discounts[k]
            seen = np.zeros(self.vocab_size)
            seen[list(follow)] = list(follow.values())
            p = (np.maximum(seen - d, 0.0) + d * types * p) / total
        return p

    def log_prob(self, document: Sequence[Hashable]) -> float:
        """Natural log-probability of one document, symbol by symbol.

        Symbols not seen in training are scored as ``<unk>``: finite, small.
        """
        ids = self._ids(document)
        start = self.order - 1
        return sum(math.log(self._prob(ids, i)) for i in range(start, len(ids)))

    def cross_entropy(self, documents: str | Sequence[Sequence[Hashable]]) -> float:
        """Mean negative log-likelihood in nats per symbol over documents.

        Args:
            documents: one string, or a list of documents (each scored from
                its own start).

        Raises:
            ValueError: nothing to score.
        """
        docs = [documents] if isinstance(documents, str) else list(documents)
        n = sum(len(d) for d in docs)
        if n == 0:
            raise ValueError("cannot score an empty text")
        return -sum(self.log_prob(d) for d in docs) / n

    def bits_per_char(self, documents: str | Sequence[str]) -> float:
        """Cross-entropy in bits per character, for a character model.

        ``cross_entropy / ln 2``. For a model over other tokens, convert with
        ``transformer.lm.bits_per_char`` (total nats over the characters).
        """
        return self.cross_entropy(documents) / math.log(2)

    def sample(
        self,
        n: int,
        seed: int = 0,
        prompt: Sequence[Hashable] = "",
    ) -> str | list[Hashable]:
        """Draw ``n`` symbols, one at a time, each after the ones before.

        ``<unk>`` is never drawn (its mass is shared out among the rest). The
        result is a string for a character model, else a list of tokens.

        Args:
            n: symbols to generate after the prompt.
            seed: seeds NumPy's generator: the same seed, the same sample.
            prompt: the beginning of the document, not included in the result.
        """
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        rng = np.random.default_rng(seed)
        text = list(prompt)
        out: list[Hashable] = []
        for _ in range(n):
            p = self.next_distribution(text)[: self.unk]
            symbol = self.symbols[int(rng.choice(self.unk, p=p / p.sum()))]
            text.append(symbol)
            out.append(symbol)
        if all(isinstance(s, str) for s in self.symbols):
            return "".join(cast("list[str]", out))
        return out
