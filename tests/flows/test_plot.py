"""The score chart (flows/plot.py): matplotlib on Agg, one line per model and per set."""

from __future__ import annotations

import io
import math
import struct

import numpy as np
import pytest

from flows.plot import SERIES_COLOURS, SET_STYLES, ChartLine, line_chart, score_chart, score_figure

LINES = [
    ChartLine("bi", "dev", [(0, 86.61), (1, 86.67), (2, 86.70)]),
    ChartLine("bi", "STS-B test", [(0, 81.80), (1, 82.37), (2, None)]),
    ChartLine("cross", "dev", [(1, 85.79), (2, math.nan)]),
    ChartLine("cross", "STS-B test", [(1, 81.60), (2, 81.90)]),
]


def _rgb(index: int) -> tuple[float, float, float]:
    return tuple(c / 255 for c in SERIES_COLOURS[index][1])  # type: ignore[return-value]


def _png_size(png: bytes) -> tuple[int, int]:
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and png[12:16] == b"IHDR"
    return struct.unpack(">II", png[16:24])


def _pixels(png: bytes) -> np.ndarray:
    from matplotlib.image import imread

    return (imread(io.BytesIO(png), format="png")[..., :3] * 255).round().astype(int)


def test_figure_has_labelled_axes_legend_and_one_line_per_model_and_set() -> None:
    fig = score_figure(LINES, title="run r1")
    ax = fig.axes[0]
    assert (ax.get_title(), ax.get_xlabel(), ax.get_ylabel()) == (
        "run r1",
        "cycle (0 = starting model)",
        "Spearman x100",
    )
    legend = [text.get_text() for text in ax.get_legend().get_texts()]
    assert legend == ["bi · dev", "bi · STS-B test", "cross · dev", "cross · STS-B test"]
    colours = [tuple(line.get_color()) for line in ax.lines]
    assert colours == [_rgb(0), _rgb(0), _rgb(1), _rgb(1)]  # colour = model
    styles = [(line.get_linestyle(), line.get_marker()) for line in ax.lines]
    assert styles[0] == styles[2] != styles[1] == styles[3]  # style = set
    assert styles[0][1] == SET_STYLES[0][1] and styles[1][1] == SET_STYLES[1][1]
    assert [len(line.get_xdata()) for line in ax.lines] == [3, 2, 1, 2]  # None and NaN skipped
    assert all(tick == int(tick) for tick in ax.get_xticks())  # cycles are whole numbers


def test_png_has_the_requested_size_and_draws_each_model_colour() -> None:
    png = score_chart(LINES, width=640, height=360)
    assert _png_size(png) == (640, 360)
    pixels = _pixels(png)
    for index in (0, 1):
        target = np.array(SERIES_COLOURS[index][1])
        close = (np.abs(pixels - target).max(axis=-1) <= 12).sum()
        assert close > 200, f"{SERIES_COLOURS[index][0]} line barely drawn ({close} pixels)"
    unused = np.array(SERIES_COLOURS[2][1])
    assert (np.abs(pixels - unused).max(axis=-1) <= 12).sum() == 0


def test_nothing_to_plot_raises_value_error() -> None:
    with pytest.raises(ValueError, match="at least one value to plot"):
        score_chart([ChartLine("bi", "dev", [(1, None), (2, math.inf)])])
    with pytest.raises(ValueError, match="at least one value to plot"):
        line_chart([[], []])


def test_line_chart_colours_follow_series_positions() -> None:
    """flows/report.py writes the legend as 'blue: bi dev, orange: cross dev, ...' from SERIES_COLOURS."""
    png = line_chart([[(0, None)], [(1, 80.0), (2, 81.0)]], names=["bi dev", "cross dev"])
    pixels = _pixels(png)
    blue, orange = (np.array(SERIES_COLOURS[i][1]) for i in (0, 1))
    assert (np.abs(pixels - orange).max(axis=-1) <= 12).sum() > 200
    assert (np.abs(pixels - blue).max(axis=-1) <= 12).sum() == 0
    assert _png_size(line_chart([[(1, 1.0)]])) == (800, 450)
