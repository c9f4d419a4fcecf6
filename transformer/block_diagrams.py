"""Diagrams of the Transformer's encoder block, decoder block and full stack.

Drawn with the helpers of :mod:`transformer.diagrams`; shapes with the book's
letters: B batch, S source length, T target length, C model width, H heads,
V vocabulary, L layers. Masks are boolean, ``True`` where attention is allowed.
"""

from __future__ import annotations

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Circle, FancyBboxPatch

from transformer.diagrams import COLORS, arrow, box, canvas

__all__ = ["draw_decoder_block", "draw_encoder_block", "draw_transformer"]

NORMS = ("post", "pre")

# (label, colour, side input or None) for each sub-layer, bottom up
_ENCODER = [
    (
        "multi-head self-attention, H heads\nmask: source padding (B, 1, 1, S)",
        "attn",
        None,
    ),
    ("feed-forward  C -> d_ff -> C", "ffn", None),
]
_DECODER = [
    (
        "masked self-attention, H heads\nmask: causal & padding (B, 1, T, T)",
        "attn",
        None,
    ),
    (
        "cross-attention: Q from here,\nK, V from memory; mask (B, 1, 1, S)",
        "attn",
        "memory\n(B, S, C)",
    ),
    ("feed-forward  C -> d_ff -> C", "ffn", None),
]


def _check_norm(norm: str) -> None:
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")


def _plus(ax: Axes, x: float, y: float) -> None:
    ax.add_patch(Circle((x, y), 0.22, fc="white", ec="0.3", lw=1, zorder=3))
    ax.text(x, y, "+", ha="center", va="center", fontsize=10, zorder=4)


def _column(
    ax: Axes,
    x: float,
    y: float,
    sublayers: list[tuple[str, str, str | None]],
    norm: str,
    width: float = 5.0,
) -> float:
    """Draw the sub-layers of one block upwards from ``y``; returns the top y."""
    for label, color, side in sublayers:
        start = y
        y += 0.55
        if norm == "pre":
            box(ax, (x, y + 0.3), "LayerNorm", 2.0, 0.5, COLORS["norm"])
            arrow(ax, (x, start), (x, y + 0.05))
            arrow(ax, (x, y + 0.55), (x, y + 0.95))
            y += 1.0
        else:
            arrow(ax, (x, start), (x, y))
        box(ax, (x, y + 0.45), label, width, 0.9, COLORS[color], fontsize=8)
        if side:
            ax.text(
                x - width / 2 - 1.6,
                y + 0.45,
                side,
                fontsize=8,
                ha="center",
                va="center",
                color="C0",
            )
            arrow(
                ax,
                (x - width / 2 - 0.9, y + 0.45),
                (x - width / 2, y + 0.45),
                color="C0",
            )
        arrow(ax, (x, y + 0.9), (x, y + 1.28))
        _plus(ax, x, y + 1.5)
        right = x + width / 2 + 0.35  # the residual connection skips the sub-layer
        low, high = start + 0.2, y + 1.5
        ax.plot([x, right, right], [low, low, high], color="C3", lw=1)
        arrow(ax, (right, y + 1.5), (x + 0.22, y + 1.5), color="C3")
        y += 1.72
        if norm == "post":
            arrow(ax, (x, y), (x, y + 0.3))
            box(ax, (x, y + 0.55), "LayerNorm", 2.0, 0.5, COLORS["norm"])
            y += 0.8
    return y


def _block(ax: Axes | None, sublayers: list, norm: str, what: str, n: str) -> Figure:
    _check_norm(norm)
    height = 2.0 + len(sublayers) * (3.3 if norm == "pre" else 3.1)
    fig, ax = canvas(ax, (5.0, 5.0 * height / 10.0), 10.0, height)
    box(ax, (5.5, 0.4), f"x  (B, {n}, C)", 2.4, 0.5)
    top = _column(ax, 5.5, 0.65, sublayers, norm)
    box(ax, (5.5, top + 0.45), f"output  (B, {n}, C)", 2.6, 0.5)
    arrow(ax, (5.5, top), (5.5, top + 0.2))
    ax.set_ylim(0, top + 0.8)
    ax.set_aspect("equal")
    ax.text(8.4, 0.4, "residual", fontsize=7.5, color="C3", ha="center")
    kind = "post-LN (paper)" if norm == "post" else "pre-LN"
    ax.set_title(f"The {what} block, {kind}")
    return fig


