"""The full encoder-decoder Transformer of "Attention Is All You Need".

From input to output::

    src ids -> embedding * sqrt(C) -> + position -> dropout -> N x EncoderLayer -> memory
    tgt ids -> embedding * sqrt(C) -> + position -> dropout -> N x DecoderLayer(memory)
            -> linear to V -> softmax (inside the loss)

The model follows the sequence-to-sequence protocol shared by every chapter:
``forward(src, tgt_in)`` for teacher forcing, ``start(src)`` / ``step(prev, state)``
for incremental decoding (with a key/value cache) and ``reorder_state`` for beam
search. :class:`TransformerConfig` holds every hyper-parameter; a checkpoint stores
the config next to the weights so :func:`load_checkpoint` can rebuild the model.

Shape letters: B batch, S source length, T target length, C model size (d_model),
H heads, V vocabulary, L layers.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from transformer.attention import KVCache
from transformer.layers import (
    ACTIVATIONS,
    DecoderLayer,
    DecoderLayerStepWeights,
    EncoderLayer,
    FastDropout,
)
from transformer.masks import causal_mask, decoder_self_mask, padding_mask
from transformer.positional import POSITIONAL_SCHEMES, PositionalScheme, make_positional

__all__ = [
    "TransformerConfig",
    "Encoder",
    "Decoder",
    "Transformer",
    "DecoderState",
    "save_checkpoint",
    "load_checkpoint",
    "CheckpointError",
]

_CHECKPOINT_FORMAT = "transformer-checkpoint"
_CHECKPOINT_VERSION = 1


@dataclass(frozen=True)
class TransformerConfig:
    """Every hyper-parameter of a :class:`Transformer`, checked when it is created.

    Variants are made with :func:`dataclasses.replace`, which re-runs the checks::

        base = TransformerConfig(src_vocab_size=40, tgt_vocab_size=20)
        deep = dataclasses.replace(base, n_encoder_layers=6, n_decoder_layers=6)

    Args:
        src_vocab_size: source vocabulary size.
        tgt_vocab_size: target vocabulary size V.
        d_model: model size C (512 in the paper's base model).
        n_heads: attention heads H; must divide ``d_model`` (paper: 8).
        n_encoder_layers: encoder layers (paper: 6).
        n_decoder_layers: decoder layers (paper: 6).
        d_ff: feed-forward hidden size (paper: 2048).
        dropout: dropout on embeddings+positions, sub-layer outputs, attention
            weights and FFN hidden units (paper: 0.1).
        activation: ``"relu"`` (paper) or ``"gelu"``.
        norm_first: ``False`` post-LN (paper), ``True`` pre-LN (Xiong et al., 2020).
        final_norm: a LayerNorm after each stack. ``None`` means "only for pre-LN",
            where it is needed because the residual stream is never normalised
            otherwise. (``torch.nn.Transformer`` always has one.)
        positional: name of a chapter 7 positional scheme (e.g. ``"sinusoidal"``,
            ``"learned"``, ``"rope"``, ``"alibi"``, ``"none"``).
        max_len: longest sequence a positional scheme with a table must support.
        tie_output: use the target embedding matrix as the output projection
            (Press & Wolf, 2017); the paper does this.
        share_embeddings: one embedding matrix for source and target (requires
            equal vocabulary sizes), as the paper's shared BPE vocabulary.
        pad_id: padding id of both vocabularies (0 in :mod:`transformer.data`).
        layer_norm_eps: epsilon of every LayerNorm.
        bias: biases in the linear layers.
    """

    src_vocab_size: int
    tgt_vocab_size: int
    d_model: int = 128
    n_heads: int = 4
    n_encoder_layers: int = 2
    n_decoder_layers: int = 2
    d_ff: int = 512
    dropout: float = 0.1
    activation: str = "relu"
    norm_first: bool = False
    final_norm: bool | None = None
    positional: str = "sinusoidal"
    max_len: int = 512
    tie_output: bool = False
    share_embeddings: bool = False
    pad_id: int = 0
    layer_norm_eps: float = 1e-5
    bias: bool = True

    def __post_init__(self) -> None:
        def positive_int(name: str, allow_zero: bool = False) -> None:
            value = getattr(self, name)
            low = 0 if allow_zero else 1
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                kind = "a non-negative" if allow_zero else "a positive"
                raise ValueError(f"TransformerConfig.{name} must be {kind} int, got {value!r}")

        for name in ("src_vocab_size", "tgt_vocab_size", "d_model", "n_heads", "d_ff", "max_len"):
            positive_int(name)
        positive_int("n_encoder_layers", allow_zero=True)
        positive_int("n_decoder_layers")
        positive_int("pad_id", allow_zero=True)
        if self.d_model % self.n_heads != 0:
            raise ValueError(
                f"TransformerConfig.d_model ({self.d_model}) must be divisible by n_heads "
                f"({self.n_heads}); e.g. use n_heads={_divisor_hint(self.d_model, self.n_heads)}"
            )
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, int | float):
            raise ValueError(f"TransformerConfig.dropout must be a float, got {self.dropout!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"TransformerConfig.dropout must be in [0, 1), got {self.dropout}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(
                f"TransformerConfig.activation must be one of {sorted(ACTIVATIONS)}, "
                f"got {self.activation!r}"
            )
        if not isinstance(self.positional, str) or (
            self.positional.lower() not in POSITIONAL_SCHEMES
        ):
            raise ValueError(
                "TransformerConfig.positional must name a positional scheme, one of "
                f"{sorted(POSITIONAL_SCHEMES)}; got {self.positional!r}"
            )
        for name in ("norm_first", "tie_output", "share_embeddings", "bias"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(
                    f"TransformerConfig.{name} must be True or False, got {getattr(self, name)!r}"
                )
        if self.final_norm is not None and not isinstance(self.final_norm, bool):
            raise ValueError(
                f"TransformerConfig.final_norm must be True, False or None, got {self.final_norm!r}"
            )
        if self.pad_id >= min(self.src_vocab_size, self.tgt_vocab_size):
            raise ValueError(
                f"TransformerConfig.pad_id ({self.pad_id}) must be a valid id of both "
                f"vocabularies (sizes {self.src_vocab_size} and {self.tgt_vocab_size})"
            )
        if self.share_embeddings and self.src_vocab_size != self.tgt_vocab_size:
            raise ValueError(
                "share_embeddings=True needs one vocabulary for source and target, but "
                f"src_vocab_size={self.src_vocab_size} != tgt_vocab_size={self.tgt_vocab_size}"
            )
        if not self.layer_norm_eps > 0:
            raise ValueError(
                f"TransformerConfig.layer_norm_eps must be positive, got {self.layer_norm_eps}"
            )

    @property
    def use_final_norm(self) -> bool:
        """Whether each stack ends with a LayerNorm (resolves ``final_norm=None``)."""
        return self.norm_first if self.final_norm is None else self.final_norm

    @property
    def head_size(self) -> int:
        """D = C / H."""
        return self.d_model // self.n_heads

    def to_dict(self) -> dict[str, Any]:
        """The config as a plain dict (what a checkpoint stores)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TransformerConfig:
        """Rebuild a config from :meth:`to_dict`'s output, rejecting unknown keys."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown TransformerConfig fields {unknown}; known: {sorted(known)}")
        return cls(**values)


def _divisor_hint(d_model: int, n_heads: int) -> int:
    divisors = [h for h in range(1, d_model + 1) if d_model % h == 0]
    return min(divisors, key=lambda h: (abs(h - n_heads), h))


def _check_ids(ids: Tensor, name: str, vocab_size: int) -> None:
    if not isinstance(ids, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of token ids, got {type(ids).__name__}")
    if ids.dim() != 2:
        raise ValueError(f"{name} must have shape (B, length), got {tuple(ids.shape)}")
    if ids.dtype != torch.long:
        raise TypeError(f"{name} must hold token ids as torch.long, got {ids.dtype}")
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= vocab_size):
        raise ValueError(
            f"{name} holds ids in [{int(ids.min())}, {int(ids.max())}] but the vocabulary has "
            f"{vocab_size} entries (ids 0..{vocab_size - 1})"
        )


class TokenEmbedding(nn.Module):
    """Token embedding scaled by sqrt(C), as in the paper (section 3.4).

    The weights start at N(0, 1/C), so after the sqrt(C) scaling every coordinate
    has unit scale, the same as a sinusoidal position code. (PyTorch's default
    N(0, 1) times sqrt(C) would be sqrt(C) times larger and drown the positions.)

    Shape:
        ids: (B, T) long -> (B, T, C)
    """

    def __init__(self, vocab_size: int, d_model: int, pad_id: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, d_model, padding_idx=pad_id)
        self.scale = math.sqrt(d_model)
        nn.init.normal_(self.embedding.weight, mean=0.0, std=d_model**-0.5)
        with torch.no_grad():
            self.embedding.weight[pad_id].zero_()

    @property
    def weight(self) -> nn.Parameter:
        return self.embedding.weight

    def forward(self, ids: Tensor) -> Tensor:
        return self.embedding(ids) * self.scale  # (B, T, C)


class Encoder(nn.Module):
    """Embedding, positions and a stack of :class:`EncoderLayer`.

    Shape:
        src: (B, S) long -> memory (B, S, C)
    """

    def __init__(
        self,
        config: TransformerConfig,
        embedding: TokenEmbedding,
        positional: PositionalScheme,
    ) -> None:
        super().__init__()
        c = config
        self.embedding = embedding
        self.positional = positional
        self._use_hooks = _has_attention_hooks(positional)
        self.dropout = FastDropout(c.dropout)
        self.layers = nn.ModuleList(
            EncoderLayer(
                c.d_model,
                c.n_heads,
                c.d_ff,
                c.dropout,
                c.activation,
                c.norm_first,
                c.layer_norm_eps,
                c.bias,
            )
            for _ in range(c.n_encoder_layers)
        )
        self.norm = nn.LayerNorm(c.d_model, eps=c.layer_norm_eps) if c.use_final_norm else None

    def forward(
        self, src: Tensor, src_mask: Tensor | None, *, need_weights: bool = False
    ) -> Tensor | tuple[Tensor, list[Tensor]]:
        """Encode ``src`` (B, S); ``src_mask`` (B, 1, 1, S) is True at real tokens."""
        x = self.embedding(src)  # (B, S, C)
        x = self.dropout(self.positional.embed_range(x, 0))  # positions 0 .. S-1
        weights: list[Tensor] = []
        for layer in self.layers:
            if need_weights:
                x, w = layer(
                    x,
                    src_mask,
                    positional=self.positional if self._use_hooks else None,
                    need_weights=True,
                )
                weights.append(w)
            else:
                x = layer(x, src_mask, positional=self.positional if self._use_hooks else None)
        if self.norm is not None:
            x = self.norm(x)
        return (x, weights) if need_weights else x


class Decoder(nn.Module):
    """Embedding, positions, a stack of :class:`DecoderLayer` and the output projection.

    Shape:
        tgt: (B, T) long, memory: (B, S, C) -> logits (B, T, V)
    """

    def __init__(
        self,
        config: TransformerConfig,
        embedding: TokenEmbedding,
        positional: PositionalScheme,
    ) -> None:
        super().__init__()
        c = config
        self.embedding = embedding
        self.positional = positional
        self._use_hooks = _has_attention_hooks(positional)
        self.dropout = FastDropout(c.dropout)
        self.layers = nn.ModuleList(
            DecoderLayer(
                c.d_model,
                c.n_heads,
                c.d_ff,
                c.dropout,
                c.activation,
                c.norm_first,
                c.layer_norm_eps,
                c.bias,
            )
            for _ in range(c.n_decoder_layers)
        )
        self.norm = nn.LayerNorm(c.d_model, eps=c.layer_norm_eps) if c.use_final_norm else None
        self.output = nn.Linear(c.d_model, c.tgt_vocab_size, bias=c.bias)
        if c.tie_output:
            # Press & Wolf (2017): the matrix that maps a token to a vector also scores
            # vectors against tokens. One parameter, two uses.
            self.output.weight = embedding.weight
        else:
            nn.init.normal_(self.output.weight, mean=0.0, std=c.d_model**-0.5)
        if self.output.bias is not None:
            nn.init.zeros_(self.output.bias)

    def forward(
        self,
        tgt: Tensor,
        memory: Tensor,
        tgt_mask: Tensor | None,
        memory_mask: Tensor | None,
        *,
        start_pos: int = 0,
        caches: list[tuple[KVCache, KVCache]] | None = None,
        need_weights: bool = False,
    ) -> Tensor | tuple[Tensor, list[tuple[Tensor, Tensor]]]:
        """Decode ``tgt`` (B, T) against ``memory`` (B, S, C); returns logits (B, T, V)."""
        positions = torch.arange(start_pos, start_pos + tgt.shape[1], device=tgt.device)  # (T,)
        x = self.embedding(tgt)  # (B, T, C)
        x = self.dropout(self.positional.embed_range(x, start_pos))
        weights: list[tuple[Tensor, Tensor]] = []
        for i, layer in enumerate(self.layers):
            out = layer(
                x,
                memory,
                tgt_mask,
                memory_mask,
                positional=self.positional if self._use_hooks else None,
                q_pos=positions,
                cache=None if caches is None else caches[i],
                need_weights=need_weights,
            )
            if need_weights:
                x, w = out
                weights.append(w)
            else:
                x = out
        if self.norm is not None:
            x = self.norm(x)
        logits = self.output(x)  # (B, T, V)
        return (logits, weights) if need_weights else logits

    def step_weights(self) -> DecoderStepWeights:
        """Every weight :meth:`step` needs, gathered once per decode."""
        norm = None
        if self.norm is not None:
            n = self.norm
            norm = ((n.normalized_shape[0],), n.weight, n.bias, n.eps)
        return DecoderStepWeights(
            [layer.step_weights() for layer in self.layers],
            self.embedding.weight,
            self.embedding.scale,
            norm,  # type: ignore[arg-type]
            self.output.weight,
            self.output.bias,
        )

    def step(
        self,
        prev_tokens: Tensor,
        caches: list[tuple[KVCache, KVCache]],
        memory_mask: Tensor | None,
        pos: int,
        *,
        weights: DecoderStepWeights | None = None,
        memory: Tensor | None = None,
    ) -> Tensor:
        """Logits (B, V) after feeding ``prev_tokens`` (B,) at position ``pos``, with caches.

        The same numbers as :meth:`forward` on the whole prefix, for one new position:
        each layer attends over its cached keys and values. Inference only.
        """
        w = self.step_weights() if weights is None else weights
        x = F.embedding(prev_tokens, w.embedding) * w.scale  # (B, C), as TokenEmbedding
        x = self.positional.embed_range(x[:, None], pos)[:, 0]  # (B, C)
        hooks = self.positional if self._use_hooks else None
        for layer, lw, cache in zip(self.layers, w.layers, caches):
            x = layer.step(
                x, cache, memory_mask, weights=lw, memory=memory, positional=hooks, pos=pos
            )  # (B, C)
        if w.norm is not None:
            x = F.layer_norm(x, *w.norm)
        return F.linear(x, w.output, w.output_bias)  # (B, V)


class DecoderStepWeights(NamedTuple):
    """The decoder's weights arranged for :meth:`Decoder.step` (see ``step_weights``)."""

    layers: list[DecoderLayerStepWeights]
    embedding: Tensor
    scale: float
    norm: tuple[tuple[int], Tensor, Tensor, float] | None
    output: Tensor
    output_bias: Tensor | None


@dataclass
class DecoderState:
    """What :meth:`Transformer.step` carries from one step to the next.

    Attributes:
        memory: encoder output (B, S, C).
        memory_mask: source padding mask (B, 1, 1, S), True at real tokens (None: no padding).
        caches: per decoder layer ``(self_cache, cross_cache)``, or ``None`` when
            decoding without a cache.
        tokens: every decoder input so far (B, t); without a cache the whole prefix
            is run through the decoder again at every step.
        step_weights: the decoder's weights gathered for one-position steps (cached
            inference), or ``None`` to run the general layers.
    """

    memory: Tensor
    memory_mask: Tensor | None
    caches: list[tuple[KVCache, KVCache]] | None
    tokens: Tensor = field(default_factory=lambda: torch.empty(0, 0, dtype=torch.long))
    step_weights: DecoderStepWeights | None = None

    @property
    def length(self) -> int:
        """How many target tokens have been fed in so far."""
        return self.tokens.shape[1]


class Transformer(nn.Module):
    """The encoder-decoder Transformer (Vaswani et al., 2017).

    Args:
        config: a :class:`TransformerConfig`.

    Shape:
        src: (B, S) long, tgt_in: (B, T) long -> logits (B, T, V)
    """

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        if not isinstance(config, TransformerConfig):
            raise TypeError(f"config must be a TransformerConfig, got {type(config).__name__}")
        c = config
        self.config = c
        self.pad_id = c.pad_id
        src_emb = TokenEmbedding(c.src_vocab_size, c.d_model, c.pad_id)
        tgt_emb = (
            src_emb if c.share_embeddings else TokenEmbedding(c.tgt_vocab_size, c.d_model, c.pad_id)
        )
        # One positional module shared by both stacks: a learned table or a relative
        # bias is then learned once, as position means the same thing on both sides.
        positional = make_positional(
            c.positional, d_model=c.d_model, n_heads=c.n_heads, max_len=c.max_len
        )
        self.encoder = Encoder(c, src_emb, positional)
        self.decoder = Decoder(c, tgt_emb, positional)

    # ------------------------------------------------------------------ masks
    def src_mask(self, src: Tensor) -> Tensor:
        """Padding mask of the source: (B, S) -> (B, 1, 1, S), True at real tokens."""
        return padding_mask(src, self.pad_id)  # (B, 1, 1, S)

    def tgt_mask(self, tgt_in: Tensor) -> Tensor:
        """Causal & padding mask of the decoder input: (B, T) -> (B, 1, T, T)."""
        # Padding sits after the real tokens, so every row still sees its bos: no empty row.
        return decoder_self_mask(tgt_in, self.pad_id)  # (B, 1, T, T)

    # ---------------------------------------------------------------- forward
    def encode(self, src: Tensor) -> tuple[Tensor, Tensor | None]:
        """Run the encoder: returns ``(memory (B, S, C), src_mask (B, 1, 1, S) or None)``.

        The mask is ``None`` when no source position is padding (nothing to hide).
        """
        _check_ids(src, "src", self.config.src_vocab_size)
        self._check_length(src.shape[1], "src")
        mask = self.src_mask(src)
        if bool(mask.all()):
            mask = None  # no padding: skip the masking work in every attention call
        return self.encoder(src, mask), mask

    def forward(self, src: Tensor, tgt_in: Tensor) -> Tensor:
        """Teacher forcing: logits for every target position in parallel.

        Args:
            src: source ids (B, S), padded with ``pad_id``.
            tgt_in: decoder inputs (B, T) = bos + target (shifted right), padded.

        Returns:
            Logits (B, T, V); position t predicts ``tgt_out[:, t]``.
        """
        _check_ids(tgt_in, "tgt_in", self.config.tgt_vocab_size)
        if src.dim() == 2 and tgt_in.shape[0] != src.shape[0]:
            raise ValueError(
                f"src has batch size {src.shape[0]} but tgt_in has batch size {tgt_in.shape[0]}"
            )
        self._check_length(tgt_in.shape[1], "tgt_in")
        memory, src_mask = self.encode(src)
        if bool((tgt_in != self.pad_id).all()):
            tgt_mask = causal_mask(tgt_in.shape[1], device=tgt_in.device)  # (T, T)
        else:
            tgt_mask = self.tgt_mask(tgt_in)  # (B, 1, T, T)
        return self.decoder(tgt_in, memory, tgt_mask, src_mask)

    @torch.no_grad()
    def attention_maps(self, src: Tensor, tgt_in: Tensor) -> dict[str, list[Tensor]]:
        """Attention weights of every layer and head for one teacher-forced pass.

        The pass runs in eval mode (no dropout), whatever mode the model is in, and the
        model's mode is restored afterwards: the maps describe the model, not one draw
        of its dropout masks.

        Returns:
            ``{"encoder": [(B, H, S, S)] * L_enc, "decoder_self": [(B, H, T, T)] * L_dec,
            "cross": [(B, H, T, S)] * L_dec}``.
        """
        _check_ids(src, "src", self.config.src_vocab_size)
        _check_ids(tgt_in, "tgt_in", self.config.tgt_vocab_size)
        was_training = self.training
        self.eval()
        try:
            src_mask = self.src_mask(src)
            memory, enc_w = self.encoder(src, src_mask, need_weights=True)
            _, dec_w = self.decoder(
                tgt_in, memory, self.tgt_mask(tgt_in), src_mask, need_weights=True
            )
        finally:
            self.train(was_training)
        return {
            "encoder": enc_w,
            "decoder_self": [w[0] for w in dec_w],
            "cross": [w[1] for w in dec_w],
        }

    # --------------------------------------------------------------- decoding
    def start(self, src: Tensor, *, use_cache: bool = True) -> DecoderState:
        """Encode the source once and return the initial decoding state.

        Args:
            src: source ids (B, S).
            use_cache: keep a key/value cache per decoder layer, so each
                :meth:`step` runs the decoder on the new token only. Without it
                every step re-runs the whole prefix (same result, O(T) times more work).
                The cross-attention keys and values of the memory are projected here,
                once; in eval mode the decoder's weights are also gathered once
                (:meth:`Decoder.step_weights`) so that every :meth:`step` runs the
                one-position inference path.
        """
        memory, mask = self.encode(src)
        caches, weights = None, None
        if use_cache:
            caches = [(KVCache(), KVCache(static=True)) for _ in self.decoder.layers]
            for layer, (_, cross) in zip(self.decoder.layers, caches):
                layer.multihead_attn.fill_cache(cross, memory)  # project the memory once
            # Shaw et al.'s value vectors need the general attention path at every step.
            values = getattr(self.decoder.positional, "values", None)
            if not self.training and values is None:
                weights = self.decoder.step_weights()
        tokens = torch.empty(src.shape[0], 0, dtype=torch.long, device=src.device)
        return DecoderState(memory, mask, caches, tokens, weights)

    def step(self, prev_tokens: Tensor, state: DecoderState) -> tuple[Tensor, DecoderState]:
        """Feed one token per row and return the logits of the next one.

        Args:
            prev_tokens: the previous output (or bos) per row, (B,) long.
            state: from :meth:`start` or the previous :meth:`step`.

        Returns:
            ``(logits (B, V), new_state)``.
        """
        if not isinstance(state, DecoderState):
            raise TypeError(f"state must come from Transformer.start, got {type(state).__name__}")
        if prev_tokens.dim() != 1 or prev_tokens.shape[0] != state.memory.shape[0]:
            raise ValueError(
                f"prev_tokens must have shape ({state.memory.shape[0]},), "
                f"got {tuple(prev_tokens.shape)}"
            )
        pos = state.length
        self._check_length(pos + 1, "the generated sequence")
        tokens = torch.cat([state.tokens, prev_tokens[:, None]], dim=1)  # (B, t+1)
        if state.caches is not None and state.step_weights is not None and not self.training:
            # Inference: the one-position path through every layer (same numbers).
            logits = self.decoder.step(
                prev_tokens, state.caches, state.memory_mask, pos, weights=state.step_weights
            )  # (B, V)
        elif state.caches is not None:
            # One new query that may see every cached key: no mask needed.
            logits = self.decoder(
                prev_tokens[:, None],
                state.memory,
                None,
                state.memory_mask,
                start_pos=pos,
                caches=state.caches,
            )  # (B, 1, V)
        else:
            # Recompute the whole prefix. Only the causal mask: the cached path cannot
            # see which fed tokens were padding either, and both must agree.
            mask = causal_mask(tokens.shape[1], device=tokens.device)  # (t+1, t+1)
            logits = self.decoder(tokens, state.memory, mask, state.memory_mask)  # (B, t+1, V)
        if logits.dim() == 3:
            logits = logits[:, -1]  # (B, V): the prediction after the last fed token
        new_state = DecoderState(
            state.memory, state.memory_mask, state.caches, tokens, state.step_weights
        )
        return logits, new_state

    def reorder_state(self, state: DecoderState, index: Tensor) -> DecoderState:
        """Select (and repeat) rows of a state: beam search keeps the best beams.

        Args:
            state: a decoding state of batch size B.
            index: (B',) long row indices into the batch.
        """
        caches = None
        if state.caches is not None:
            caches = [(sc.select(index), cc.select(index)) for sc, cc in state.caches]
        return DecoderState(
            state.memory.index_select(0, index),
            None if state.memory_mask is None else state.memory_mask.index_select(0, index),
            caches,
            state.tokens.index_select(0, index),
            state.step_weights,  # the weights do not depend on the batch
        )

    @torch.no_grad()
    def copy_from_torch(self, torch_model: nn.Transformer) -> Transformer:
        """Copy the layers and final norms of a ``torch.nn.Transformer`` of the same shape.

        ``nn.Transformer`` has no embeddings or output layer, so those stay as they are;
        it always ends each stack with a LayerNorm, so this model needs ``final_norm=True``.
        """
        if self.encoder.norm is None or self.decoder.norm is None:
            raise ValueError("nn.Transformer has final LayerNorms: build with final_norm=True")
        enc, dec = torch_model.encoder, torch_model.decoder
        if len(enc.layers) != len(self.encoder.layers) or len(dec.layers) != len(
            self.decoder.layers
        ):
            raise ValueError(
                f"layer counts differ: torch {len(enc.layers)}+{len(dec.layers)}, "
                f"ours {len(self.encoder.layers)}+{len(self.decoder.layers)}"
            )
        for mine, theirs in zip(self.encoder.layers, enc.layers):
            mine.copy_from_torch(theirs)
        for mine, theirs in zip(self.decoder.layers, dec.layers):
            mine.copy_from_torch(theirs)
        for mine, theirs in ((self.encoder.norm, enc.norm), (self.decoder.norm, dec.norm)):
            mine.weight.copy_(theirs.weight)
            mine.bias.copy_(theirs.bias)
        return self

    # ------------------------------------------------------------------- misc
    def _check_length(self, length: int, name: str) -> None:
        limit = getattr(self.encoder.positional, "max_len", None)
        if limit is not None and length > limit:
            raise ValueError(
                f"{name} has length {length} but the {self.config.positional!r} positional "
                f"scheme supports at most {limit} positions; build the model with a larger "
                "max_len or a scheme without a table"
            )

    def num_parameters(self, trainable_only: bool = True) -> int:
        """Number of scalar parameters; tied weights are counted once."""
        seen: set[int] = set()
        total = 0
        for p in self.parameters():  # parameters() already skips shared duplicates
            if id(p) in seen or (trainable_only and not p.requires_grad):
                continue
            seen.add(id(p))
            total += p.numel()
        return total


def _has_attention_hooks(positional: PositionalScheme) -> bool:
    """Whether attention must call the scheme's hooks (not for purely additive schemes)."""
    cls = type(positional)
    overrides = (
        cls.rotate is not PositionalScheme.rotate
        or cls.score_bias is not PositionalScheme.score_bias
    )
    return overrides


# ----------------------------------------------------------------- checkpoints
class CheckpointError(ValueError):
    """A checkpoint file is missing, damaged, or does not fit the model."""


_PLAIN = (type(None), bool, int, float, str)


def _check_plain(value: Any, where: str) -> None:
    """Refuse what ``torch.load(weights_only=True)`` would refuse, naming the culprit."""
    if isinstance(value, _PLAIN) or isinstance(value, torch.Tensor):
        return
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_plain(item, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{where} has a key {key!r} that is not a str")
            _check_plain(item, f"{where}[{key!r}]")
        return
    raise TypeError(
        f"{where} is a {type(value).__name__}; a checkpoint's extra values must be None, "
        "bool, int, float, str, tensors, or lists/dicts of them (convert it first, e.g. "
        "float(x) for a NumPy scalar, or store history.losses rather than the History)"
    )


def save_checkpoint(model: Transformer, path: str | os.PathLike[str], **extra: Any) -> Path:
    """Save config and weights to ``path`` atomically.

    The file is written to a temporary file in the same folder, flushed to disk and
    moved over ``path`` with :func:`os.replace`, which is atomic; the folder is then
    synced too, so a crash mid-save leaves the previous checkpoint intact instead of
    a half-written file. The file gets the usual permissions (``0o666`` less the
    umask), like any file the user writes.

    Args:
        model: the :class:`Transformer` to save.
        path: destination file.
        **extra: small plain values (step, metrics) stored alongside; read them back
            with ``load_checkpoint(path, with_extra=True)``.

    Raises:
        TypeError: ``model`` is not a Transformer, or an extra value is not plain
            (it could not be loaded back safely).

    Returns:
        The path written.
    """
    if not isinstance(model, Transformer):
        raise TypeError(f"save_checkpoint expects a Transformer, got {type(model).__name__}")
    for key, value in extra.items():
        _check_plain(value, f"extra value {key!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": _CHECKPOINT_FORMAT,
        "version": _CHECKPOINT_VERSION,
        "config": model.config.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "extra": extra,
    }
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp made it private (0600)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_folder(path.parent)
    return path


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable (POSIX); a no-op where folders can't be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def load_checkpoint(
    path: str | os.PathLike[str],
    map_location: str | torch.device = "cpu",
    *,
    config: TransformerConfig | None = None,
    with_extra: bool = False,
) -> Transformer | tuple[Transformer, dict[str, Any]]:
    """Rebuild a :class:`Transformer` from a file written by :func:`save_checkpoint`.

    Loads with ``weights_only=True``, so the file can hold only tensors and plain
    values, never code. The model comes back in eval mode.

    Args:
        path: the checkpoint file.
        map_location: where to put the tensors.
        config: if given, the checkpoint's config must equal it.
        with_extra: also return the extra values given to ``save_checkpoint``, as
            ``(model, extra)``.

    Raises:
        FileNotFoundError: no file at ``path``.
        CheckpointError: the file is truncated or corrupt, is not a checkpoint of this
            package, or its weights do not fit its (or the expected) config.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {str(path)!r}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # a text or foreign file fails deep in the unpickler, any way
        raise CheckpointError(
            f"{str(path)!r} is not a readable checkpoint (truncated or corrupt file?): {e}"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != _CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{str(path)!r} is a torch file but not a Transformer checkpoint written by "
            "save_checkpoint (no 'format' marker)"
        )
    if payload.get("version") != _CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{str(path)!r} has checkpoint version {payload.get('version')!r}; "
            f"this code reads version {_CHECKPOINT_VERSION}"
        )
    try:
        saved = TransformerConfig.from_dict(payload["config"])
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{str(path)!r} holds an invalid config: {e}") from None
    if config is not None and saved != config:
        diff = {
            k: (getattr(saved, k), getattr(config, k))
            for k in saved.to_dict()
            if getattr(saved, k) != getattr(config, k)
        }
        raise CheckpointError(
            f"{str(path)!r} was saved with a different config; (saved, expected) = {diff}"
        )
    model = Transformer(saved)
    state = payload.get("state_dict")
    if not isinstance(state, dict):
        raise CheckpointError(f"{str(path)!r} has no state_dict")
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(
        k for k in set(state) & set(expected) if tuple(state[k].shape) != tuple(expected[k].shape)
    )
    if missing or unexpected or wrong:
        detail = "; ".join(
            f"{label}: {keys[:5]}{' ...' if len(keys) > 5 else ''}"
            for label, keys in (
                ("missing", missing),
                ("unexpected", unexpected),
                ("wrong shape", wrong),
            )
            if keys
        )
        raise CheckpointError(f"{str(path)!r}: weights do not fit the saved config ({detail})")
    model.load_state_dict(state)
    model.to(map_location)
    model.eval()
    if with_extra:
        extra = payload.get("extra", {})
        return model, dict(extra) if isinstance(extra, dict) else {}
    return model
