"""The decoder-only Transformer: a language model with no encoder (chapter 10).

Drop the encoder of chapter 9 and the cross-attention with it: what remains is a
stack of blocks whose self-attention is causal, each an
:class:`~transformer.layers.EncoderLayer` under a causal mask. Trained to predict
every next token at once (teacher forcing under the causal mask), it is a language
model; fed its own samples one token at a time, with a key/value cache, it writes.
GPT-2 (Radford et al., 2019) is this model with pre-LN blocks, a GELU feed-forward
network, learned positions and the output layer tied to the token embedding, which
are :class:`DecoderOnlyConfig`'s defaults.

Shape letters: B batch, T length, C model size (d_model), V vocabulary, L layers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from transformer.config import BlockConfig
from transformer.embedding import TokenEmbedding, check_ids, has_attention_hooks
from transformer.kv_cache import KVCache
from transformer.layers import EncoderLayer
from transformer.masks import causal_mask
from transformer.sampling import sample_next

__all__ = ["DecoderOnlyConfig", "DecoderOnlyTransformer", "LMState", "generate"]


@dataclass(frozen=True, kw_only=True)
class DecoderOnlyConfig(BlockConfig):
    """Every hyper-parameter of a :class:`DecoderOnlyTransformer`.

    The shared fields are :class:`~transformer.config.BlockConfig`'s; the defaults
    here are GPT-2's choices (pre-LN, GELU, learned positions, tied output).

    Args:
        vocab_size: V.
        n_layers: blocks L.
        scale_embeddings: multiply token embeddings by sqrt(C), as chapter 9's
            Transformer does; GPT-2 does not (and starts them at std 0.02).
        output_bias: a bias on the output layer (GPT-2 has none).
        mask_pad: hide ``pad_id`` tokens from attention when no ``attention_mask``
            is given. GPT-2's vocabulary has no padding token: switch it off there.
        **shared: the fields of :class:`~transformer.config.BlockConfig`.
    """

    vocab_size: int
    n_layers: int = 2
    norm_first: bool = True
    activation: str = "gelu"
    positional: str = "learned"
    tie_output: bool = True
    scale_embeddings: bool = False
    output_bias: bool = False
    mask_pad: bool = True
    _vocab_fields: tuple[str, ...] = field(
        default=("vocab_size",), init=False, repr=False
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        self._positive_int("n_layers")
        for name in ("scale_embeddings", "output_bias", "mask_pad"):
            if not isinstance(getattr(self, name), bool):
                self._fail(f"{name} must be True or False, got {getattr(self, name)!r}")


@dataclass
class LMState:
    """What :meth:`DecoderOnlyTransformer.step` carries from one token to the next.

    Attributes:
        caches: one growing :class:`~transformer.kv_cache.KVCache` per block.
        keys: (B, t) True at fed tokens attention may see (False at padding), or
            ``None`` while no padding has been fed: then no step needs a mask.
        logits: (B, V) the prediction after the last fed token.
        length: tokens fed so far (the prompt included).
    """

    caches: list[KVCache]
    keys: Tensor | None
    logits: Tensor
    length: int


class DecoderOnlyTransformer(nn.Module):
    """A stack of causal self-attention blocks over one token sequence (GPT).

    Args:
        config: a :class:`DecoderOnlyConfig`.

    Shape:
        ids: (B, T) long, attention_mask: (B, T) bool or 0/1 -> logits (B, T, V)
    """

    config_class = DecoderOnlyConfig

    def __init__(self, config: DecoderOnlyConfig) -> None:
        super().__init__()
        if not isinstance(config, DecoderOnlyConfig):
            raise TypeError(
                f"config must be a DecoderOnlyConfig, got {type(config).__name__}"
            )
        c = self.config = config
        self.pad_id, self.bos_id, self.eos_id = c.pad_id, c.bos_id, c.eos_id
        self.embedding = TokenEmbedding(c.vocab_size, c.d_model, c.pad_id)
        if not c.scale_embeddings:
            self.embedding.unscaled_(std=0.02)
        self.positional = c.make_positional()
        self._use_hooks = has_attention_hooks(self.positional)
        self.dropout = nn.Dropout(c.dropout)
        self.layers = nn.ModuleList(
            EncoderLayer.from_config(c) for _ in range(c.n_layers)
        )
        self.norm = c.make_norm() if c.use_final_norm else None
        self.output = nn.Linear(c.d_model, c.vocab_size, bias=c.output_bias)
        if c.tie_output:
            self.output.weight = self.embedding.weight  # Press & Wolf (2017)
        else:
            nn.init.normal_(self.output.weight, std=0.02)
        if self.output.bias is not None:
            nn.init.zeros_(self.output.bias)

    # ------------------------------------------------------------------- forward
    def key_mask(self, ids: Tensor, attention_mask: Tensor | None) -> Tensor | None:
        """(B, T) True where attention may look, or None when it may look everywhere."""
        if attention_mask is not None:
            if attention_mask.shape != ids.shape:
                raise ValueError(
                    "attention_mask must have the shape of the ids "
                    f"{tuple(ids.shape)}, got {tuple(attention_mask.shape)}"
                )
            keys = attention_mask.to(torch.bool)
        elif self.config.mask_pad:
            keys = ids != self.pad_id
        else:
            return None
        return None if bool(keys.all()) else keys

    def _check(self, ids: Tensor, start: int) -> None:
        check_ids(ids, "ids", self.config.vocab_size)
        device = self.embedding.weight.device
        if ids.device != device:
            raise ValueError(f"ids are on {ids.device} but the model is on {device}")
        limit = getattr(self.positional, "max_len", None)
        if limit is not None and start + ids.shape[1] > limit:
            raise ValueError(
                f"the sequence reaches length {start + ids.shape[1]} but the "
                f"{self.config.positional!r} positions stop at {limit} (config.max_len)"
            )

    def _blocks(
        self,
        ids: Tensor,
        mask: Tensor | None,
        start: int,
        caches: list[KVCache] | None,
        is_causal: bool = False,
    ) -> Tensor:
        """Embed ``ids`` at positions ``start...`` and run every block: (B, T, C).

        ``is_causal`` adds the causal mask inside attention, so that without
        padding no (T, T) mask is built at all.
        """
        x = self.embedding(ids)  # (B, T, C)
        x = self.dropout(self.positional.embed_range(x, start))
        positions = torch.arange(start, start + ids.shape[1], device=ids.device)  # (T,)
        hooks = self.positional if self._use_hooks else None
        for i, layer in enumerate(self.layers):
            cache = None if caches is None else caches[i]
            x = layer(
                x,
                mask,
                positional=hooks,
                q_pos=positions,
                cache=cache,
                is_causal=is_causal,
            )
        return x if self.norm is None else self.norm(x)

    def _mask(self, keys: Tensor, T: int, S: int, device: torch.device) -> Tensor:
        """Causal (T queries, the last T of S keys) & padding: (B, 1, T, S)."""
        return causal_mask(T, S, device=device) & keys[:, None, None, :]

    def forward(self, ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        """Next-token logits at every position, in parallel (teacher forcing).

        Args:
            ids: (B, T) token ids, right-padded if the rows differ in length.
            attention_mask: (B, T), 1/True at real tokens (Hugging Face's convention);
                default: every token that is not ``pad_id`` (see ``mask_pad``).

        Returns:
            Logits (B, T, V); position t predicts token t + 1.
        """
        self._check(ids, 0)
        T = ids.shape[1]
        keys = self.key_mask(ids, attention_mask)
        if keys is None:  # nothing padded: the causal mask alone, left to attention
            return self.output(self._blocks(ids, None, 0, None, is_causal=True))
        mask = self._mask(keys, T, T, ids.device)  # (B, 1, T, T)
        return self.output(self._blocks(ids, mask, 0, None))  # (B, T, V)

    # ----------------------------------------------------------------- generation
    def start(self, prompt: Tensor, attention_mask: Tensor | None = None) -> LMState:
        """Run the prompt (B, T) through the model once, filling one cache per block.

        The state's ``logits`` predict the token after the prompt. Rows of different
        lengths must be right-padded: generation then continues after the padding,
        which later positions never see.
        """
        self._check(prompt, 0)
        T = prompt.shape[1]
        keys = self.key_mask(prompt, attention_mask)
        caches = [KVCache() for _ in self.layers]
        if keys is None:
            x = self._blocks(prompt, None, 0, caches, is_causal=True)
        else:
            x = self._blocks(prompt, self._mask(keys, T, T, prompt.device), 0, caches)
        return LMState(caches, keys, self.output(x[:, -1]), T)  # logits (B, V)

    def step(self, prev: Tensor, state: LMState) -> tuple[Tensor, LMState]:
        """Feed one token per row (B,); return the next logits (B, V) and the state."""
        if not isinstance(state, LMState):
            raise TypeError(f"state must come from start(), got {type(state).__name__}")
        B = state.logits.shape[0]
        if not isinstance(prev, Tensor) or prev.shape != (B,):
            got = tuple(prev.shape) if isinstance(prev, Tensor) else prev
            raise ValueError(f"prev must have shape ({B},), got {got}")
        self._check(prev[:, None], state.length)
        keys, mask = state.keys, None  # no padding so far: the new token sees all
        if keys is not None:
            new = torch.ones_like(prev, dtype=torch.bool)[:, None]  # (B, 1)
            keys = torch.cat([keys, new], 1)  # (B, t+1)
            mask = keys[:, None, None, :]  # (B, 1, 1, t+1)
        x = self._blocks(prev[:, None], mask, state.length, state.caches)  # (B, 1, C)
        logits = self.output(x[:, 0])  # (B, V)
        return logits, LMState(state.caches, keys, logits, state.length + 1)

    def num_parameters(self, trainable_only: bool = True) -> int:
        """Number of scalar parameters; the tied output matrix is counted once."""
        return sum(
            p.numel()
            for p in self.parameters()
            if p.requires_grad or not trainable_only
        )


@torch.no_grad()
def generate(
    model: DecoderOnlyTransformer,
    prompt: Tensor,
    max_new_tokens: int,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    eos_id: int | None = None,
    generator: torch.Generator | None = None,
    use_cache: bool = True,
) -> Tensor:
    """Continue ``prompt`` (B, T) by up to ``max_new_tokens`` tokens.

    Each new token is drawn from the model's next-token distribution, reshaped by
    ``temperature`` (0 means greedy), ``top_k`` and ``top_p`` (nucleus sampling,
    Holtzman et al., 2020) as :func:`transformer.sampling.sample_next` does. A row
    stops at ``eos_id`` (if given) and is padded with ``pad_id`` after it. With the
    cache each step runs the model on one token; without it the whole sequence is
    re-run at every step (same tokens, for comparison).

    Returns:
        (B, T + n) the prompt followed by the new tokens, n <= max_new_tokens.
    """
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int):
        raise ValueError(f"max_new_tokens must be an int, got {max_new_tokens!r}")
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    was_training = model.training
    model.eval()
    try:
        seq = prompt
        state = model.start(prompt) if use_cache else None
        logits = state.logits if state is not None else model(prompt)[:, -1]
        finished = torch.zeros(prompt.shape[0], dtype=torch.bool, device=prompt.device)
        for _ in range(max_new_tokens):
            token = sample_next(
                logits,
                temperature=temperature,
                top_k=top_k,
                top_p=top_p,
                generator=generator,
            )  # (B,)
            token = token.masked_fill(finished, model.pad_id)
            seq = torch.cat([seq, token[:, None]], dim=1)  # (B, t+1)
            if eos_id is not None:
                finished = finished | (token == eos_id)
                if bool(finished.all()):
                    break
            if state is not None:
                logits, state = model.step(token, state)
            else:
                logits = model(seq)[:, -1]
        return seq
    finally:
        model.train(was_training)
