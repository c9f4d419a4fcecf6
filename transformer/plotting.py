"""One place for the look of the book's figures.

Notebooks call :func:`use_book_style` once, so every figure has the same size,
a readable font and 150 dpi: sharp on a high-density screen, with text that stays
legible when the book shrinks a figure to its column (at most 9 inches wide).
"""

from __future__ import annotations

import matplotlib as mpl
import numpy as np
from matplotlib.axes import Axes


def use_book_style(dpi: int = 150) -> None:
    """Set matplotlib defaults for the book: 150 dpi, a readable font, grid."""
    mpl.rcParams.update(
        {
            "figure.figsize": (6.4, 3.6),
            "figure.dpi": dpi,
            "savefig.dpi": dpi,
            "figure.autolayout": True,
            "axes.grid": True,
            "grid.alpha": 0.3,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.titlesize": "medium",
            "font.size": 10,
            "legend.frameon": False,
            "image.cmap": "viridis",
        }
    )
    try:  # in a notebook, store PNGs (SVG would bloat the files)
        from IPython import get_ipython

        shell = get_ipython()
        if shell is not None:
            shell.run_line_magic("config", "InlineBackend.figure_formats = ['png']")
    except ImportError:  # pragma: no cover - IPython is optional for the package
        pass


def heatmap(
    ax: Axes,
    matrix: np.ndarray,
    *,
    xlabels: list[str] | None = None,
    ylabels: list[str] | None = None,
    title: str | None = None,
    xlabel: str | None = None,
    ylabel: str | None = None,
    cmap: str = "viridis",
    colorbar: bool = True,
    vmin: float | None = None,
    vmax: float | None = None,
):
    """Draw a matrix (attention weights, masks, encodings) with optional tick labels."""
    matrix = np.asarray(matrix)
    if matrix.ndim != 2:
        raise ValueError(f"heatmap needs a 2-D matrix, got shape {matrix.shape}")
    im = ax.imshow(
        matrix, cmap=cmap, aspect="auto", vmin=vmin, vmax=vmax, interpolation="nearest"
    )
    ax.grid(False)
    if xlabels is not None:
        ax.set_xticks(range(len(xlabels)), xlabels, fontsize=8)
    if ylabels is not None:
        ax.set_yticks(range(len(ylabels)), ylabels, fontsize=8)
    if title:
        ax.set_title(title)
    if xlabel:
        ax.set_xlabel(xlabel)
    if ylabel:
        ax.set_ylabel(ylabel)
    if colorbar:
        ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    return im
