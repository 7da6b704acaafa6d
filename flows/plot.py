"""The run's score chart: Spearman x100 per cycle, one line per model and per set (matplotlib, Agg).

Each model gets a colour (in `SERIES_COLOURS` order) and each set (dev, a test task, label
agreement, ...) a line style and marker, so a chart of several models on several sets reads at a
glance; the legend names both. The chart is drawn on matplotlib's Agg canvas without pyplot, so no
display, no global figure state and no backend switch are needed (safe in worker threads).
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# matplotlib's "tab10" colours, in its order: the colour of the i-th model of a chart.
SERIES_COLOURS: list[tuple[str, tuple[int, int, int]]] = [
    ("blue", (31, 119, 180)),
    ("orange", (255, 127, 14)),
    ("green", (44, 160, 44)),
    ("red", (214, 39, 40)),
    ("purple", (148, 103, 189)),
    ("brown", (140, 86, 75)),
    ("pink", (227, 119, 194)),
    ("grey", (127, 127, 127)),
    ("olive", (188, 189, 34)),
    ("cyan", (23, 190, 207)),
]
# The style of the i-th set of a chart: (line style, marker).
SET_STYLES: list[tuple[str, str]] = [("-", "o"), ("--", "s"), (":", "^"), ("-.", "D"), ((0, (5, 1)), "v")]
Point = tuple[float, float | None]


@dataclass(frozen=True)
class ChartLine:
    """One line of the chart.

    Attributes:
        model: The model it measures (e.g. "bi", "cross", "bert-base bi"); sets the colour.
        set: The set or quantity measured (e.g. "dev", "STS-B test", "label agreement"); sets the
            line style. An empty string draws the first style and leaves the set out of the legend.
        points: (cycle, value) pairs; None and non-finite values are skipped.
    """

    model: str
    set: str
    points: Sequence[Point]


def _finite(points: Sequence[Point]) -> list[tuple[float, float]]:
    return [(float(x), float(v)) for x, v in points if v is not None and math.isfinite(v)]


def _rgb(colour: tuple[int, int, int]) -> tuple[float, float, float]:
    return (colour[0] / 255, colour[1] / 255, colour[2] / 255)


def score_figure(
    lines: Sequence[ChartLine],
    *,
    title: str = "Scores per cycle",
    x_label: str = "cycle (0 = starting model)",
    y_label: str = "Spearman x100",
    width: int = 800,
    height: int = 450,
    dpi: int = 100,
) -> Figure:
    """The chart as a matplotlib `Figure` on an Agg canvas (see `score_chart` for the PNG).

    Raises:
        ValueError: No line has a value to plot.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    # Colours and styles follow the order of `lines`, empty ones included, so they stay stable.
    models = list(dict.fromkeys(line.model for line in lines))
    sets = list(dict.fromkeys(line.set for line in lines))
    drawn = [(line, _finite(line.points)) for line in lines]
    drawn = [(line, points) for line, points in drawn if points]
    if not drawn:
        raise ValueError("line_chart expects at least one value to plot, got none; skip the plot instead.")
    fig = Figure(figsize=(width / dpi, height / dpi), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for line, points in drawn:
        _, colour = SERIES_COLOURS[models.index(line.model) % len(SERIES_COLOURS)]
        style, marker = SET_STYLES[sets.index(line.set) % len(SET_STYLES)]
        label = f"{line.model} · {line.set}" if line.set else line.model
        xs, ys = zip(*points, strict=True)
        ax.plot(
            xs, ys, linestyle=style, marker=marker, color=_rgb(colour), linewidth=2, markersize=6, label=label
        )
        ax.annotate(  # the latest value, readable without the grid
            f"{ys[-1]:.2f}",
            (xs[-1], ys[-1]),
            xytext=(6, 0),
            textcoords="offset points",
            va="center",
            fontsize=8,
            color=_rgb(colour),
        )
    xs_all = [x for _, points in drawn for x, _ in points]
    ax.set_xlim(min(xs_all) - 0.25, max(max(xs_all), min(xs_all) + 1) + 0.45)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label)
    ax.set_title(title)
    ax.grid(True, color=(0.88, 0.88, 0.88), linewidth=0.8)
    ax.set_axisbelow(True)
    legend_title = "model · set" if any(sets) else None
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, title=legend_title)
    return fig


def score_chart(lines: Sequence[ChartLine], **options: object) -> bytes:
    """The chart of `lines` as PNG bytes; `options` are those of `score_figure` (title, labels, size).

    Raises:
        ValueError: No line has a value to plot.
    """
    fig = score_figure(lines, **options)  # type: ignore[arg-type]
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def line_chart(
    series: Sequence[Sequence[Point]],
    *,
    names: Sequence[str] | None = None,
    width: int = 800,
    height: int = 450,
) -> bytes:
    """A PNG of one line per series, coloured in `SERIES_COLOURS` order (the report's legend text).

    Args:
        series: Lists of (cycle, value); None and non-finite values are skipped.
        names: The legend label of each series (default "series 1", "series 2", ...).
        width: Image width in pixels.
        height: Image height in pixels.

    Raises:
        ValueError: No series has a value to plot.
    """
    labels = list(names) if names is not None else [f"series {i + 1}" for i in range(len(series))]
    lines = [ChartLine(label, "", points) for label, points in zip(labels, series, strict=True)]
    return score_chart(lines, width=width, height=height)
