"""The encoder-only Transformer: every token sees every other (chapter 12).

Keep chapter 9's encoder and drop the decoder: a stack of
:class:`~transformer.layers.EncoderLayer` with no causal mask, so each output
vector is built from the whole input, left and right (BERT, Devlin et al., 2019).
Such a model does not generate; it *reads*. Two heads cover what it is used for:

* :meth:`EncoderOnlyTransformer.token_logits`: a score over the vocabulary at
  every position (BERT's head: a dense layer, GELU and LayerNorm, then the
  output layer tied to the token embedding), for masked-token pretraining;
* :meth:`EncoderOnlyTransformer.classify`: one vector per sequence (the first
  position's, pooled through a tanh layer as BERT does), then a linear classifier:
  many-to-one, as chapter 1 drew it.

BERT also adds a *token-type* (segment) embedding to every position, so that
two texts packed into one input (a question and a passage) can be told apart;
a single text uses type 0 everywhere.

Shape letters: B batch, T length, C model size (d_model), V vocabulary, K classes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from transformer.config import BlockConfig
from transformer.embedding import TokenEmbedding, check_ids, has_attention_hooks
from transformer.layers import ACTIVATIONS, EncoderLayer
from transformer.masks import padding_mask

__all__ = ["EncoderOnlyConfig", "EncoderOnlyTransformer"]


@dataclass(frozen=True, kw_only=True)
class EncoderOnlyConfig(BlockConfig):
    """Every hyper-parameter of an :class:`EncoderOnlyTransformer`.

    Args:
        vocab_size: V.
        n_layers: blocks L.
        n_classes: K, outputs of the classification head (``None``: no head).
        scale_embeddings: multiply token embeddings by sqrt(C) (chapter 9's choice);
            BERT does not.
        n_token_types: rows of the token-type (segment) embedding; BERT has 2,
            0 means none.
        mlm_transform: put BERT's dense + activation + LayerNorm layer before the
            tied output layer of :meth:`EncoderOnlyTransformer.token_logits`.
        **shared: the fields of :class:`~transformer.config.BlockConfig`; the
            defaults here are BERT's choices (post-LN, GELU, learned positions, tied
            token head, a LayerNorm on the embeddings).
    """

    vocab_size: int
    n_layers: int = 2
    n_classes: int | None = None
    activation: str = "gelu"
    positional: str = "learned"
    tie_output: bool = True
    scale_embeddings: bool = False
    n_token_types: int = 2
    mlm_transform: bool = True
    _vocab_fields: tuple[str, ...] = field(
        default=("vocab_size",), init=False, repr=False
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        self._positive_int("n_layers")
        if self.n_classes is not None:
            self._positive_int("n_classes")
        self._positive_int("n_token_types", allow_zero=True)
        for name in ("scale_embeddings", "mlm_transform"):
            if not isinstance(getattr(self, name), bool):
                self._fail(f"{name} must be True or False, got {getattr(self, name)!r}")


class EncoderOnlyTransformer(nn.Module):
    """Bidirectional self-attention blocks over one sequence, with two optional heads.

    Args:
        config: an :class:`EncoderOnlyConfig`.

    Shape:
        ids: (B, T) long -> hidden states (B, T, C); token_logits (B, T, V);
        classify (B, K).
    """

    config_class = EncoderOnlyConfig

    def __init__(self, config: EncoderOnlyConfig) -> None:
        super().__init__()
        if not isinstance(config, EncoderOnlyConfig):
            raise TypeError(
                f"config must be an EncoderOnlyConfig, got {type(config).__name__}"
            )
        c = self.config = config
        self.pad_id = c.pad_id
        self.embedding = TokenEmbedding(c.vocab_size, c.d_model, c.pad_id)
        if not c.scale_embeddings:
            self.embedding.unscaled_(std=0.02)
        self.positional = c.make_positional()
        self.token_type: nn.Embedding | None = None
        if c.n_token_types:
            self.token_type = nn.Embedding(c.n_token_types, c.d_model)
            nn.init.normal_(self.token_type.weight, std=0.02)
        self._use_hooks = has_attention_hooks(self.positional)
        # Post-LN stacks normalise the embeddings first (BERT); pre-LN ones at the end.
        self.embedding_norm = (
            None if c.norm_first else nn.LayerNorm(c.d_model, eps=c.layer_norm_eps)
        )
        self.dropout = nn.Dropout(c.dropout)
        self.layers = nn.ModuleList(
            EncoderLayer.from_config(c) for _ in range(c.n_layers)
        )
        self.norm = (
            nn.LayerNorm(c.d_model, eps=c.layer_norm_eps) if c.use_final_norm else None
        )
        self.token_transform: nn.Module | None = None
        if c.mlm_transform:
            self.token_transform = nn.Sequential(
                nn.Linear(c.d_model, c.d_model, bias=c.bias),
                _Activation(c.activation),
                nn.LayerNorm(c.d_model, eps=c.layer_norm_eps),
            )
        self.token_head = nn.Linear(c.d_model, c.vocab_size, bias=c.bias)
        if c.tie_output:
            self.token_head.weight = self.embedding.weight
        self.pooler = nn.Sequential(nn.Linear(c.d_model, c.d_model), nn.Tanh())
        self.classifier: nn.Linear | None = None
        if c.n_classes is not None:
            self.classifier = nn.Linear(c.d_model, c.n_classes)

    def forward(
        self,
        ids: Tensor,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
    ) -> Tensor:
        """Hidden states (B, T, C): each position reads the whole sequence.

        Args:
            ids: (B, T) token ids, padded with ``pad_id``.
            attention_mask: (B, T) 1/True at real tokens; default ``ids != pad_id``.
            token_type_ids: (B, T) segment of each token; default all 0.
        """
        check_ids(ids, "ids", self.config.vocab_size)
        if ids.device != self.embedding.weight.device:
            where = self.embedding.weight.device
            raise ValueError(f"ids are on {ids.device} but the model is on {where}")
        if attention_mask is None:
            mask = padding_mask(ids, self.pad_id)  # (B, 1, 1, T)
        elif attention_mask.shape != ids.shape:
            raise ValueError(
                f"attention_mask must have the shape of the ids {tuple(ids.shape)}, "
                f"got {tuple(attention_mask.shape)}"
            )
        else:
            mask = attention_mask.to(torch.bool)[:, None, None, :]  # (B, 1, 1, T)
        x = self.positional.embed_range(self.embedding(ids), 0)  # (B, T, C)
        if self.token_type is not None:
            if token_type_ids is None:
                x = x + self.token_type.weight[0]
            elif token_type_ids.shape != ids.shape:
                raise ValueError(
                    "token_type_ids must have the shape of the ids "
                    f"{tuple(ids.shape)}, "
                    f"got {tuple(token_type_ids.shape)}"
                )
            else:
                check_ids(
                    token_type_ids, "token_type_ids", self.token_type.num_embeddings
                )
                x = x + self.token_type(token_type_ids)
        elif token_type_ids is not None:
            raise ValueError(
                "this model has no token-type embedding: set n_token_types="
            )
        if self.embedding_norm is not None:
            x = self.embedding_norm(x)
        x = self.dropout(x)
        hooks = self.positional if self._use_hooks else None
        for layer in self.layers:
            x = layer(x, mask, positional=hooks)
        return x if self.norm is None else self.norm(x)

    def token_logits(
        self,
        ids: Tensor,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
    ) -> Tensor:
        """Scores over the vocabulary at every position (B, T, V)."""
        h = self(ids, attention_mask, token_type_ids)  # (B, T, C)
        if self.token_transform is not None:
            h = self.token_transform(h)
        return self.token_head(h)  # (B, T, V)

    def pooled(
        self,
        ids: Tensor,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
    ) -> Tensor:
        """One vector per sequence (B, C): the first position's, as tanh(W h + b)."""
        return self.pooler(self(ids, attention_mask, token_type_ids)[:, 0])  # (B, C)

    def classify(
        self,
        ids: Tensor,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
    ) -> Tensor:
        """Class logits (B, K) from the first position's pooled vector."""
        if self.classifier is None:
            raise ValueError("this model has no classification head: set n_classes=")
        return self.classifier(
            self.pooled(ids, attention_mask, token_type_ids)
        )  # (B, K)


class _Activation(nn.Module):
    """An activation of :data:`~transformer.layers.ACTIVATIONS` as a module."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name
        self.fn = ACTIVATIONS[name]

    def forward(self, x: Tensor) -> Tensor:
        return self.fn(x)

    def extra_repr(self) -> str:
        return self.name
