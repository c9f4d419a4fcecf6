"""Beam search, and greedy decoding with or without the key/value cache (chapter 9).

Greedy decoding (chapter 4) commits to the single most likely token at every
step. Beam search keeps the K most likely partial outputs instead, and so can
recover from a first token that looked best but leads nowhere (Graves, 2012;
Sutskever et al., 2014). Both run through the decoding protocol every model of
the book implements: ``start(src)``, ``step(prev, state)`` and, for beams,
``reorder_state(state, index)``.

Shape letters: B batch, K beams, S source length, L generated length, V vocabulary.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from transformer.decoding import decode_defaults, greedy_decode

__all__ = ["beam_search", "greedy_decode_with_cache"]


class _CacheChoice(nn.Module):
    """Forwards the decoding protocol to a model, choosing whether ``start`` keeps a
    cache."""

    def __init__(self, model: nn.Module, use_cache: bool) -> None:
        super().__init__()
        # with start, step and reorder_state (the decoding protocol)
        self.model: Any = model
        self.use_cache = use_cache
        self.training = model.training  # report the wrapped model's mode, not a default

    def start(self, src: torch.Tensor) -> Any:
        return self.model.start(src, use_cache=self.use_cache)

    def step(self, prev: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        return self.model.step(prev, state)

    def reorder_state(self, state: Any, index: torch.Tensor) -> Any:
        return self.model.reorder_state(state, index)


def greedy_decode_with_cache(
    model: nn.Module,
    src: torch.Tensor,
    max_len: int | None = None,
    bos_id: int | None = None,
    eos_id: int | None = None,
    pad_id: int | None = None,
    *,
    use_cache: bool = True,
) -> torch.Tensor:
    """:func:`~transformer.decoding.greedy_decode` for a model whose ``start`` takes
    ``use_cache`` (the Transformer).

    With ``use_cache=True`` each step feeds only the newest token and the model reuses
    the keys and values of earlier positions (a key/value cache); with ``False`` it
    re-runs the decoder over the whole prefix at every step. Both give the same
    tokens; the cache turns O(L^2) decoder work into O(L).

    Shape:
        src: (B, S) long -> (B, L) long, as :func:`~transformer.decoding.greedy_decode`.
    """
    max_len, bos_id, eos_id, pad_id = decode_defaults(
        model, src, max_len, bos_id, eos_id, pad_id
    )
    return greedy_decode(
        _CacheChoice(model, use_cache), src, max_len, bos_id, eos_id, pad_id
    )


@torch.no_grad()
def beam_search(
    model: nn.Module,
    src: torch.Tensor,
    max_len: int | None = None,
    bos_id: int | None = None,
    eos_id: int | None = None,
    pad_id: int | None = None,
    *,
    beam_size: int = 4,
    length_penalty: float = 1.0,
    use_cache: bool | None = None,
    return_scores: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Beam search: keep the ``beam_size`` most likely partial outputs at every step.

    Greedy decoding commits to the single best token at each step; beam search
    keeps K candidates ("beams"), extends each by every token, and keeps the K best
    of the K x V extensions by total log-probability (Graves, 2012; Sutskever et
    al., 2014). A beam that emits ``eos_id`` is finished and set aside; a source is
    done once it has K finished hypotheses that no alive beam can still beat (or at
    ``max_len``). Finished hypotheses
    are compared by their *length-normalised* score ``log p(y) / |y|^alpha``:
    without it (alpha = 0) every extra token lowers the sum of log-probabilities, so
    the search prefers short outputs. With ``beam_size=1`` this is greedy decoding.

    Runs in batch: the B sources are expanded to B*K rows and the model's state is
    reordered with ``model.reorder_state(state, index)`` after each step.

    Args:
        model: a seq2seq model with ``start``, ``step`` and ``reorder_state``.
        src: source ids (B, S).
        max_len: most tokens per output, eos included.
        bos_id, eos_id, pad_id: special ids (pad is written after eos); the defaults
            come from the model (see :func:`~transformer.decoding.decode_defaults`).
        beam_size: K >= 1.
        length_penalty: alpha >= 0 in ``|y|^alpha`` (the length ``|y|`` counts the eos).
        use_cache: passed to ``model.start`` when not ``None`` (Transformer only).
        return_scores: also return the normalised score of each output.

    Returns:
        ``(B, L)`` long ids (eos kept, pad after it) and, if asked, ``(B,)`` scores.
    """
    max_len, bos_id, eos_id, pad_id = decode_defaults(
        model, src, max_len, bos_id, eos_id, pad_id
    )
    if isinstance(beam_size, bool) or not isinstance(beam_size, int) or beam_size < 1:
        raise ValueError(f"beam_size must be a positive int, got {beam_size!r}")
    if length_penalty < 0:
        raise ValueError(f"length_penalty must be >= 0, got {length_penalty}")
    if not hasattr(model, "reorder_state"):
        raise TypeError(
            f"{type(model).__name__} has no reorder_state(state, index) for beams"
        )
    was_training = model.training
    model.eval()
    try:
        return _beam_search(
            model,
            src,
            max_len,
            bos_id,
            eos_id,
            pad_id,
            beam_size,
            length_penalty,
            use_cache,
            return_scores,
        )
    finally:
        model.train(was_training)


