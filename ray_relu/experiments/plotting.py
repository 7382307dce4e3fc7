"""Figure scaffolding shared by the experiments: panels, log axes, the overview.

An experiment's figure is a row of *panels*; a panel is a function
``draw(ax, table, curves)`` that draws into one Axes from the experiment's two tables.
The first panel of each experiment is its headline, and :func:`overview` puts the five
headlines side by side.
"""

from __future__ import annotations

from typing import Callable, Sequence

import pyarrow as pa

Panel = Callable[..., None]

PANEL_SIZE = (4.6, 3.6)


def figure_of(panels: Sequence[Panel], table: pa.Table, curves: pa.Table, title: str):
    """A figure with one Axes per panel, each drawn from ``table`` and ``curves``."""
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(panels), squeeze=False,
                             figsize=(PANEL_SIZE[0] * len(panels), PANEL_SIZE[1]))
    for panel, ax in zip(panels, axes[0]):
        panel(ax, table, curves)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def overview(results: Sequence, panels: dict[str, Panel], columns: int = 3):
    """One figure with the headline panel of each result (``panels[result.name]``)."""
    import matplotlib.pyplot as plt
    rows = -(-len(results) // columns)
    fig, axes = plt.subplots(rows, columns, squeeze=False,
                             figsize=(PANEL_SIZE[0] * columns, PANEL_SIZE[1] * rows))
    flat = list(axes.ravel())
    for result, ax in zip(results, flat):
        panels[result.name](ax, result.table, result.curves)
        ax.set_title(f"{result.name}: {ax.get_title()}", fontsize=9)
    for ax in flat[len(results):]:
        ax.axis("off")
    fig.tight_layout()
    return fig


MODE_STYLE = {"master": ("-", "o"), "all-to-all": ("--", "s")}


def colors_for(labels) -> dict:
    """One matplotlib cycle color per distinct label, in order of first appearance."""
    return {label: f"C{i % 10}" for i, label in enumerate(dict.fromkeys(labels))}


def finish(ax, xlabel: str, ylabel: str, title: str, *, logy: bool = True,
           logx: bool = False, legend: bool = True) -> None:
    """Labels, log scales, grid and a small legend."""
    if logy:
        ax.set_yscale("log")
    if logx:
        from matplotlib.ticker import NullFormatter
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    if legend and ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
