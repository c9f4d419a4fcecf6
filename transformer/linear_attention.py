"""Low-rank and linear attention (chapter 13): never a (T, T) matrix at all.

* Linformer (Wang et al. 2020) projects the T keys and values down to K << T
  learned mixtures of positions before attending: (T, K) scores. Every mixture
  contains every position, the future included, so it cannot be causal.
* Kernelised linear attention (Katharopoulos et al. 2020) replaces
  exp(q . k) by phi(q) . phi(k) with a positive feature map phi (here elu + 1);
  then sum_s phi(q_t) . phi(k_s) v_s = phi(q_t)^T (sum_s phi(k_s) v_s^T), and the
  bracket, a (M, Dv) matrix, is computed once: cost linear in T. Causal, the
  bracket is a prefix sum that grows one outer product per step, a recurrent
  network with a matrix state (chapter 2); :func:`linear_attention_recurrent` runs
  it step by step and :func:`linear_attention` in parallel chunks.
* Performer's FAVOR+ (Choromanski et al. 2021) chooses phi so that
  phi(q) . phi(k) estimates exp(q . k / sqrt(D)) itself: positive random
  features ``exp(w . x - |x|^2 / 2)`` with orthogonal w; more features, smaller error.

Same interface as :mod:`transformer.efficient`.

Shape letters: B batch, H heads, T query length, S key length, D head size,
Dv value size, M features, K projected length.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from transformer.efficient import check_qkv, key_mask_of

__all__ = [
    "elu_feature_map",
    "favor_features",
    "linear_attention",
    "linear_attention_recurrent",
    "linformer_attention",
    "orthogonal_random_features",
    "performer_attention",
]


def linformer_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    proj_k: Tensor,
    proj_v: Tensor | None = None,
    causal: bool = False,
    key_mask: Tensor | None = None,
) -> Tensor:
    """Linformer: attend to K projections of the keys and values along the length.

    k' = E k and v' = F v with E, F of shape (K, S) (learned in a model), then
    softmax(q k'^T / sqrt(D)) v'. Padded keys are zeroed before the projection.
    Wang et al. (2020), equation (7).

    Args:
        q, k, v: queries, keys, values.
        proj_k: E, (K, S_max) with S_max >= S; its first S columns are used.
        proj_v: F, the same shape (default: E, Linformer's shared projection).
        causal: must be False: a projected key mixes every position.
        key_mask: bool padding mask over the keys, (B, S) or (B, 1, 1, S).

    Shape:
        q (B, H, T, D), k (B, H, S, D), v (B, H, S, Dv) -> (B, H, T, Dv).
    """
    if causal:
        raise ValueError(
            "Linformer cannot be causal: each projected key is a mixture of all S "
            "positions, the future included, so no mask can hide the future from a "
            "query; use linear or sliding-window attention for a causal model"
        )
    check_qkv(q, k, v)
    proj_v = proj_k if proj_v is None else proj_v
    S = k.shape[2]
    for name, p in (("proj_k", proj_k), ("proj_v", proj_v)):
        if p.dim() != 2 or p.shape[1] < S:
            raise ValueError(
                f"{name} must have shape (K, S_max) with S_max >= {S} keys, "
                f"got {tuple(p.shape)}"
            )
    km = key_mask_of(key_mask, q.shape[0], S)
    if km is not None:
        keep = km[:, None, :, None].to(k.dtype)  # (B, 1, S, 1)
        k, v = k * keep, v * keep
    k_low = proj_k[:, :S] @ k  # (B, H, K, D)
    v_low = proj_v[:, :S] @ v  # (B, H, K, Dv)
    weights = torch.softmax((q @ k_low.transpose(-2, -1)) / math.sqrt(q.shape[-1]), -1)
    return weights @ v_low  # (B, H, T, Dv)


def elu_feature_map(x: Tensor) -> Tensor:
    """phi(x) = elu(x) + 1: positive, x + 1 for x > 0. Katharopoulos et al. (2020)."""
    return F.elu(x) + 1.0


def _linear_core(
    fq: Tensor, fk: Tensor, v: Tensor, causal: bool, chunk: int, eps: float
) -> Tensor:
    """sum_s (fq_t . fk_s) v_s / sum_s (fq_t . fk_s), over s <= t when causal."""
    if not causal:
        kv = fk.transpose(-2, -1) @ v  # (B, H, M, Dv): sum_s phi(k_s) v_s^T
        z = fk.sum(dim=2, keepdim=True)  # (B, H, 1, M): sum_s phi(k_s)
        num = fq @ kv  # (B, H, T, Dv)
        den = (fq * z).sum(-1, keepdim=True)  # (B, H, T, 1)
        return num / den.clamp_min(eps)
    B, H, T, M = fq.shape
    state = fq.new_zeros(B, H, M, v.shape[-1])  # prefix sum of phi(k_s) v_s^T
    z = fq.new_zeros(B, H, 1, M)  # prefix sum of phi(k_s)
    out = []
    for i0 in range(0, T, chunk):
        i1 = min(i0 + chunk, T)
        q_c, k_c, v_c = fq[:, :, i0:i1], fk[:, :, i0:i1], v[:, :, i0:i1]
        inner = (q_c @ k_c.transpose(-2, -1)).tril()  # (B, H, c, c), s <= t in chunk
        num = q_c @ state + inner @ v_c  # (B, H, c, Dv)
        den = (q_c * z).sum(-1, keepdim=True) + inner.sum(-1, keepdim=True)
        out.append(num / den.clamp_min(eps))
        state = state + k_c.transpose(-2, -1) @ v_c
        z = z + k_c.sum(dim=2, keepdim=True)
    return torch.cat(out, dim=2)  # (B, H, T, Dv)


def linear_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    causal: bool = False,
    key_mask: Tensor | None = None,
    feature_map: Callable[[Tensor], Tensor] = elu_feature_map,
    chunk: int = 64,
    eps: float = 1e-6,
) -> Tensor:
    """Kernelised linear attention, parallel form: cost linear in T.

    out_t = phi(q_t)^T (sum_s phi(k_s) v_s^T) / phi(q_t)^T (sum_s phi(k_s)).
    Causal, the sums run over s <= t: the sequence is cut into chunks of
    ``chunk`` positions; inside a chunk the (chunk, chunk) products are masked,
    and the sums of earlier chunks are carried as a state. Katharopoulos et al.
    (2020), equations (4)-(6).

    Args:
        q, k, v, causal, key_mask: as :func:`~transformer.efficient.full_attention`
            (causal needs T = S).
        feature_map: phi, applied to the last dimension (must be non-negative).
        chunk: positions per chunk in the causal form.
        eps: smallest denominator (a query whose keys are all padding gets zeros).

    Shape:
        q (B, H, T, D), k (B, H, S, D), v (B, H, S, Dv) -> (B, H, T, Dv).
    """
    check_qkv(q, k, v, same_length=causal)
    if not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"chunk must be a positive int, got {chunk!r}")
    fq, fk = feature_map(q), feature_map(k)  # (B, H, T, M), (B, H, S, M)
    km = key_mask_of(key_mask, q.shape[0], k.shape[2])
    if km is not None:  # a padded key adds nothing to either sum
        fk = fk * km[:, None, :, None].to(fk.dtype)
    return _linear_core(fq, fk, v, causal, chunk, eps)


def linear_attention_recurrent(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    key_mask: Tensor | None = None,
    feature_map: Callable[[Tensor], Tensor] = elu_feature_map,
    eps: float = 1e-6,
) -> Tensor:
    """Causal linear attention as a recurrent network, one position per step.

    State S_t = S_{t-1} + phi(k_t) v_t^T (M x Dv) and z_t = z_{t-1} + phi(k_t);
    output y_t = S_t^T phi(q_t) / (z_t . phi(q_t)). The state has a fixed size
    whatever t is: this is chapter 2's recurrence h_t = f(h_{t-1}, x_t), with a
    matrix for h. Equal to :func:`linear_attention` with ``causal=True``.
    Katharopoulos et al. (2020), section 3.4.

    Shape:
        q, k (B, H, T, D), v (B, H, T, Dv) -> (B, H, T, Dv).
    """
    check_qkv(q, k, v, same_length=True)
    B, H, T, _ = q.shape
    fq, fk = feature_map(q), feature_map(k)  # (B, H, T, M)
    km = key_mask_of(key_mask, B, T)
    if km is not None:
        fk = fk * km[:, None, :, None].to(fk.dtype)
    state = q.new_zeros(B, H, fk.shape[-1], v.shape[-1])  # (B, H, M, Dv)
    z = q.new_zeros(B, H, fk.shape[-1])  # (B, H, M)
    out = []
    for t in range(T):
        state = state + fk[:, :, t, :, None] * v[:, :, t, None, :]  # outer product
        z = z + fk[:, :, t]
        num = (fq[:, :, t, :, None] * state).sum(dim=2)  # (B, H, Dv)
        den = (fq[:, :, t] * z).sum(dim=-1, keepdim=True)  # (B, H, 1)
        out.append(num / den.clamp_min(eps))
    return torch.stack(out, dim=2)  # (B, H, T, Dv)


def orthogonal_random_features(
    n_features: int, head_dim: int, generator: torch.Generator | None = None
) -> Tensor:
    """Gaussian directions made orthogonal in blocks of ``head_dim``, as in FAVOR+.

    Each block of D rows is the Q of a QR factorisation of a Gaussian matrix (D
    orthogonal unit rows); each row is then scaled to the length of an independent
    Gaussian vector, so each row is still distributed as N(0, I) but the rows of a
    block do not repeat each other's directions (lower variance). Choromanski et
    al. (2021), section 2.4.

    Shape:
        output (n_features, head_dim).
    """
    for name, n in (("n_features", n_features), ("head_dim", head_dim)):
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"{name} must be a positive int, got {n!r}")
    blocks = []
    for _ in range(math.ceil(n_features / head_dim)):
        g = torch.randn(head_dim, head_dim, generator=generator)
        q, _ = torch.linalg.qr(g)  # orthonormal columns
        blocks.append(q.T)
    w = torch.cat(blocks)[:n_features]  # (M, D) unit rows
    norms = torch.randn(n_features, head_dim, generator=generator).norm(dim=1)
    return w * norms[:, None]


def favor_features(x: Tensor, features: Tensor, *, is_query: bool) -> Tensor:
    """Positive random features: ``phi(x) = exp(w . x - |x|^2 / 2) / sqrt(M)``.

    With x scaled by D^(-1/4), E[phi(q) . phi(k)] = exp(q . k / sqrt(D)), the
    softmax kernel. A constant is subtracted inside the exponent for stability:
    per query (it cancels in the normalisation of that query) or one for all keys
    of a head (it cancels too). Choromanski et al. (2021), lemma 1.

    Shape:
        x (B, H, T, D), features (M, D) -> (B, H, T, M).
    """
    x = x * x.shape[-1] ** -0.25
    proj = x @ features.to(x.dtype).T  # (B, H, T, M)
    sq = (x * x).sum(-1, keepdim=True) / 2  # (B, H, T, 1)
    if is_query:
        shift = proj.amax(dim=-1, keepdim=True)  # (B, H, T, 1)
    else:
        shift = proj.amax(dim=(-2, -1), keepdim=True)  # (B, H, 1, 1)
    return torch.exp(proj - sq - shift.detach()) / math.sqrt(features.shape[0])


def performer_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    features: Tensor,
    causal: bool = False,
    key_mask: Tensor | None = None,
    chunk: int = 64,
) -> Tensor:
    """Performer (FAVOR+): linear attention whose kernel estimates softmax attention.

    Args:
        features: (M, D) random directions, e.g. :func:`orthogonal_random_features`.
        q, k, v, causal, key_mask, chunk: as :func:`linear_attention`.

    Shape:
        q (B, H, T, D), k (B, H, S, D), v (B, H, S, Dv) -> (B, H, T, Dv).
    """
    check_qkv(q, k, v, same_length=causal)
    if features.dim() != 2 or features.shape[1] != q.shape[-1]:
        raise ValueError(
            f"features must have shape (M, D={q.shape[-1]}), "
            f"got {tuple(features.shape)}"
        )
    fq = favor_features(q, features, is_query=True)  # (B, H, T, M)
    fk = favor_features(k, features, is_query=False)  # (B, H, S, M)
    km = key_mask_of(key_mask, q.shape[0], k.shape[2])
    if km is not None:
        fk = fk * km[:, None, :, None].to(fk.dtype)
    return _linear_core(fq, fk, v, causal, chunk, eps=1e-12)
