"""The hyper-parameters of a Transformer, in one typed and checked record (chapter 9).

:class:`TransformerConfig` describes the encoder-decoder of "Attention Is All You
Need". Its fields (model size, heads, feed-forward size, dropout, normalisation,
positional scheme, special ids) are shared by the decoder-only and encoder-only
configs of chapters 10 and 12, which add only what differs (one vocabulary, one
stack); :class:`BlockConfig` holds the shared part and its checks.

Variants are made with :func:`dataclasses.replace`, which re-runs the checks::

    base = TransformerConfig(src_vocab_size=40, tgt_vocab_size=20)
    deep = dataclasses.replace(base, n_encoder_layers=6, n_decoder_layers=6)

Every field is a keyword: ``TransformerConfig(40, 20)`` is refused, so a config
never depends on the order of its fields.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from transformer.layers import ACTIVATIONS, PositionwiseFeedForward
from transformer.multihead import MultiHeadAttention
from transformer.positional import PositionalScheme
from transformer.relative import POSITIONAL_SCHEMES, make_positional

__all__ = ["BlockConfig", "TransformerConfig"]


def _divisor_hint(d_model: int, n_heads: int) -> int:
    divisors = [h for h in range(1, d_model + 1) if d_model % h == 0]
    return min(divisors, key=lambda h: (abs(h - n_heads), h))


@dataclass(frozen=True, kw_only=True)
class BlockConfig:
    """The fields every Transformer of the book shares, and their checks.

    Args:
        d_model: model size C (512 in the paper's base model).
        n_heads: attention heads H; must divide ``d_model`` (paper: 8).
        d_ff: feed-forward hidden size (paper: 2048).
        dropout: dropout on embeddings+positions, sub-layer outputs, attention
            weights and FFN hidden units (paper: 0.1).
        activation: ``"relu"`` (paper) or ``"gelu"``.
        norm_first: ``False`` post-LN (paper), ``True`` pre-LN (Xiong et al., 2020).
        final_norm: a LayerNorm after each stack. ``None`` means "only for pre-LN",
            where it is needed because the residual stream is never normalised
            otherwise. (``torch.nn.Transformer`` always has one.)
        positional: name of a chapter 7 positional scheme (``"sinusoidal"``,
            ``"learned"``, ``"relative"``, ``"rope"``, ``"t5"``, ``"alibi"``,
            ``"none"``).
        positional_options: keyword options of that scheme's constructor, e.g.
            ``{"values": True}`` for Shaw et al.'s value vectors, ``{"max_distance":
            8}``, ``{"bidirectional": False}`` for T5's decoder bias, ``{"base":
            500000.0}`` for RoPE. Plain values only (a checkpoint stores them).
        max_len: longest sequence a positional scheme with a table must support.
        tie_output: use the (target) embedding matrix as the output projection
            (Press & Wolf, 2017); the paper does this.
        pad_id, bos_id, eos_id: the special ids (0, 1, 2 in every
            :class:`~transformer.data.Vocab`); decoding reads its defaults here.
        layer_norm_eps: epsilon of every LayerNorm.
        bias: biases in every linear layer, the output layer included.
    """

    d_model: int = 128
    n_heads: int = 4
    d_ff: int = 512
    dropout: float = 0.1
    activation: str = "relu"
    norm_first: bool = False
    final_norm: bool | None = None
    positional: str = "sinusoidal"
    positional_options: dict[str, Any] = field(default_factory=dict)
    max_len: int = 512
    tie_output: bool = False
    pad_id: int = 0
    bos_id: int = 1
    eos_id: int = 2
    layer_norm_eps: float = 1e-5
    bias: bool = True

    #: Fields that hold a vocabulary size (each special id must fit every one).
    _vocab_fields: tuple[str, ...] = dataclasses.field(
        default=(), init=False, repr=False
    )

    def _fail(self, message: str) -> None:
        raise ValueError(f"{type(self).__name__}.{message}")

    def _positive_int(self, name: str, allow_zero: bool = False) -> None:
        value = getattr(self, name)
        low = 0 if allow_zero else 1
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            kind = "a non-negative" if allow_zero else "a positive"
            self._fail(f"{name} must be {kind} int, got {value!r}")

    def __post_init__(self) -> None:
        for name in ("d_model", "n_heads", "d_ff", "max_len", *self._vocab_fields):
            self._positive_int(name)
        for name in ("pad_id", "bos_id", "eos_id"):
            self._positive_int(name, allow_zero=True)
        if self.d_model % self.n_heads != 0:
            self._fail(
                f"d_model ({self.d_model}) must be divisible by n_heads "
                f"({self.n_heads}); e.g. use "
                f"n_heads={_divisor_hint(self.d_model, self.n_heads)}"
            )
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, int | float):
            self._fail(f"dropout must be a float, got {self.dropout!r}")
        if not 0.0 <= self.dropout < 1.0:
            self._fail(f"dropout must be in [0, 1), got {self.dropout}")
        if self.activation not in ACTIVATIONS:
            self._fail(
                f"activation must be one of {sorted(ACTIVATIONS)}, got "
                f"{self.activation!r}"
            )
        if not isinstance(self.positional, str) or (
            self.positional.lower() not in POSITIONAL_SCHEMES
        ):
            self._fail(
                "positional must name a positional scheme, one of "
                f"{sorted(POSITIONAL_SCHEMES)}; got {self.positional!r}"
            )
        self._check_positional_options()
        for name in ("norm_first", "tie_output", "bias"):
            if not isinstance(getattr(self, name), bool):
                self._fail(f"{name} must be True or False, got {getattr(self, name)!r}")
        if self.final_norm is not None and not isinstance(self.final_norm, bool):
            self._fail(
                f"final_norm must be True, False or None, got {self.final_norm!r}"
            )
        sizes = {name: getattr(self, name) for name in self._vocab_fields}
        for name in ("pad_id", "bos_id", "eos_id"):
            value = getattr(self, name)
            if any(value >= size for size in sizes.values()):
                self._fail(
                    f"{name} ({value}) must be a valid id of the vocabulary "
                    f"({', '.join(f'{k}={v}' for k, v in sizes.items())})"
                )
        if not self.layer_norm_eps > 0:
            self._fail(f"layer_norm_eps must be positive, got {self.layer_norm_eps}")

    def _check_positional_options(self) -> None:
        options = self.positional_options
        if not isinstance(options, dict) or not all(
            isinstance(k, str) for k in options
        ):
            self._fail(
                f"positional_options must be a dict with str keys, got {options!r}"
            )
        try:  # build it once: a typo in an option name fails here, not in the model
            make_positional(
                self.positional,
                d_model=self.d_model,
                n_heads=self.n_heads,
                max_len=self.max_len,
                **options,
            )
        except TypeError as e:
            self._fail(
                f"positional_options {options!r} do not fit {self.positional!r}: {e}"
            )

    def __hash__(self) -> int:  # positional_options is a dict: hash what it holds
        values = [
            tuple(sorted(v.items())) if isinstance(v, dict) else v
            for v in dataclasses.astuple(self)
        ]
        return hash((type(self).__name__, *values))

    @property
    def use_final_norm(self) -> bool:
        """Whether each stack ends with a LayerNorm (resolves ``final_norm=None``)."""
        return self.norm_first if self.final_norm is None else self.final_norm

    @property
    def head_size(self) -> int:
        """D = C / H."""
        return self.d_model // self.n_heads

    def make_positional(self) -> PositionalScheme:
        """The positional scheme this config names, with its options."""
        return make_positional(
            self.positional,
            d_model=self.d_model,
            n_heads=self.n_heads,
            max_len=self.max_len,
            **self.positional_options,
        )

    def make_norm(self) -> nn.LayerNorm:
        """One normalisation layer of a block, or of the end of a stack: a LayerNorm."""
        return nn.LayerNorm(self.d_model, eps=self.layer_norm_eps)

    def make_attention(self) -> MultiHeadAttention:
        """The self-attention of a block: H heads, each with its own keys and values."""
        return MultiHeadAttention(
            self.d_model, self.n_heads, dropout=self.dropout, bias=self.bias
        )

    def make_ffn(self) -> PositionwiseFeedForward:
        """The feed-forward network of a block: ``W2 act(W1 x)``."""
        return PositionwiseFeedForward(
            self.d_model, self.d_ff, self.dropout, self.activation, self.bias
        )

    def to_dict(self) -> dict[str, Any]:
        """The config as a plain dict (what a checkpoint stores)."""
        return {
            f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.init
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> BlockConfig:
        """Rebuild a config from :meth:`to_dict`'s output, rejecting unknown keys."""
        known = {f.name for f in dataclasses.fields(cls) if f.init}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(
                f"unknown {cls.__name__} fields {unknown}; known: {sorted(known)}"
            )
        return cls(**values)


