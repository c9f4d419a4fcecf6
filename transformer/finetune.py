"""Fine-tuning: a pooled classifier, and a task that ships with Python (chapter 12).

After pretraining, an encoder is turned into a classifier by reading one vector
per sequence (BERT's pooled first position, or a ViT's class token) into a new
linear layer, and training everything on labelled examples. :class:`Classifier`
exposes a model's ``classify`` to the book's :func:`~transformer.training.train`,
:func:`labelled_batches` makes the batches and :func:`accuracy` scores a model.

The task, :func:`docstring_task`: which package of the standard library does a
docstring come from? The docstrings are the library's own (parsed with
``ast`` from the source files that ship with every Python), the label is
where their authors put them, so no rule made the labels and none can be read
off the text. Whole *files* go to either training or test, so a test docstring
never has a sibling from the same file in training: a model must recognise the
vocabulary of asynchronous I/O, e-mail messages or widgets, not a file's
idioms.

Shape letters: B batch, T length, K classes.
"""

from __future__ import annotations

import ast
import random
import sysconfig
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from transformer.mlm import EncoderBatch

__all__ = [
    "PACKAGES",
    "Classifier",
    "Docstring",
    "accuracy",
    "docstring_task",
    "labelled_batches",
]

#: The packages whose docstrings are classified: six topics, all in every Python 3.
PACKAGES = ("asyncio", "email", "importlib", "tkinter", "unittest", "xml")


@dataclass(frozen=True)
class Docstring:
    """One example: the text, its package (the label) and the file it came from."""

    text: str
    package: str
    file: str


def _docstrings(path: Path, min_chars: int) -> list[str]:
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (SyntaxError, UnicodeDecodeError):
        return []
    kinds = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, kinds):
            doc = ast.get_docstring(node)
            if doc and len(doc) >= min_chars:
                found.append(" ".join(doc.split()))  # one line, single spaces
    return found


def docstring_task(
    packages: Sequence[str] = PACKAGES,
    *,
    test_fraction: float = 0.25,
    min_chars: int = 80,
    seed: int = 0,
    root: str | Path | None = None,
) -> tuple[list[Docstring], list[Docstring]]:
    """Docstrings of the standard library labelled by package, split by file.

    Files (tests excluded) are shuffled with ``seed``; within each package, files go
    to the test set until it holds ``test_fraction`` of that package's docstrings.
    A text that occurs more than once (a copied docstring) is dropped everywhere.

    Args:
        packages: package directories of the standard library.
        test_fraction: the share of each package's docstrings held out.
        min_chars: shortest docstring kept (counted before its whitespace is collapsed).
        seed: the seed of the file split.
        root: the standard library's directory (default: this Python's).

    Returns:
        ``(train, test)`` lists of :class:`Docstring`.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    lib = Path(root) if root is not None else Path(sysconfig.get_paths()["stdlib"])
    by_file: dict[str, list[Docstring]] = {}
    for package in packages:
        folder = lib / package
        if not (folder / "__init__.py").exists():
            raise ValueError(
                f"{package!r} is not a package of the standard library at {lib}"
            )
        for path in sorted(folder.rglob("*.py")):
            parts = path.relative_to(lib).parts
            if any(p.startswith("test") for p in parts[1:]):
                continue
            name = "/".join(parts)
            docs = [Docstring(t, package, name) for t in _docstrings(path, min_chars)]
            if docs:
                by_file[name] = docs
    counts: dict[str, int] = {}
    for docs in by_file.values():
        for d in docs:
            counts[d.text] = counts.get(d.text, 0) + 1
    rng = random.Random(seed)
    train: list[Docstring] = []
    test: list[Docstring] = []
    for package in packages:
        files = [f for f in by_file if by_file[f][0].package == package]
        rng.shuffle(files)
        total = sum(len(by_file[f]) for f in files)
        held = 0
        for f in files:
            unique = [d for d in by_file[f] if counts[d.text] == 1]
            if held < test_fraction * total and len(files) > 1:
                test += unique
                held += len(by_file[f])
            else:
                train += unique
    return train, test


def labelled_batches(
    inputs: Tensor,
    labels: Tensor,
    batch_size: int = 32,
    *,
    attention_mask: Tensor | None = None,
    shuffle: bool = True,
    seed: int = 0,
) -> _LabelledBatches:
    """Batches of ``(inputs, mask, labels)`` for ``train`` or :func:`accuracy`.

    Shape:
        inputs: (N, ...) (ids (N, T) or images (N, I, H, W)); labels (N,) long;
        attention_mask: (N, T) or ``None``.
    """
    if len(inputs) != len(labels):
        raise ValueError(f"{len(inputs)} inputs but {len(labels)} labels")
    if len(inputs) == 0:
        raise ValueError("no examples")
    if attention_mask is not None and attention_mask.shape != inputs.shape[:2]:
        raise ValueError("attention_mask must have the shape (N, T) of the ids")
    return _LabelledBatches(inputs, labels, attention_mask, batch_size, shuffle, seed)


class _LabelledBatches:
    def __init__(
        self,
        inputs: Tensor,
        labels: Tensor,
        mask: Tensor | None,
        batch_size: int,
        shuffle: bool,
        seed: int,
    ) -> None:
        self.inputs, self.labels, self.mask = inputs, labels, mask
        self.batch_size, self.shuffle = batch_size, shuffle
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return -(-len(self.inputs) // self.batch_size)

    def __iter__(self) -> Iterator[EncoderBatch]:
        n = len(self.inputs)
        order = (
            torch.randperm(n, generator=self.generator)
            if self.shuffle
            else torch.arange(n)
        )
        for start in range(0, n, self.batch_size):
            i = order[start : start + self.batch_size]
            mask = None if self.mask is None else self.mask[i]
            yield EncoderBatch(self.inputs[i], mask, self.labels[i])


class Classifier(nn.Module):
    """Any model with ``classify`` seen through ``train``'s protocol.

    ``forward(inputs, attention_mask)`` returns class logits (B, K); train it with
    ``loss_fn=torch.nn.functional.cross_entropy``.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        if not hasattr(model, "classify"):
            raise TypeError(f"{type(model).__name__} has no classify method")
        self.model = model

    def forward(self, inputs: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        classify: Any = self.model.classify
        if attention_mask is None:
            return classify(inputs)
        return classify(inputs, attention_mask)


@torch.no_grad()
def accuracy(model: nn.Module, batches: Any) -> float:
    """The share of examples whose highest logit is the label (model in eval mode)."""
    was_training = model.training
    model.eval()
    right = total = 0
    try:
        for b in batches:
            logits = model(b.src, b.tgt_in)  # (B, K)
            right += int((logits.argmax(-1) == b.tgt_out).sum())
            total += len(b.tgt_out)
    finally:
        model.train(was_training)
    if total == 0:
        raise ValueError("no batches to score")
    return right / total
