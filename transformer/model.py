"""The full encoder-decoder Transformer of "Attention Is All You Need" (chapter 9).

From input to output::

    src ids -> embedding * sqrt(C) -> + position -> dropout
            -> N x EncoderLayer -> memory
    tgt ids -> embedding * sqrt(C) -> + position -> dropout
            -> N x DecoderLayer(memory) -> linear to V -> softmax (inside the loss)

The model follows the sequence-to-sequence protocol shared by every chapter:
``forward(src, tgt_in)`` for teacher forcing, ``start(src)`` / ``step(prev, state)``
for incremental decoding (with a key/value cache, :mod:`transformer.kv_cache`) and
``reorder_state`` for beam search. Every hyper-parameter is in a
:class:`~transformer.config.TransformerConfig`. This is the one path the book reads;
the faster one-position inference path is kept apart, in :mod:`transformer.fast`.

Shape letters: B batch, S source length, T target length, C model size (d_model),
H heads, V vocabulary, L layers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import cast

import torch
from torch import Tensor, nn

from transformer.config import TransformerConfig
from transformer.embedding import TokenEmbedding, check_ids, has_attention_hooks
from transformer.kv_cache import KVCache
from transformer.layers import DecoderLayer, EncoderLayer
from transformer.masks import causal_mask, decoder_self_mask, padding_mask
from transformer.positional import PositionalScheme

__all__ = [
    "Decoder",
    "DecoderState",
    "Encoder",
    "Transformer",
]


class Encoder(nn.Module):
    """Embedding, positions and a stack of :class:`~transformer.layers.EncoderLayer`.

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
        self._use_hooks = has_attention_hooks(positional)
        self.dropout = nn.Dropout(c.dropout)
        self.layers = nn.ModuleList(
            EncoderLayer.from_config(c) for _ in range(c.n_encoder_layers)
        )
        self.norm = (
            nn.LayerNorm(c.d_model, eps=c.layer_norm_eps) if c.use_final_norm else None
        )

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
                x = layer(
                    x, src_mask, positional=self.positional if self._use_hooks else None
                )
        if self.norm is not None:
            x = self.norm(x)
        return (x, weights) if need_weights else x


