"""A small PNG line chart drawn with numpy and zlib (no plotting dependency): scores per cycle.

The chart has axes, horizontal grid lines with numeric labels, the cycle numbers under the x axis and
one coloured line with dots per series. Series names are not drawn (there is no letter font here): the
caller writes the legend next to the image from `SERIES_COLOURS`.
"""

from __future__ import annotations

import math
import struct
import zlib
from collections.abc import Sequence

import numpy as np

SERIES_COLOURS: list[tuple[str, tuple[int, int, int]]] = [
    ("blue", (31, 119, 180)),
    ("orange", (255, 127, 14)),
    ("green", (44, 160, 44)),
    ("red", (214, 39, 40)),
    ("purple", (148, 103, 189)),
]
_AXIS = (60, 60, 60)
_GRID = (225, 225, 225)
# 3x5 glyphs for tick labels, one string of 15 bits (rows top to bottom) per character.
_GLYPHS = {
    "0": "111101101101111",
    "1": "010110010010111",
    "2": "111001111100111",
    "3": "111001111001111",
    "4": "101101111001001",
    "5": "111100111001111",
    "6": "111100111101111",
    "7": "111001001001001",
    "8": "111101111101111",
    "9": "111101111001111",
    ".": "000000000000010",
    "-": "000000111000000",
}
Point = tuple[float, float | None]
XY = tuple[float, float]
RGB = tuple[int, int, int]


def png_bytes(pixels: np.ndarray) -> bytes:
    """Encode an RGB image (height x width x 3, uint8) as a PNG file."""
    height, width, _ = pixels.shape
    raw = b"".join(b"\x00" + pixels[row].tobytes() for row in range(height))

    def chunk(tag: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(tag + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 9))
        + chunk(b"IEND", b"")
    )


class Canvas:
    """An RGB pixel buffer with the few drawing operations a line chart needs."""

    def __init__(self, width: int, height: int) -> None:
        self.pixels = np.full((height, width, 3), 255, dtype=np.uint8)

    def box(self, x: float, y: float, half: int, colour: RGB) -> None:
        height, width, _ = self.pixels.shape
        x0, y0 = max(int(round(x)) - half, 0), max(int(round(y)) - half, 0)
        x1, y1 = min(int(round(x)) + half + 1, width), min(int(round(y)) + half + 1, height)
        if x0 < x1 and y0 < y1:
            self.pixels[y0:y1, x0:x1] = colour

    def line(self, start: XY, end: XY, colour: RGB, half: int = 0) -> None:
        steps = int(max(abs(end[0] - start[0]), abs(end[1] - start[1]))) * 2 + 1
        for t in np.linspace(0.0, 1.0, steps):
            self.box(start[0] + t * (end[0] - start[0]), start[1] + t * (end[1] - start[1]), half, colour)

    def text(self, x: int, y: int, text: str, colour: RGB, scale: int = 2) -> None:
        """Draw `text` (digits, '.', '-') with its top-left corner at (x, y)."""
        for index, char in enumerate(text):
            bits = _GLYPHS.get(char)
            if bits is None:
                continue
            for cell, bit in enumerate(bits):
                if bit == "1":
                    cx, cy = x + index * 4 * scale + (cell % 3) * scale, y + (cell // 3) * scale
                    self.pixels[cy : cy + scale, cx : cx + scale] = colour


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About `count` round tick values covering [low, high]."""
    if high <= low:
        low, high = low - 1.0, high + 1.0
    raw = (high - low) / max(count - 1, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.floor(low / step) * step
    return [round(first + i * step, 10) for i in range(int(math.ceil((high - first) / step)) + 1)]


def _label(value: float) -> str:
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}"


def line_chart(series: Sequence[Sequence[Point]], *, width: int = 560, height: int = 300) -> bytes:
    """A PNG line chart of `series` (lists of (cycle, value); None and non-finite values are skipped),
    colours in `SERIES_COLOURS` order.

    Raises:
        ValueError: No series has a value to plot.
    """
    series = [[(x, v) for x, v in points if v is not None and math.isfinite(v)] for points in series]
    values = [v for points in series for _, v in points]
    if not values:
        raise ValueError("line_chart expects at least one value to plot, got none; skip the plot instead.")
    xs = [x for points in series for x, _ in points]
    ticks = nice_ticks(min(values), max(values))
    left, right, top, bottom = 56, 16, 14, 30
    x_lo, x_hi = min(xs), max(max(xs), min(xs) + 1)

    def at(x: float, y: float) -> tuple[float, float]:
        px = left + (x - x_lo) / (x_hi - x_lo) * (width - left - right)
        py = height - bottom - (y - ticks[0]) / (ticks[-1] - ticks[0]) * (height - top - bottom)
        return px, py

    canvas = Canvas(width, height)
    for tick in ticks:
        _, py = at(x_lo, tick)
        canvas.line((left, py), (width - right, py), _GRID)
        label = _label(tick)
        canvas.text(left - 6 - len(label) * 8, int(py) - 5, label, _AXIS)
    canvas.line((left, top), (left, height - bottom), _AXIS)
    canvas.line((left, height - bottom), (width - right, height - bottom), _AXIS)
    for cycle in range(int(x_lo), int(x_hi) + 1):
        px, _ = at(cycle, ticks[0])
        canvas.line((px, height - bottom), (px, height - bottom + 4), _AXIS)
        canvas.text(int(px) - 3, height - bottom + 8, str(cycle), _AXIS)
    for (_, colour), points in zip(SERIES_COLOURS, series, strict=False):
        drawn = [at(x, v) for x, v in points]
        for a, b in zip(drawn, drawn[1:], strict=False):
            canvas.line(a, b, colour, half=1)
        for p in drawn:
            canvas.box(*p, 3, colour)
    return png_bytes(canvas.pixels)
