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
    "plotting": 1,
    "data": 1,
    "rnn": 2,
    "seq2seq": 4,
    "training": 4,
    "decoding": 4,
    "attention": 5,
    "masks": 6,
    "positional": 7,
    "layers": 8,
    "model": 9,
    "lm": 10,
    "bpe": 10,
    "ngram": 10,
    "sampling": 10,
}

__all__ = ["CHAPTER_OF_MODULE", "__version__"]