@dataclass(frozen=True, kw_only=True)
class TransformerConfig(BlockConfig):
    """Every hyper-parameter of the encoder-decoder
    :class:`~transformer.model.Transformer`.

    Args:
        src_vocab_size: source vocabulary size.
        tgt_vocab_size: target vocabulary size V.
        n_encoder_layers: encoder layers (paper: 6; 0 is allowed).
        n_decoder_layers: decoder layers (paper: 6).
        share_embeddings: one embedding matrix for source and target (requires
            equal vocabulary sizes), as the paper's shared BPE vocabulary.
        **shared: the fields of :class:`BlockConfig` (``d_model``, ``n_heads``, ...).
    """

    src_vocab_size: int
    tgt_vocab_size: int
    n_encoder_layers: int = 2
    n_decoder_layers: int = 2
    share_embeddings: bool = False
    _vocab_fields: tuple[str, ...] = dataclasses.field(
        default=("src_vocab_size", "tgt_vocab_size"), init=False, repr=False
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        self._positive_int("n_encoder_layers", allow_zero=True)
        self._positive_int("n_decoder_layers")
        if not isinstance(self.share_embeddings, bool):
            self._fail(
                f"share_embeddings must be True or False, got {self.share_embeddings!r}"
            )
        if self.share_embeddings and self.src_vocab_size != self.tgt_vocab_size:
            self._fail(
                "share_embeddings=True needs one vocabulary for source and target, "
                f"but src_vocab_size={self.src_vocab_size} != "
                f"tgt_vocab_size={self.tgt_vocab_size}"
            )

    @classmethod
    def for_vocabs(
        cls, src_vocab: Any, tgt_vocab: Any, **fields: Any
    ) -> TransformerConfig:
        """A config sized for two :class:`~transformer.data.Vocab` s, ids taken from
        them."""
        for name in ("pad_id", "bos_id", "eos_id"):
            if getattr(src_vocab, "pad_id", None) != getattr(tgt_vocab, "pad_id", None):
                raise ValueError("source and target vocabularies must share the pad id")
            fields.setdefault(name, getattr(tgt_vocab, name))
        return cls(
            src_vocab_size=len(src_vocab), tgt_vocab_size=len(tgt_vocab), **fields
        )
