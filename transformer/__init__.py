"""The package the book builds, one module per concept, in reading order.

Each module is introduced by one chapter (see :data:`CHAPTER_OF_MODULE`) and may
import only modules of its own or earlier chapters, so the package reads like
the book. ``tests/test_package_order.py`` enforces this.
"""

__version__ = "0.1.0"

#: The chapter that introduces each module. Later chapters may extend a module,
#: but a module never imports one that the reader has not met yet.
CHAPTER_OF_MODULE: dict[str, int] = {
    "utils": 1,
    "source": 1,
    "plotting": 1,
    "data": 1,
    "tasks": 1,
    "rnn": 2,
    "rnn_tools": 2,
    "rnn_interop": 2,
    "gated": 3,
    "seq2seq": 4,
    "training": 4,
    "decoding": 4,
    "bottleneck": 4,
    "diagrams": 4,
    "attention": 5,
    "attention_seq2seq": 5,
    "masks": 6,
    "multihead": 6,
    "kv_cache": 6,
    "positional": 7,
    "alibi": 7,
    "relative": 7,
    "layers": 8,
    "schedules": 8,
    "block_diagrams": 8,
    "config": 9,
    "embedding": 9,
    "model": 9,
    "beam": 9,
    "checkpoint": 9,
    "label_smoothing": 9,
    "fast": 9,
    "lm": 10,
    "bpe": 10,
    "sampling": 10,
    "ngram": 10,
    "gpt": 10,
    "gpt2": 10,
    "fast_lm": 10,
    "modern": 11,
    "llama": 11,
    "fast_modern": 11,
    "bert": 12,
    "bert_hf": 12,
    "mlm": 12,
    "finetune": 12,
    "vit": 12,
    "vit_hf": 12,
    "efficient": 13,
    "sparse_attention": 13,
    "linear_attention": 13,
    "efficient_layer": 13,
    "distributed": 14,
    "resume": 14,
    "train": 14,
}

__all__ = ["CHAPTER_OF_MODULE", "__version__"]