class Decoder(nn.Module):
    """Embedding, positions, a stack of :class:`~transformer.layers.DecoderLayer` and
    the output projection.

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
        self._use_hooks = has_attention_hooks(positional)
        self.dropout = nn.Dropout(c.dropout)
        self.layers = nn.ModuleList(
            DecoderLayer.from_config(c) for _ in range(c.n_decoder_layers)
        )
        self.norm = (
            nn.LayerNorm(c.d_model, eps=c.layer_norm_eps) if c.use_final_norm else None
        )
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
        """Decode ``tgt`` (B, T) against ``memory`` (B, S, C); returns logits (B, T,
        V)."""
        # (T,)
        positions = torch.arange(start_pos, start_pos + tgt.shape[1], device=tgt.device)
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


@dataclass
class DecoderState:
    """What :meth:`Transformer.step` carries from one step to the next.

    Attributes:
        memory: encoder output (B, S, C).
        memory_mask: source padding mask (B, 1, 1, S), True at real tokens (None: no
            padding).
        caches: per decoder layer ``(self_cache, cross_cache)``, or ``None`` when
            decoding without a cache.
        tokens: every decoder input so far (B, t); without a cache the whole prefix
            is run through the decoder again at every step.
    """

    memory: Tensor
    memory_mask: Tensor | None
    caches: list[tuple[KVCache, KVCache]] | None
    tokens: Tensor = field(default_factory=lambda: torch.empty(0, 0, dtype=torch.long))

    @property
    def length(self) -> int:
        """How many target tokens have been fed in so far."""
        return self.tokens.shape[1]


class Transformer(nn.Module):
    """The encoder-decoder Transformer (Vaswani et al., 2017).

    Args:
        config: a :class:`~transformer.config.TransformerConfig`.

    Shape:
        src: (B, S) long, tgt_in: (B, T) long -> logits (B, T, V)
    """

    #: The config this model is built from (what a checkpoint rebuilds it with).
    config_class = TransformerConfig

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        if not isinstance(config, TransformerConfig):
            raise TypeError(
                f"config must be a TransformerConfig, got {type(config).__name__}"
            )
        c = config
        self.config = c
        self.pad_id, self.bos_id, self.eos_id = c.pad_id, c.bos_id, c.eos_id
        src_emb = TokenEmbedding(c.src_vocab_size, c.d_model, c.pad_id)
        tgt_emb = (
            src_emb
            if c.share_embeddings
            else TokenEmbedding(c.tgt_vocab_size, c.d_model, c.pad_id)
        )
        # One positional module shared by both stacks: a learned table or a relative
        # bias is then learned once, as position means the same thing on both sides.
        positional = c.make_positional()
        self.encoder = Encoder(c, src_emb, positional)
        self.decoder = Decoder(c, tgt_emb, positional)

    # ------------------------------------------------------------------ masks
    def src_mask(self, src: Tensor) -> Tensor:
        """Padding mask of the source: (B, S) -> (B, 1, 1, S), True at real tokens."""
        return padding_mask(src, self.pad_id)  # (B, 1, 1, S)

    def tgt_mask(self, tgt_in: Tensor) -> Tensor:
        """Causal & padding mask of the decoder input: (B, T) -> (B, 1, T, T)."""
        # Padding sits after the real tokens, so every row still sees its bos: no empty
        # row.
        return decoder_self_mask(tgt_in, self.pad_id)  # (B, 1, T, T)

    # ---------------------------------------------------------------- forward
    def encode(self, src: Tensor) -> tuple[Tensor, Tensor | None]:
        """Run the encoder: returns ``(memory (B, S, C), src_mask (B, 1, 1, S) or
        None)``.

        The mask is ``None`` when no source position is padding (nothing to hide).
        """
        check_ids(src, "src", self.config.src_vocab_size, self.device)
        self._check_length(src.shape[1], "src")
        mask = self.src_mask(src)
        # no padding: skip the masking work in every attention call
        if bool(mask.all()):
            return self.encoder(src, None), None
        return self.encoder(src, mask), mask

    def forward(self, src: Tensor, tgt_in: Tensor) -> Tensor:
        """Teacher forcing: logits for every target position in parallel.

        Args:
            src: source ids (B, S), padded with ``pad_id``.
            tgt_in: decoder inputs (B, T) = bos + target (shifted right), padded.

        Returns:
            Logits (B, T, V); position t predicts ``tgt_out[:, t]``.
        """
        check_ids(tgt_in, "tgt_in", self.config.tgt_vocab_size, self.device)
        if src.dim() == 2 and tgt_in.shape[0] != src.shape[0]:
            raise ValueError(
                f"src has batch size {src.shape[0]} but tgt_in has batch size "
                f"{tgt_in.shape[0]}"
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
            A dict with one list of weights per layer, ``"encoder"`` (B, H, S, S)
            per encoder layer, ``"decoder_self"`` (B, H, T, T) and ``"cross"``
            (B, H, T, S) per decoder layer.
        """
        check_ids(src, "src", self.config.src_vocab_size)
        check_ids(tgt_in, "tgt_in", self.config.tgt_vocab_size)
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
            use_cache: keep a key/value cache per decoder layer, so each :meth:`step`
                runs the decoder on the new token only. Without it every step re-runs
                the whole prefix (same result, O(T) times more work). Each layer's
                cross-attention projects the memory into its static cache on the
                first step and reuses it afterwards.
        """
        memory, mask = self.encode(src)
        caches = None
        if use_cache:
            caches = [(KVCache(), KVCache(static=True)) for _ in self.decoder.layers]
        tokens = torch.empty(src.shape[0], 0, dtype=torch.long, device=src.device)
        return DecoderState(memory, mask, caches, tokens)

    def step(
        self, prev_tokens: Tensor, state: DecoderState
    ) -> tuple[Tensor, DecoderState]:
        """Feed one token per row and return the logits of the next one.

        A fed ``<pad>`` (a row that has finished) is hidden from later positions, as
        :meth:`forward` hides padding, so that decoding and teacher-forced rescoring
        of the same tokens give the same numbers.

        Args:
            prev_tokens: the previous output (or bos) per row, (B,) long.
            state: from :meth:`start` or the previous :meth:`step`.

        Returns:
            ``(logits (B, V), new_state)``.
        """
        tokens = self._check_step(prev_tokens, state)  # (B, t+1)
        pos = state.length
        if state.caches is not None:
            # One new query that may see every cached key, except fed padding.
            keys = self._fed_padding_mask(tokens)  # (B, 1, 1, t+1) or None
            logits = self.decoder(
                prev_tokens[:, None],
                state.memory,
                keys,
                state.memory_mask,
                start_pos=pos,
                caches=state.caches,
            )  # (B, 1, V)
        else:  # recompute the whole prefix, under the mask forward() would use
            mask = self.tgt_mask(tokens)  # (B, 1, t+1, t+1)
            logits = self.decoder(tokens, state.memory, mask, state.memory_mask)
        new_state = DecoderState(state.memory, state.memory_mask, state.caches, tokens)
        return logits[:, -1], new_state  # (B, V): the prediction after the last token

    def _check_step(self, prev_tokens: Tensor, state: DecoderState) -> Tensor:
        """Check a step's input; return every fed token so far (B, t+1)."""
        if not isinstance(state, DecoderState):
            raise TypeError(
                f"state must come from Transformer.start, got {type(state).__name__}"
            )
        B = state.memory.shape[0]
        if not isinstance(prev_tokens, Tensor) or prev_tokens.shape != (B,):
            got = (
                tuple(prev_tokens.shape)
                if isinstance(prev_tokens, Tensor)
                else prev_tokens
            )
            raise ValueError(f"prev_tokens must have shape ({B},), got {got}")
        if prev_tokens.dtype != torch.long:
            raise TypeError(
                f"prev_tokens must be torch.long ids, got {prev_tokens.dtype}"
            )
        self._check_length(state.length + 1, "the generated sequence")
        return torch.cat([state.tokens, prev_tokens[:, None]], dim=1)  # (B, t+1)

    def _fed_padding_mask(self, tokens: Tensor) -> Tensor | None:
        """(B, 1, 1, t) True at fed tokens that are not padding; None if none is."""
        real = tokens != self.pad_id  # (B, t)
        return None if bool(real.all()) else real[:, None, None, :]

    def reorder_state(self, state: DecoderState, index: Tensor) -> DecoderState:
        """Select (and repeat) rows of a state: beam search keeps the best beams.

        Args:
            state: a decoding state of batch size B.
            index: (B',) long row indices into the batch.
        """
        caches = None
        if state.caches is not None:
            caches = [(sc.select(index), cc.select(index)) for sc, cc in state.caches]
        mask = state.memory_mask
        return DecoderState(
            state.memory.index_select(0, index),
            None if mask is None else mask.index_select(0, index),
            caches,
            state.tokens.index_select(0, index),
        )

    @torch.no_grad()
    def copy_from_torch(self, torch_model: nn.Transformer) -> Transformer:
        """Copy the layers and final norms of a ``torch.nn.Transformer`` of the same
        shape.

        ``nn.Transformer`` has no embeddings or output layer, so those stay as they are;
        it always ends each stack with a LayerNorm, so this model needs
        ``final_norm=True``.
        """
        if self.encoder.norm is None or self.decoder.norm is None:
            raise ValueError(
                "nn.Transformer has final LayerNorms: build with final_norm=True"
            )
        enc, dec = torch_model.encoder, torch_model.decoder
        if len(enc.layers) != len(self.encoder.layers) or len(dec.layers) != len(
            self.decoder.layers
        ):
            raise ValueError(
                f"layer counts differ: torch {len(enc.layers)}+{len(dec.layers)}, "
                f"ours {len(self.encoder.layers)}+{len(self.decoder.layers)}"
            )
        for mine, theirs in zip(self.encoder.layers, enc.layers):
            cast(EncoderLayer, mine).copy_from_torch(
                cast(nn.TransformerEncoderLayer, theirs)
            )
        for mine, theirs in zip(self.decoder.layers, dec.layers):
            cast(DecoderLayer, mine).copy_from_torch(
                cast(nn.TransformerDecoderLayer, theirs)
            )
        for mine, theirs in (
            (self.encoder.norm, enc.norm),
            (self.decoder.norm, dec.norm),
        ):
            mine.weight.copy_(theirs.weight)
            mine.bias.copy_(theirs.bias)
        return self

    # ------------------------------------------------------------------- misc
    @property
    def device(self) -> torch.device:
        """Where the model's weights are."""
        return self.encoder.embedding.weight.device

    def _check_length(self, length: int, name: str) -> None:
        limit = getattr(self.encoder.positional, "max_len", None)
        if limit is not None and length > limit:
            raise ValueError(
                f"{name} has length {length} but the {self.config.positional!r} "
                f"positional scheme supports at most {limit} positions; build the "
                "model with a larger max_len or a scheme without a table"
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
