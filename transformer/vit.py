"""The Vision Transformer: an image read as a sequence of patches (chapter 12).

Dosovitskiy et al. (2021) cut an image into P x P patches, flatten each one, map it
with one linear layer to a vector of size C (a *patch embedding*), put a learned
*class token* in front, add one learned position vector per token and run a
pre-LN encoder stack (chapter 9's :class:`~transformer.layers.EncoderLayer`). The
class token's final vector, after a LayerNorm, feeds a linear classifier. Nothing
in it knows that neighbouring patches are near each other, or that a shifted
digit is the same digit: a convolution builds both facts in, a ViT must learn
them from data. That difference is its *inductive bias* (or lack of it).

The patch embedding is often written as a convolution with kernel and stride P
(as Hugging Face does); on non-overlapping patches that convolution is exactly
:func:`patchify` followed by a linear layer, which is how it is written here.

Shape letters: B batch, I input channels, H, W image height and width, P patch
side, N patches (H/P * W/P), C model size, K classes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import cast

import torch
from torch import Tensor, nn

from transformer.config import BlockConfig
from transformer.layers import EncoderLayer

__all__ = [
    "MLP",
    "SmallCNN",
    "VisionTransformer",
    "VisionTransformerConfig",
    "digits",
    "patchify",
]


def patchify(images: Tensor, patch_size: int) -> Tensor:
    """Cut images into non-overlapping square patches, each flattened to one vector.

    Patches are listed row by row (left to right, then top to bottom); each vector
    holds its pixels channel by channel, then row by row, the order in which a
    convolution's weight ``(C, I, P, P)`` flattens.

    Shape:
        images: (B, I, H, W), H and W multiples of ``patch_size`` ->
        (B, N, I * P * P) with N = (H / P) * (W / P).
    """
    if not isinstance(images, Tensor) or images.dim() != 4:
        shape = (
            tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        )
        raise ValueError(f"images must have shape (B, channels, H, W), got {shape}")
    if (
        isinstance(patch_size, bool)
        or not isinstance(patch_size, int)
        or patch_size < 1
    ):
        raise ValueError(f"patch_size must be a positive int, got {patch_size!r}")
    B, I, H, W = images.shape
    P = patch_size
    if H % P or W % P:
        raise ValueError(
            f"an image of {H}x{W} pixels does not split into {P}x{P} patches"
        )
    x = images.reshape(B, I, H // P, P, W // P, P)
    x = x.permute(0, 2, 4, 1, 3, 5)  # (B, H/P, W/P, I, P, P)
    return x.reshape(B, (H // P) * (W // P), I * P * P)  # (B, N, I*P*P)


@dataclass(frozen=True, kw_only=True)
class VisionTransformerConfig(BlockConfig):
    """Every hyper-parameter of a :class:`VisionTransformer`.

    Args:
        image_size: side of the (square) input images in pixels.
        patch_size: side P of a patch; must divide ``image_size``.
        n_channels: input channels I (1 for grey, 3 for colour).
        n_classes: K, outputs of the classifier.
        n_layers: blocks L.
        **shared: the fields of :class:`~transformer.config.BlockConfig`; the
            defaults here are ViT's choices (pre-LN with a final LayerNorm, GELU).
            ``positional`` must stay ``"none"``: the learned positions, one per
            patch plus the class token, belong to the model itself.
    """

    image_size: int
    patch_size: int
    n_classes: int
    n_channels: int = 1
    n_layers: int = 2
    activation: str = "gelu"
    norm_first: bool = True
    positional: str = "none"
    _vocab_fields: tuple[str, ...] = field(default=(), init=False, repr=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("image_size", "patch_size", "n_classes", "n_channels", "n_layers"):
            self._positive_int(name)
        if self.image_size % self.patch_size:
            self._fail(
                f"patch_size ({self.patch_size}) must divide "
                f"image_size ({self.image_size})"
            )
        if self.positional != "none":
            self._fail(
                "positional must be 'none' (positions are learned), "
                f"got {self.positional!r}"
            )

    @property
    def n_patches(self) -> int:
        """N, the number of patch tokens (the class token not counted)."""
        return (self.image_size // self.patch_size) ** 2


class VisionTransformer(nn.Module):
    """Patch embedding, class token, learned positions, encoder stack, classifier.

    Args:
        config: a :class:`VisionTransformerConfig`.

    Shape:
        images: (B, I, H, W) float -> hidden states (B, N + 1, C) (position 0 is
        the class token); classify (B, K); attention_maps: one (B, heads, N + 1,
        N + 1) tensor per layer.
    """

    config_class = VisionTransformerConfig

    def __init__(self, config: VisionTransformerConfig) -> None:
        super().__init__()
        if not isinstance(config, VisionTransformerConfig):
            raise TypeError(
                f"config must be a VisionTransformerConfig, got {type(config).__name__}"
            )
        c = self.config = config
        self.patch_embedding = nn.Linear(c.n_channels * c.patch_size**2, c.d_model)
        self.class_token = nn.Parameter(torch.zeros(1, 1, c.d_model))  # (1, 1, C)
        self.positions = nn.Parameter(torch.zeros(1, c.n_patches + 1, c.d_model))
        nn.init.trunc_normal_(self.class_token, std=0.02)
        nn.init.trunc_normal_(self.positions, std=0.02)
        self.dropout = nn.Dropout(c.dropout)
        self.layers = nn.ModuleList(
            EncoderLayer.from_config(c) for _ in range(c.n_layers)
        )
        self.norm = (
            nn.LayerNorm(c.d_model, eps=c.layer_norm_eps) if c.use_final_norm else None
        )
        self.classifier = nn.Linear(c.d_model, c.n_classes)

    def _check(self, images: Tensor) -> None:
        c = self.config
        want = (c.n_channels, c.image_size, c.image_size)
        if (
            not isinstance(images, Tensor)
            or images.dim() != 4
            or tuple(images.shape[1:]) != want
        ):
            got = (
                tuple(images.shape)
                if isinstance(images, Tensor)
                else type(images).__name__
            )
            raise ValueError(
                f"images must have shape (B, {', '.join(map(str, want))}), got {got}"
            )
        if not images.is_floating_point():
            raise TypeError(f"images must be floating point, got {images.dtype}")

    def embed(self, images: Tensor) -> Tensor:
        """The input sequence (B, N + 1, C): class token, then one token per patch."""
        self._check(images)
        patches = patchify(images, self.config.patch_size)  # (B, N, I*P*P)
        x = self.patch_embedding(patches)  # (B, N, C)
        cls = self.class_token.expand(x.shape[0], -1, -1)  # (B, 1, C)
        x = torch.cat([cls, x], dim=1) + self.positions  # (B, N+1, C)
        return cast(Tensor, self.dropout(x))

    def forward(self, images: Tensor) -> Tensor:
        """Hidden states (B, N + 1, C) after the final LayerNorm (if any)."""
        x = self.embed(images)
        for layer in self.layers:
            x = layer(x)
        return x if self.norm is None else self.norm(x)

    def classify(self, images: Tensor) -> Tensor:
        """Class logits (B, K) from the class token's final vector."""
        return cast(Tensor, self.classifier(self(images)[:, 0]))

    @torch.no_grad()
    def attention_maps(self, images: Tensor) -> list[Tensor]:
        """The attention weights of every layer, each (B, heads, N + 1, N + 1).

        Row 0 of each map is where the class token looks: at which patches.
        """
        x = self.embed(images)
        maps = []
        for layer in self.layers:
            x, weights = layer(x, need_weights=True)
            maps.append(weights)
        return maps