def _beam_search(
    model: Any,  # an nn.Module with start, step and reorder_state
    src: torch.Tensor,
    max_len: int,
    bos_id: int,
    eos_id: int,
    pad_id: int,
    K: int,
    alpha: float,
    use_cache: bool | None,
    return_scores: bool,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    B, dev = src.size(0), src.device
    neg_inf = float("-inf")
    state = (
        model.start(src) if use_cache is None else model.start(src, use_cache=use_cache)
    )
    # Encode once, then give every source K rows: row b*K + k is beam k of source b.
    state = model.reorder_state(state, torch.arange(B, device=dev).repeat_interleave(K))
    scores = torch.full((B, K), neg_inf, device=dev)  # (B, K) log p of each alive beam
    scores[:, 0] = 0.0  # all beams start equal: keep only one so they do not duplicate
    history = torch.empty(B, K, 0, dtype=torch.long, device=dev)  # (B, K, t)
    fin_scores = torch.full((B, K), neg_inf, device=dev)  # (B, K) normalised
    fin_tokens = torch.full((B, K, max_len), pad_id, dtype=torch.long, device=dev)
    done = torch.zeros(B, dtype=torch.bool, device=dev)  # (B,)
    prev = torch.full((B * K,), bos_id, dtype=torch.long, device=dev)  # (B*K,)
    base = (torch.arange(B, device=dev) * K)[:, None]  # (B, 1)

    for t in range(1, max_len + 1):
        logits, state = model.step(prev, state)  # (B*K, V)
        V = logits.size(-1)
        log_p = torch.log_softmax(logits.float(), dim=-1).view(B, K, V)  # (B, K, V)
        cand = (scores[:, :, None] + log_p).view(B, K * V)  # (B, K*V)
        n_cand = min(2 * K, K * V)  # 2K candidates: at most K of them end here
        top, idx = cand.topk(n_cand, dim=1)  # (B, 2K), sorted best first
        beam, token = idx // V, idx % V  # (B, 2K) each
        # (B, 2K, t-1)
        prefix = history.gather(1, beam[:, :, None].expand(-1, -1, t - 1))
        seqs = torch.cat([prefix, token[:, :, None]], dim=2)  # (B, 2K, t)

        # Finished hypotheses: eos among the top K candidates of a source still open.
        ends = (
            (token == eos_id) & (torch.arange(n_cand, device=dev) < K) & ~done[:, None]
        )
        if t == max_len:  # out of budget: the alive beams compete as they are
            ends = ends | (~done[:, None] & (torch.arange(n_cand, device=dev) < K))
        new_fin = torch.where(ends, top / float(t) ** alpha, neg_inf)  # (B, 2K)
        all_scores = torch.cat([fin_scores, new_fin], dim=1)  # (B, 3K)
        padded = torch.full((B, n_cand, max_len), pad_id, dtype=torch.long, device=dev)
        padded[:, :, :t] = seqs
        all_tokens = torch.cat([fin_tokens, padded], dim=1)  # (B, 3K, max_len)
        fin_scores, keep = all_scores.topk(K, dim=1)  # (B, K)
        fin_tokens = all_tokens.gather(1, keep[:, :, None].expand(-1, -1, max_len))
        if t == max_len:
            break

        # Alive beams: the best K candidates that did not end with eos.
        alive = torch.where(token == eos_id, neg_inf, top)  # (B, 2K)
        scores, pick = alive.topk(K, dim=1)  # (B, K)
        # A source is done when K hypotheses have finished and no alive beam can still
        # beat the worst of them. Log-probabilities only fall as a beam grows, so the
        # best an alive beam can reach is its score now, divided by max_len^alpha.
        bound = scores[:, 0] / float(max_len) ** alpha  # (B,)
        full = (fin_scores > neg_inf).all(dim=1)  # (B,)
        done = done | (full & (fin_scores[:, -1] >= bound))
        if bool(done.all()):
            break
        chosen_beam = beam.gather(1, pick)  # (B, K)
        history = seqs.gather(1, pick[:, :, None].expand(-1, -1, t))  # (B, K, t)
        prev = token.gather(1, pick).reshape(B * K)  # (B*K,)
        state = model.reorder_state(state, (base + chosen_beam).reshape(B * K))

    best = fin_tokens[:, 0]  # (B, max_len), topk sorted the best first
    lengths = (best != pad_id).cumsum(1).argmax(1) + 1  # (B,) up to the last real token
    out = best[:, : int(lengths.max())]  # (B, L)
    return (out, fin_scores[:, 0]) if return_scores else out
