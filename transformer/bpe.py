"""Byte-pair encoding (BPE) from scratch, byte-level as in GPT-2.

Sennrich, Haddow & Birch (2016), "Neural Machine Translation of Rare Words
with Subword Units", adapted a compression algorithm (Gage 1994) to build a
vocabulary: start from single symbols, count every adjacent pair in the
training text, give the most frequent pair a new symbol, and repeat. Frequent
words end up as one token, rare words as a few pieces, and nothing is ever out
of vocabulary.

This module is **byte-level** (Radford et al. 2019, GPT-2): the base symbols
are the 256 possible bytes of UTF-8 text, ids 0-255, so any string at all
can be encoded and decoded back exactly. Merge number ``r`` (its *rank*)
creates token id ``256 + r``.

Merges never cross a word boundary. Before counting, :func:`pretokenize`
cuts text into *pieces*: a word with the single space before it
(``" lower"``), a run of digits, a run of punctuation, or a run of
whitespace, the same shape of rule as GPT-2's.

Reading order: :func:`pretokenize`, :func:`pair_counts`, :func:`merge_pair`,
then :class:`BPETokenizer` (``train``, ``encode``, ``decode``).
"""

from __future__ import annotations

import heapq
import json
import re
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

Pair = tuple[int, int]
Word = tuple[int, ...]

#: The pieces are contractions ('s, 't, ...), an optional space then letters, an
#: optional space then digits, an optional space then other symbols
#: (underscore included), whitespace not followed by a non-space (so the
#: last space before a word stays with the word), and any other whitespace.
#: Together the branches match every character, so joining the pieces gives
#: back the text.
PIECE_PATTERN = "|".join(
    [
        r"'(?:[sdmt]|ll|ve|re)",
        r" ?[^\W\d_]+",
        r" ?\d+",
        r" ?(?:[^\s\w]|_)+",
        r"\s+(?!\S)",
        r"\s+",
    ]
)
_PIECES = re.compile(PIECE_PATTERN)

N_BYTES = 256


def pretokenize(text: str) -> list[str]:
    """Cut text into the pieces that merges may not cross.

    >>> pretokenize("low lower, 42 lowest")
    ['low', ' lower', ',', ' 42', ' lowest']
    """
    return _PIECES.findall(text)


def pair_counts(words: dict[Word, int] | Iterable[Word]) -> Counter[Pair]:
    """Count adjacent symbol pairs, weighting each word by its frequency.

    Args:
        words: a word-frequency table ``{(s1, s2, ...): count}``, or plain
            words (tuples of symbols), each counted once.

    Returns:
        ``Counter`` from each pair ``(a, b)`` to the number of times ``b``
        follows ``a`` inside a word.
    """
    items = words.items() if isinstance(words, dict) else ((w, 1) for w in words)
    counts: Counter[Pair] = Counter()
    for word, freq in items:
        for pair in zip(word, word[1:]):
            counts[pair] += freq
    return counts


def merge_pair(word: Sequence[Any], pair: tuple[Any, Any], new: Any) -> tuple[Any, ...]:
    """Replace every occurrence of ``pair`` in one word by the symbol ``new``.

    Scans left to right and merges non-overlapping occurrences, so
    ``merge_pair("aaa", ("a", "a"), "X")`` gives ``("X", "a")``.

    Args:
        word: a sequence of symbols (token ids, or strings in examples).
        pair: the two adjacent symbols to merge.
        new: the symbol that replaces them.
    """
    out = []
    i = 0
    while i < len(word):
        if i + 1 < len(word) and word[i] == pair[0] and word[i + 1] == pair[1]:
            out.append(new)
            i += 2
        else:
            out.append(word[i])
            i += 1
    return tuple(out)