def draw_encoder_block(ax: Axes | None = None, norm: str = "post") -> Figure:
    """The encoder block of chapter 8: self-attention and FFN, each with its
    residual connection and LayerNorm (after the addition for ``"post"``, inside
    the branch for ``"pre"``).

    Args:
        ax: where to draw; a new figure when ``None``.
        norm: ``"post"`` (the paper's layout) or ``"pre"``.
    """
    return _block(ax, _ENCODER, norm, "encoder", "S")


def draw_decoder_block(ax: Axes | None = None, norm: str = "post") -> Figure:
    """The decoder block of chapter 8: masked self-attention, cross-attention to the
    encoder's memory, FFN; residual connections and LayerNorm as in the encoder.

    Args:
        ax: where to draw; a new figure when ``None``.
        norm: ``"post"`` (the paper's layout) or ``"pre"``.
    """
    return _block(ax, _DECODER, norm, "decoder", "T")


def draw_transformer(ax: Axes | None = None, norm: str = "post") -> Figure:
    """The full encoder-decoder Transformer of chapter 9, with tensor shapes.

    Args:
        ax: where to draw; a new figure when ``None``.
        norm: ``"post"`` or ``"pre"``; pre-LN adds a final LayerNorm to each stack.
    """
    _check_norm(norm)
    fig, ax = canvas(ax, (8.0, 6.4), 13.0, 10.4)
    final = norm == "pre"
    for x, side, n, blocks in (
        (3.2, "source", "S", _ENCODER),
        (9.6, "target", "T", _DECODER),
    ):
        box(ax, (x, 0.4), f"{side} ids  (B, {n})", 2.8, 0.5)
        box(
            ax,
            (x, 1.45),
            "embedding x sqrt(C)\n+ positions  (B, " + n + ", C)",
            3.6,
            0.8,
            COLORS["embed"],
        )
        arrow(ax, (x, 0.65), (x, 1.05))
        y = 2.3
        arrow(ax, (x, 1.85), (x, y))
        height = 1.25 + 1.3 * (len(blocks) - 1)
        ax.add_patch(
            FancyBboxPatch(
                (x - 2.4, y),
                4.8,
                height,
                boxstyle="round,pad=0.05",
                fc="none",
                ec="C0",
                lw=1.5,
                ls="--",
            )
        )
        left = side == "source"  # the decoder's label goes right, clear of the arrow
        ax.text(
            x - 2.5 if left else x + 2.5,
            y + height / 2,
            "L x",
            fontsize=12,
            color="C0",
            ha="right" if left else "left",
            va="center",
        )
        for k, (label, color, _) in enumerate(blocks):
            short = label.split(",")[0].split("\n")[0].split(":")[0]
            box(
                ax,
                (x, y + 0.6 + 1.3 * k),
                f"{short} + add & norm",
                4.2,
                0.7,
                COLORS[color],
                fontsize=8,
            )
            if k:
                arrow(ax, (x, y + 0.95 + 1.3 * (k - 1)), (x, y + 0.25 + 1.3 * k))
        y += height
        if final:
            arrow(ax, (x, y - 0.3), (x, y + 0.25))
            box(ax, (x, y + 0.5), "final LayerNorm", 2.4, 0.5, COLORS["norm"])
            y += 0.75
            arrow(ax, (x, y), (x, y + 0.35))
        else:
            arrow(ax, (x, y - 0.3), (x, y + 0.35))
        if side == "source":
            box(ax, (x, y + 0.65), "memory  (B, S, C)", 2.8, 0.6, COLORS["context"])
            mem = (x + 1.4, y + 0.65)
        else:
            box(
                ax,
                (x, y + 0.65),
                "linear C -> V: logits (B, T, V)",
                3.8,
                0.6,
                COLORS["out"],
            )
            box(ax, (x, y + 1.75), "softmax: p(y_t | y_<t, source)", 3.8, 0.6)
            arrow(ax, (x, y + 0.95), (x, y + 1.45))
            cross = (x - 2.1, 2.3 + 0.6 + 1.3)
            top = y + 2.1
    arrow(ax, mem, cross, color="C0")
    ax.text(
        6.4,
        mem[1] + 0.3,
        "K, V for every\ncross-attention",
        fontsize=7.5,
        color="C0",
        ha="center",
    )
    ax.set_ylim(0, top)
    ax.text(
        6.4,
        0.4,
        "masks: source padding (B, 1, 1, S);\ncausal & target padding (B, 1, T, T)",
        fontsize=7.5,
        ha="center",
        va="center",
        color="0.35",
    )
    ax.set_title("The encoder-decoder Transformer (" + norm + "-LN)")
    return fig
