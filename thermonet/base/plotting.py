"""Small matplotlib helpers shared by the objects that draw themselves (checks, trends, fits).

Figures are created with :class:`matplotlib.figure.Figure` directly (no pyplot state), so
drawing works headless and inside long-running processes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

#: Size of a one-panel figure, inches.
PANEL_SIZE = (5.5, 4.2)


def axes_or_new(ax: "Axes | None" = None, size: tuple[float, float] = PANEL_SIZE) -> tuple["Figure", "Axes"]:
    """``(figure, ax)``: the given axes and their figure, or a new one-panel figure."""
    if ax is not None:
        return ax.get_figure(), ax
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, layout="constrained")
    return fig, fig.add_subplot()


def panels(ncols: int = 1, nrows: int = 1, width: float = PANEL_SIZE[0], height: float = PANEL_SIZE[1]):
    """``(figure, [axes])``: a new figure of ``nrows x ncols`` panels (row by row) on an Agg canvas,
    ready for ``figure.savefig`` without pyplot."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    return fig, [fig.add_subplot(nrows, ncols, i + 1) for i in range(nrows * ncols)]


def log_edges(values: np.ndarray) -> np.ndarray:
    """Cell edges around log-spaced centres (geometric midpoints, extended at both ends)."""
    x = np.log(np.asarray(values, dtype=float))
    if x.size == 1:
        return np.exp(np.array([x[0] - 0.5, x[0] + 0.5]))
    mid = (x[1:] + x[:-1]) / 2
    return np.exp(np.concatenate([[x[0] - (mid[0] - x[0])], mid, [x[-1] + (x[-1] - mid[-1])]]))


def log_mesh(ax: "Axes", x: np.ndarray, y: np.ndarray, data: np.ndarray, **kwargs):
    """``pcolormesh`` of ``data[len(y), len(x)]`` on log axes with cells centred on the grid points."""
    mesh = ax.pcolormesh(log_edges(x), log_edges(y), np.asarray(data, dtype=float), shading="flat", **kwargs)
    ax.set_xscale("log")
    ax.set_yscale("log")
    return mesh
