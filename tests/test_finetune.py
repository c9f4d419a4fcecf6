"""Fine-tuning: the docstring task is split by file with natural labels, and a pooled
classifier learns through the book's ``train``."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from transformer.bert import EncoderOnlyConfig, EncoderOnlyTransformer
from transformer.finetune import (
    PACKAGES,
    Classifier,
    accuracy,
    docstring_task,
    labelled_batches,
)
from transformer.training import train
from transformer.vit import VisionTransformer, VisionTransformerConfig


def test_docstring_task_is_split_by_file_without_duplicates():
    train_docs, test_docs = docstring_task()
    assert len(train_docs) > 500 and len(test_docs) > 200
    assert {d.file for d in train_docs}.isdisjoint({d.file for d in test_docs})
    assert {d.text for d in train_docs}.isdisjoint({d.text for d in test_docs})
    for docs in (train_docs, test_docs):
        assert {d.package for d in docs} == set(PACKAGES)
        assert all(d.file.startswith(d.package + "/") for d in docs)
        assert all("\n" not in d.text and "  " not in d.text for d in docs)
    other = docstring_task(seed=1)[1]
    assert {d.file for d in other} != {d.file for d in test_docs}


def test_docstring_task_errors():
    with pytest.raises(ValueError, match="not a package"):
        docstring_task(("no_such_package",))
    with pytest.raises(ValueError, match="test_fraction"):
        docstring_task(test_fraction=1.0)


def test_labelled_batches_cover_every_example_once():
    x = torch.arange(10).view(10, 1)
    y = torch.arange(10)
    batches = labelled_batches(x, y, 4, seed=0)
    seen = torch.cat([b.src[:, 0] for b in batches])
    assert len(batches) == 3 and sorted(seen.tolist()) == list(range(10))
    with pytest.raises(ValueError, match="labels"):
        labelled_batches(x, y[:3])
    with pytest.raises(ValueError, match="attention_mask"):
        labelled_batches(x, y, attention_mask=torch.ones(10, 3))
    with pytest.raises(TypeError, match="classify"):
        Classifier(torch.nn.Linear(2, 2))


def test_text_classifier_learns_through_train():
    """Label: does token 5 occur anywhere? The pooled first position must read it."""
    torch.manual_seed(0)
    ids = torch.randint(6, 20, (256, 10))
    ids[:, 0] = 1  # a [CLS]-like first token
    labels = torch.randint(0, 2, (256,))
    where = torch.randint(1, 10, (256,))
    ids[labels == 1, where[labels == 1]] = 5
    mask = torch.ones_like(ids, dtype=torch.bool)
    config = EncoderOnlyConfig(
        vocab_size=20, d_model=32, n_heads=4, d_ff=64, dropout=0.0, n_classes=2
    )
    clf = Classifier(EncoderOnlyTransformer(config))
    batches = labelled_batches(ids, labels, 32, attention_mask=mask)
    before = accuracy(clf, batches)
    train(clf, batches, steps=200, lr=2e-3, loss_fn=F.cross_entropy, progress=False)
    assert before < 0.7 and accuracy(clf, batches) > 0.95


def test_image_classifier_learns_through_train():
    torch.manual_seed(0)
    x = torch.rand(128, 1, 8, 8) * 0.2
    y = torch.randint(0, 2, (128,))
    x[y == 1, :, :4, :4] += 0.8  # a bright top-left corner
    config = VisionTransformerConfig(
        image_size=8,
        patch_size=4,
        n_classes=2,
        d_model=16,
        n_heads=2,
        d_ff=32,
        dropout=0.0,
    )
    clf = Classifier(VisionTransformer(config))
    batches = labelled_batches(x, y, 32)
    train(clf, batches, steps=100, lr=3e-3, loss_fn=F.cross_entropy, progress=False)
    assert accuracy(clf, batches) > 0.95