class BPETokenizer:
    """A byte-level BPE tokenizer: 256 byte tokens plus learned merges.

    Build one with :meth:`train`, or from a list of merges. Token ``i < 256``
    is byte ``i``; token ``256 + r`` is merge ``r``, the concatenation of its
    two parts.

    Args:
        merges: the learned pairs in the order they were learned (rank order).

    Raises:
        ValueError: a merge refers to a token that does not exist yet.
    """

    def __init__(self, merges: Sequence[Pair] = ()) -> None:
        self.merges: list[Pair] = [(int(a), int(b)) for a, b in merges]
        self.token_bytes: list[bytes] = [bytes([b]) for b in range(N_BYTES)]
        for rank, (a, b) in enumerate(self.merges):
            new = N_BYTES + rank
            if not (0 <= a < new and 0 <= b < new):
                raise ValueError(f"merge {rank} ({a}, {b}) uses a token id >= {new}")
            self.token_bytes.append(self.token_bytes[a] + self.token_bytes[b])
        self.ranks: dict[Pair, int] = {pair: r for r, pair in enumerate(self.merges)}
        self._cache: dict[str, list[int]] = {}

    @property
    def vocab_size(self) -> int:
        """The number of tokens, 256 bytes plus one per merge."""
        return N_BYTES + len(self.merges)

    @classmethod
    def train(
        cls,
        text: str,
        vocab_size: int,
        min_frequency: int = 2,
    ) -> BPETokenizer:
        """Learn merges from a text until the vocabulary has ``vocab_size`` tokens.

        The text becomes a table of distinct pieces (:func:`pretokenize`) and
        their frequencies, each piece a tuple of byte ids. Each step merges
        the most frequent adjacent pair (ties go to the smallest pair of ids,
        so training is deterministic). Counts are updated incrementally: only
        words that contain the merged pair are recounted, and a heap keeps
        the most frequent pair at hand, so a step costs about the number of
        words it changes rather than a pass over the whole text.

        Args:
            text: training text.
            vocab_size: target size, at least 256 (the bytes).
            min_frequency: stop early when no pair occurs this often; the
                vocabulary is then smaller than ``vocab_size``.

        Raises:
            ValueError: empty text, or ``vocab_size`` below 256.
        """
        if not text:
            raise ValueError("cannot train BPE on an empty text")
        if vocab_size < N_BYTES:
            raise ValueError(
                f"vocab_size {vocab_size} is below the {N_BYTES} byte tokens "
                "every byte-level vocabulary starts with"
            )
        piece_freq = Counter(pretokenize(text))
        words = [list(piece.encode("utf-8")) for piece in piece_freq]
        freqs = list(piece_freq.values())
        counts: Counter[Pair] = Counter()
        where: dict[Pair, set[int]] = {}  # pair -> indices of words that hold it
        for i, word in enumerate(words):
            for pair in zip(word, word[1:]):
                counts[pair] += freqs[i]
                where.setdefault(pair, set()).add(i)
        heap = [(-c, pair) for pair, c in counts.items()]
        heapq.heapify(heap)

        merges: list[Pair] = []
        while N_BYTES + len(merges) < vocab_size and heap:
            neg, pair = heapq.heappop(heap)
            if counts.get(pair, 0) != -neg:
                continue  # a stale entry: this pair's count has changed
            if -neg < min_frequency:
                break
            new = N_BYTES + len(merges)
            merges.append(pair)
            changed: set[Pair] = set()
            for i in where.pop(pair):
                old = words[i]
                for p in zip(old, old[1:]):
                    counts[p] -= freqs[i]
                    changed.add(p)
                words[i] = list(merge_pair(old, pair, new))
                for p in zip(words[i], words[i][1:]):
                    counts[p] += freqs[i]
                    changed.add(p)
                    where.setdefault(p, set()).add(i)
            for p in changed:
                if counts[p] > 0:
                    heapq.heappush(heap, (-counts[p], p))
                else:
                    del counts[p]
        return cls(merges)

    def _encode_piece(self, piece: str) -> list[int]:
        cached = self._cache.get(piece)
        if cached is not None:
            return cached
        word = tuple(piece.encode("utf-8"))
        while len(word) > 1:
            # the pair learned first among those present is merged first
            never = len(self.ranks)
            pair = min(zip(word, word[1:]), key=lambda p: self.ranks.get(p, never))
            if pair not in self.ranks:
                break
            word = merge_pair(word, pair, N_BYTES + self.ranks[pair])
        ids = list(word)
        self._cache[piece] = ids
        return ids

    def encode(self, text: str) -> list[int]:
        """Token ids of a text: its pieces, each merged by rank, concatenated.

        Inside a piece the merge of lowest rank among the adjacent pairs is
        applied first, again and again, until no learned pair is left. This
        reproduces the order in which training applied the merges. Results
        are cached per piece, since text repeats its words.
        """
        ids: list[int] = []
        for piece in pretokenize(text):
            ids.extend(self._encode_piece(piece))
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        """The text of a list of token ids.

        The bytes of the tokens are joined and read as UTF-8. A list that
        cuts a multi-byte character in two (possible when ids come from a
        sampler) shows the broken part as U+FFFD, as GPT-2 does.

        Raises:
            ValueError: an id outside ``[0, vocab_size)``.
        """
        ids = [int(i) for i in ids]
        bad = [i for i in ids if not 0 <= i < self.vocab_size]
        if bad:
            size = self.vocab_size
            raise ValueError(f"token id {bad[0]} is outside this vocabulary of {size}")
        return b"".join(self.token_bytes[i] for i in ids).decode("utf-8", "replace")

    def token_strings(self, ids: Iterable[int]) -> list[str]:
        """Each token shown on its own (for teaching), broken bytes as U+FFFD."""
        return [self.token_bytes[int(i)].decode("utf-8", "replace") for i in ids]

    def save(self, path: str | Path) -> None:
        """Write the merges (all a byte-level BPE needs) to a JSON file."""
        data = {
            "kind": "byte-level-bpe",
            "pattern": PIECE_PATTERN,
            "merges": self.merges,
        }
        Path(path).write_text(json.dumps(data))

    @classmethod
    def load(cls, path: str | Path) -> BPETokenizer:
        """Read a tokenizer written by :meth:`save`."""
        data = json.loads(Path(path).read_text())
        if data.get("kind") != "byte-level-bpe" or data.get("pattern") != PIECE_PATTERN:
            raise ValueError(f"{path} does not hold a tokenizer saved by BPETokenizer")
        return cls([tuple(m) for m in data["merges"]])


