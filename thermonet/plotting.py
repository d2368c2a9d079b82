"""Small matplotlib helpers shared by the objects that draw themselves (checks, trends, fits).

Figures are created with :class:`matplotlib.figure.Figure` directly (no pyplot state), so
drawing works headless and inside long-running processes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

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