def digits(
    test_fraction: float = 0.2, seed: int = 0
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """scikit-learn's bundled handwritten digits as tensors, split by a seeded shuffle.

    1,797 grey images of 8 x 8 pixels (values 0-16, scaled here to 0-1) with their
    digit 0-9 (Alpaydin & Kaynak's UCI set, shipped inside scikit-learn: nothing is
    downloaded).

    Returns:
        ``(x_train, y_train, x_test, y_test)``; images (N, 1, 8, 8) float, labels (N,).
    """
    from sklearn.datasets import load_digits  # type: ignore[import-untyped]

    data = load_digits()
    x = torch.tensor(data.images, dtype=torch.float32)[:, None] / 16.0  # (N, 1, 8, 8)
    y = torch.tensor(data.target, dtype=torch.long)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    n_test = round(test_fraction * len(x))
    test, train = order[:n_test], order[n_test:]
    return x[train], y[train], x[test], y[test]


class SmallCNN(nn.Module):
    """Two 3 x 3 convolutions and a linear layer: locality and translation built in.

    Shape:
        images (B, I, H, W) -> classify (B, K).
    """

    def __init__(self, n_classes: int, n_channels: int = 1, width: int = 32) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(n_channels, width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),  # 8x8 -> 4x4
            nn.Conv2d(width, width, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(2),  # -> 2x2
        )
        self.classifier = nn.Linear(width * 4, n_classes)

    def classify(self, images: Tensor) -> Tensor:
        return cast(Tensor, self.classifier(self.features(images).flatten(1)))


class MLP(nn.Module):
    """The pixels as one flat vector: no notion of neighbours or of patches.

    Shape:
        images (B, I, H, W) -> classify (B, K).
    """

    def __init__(self, n_inputs: int, n_classes: int, hidden: int = 128) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(),
            nn.Linear(n_inputs, hidden),
            nn.ReLU(),
            nn.Linear(hidden, n_classes),
        )

    def classify(self, images: Tensor) -> Tensor:
        return cast(Tensor, self.net(images))
