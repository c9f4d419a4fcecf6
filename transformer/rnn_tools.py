"""Measuring recurrent layers: gradients by distance and a many-to-one classifier
(chapter 2).

* :func:`gradient_norm_by_distance` measures how strongly the final state depends
  on each earlier input: the vanishing and exploding gradients of chapter 2;
* :class:`SequenceClassifier` is the many-to-one model of chapter 2's experiments.

Shape letters: B batch, T sequence length, I input features, H hidden size.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from transformer.rnn import RNN, _RecurrentLayer

__all__ = [
    "gradient_norm_by_distance",
    "SequenceClassifier",
    "recurrent_layer_class",
]


# ---------------------------------------------------------------------------
# diagnostics


def gradient_norm_by_distance(
    layer: _RecurrentLayer, x: Tensor, generator: torch.Generator | None = None
) -> Tensor:
    """How strongly the final state depends on each earlier input, by distance.

    Runs ``layer`` on ``x``, projects every sequence's final top-layer hidden
    state ``h_T`` on a random unit direction ``u`` and backpropagates. The norm
    of the gradient reaching input step t, ``|| d(u . h_T) / d x_t ||``, is
    averaged (root mean square) over the batch. Its expectation over ``u`` is
    the size of the Jacobian ``d h_T / d x_t`` (Frobenius norm / sqrt(H)), the
    quantity that vanishes or explodes (Bengio et al., 1994; Pascanu et al., 2013).

    Args:
        layer: one of :class:`~transformer.rnn.RNN`, :class:`~transformer.gated.LSTM`,
            :class:`~transformer.gated.GRU`.
        x: input sequences (not modified).
        generator: random source for the directions ``u``.

    Returns:
        A tensor (T,) whose entry d is the gradient norm at distance d from the
        last step (d = 0 is the last input, d = T - 1 the first).

    Shape:
        x: (B, T, I) -> (T,)
    """
    if not isinstance(layer, _RecurrentLayer):
        got = type(layer).__name__
        raise TypeError(f"expected an RNN, LSTM or GRU layer, got {got}")
    x = x.detach().clone().requires_grad_(True)
    output, _ = layer(x)  # (B, T, H)
    last = output[:, -1]  # (B, H)
    u = torch.randn(last.shape, generator=generator, dtype=last.dtype).to(last.device)
    u = u / u.norm(dim=-1, keepdim=True)
    (grad,) = torch.autograd.grad((last * u).sum(), x)  # (B, T, I)
    per_step = grad.pow(2).sum(dim=-1).mean(dim=0).sqrt()  # (T,)
    return per_step.flip(0).detach()  # index = distance from the last step


# ---------------------------------------------------------------------------
# many-to-one model


def recurrent_layer_class(kind: str | type[_RecurrentLayer]) -> type[_RecurrentLayer]:
    """The layer class named ``kind`` (``"rnn"``, ``"lstm"``, ``"gru"``), or ``kind``
    itself.

    ``"rnn"`` is this chapter's :class:`~transformer.rnn.RNN`; ``"lstm"`` and ``"gru"``
    are chapter 3's, found once :mod:`transformer.gated` has been imported.
    """
    if isinstance(kind, type) and issubclass(kind, _RecurrentLayer):
        return kind
    layers: dict[str, type[_RecurrentLayer]] = {"rnn": RNN}
    todo = list(_RecurrentLayer.__subclasses__())
    while todo:
        cls = todo.pop()
        layers.setdefault(cls.__name__.lower(), cls)
        todo.extend(cls.__subclasses__())
    if isinstance(kind, str) and kind in layers:
        return layers[kind]
    if kind in ("lstm", "gru"):
        raise ValueError(
            f"kind={kind!r} is a chapter 3 layer: import it first "
            f"(from transformer.gated import {kind.upper()}) or pass the class itself"
        )
    raise ValueError(
        f"kind must be one of {sorted(layers)} or a layer class, got {kind!r}"
    )


class SequenceClassifier(nn.Module):
    """Many-to-one model: embed tokens, run a recurrent layer, classify the final state.

    The label is read from the top layer's state at each sequence's last real
    token (``lengths``), so padding does not affect the prediction.

    Args:
        vocab_size: V, number of input token ids.
        num_classes: number of output classes.
        kind: ``"rnn"``, ``"lstm"`` or ``"gru"`` (see :func:`recurrent_layer_class`), or
            a layer class.
        embed_size: size of the token embeddings (the recurrent input size I).
        hidden_size: H.
        num_layers: L.
        pad_id: the padding id; its embedding is zero and never trained.
        **layer_kwargs: passed to the recurrent layer (``nonlinearity``, ``dropout``).

    Shape:
        ids: (B, T) long, lengths: (B,) -> logits (B, num_classes)
    """

    def __init__(
        self,
        vocab_size: int,
        num_classes: int,
        kind: str | type[_RecurrentLayer] = "rnn",
        embed_size: int = 16,
        hidden_size: int = 32,
        num_layers: int = 1,
        pad_id: int = 0,
        **layer_kwargs: Any,
    ) -> None:
        super().__init__()
        layer_class = recurrent_layer_class(kind)
        self.kind = layer_class.__name__.lower()
        self.pad_id = pad_id
        self.embed = nn.Embedding(vocab_size, embed_size, padding_idx=pad_id)
        self.rnn = layer_class(
            embed_size, hidden_size, num_layers=num_layers, **layer_kwargs
        )
        self.head = nn.Linear(hidden_size, num_classes)

    def forward(self, ids: Tensor, lengths: Tensor | None = None) -> Tensor:
        if ids.dtype != torch.long or ids.dim() != 2:
            raise ValueError(
                f"ids must be a (B, T) tensor of token ids (long), got shape "
                f"{tuple(ids.shape)} and dtype {ids.dtype}"
            )
        if lengths is None:
            lengths = (ids != self.pad_id).sum(dim=1)  # (B,)
        # state: (L, B, H) or a pair
        _, state = self.rnn(self.embed(ids), lengths=lengths)
        h_n = state[0] if isinstance(state, tuple) else state
        return self.head(h_n[-1])  # (B, num_classes)