def _gpt2_byte_chars() -> dict[str, int]:
    """GPT-2's printable stand-in character for each byte, mapped to the byte.

    Byte-level tokenizers in Hugging Face store tokens as strings in which
    each byte is one visible character: printable bytes stand for
    themselves, the others are moved to code points 256 and up, in order.
    """
    printable = [*range(33, 127), *range(161, 173), *range(174, 256)]
    chars = {chr(b): b for b in printable}
    shifted = [b for b in range(N_BYTES) if b not in set(printable)]
    chars.update({chr(N_BYTES + n): b for n, b in enumerate(shifted)})
    return chars


def compare_with_hf_bpe(
    train_text: str,
    test_text: str,
    vocab_size: int,
) -> dict[str, Any]:
    """Train our BPE and Hugging Face ``tokenizers``' on the same text; compare.

    Both are byte-level with ``vocab_size`` tokens in all, no special
    tokens, and stop at pairs seen fewer than twice. Nothing is downloaded.

    Returns:
        a dict with, for ``ours`` and ``hf``: training seconds, vocabulary
        size, tokens per character on ``test_text`` and whether it decodes
        back exactly; and ``overlap``, the share of our learned tokens (as
        byte strings) that Hugging Face's vocabulary also holds.

    Raises:
        ImportError: ``tokenizers`` is not installed.
    """
    try:
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    except ImportError as err:  # pragma: no cover - depends on the environment
        message = "compare_with_hf_bpe needs Hugging Face's tokenizers"
        raise ImportError(f"{message}: pip install tokenizers==0.23.3") from err

    start = time.perf_counter()
    ours = BPETokenizer.train(train_text, vocab_size)
    ours_s = time.perf_counter() - start

    hf = Tokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
    )
    start = time.perf_counter()
    hf.train_from_iterator([train_text], trainer=trainer)
    hf_s = time.perf_counter() - start

    ours_ids = ours.encode(test_text)
    hf_ids = hf.encode(test_text).ids
    byte_of = _gpt2_byte_chars()
    hf_tokens = {bytes(byte_of[c] for c in tok) for tok in hf.get_vocab()}
    learned = ours.token_bytes[N_BYTES:]
    shared = sum(tok in hf_tokens for tok in learned)
    n_chars = len(test_text)
    return {
        "ours": {
            "train_seconds": ours_s,
            "vocab_size": ours.vocab_size,
            "tokens_per_char": len(ours_ids) / n_chars,
            "round_trip": ours.decode(ours_ids) == test_text,
        },
        "hf": {
            "train_seconds": hf_s,
            "vocab_size": hf.get_vocab_size(),
            "tokens_per_char": len(hf_ids) / n_chars,
            "round_trip": hf.decode(hf_ids) == test_text,
        },
        "overlap": shared / max(1, len(learned)),
    }
