"""Architecture diagrams, drawn with matplotlib patches, for the recurrent and
attention chapters.

Each function draws one picture and returns its figure; the boxes carry the
tensor shapes with the book's letters: B batch, S source length, T target length,
E embedding size, H the hidden size of a recurrent layer (chapters 4 and 5) or the
number of heads (chapter 6 on), D head size, C model width, V vocabulary.
:mod:`transformer.block_diagrams` draws the Transformer's blocks with the same
helpers.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Circle, FancyBboxPatch

__all__ = [
    "draw_attention_step",
    "draw_connectivity",
    "draw_encoder_decoder",
    "draw_head_split",
]

#: Fill colours by role, shared by every diagram.
COLORS = {
    "input": "white",
    "embed": "#dbe9f6",
    "rnn": "#e3f1dc",
    "attn": "#fde2c8",
    "norm": "#f2f2f2",
    "ffn": "#e3f1dc",
    "out": "#ead9f2",
    "context": "#fff2b3",
}


def canvas(
    ax: Axes | None, figsize: tuple[float, float], xlim: float, ylim: float
) -> tuple[Figure, Axes]:
    """A blank axes with data coordinates 0..xlim by 0..ylim and no frame."""
    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    fig = ax.get_figure(root=True)
    if not isinstance(fig, Figure):
        raise ValueError("draw on an axes that belongs to a figure")
    ax.set(xlim=(0, xlim), ylim=(0, ylim))
    ax.set_aspect("auto")
    ax.axis("off")
    return fig, ax


def box(
    ax: Axes,
    xy: tuple[float, float],
    text: str,
    w: float = 2.0,
    h: float = 0.7,
    color: str = "white",
    fontsize: float = 8.5,
) -> tuple[float, float, float, float]:
    """A rounded box centred at ``xy`` with a label; returns (x, y, w, h)."""
    x, y = xy
    ax.add_patch(
        FancyBboxPatch(
            (x - w / 2, y - h / 2),
            w,
            h,
            boxstyle="round,pad=0.02",
            fc=color,
            ec="0.3",
            lw=1,
        )
    )
    ax.text(x, y, text, ha="center", va="center", fontsize=fontsize)
    return x, y, w, h


def arrow(
    ax: Axes,
    start: tuple[float, float],
    end: tuple[float, float],
    color: str = "0.2",
    label: str | None = None,
    **kw: object,
) -> None:
    """An arrow from ``start`` to ``end``, with an optional label at its middle."""
    ax.annotate(
        "",
        xy=end,
        xytext=start,
        arrowprops=dict(arrowstyle="->", lw=1, color=color, shrinkA=0, shrinkB=0, **kw),
    )
    if label:
        mid = ((start[0] + end[0]) / 2, (start[1] + end[1]) / 2)
        ax.text(*mid, label, fontsize=7.5, color="0.3", ha="left", va="center")


def draw_encoder_decoder(ax: Axes | None = None, steps: int = 3) -> Figure:
    """The recurrent encoder-decoder of chapter 4 and its one context vector.

    The encoder reads the source ``x_1 .. x_S``; its final state is the context
    vector, which starts the decoder and joins its input at every step; the
    decoder reads ``<bos>, y_1, ...`` (teacher forcing) and scores the next token.

    Args:
        ax: where to draw; a new figure when ``None``.
        steps: how many encoder and decoder cells to draw (at least 2).
    """
    if steps < 2:
        raise ValueError(f"steps must be at least 2, got {steps}")
    width = 2 * steps * 1.6 + 3.4
    fig, ax = canvas(ax, (min(8.0, 0.8 * width), 3.8), width, 6.2)
    enc_x = [1.0 + 1.6 * i for i in range(steps)]
    ctx_x = enc_x[-1] + 1.7
    dec_x = [ctx_x + 1.7 + 1.6 * i for i in range(steps)]
    src = [f"x_{i + 1}" for i in range(steps - 1)] + ["x_S"]
    tgt_in = ["<bos>"] + [f"y_{i}" for i in range(1, steps)]
    tgt_out = [f"y_{i}" for i in range(1, steps)] + ["<eos>"]
    for i, x in enumerate(enc_x):
        box(ax, (x, 0.6), src[i], 1.1, 0.5)
        box(ax, (x, 1.8), "embed", 1.1, 0.5, COLORS["embed"])
        box(ax, (x, 3.1), "GRU", 1.1, 0.7, COLORS["rnn"])
        arrow(ax, (x, 0.85), (x, 1.55))
        arrow(ax, (x, 2.05), (x, 2.75))
        if i:
            arrow(ax, (enc_x[i - 1] + 0.55, 3.1), (x - 0.55, 3.1))
    box(ax, (ctx_x, 4.6), "context c\n= h_S  (B, H)", 1.6, 0.9, COLORS["context"])
    arrow(ax, (enc_x[-1] + 0.55, 3.3), (ctx_x - 0.3, 4.15))
    for i, x in enumerate(dec_x):
        box(ax, (x, 0.6), tgt_in[i], 1.1, 0.5)
        box(ax, (x, 1.8), "embed", 1.1, 0.5, COLORS["embed"])
        box(ax, (x, 3.1), "GRU", 1.1, 0.7, COLORS["rnn"])
        box(ax, (x, 5.6), f"-> {tgt_out[i]}", 1.3, 0.5, COLORS["out"])
        arrow(ax, (x, 0.85), (x, 1.55))
        arrow(ax, (x, 2.05), (x, 2.75))
        arrow(ax, (x, 3.45), (x, 5.35))
        arrow(ax, (ctx_x + 0.8, 4.6), (x - 0.2, 3.45), color="C1", alpha=0.7)
        if i:
            arrow(ax, (dec_x[i - 1] + 0.55, 3.1), (x - 0.55, 3.1))
    arrow(ax, (ctx_x + 0.3, 4.15), (dec_x[0] - 0.55, 3.1), color="C1")
    ax.text(ctx_x, 3.3, "initial\nstate", fontsize=7.5, color="C1", ha="center")
    ax.text(enc_x[0] - 0.6, 0.0, "source ids (B, S)", fontsize=8, ha="left")
    ax.text(dec_x[0] - 0.6, 0.0, "target input (B, T)", fontsize=8, ha="left")
    ax.text(enc_x[0] - 0.6, 2.45, "(B, S, E)", fontsize=7.5, color="0.35")
    ax.text(enc_x[0] - 0.6, 3.6, "states (B, S, H)", fontsize=7.5, color="0.35")
    feed = "input\n[embed; c]\n(B, E + H)"
    ax.text(dec_x[-1] + 0.65, 2.3, feed, fontsize=7.5, color="C1")
    ax.text(dec_x[0] - 0.6, 6.05, "logits (B, T, V)", fontsize=8)
    ax.text(sum(enc_x) / steps, 4.4, "encoder", fontsize=10, ha="center", color="C0")
    ax.set_title("Encoder-decoder: the whole source through one context vector")
    return fig


def draw_attention_step(ax: Axes | None = None, source_len: int = 4) -> Figure:
    """One step of chapter 5's attention decoder, from ``s_{t-1}`` to the logits.

    The previous decoder state is the query; its scores against every encoder
    state give the weights; their weighted sum is the context ``c_t``; the cell
    reads ``[embed(y_{t-1}); c_t]``; the output layer reads ``[s_t; c_t]``.

    Args:
        ax: where to draw; a new figure when ``None``.
        source_len: how many encoder states to draw (at least 2).
    """
    if source_len < 2:
        raise ValueError(f"source_len must be at least 2, got {source_len}")
    fig, ax = canvas(ax, (8.0, 4.6), 12.0, 7.6)
    hx = [0.9 + 1.2 * j for j in range(source_len)]
    names = [f"h_{j + 1}" for j in range(source_len - 1)] + ["h_S"]
    for j, x in enumerate(hx):
        box(ax, (x, 0.6), names[j], 1.0, 0.55, COLORS["rnn"])
        box(ax, (x, 2.1), f"e_t{j + 1 if j < source_len - 1 else 'S'}", 1.0, 0.5)
        box(ax, (x, 3.5), f"a_t{j + 1 if j < source_len - 1 else 'S'}", 1.0, 0.5)
        arrow(ax, (x, 0.9), (x, 1.85))
        arrow(ax, (x, 2.35), (x, 3.25))
        arrow(ax, (x, 3.75), (hx[-1] + 1.6, 4.9), color="C1", alpha=0.6)
    mid = (hx[0] + hx[-1]) / 2
    ax.text(hx[0] - 0.5, 0.0, "encoder states = keys and values (B, S, H)", fontsize=8)
    ax.text(hx[-1] + 0.6, 2.1, "scores (B, S)", fontsize=7.5, color="0.35")
    ax.text(hx[-1] + 0.6, 3.5, "weights (B, S)\nsoftmax over S", fontsize=7.5)
    ax.text(mid, 2.75, "softmax", fontsize=7.5, ha="center", color="0.35")
    qx = hx[-1] + 2.8
    box(ax, (qx, 1.0), "s_{t-1}  (B, H)\nquery", 1.8, 0.8, COLORS["rnn"])
    for x in hx:
        arrow(ax, (qx - 0.9, 1.2), (x + 0.5, 2.1), color="C0", alpha=0.5)
    ax.text(qx - 1.1, 1.75, "score(s_{t-1}, h_j)", fontsize=7.5, color="C0")
    cx = hx[-1] + 2.0
    box(ax, (cx, 5.1), "c_t = sum_j a_tj h_j\n(B, H)", 2.0, 0.8, COLORS["context"])
    ex = qx + 2.6
    box(ax, (ex, 1.0), "embed(y_{t-1})\n(B, E)", 1.8, 0.8, COLORS["embed"])
    gx = ex - 0.8
    box(ax, (gx, 4.0), "GRU cell\non [embed; c_t] (B, E + H)", 2.9, 0.8, COLORS["rnn"])
    arrow(ax, (ex, 1.4), (ex, 3.6))
    arrow(ax, (cx + 1.0, 5.0), (gx - 1.0, 4.3), color="C1")
    arrow(ax, (qx, 1.4), (gx - 0.9, 3.6), color="C2", label="  state")
    box(ax, (gx, 5.6), "s_t  (B, H)", 1.6, 0.55, COLORS["rnn"])
    arrow(ax, (gx, 4.4), (gx, 5.32))
    box(ax, (gx - 1.2, 6.9), "logits = W_o [s_t; c_t]  (B, V)", 3.8, 0.6, COLORS["out"])
    arrow(ax, (gx, 5.88), (gx - 0.6, 6.6))
    arrow(ax, (cx, 5.5), (gx - 1.8, 6.6), color="C1")
    ax.set_title("One step of the attention decoder (Bahdanau-style, chapter 5)")
    return fig


def draw_head_split(ax: Axes | None = None) -> Figure:
    """Multi-head attention as reshapes: (B, T, C) -> (B, H, T, D) -> concat -> W_O.

    Args:
        ax: where to draw; a new figure when ``None``.
    """
    fig, ax = canvas(ax, (8.0, 5.0), 12.0, 8.4)
    box(ax, (6.0, 0.5), "x  (B, T, C)", 2.6, 0.6, COLORS["input"])
    for k, (x, name) in enumerate(zip((2.5, 6.0, 9.5), "QKV")):
        box(ax, (x, 1.8), f"{name} = x W_{name}  (B, T, C)", 3.0, 0.6, COLORS["embed"])
        arrow(ax, (6.0, 0.8), (x, 1.5))
        box(ax, (x, 3.0), "view (B, T, H, D)", 2.6, 0.55, COLORS["norm"])
        box(ax, (x, 4.0), "transpose (B, H, T, D)", 2.8, 0.55, COLORS["norm"])
        arrow(ax, (x, 2.1), (x, 2.72))
        arrow(ax, (x, 3.28), (x, 3.72))
        for h in range(3):  # the H heads as stacked slices
            ax.add_patch(
                FancyBboxPatch(
                    (x - 1.3 + 0.9 * h, 4.5),
                    0.75,
                    0.35,
                    boxstyle="square,pad=0",
                    fc=f"C{h}",
                    alpha=0.35,
                    ec="0.3",
                )
            )
        ax.text(x + 1.45, 4.68, "H", fontsize=8, va="center")
        arrow(ax, (x, 4.85), (6.0 - 0.9 * (1 - k), 5.55))
    box(
        ax,
        (6.0, 5.9),
        "each head h: softmax(Q_h K_h^T / sqrt(D)) V_h\n"
        + "weights (B, H, T, T), out (B, H, T, D)",
        6.6,
        0.7,
        COLORS["attn"],
    )
    box(ax, (6.0, 7.0), "transpose + concat heads  (B, T, H D) = (B, T, C)", 5.4, 0.5)
    box(ax, (6.0, 7.95), "output = concat W_O  (B, T, C)", 3.6, 0.5, COLORS["out"])
    arrow(ax, (6.0, 6.25), (6.0, 6.75))
    arrow(ax, (6.0, 7.25), (6.0, 7.7))
    ax.text(0.1, 4.68, "D = C / H", fontsize=8, va="center", color="0.35")
    ax.set_title("Multi-head attention: split C into H heads of size D, then concat")
    return fig


def _nodes(ax: Axes, xs: list[float], y: float, color: str, hot: set[int]) -> None:
    for i, x in enumerate(xs):
        fc = color if i in hot else "white"
        ax.add_patch(Circle((x, y), 0.22, fc=fc, ec="0.3", lw=1, zorder=3))


def draw_connectivity(length: int = 8, kernel: int = 3) -> Figure:
    """Which inputs the last output sees: convolution, RNN and self-attention.

    Three panels over ``length`` positions. The convolution needs
    ``ceil((length - 1) / (kernel - 1))`` layers before the last output sees the
    first input; the RNN passes it through ``length - 1`` steps; one layer of
    self-attention connects every pair directly. Highlighted: what the last output
    depends on, and the path from the first input to it.

    Args:
        length: T, the number of positions (at least 3).
        kernel: the convolution's kernel size k (odd, at least 3).
    """
    if length < 3:
        raise ValueError(f"length must be at least 3, got {length}")
    if kernel < 3 or kernel % 2 == 0:
        raise ValueError(f"kernel must be odd and at least 3, got {kernel}")
    layers = -(-(length - 1) // (kernel - 1))  # causal: k - 1 more positions per layer
    fig, axes = plt.subplots(1, 3, figsize=(9.0, 3.4))
    xs = [float(i) for i in range(length)]
    top = float(layers)
    for ax in axes:
        ax.set(xlim=(-0.6, length - 0.4), ylim=(-0.9, top + 0.9))
        ax.set_aspect("equal")
        ax.axis("off")
    # convolution: causal, output i reads inputs i-k+1 .. i of the layer below
    ax = axes[0]
    seen = {length - 1}
    for layer in range(layers, 0, -1):
        below = {j for i in seen for j in range(i - kernel + 1, i + 1) if j >= 0}
        for i in range(length):
            for j in range(max(0, i - kernel + 1), i + 1):
                on = i in seen
                ax.plot(
                    [xs[j], xs[i]],
                    [layer - 1, layer],
                    color="C0" if on else "0.85",
                    lw=1.2 if on else 0.6,
                    zorder=2 if on else 1,
                )
        _nodes(ax, xs, layer, "C0", seen)
        seen = below
    _nodes(ax, xs, 0, "C0", seen)
    ax.set_title(f"convolution, k = {kernel}\npath: {layers} layers", fontsize=9)
    # RNN: one chain through the hidden states
    ax = axes[1]
    for i in range(length):
        ax.plot([xs[i], xs[i]], [0, top], color="C2", lw=1.2)
        if i:
            ax.annotate(
                "",
                xy=(xs[i] - 0.25, top),
                xytext=(xs[i - 1] + 0.25, top),
                arrowprops=dict(arrowstyle="->", color="C2", lw=1.2),
            )
    _nodes(ax, xs, 0, "C2", set(range(length)))
    _nodes(ax, xs, top, "C2", set(range(length)))
    ax.set_title(f"RNN\npath: {length - 1} sequential steps", fontsize=9)
    # self-attention: every output reads every input
    ax = axes[2]
    for i in range(length):
        for j in range(length):
            on = i == length - 1
            ax.plot(
                [xs[j], xs[i]],
                [0, top],
                color="C1" if on else "0.85",
                lw=1.2 if on else 0.5,
                zorder=2 if on else 1,
            )
    _nodes(ax, xs, 0, "C1", set(range(length)))
    _nodes(ax, xs, top, "C1", {length - 1})
    ax.set_title("self-attention\npath: 1 layer, all T x T pairs", fontsize=9)
    for ax in axes:
        ax.text(-0.5, -0.7, f"inputs, T = {length}", fontsize=8)
        ax.text(-0.5, top + 0.45, "outputs", fontsize=8)
    fig.suptitle("What the last output depends on, and how far the first input travels")
    return fig
