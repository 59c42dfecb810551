"""The HTML report's pictures: per-image distributions, the comparison's forest plot, and the
worst cases' thumbnails coloured true positive / false positive / false negative.

Plots are matplotlib `Figure`s without pyplot (no global state or backend to choose, as the
card's severity plot), saved as PNG without a timestamp or software tag: the same scores give
the same bytes. Every picture is handed back as PNG bytes; `data_uri` makes it an inline
`data:` URI, so the page needs no file beside it and nothing from the network.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "MIN_DISTRIBUTION_PAIRS",
    "OUTCOME_ALPHA",
    "OUTCOME_COLOURS",
    "OUTCOME_NAMES",
    "THUMBNAIL_SIZE",
    "ForestRow",
    "data_uri",
    "distribution_png",
    "forest_png",
    "outcome_thumbnail",
]

# A class with fewer scored pairs has no distribution worth drawing: it stays in the tables.
MIN_DISTRIBUTION_PAIRS = 5
# The longest side of a worst-case thumbnail, in pixels: the size-256 config's side.
THUMBNAIL_SIZE = 256
# True positive, false positive, false negative: Okabe and Ito's blue, yellow and vermillion
# (Okabe & Ito 2008, "Color Universal Design"). Blended at OUTCOME_ALPHA over greys from 60 to
# 160, the three stay at least 15 CIEDE2000 apart under Machado et al.'s (2009) simulation of
# protanopia, deuteranopia and tritanopia (tests/test_report.py checks it); blue / orange /
# vermillion drops to 8 under deuteranopia.
OUTCOME_COLOURS: dict[str, tuple[int, int, int]] = {
    "tp": (0, 114, 178),
    "fp": (240, 228, 66),
    "fn": (213, 94, 0),
}
OUTCOME_NAMES = {
    "tp": "true positive (in both)",
    "fp": "false positive (predicted only)",
    "fn": "false negative (truth only)",
}
OUTCOME_ALPHA = 0.6
# Blue points and boxes, as the card's plots; a difference whose interval excludes 0 in vermillion.
_POINT_COLOUR = "#0072b2"
_MARKED_COLOUR = "#d55e00"
_PLAIN_COLOUR = "#555555"
_DPI = 100


def data_uri(png: bytes, *, mime: str = "image/png") -> str:
    """`png` as a `data:` URI, for an `<img src>` that needs no file beside the page."""
    return f"data:{mime};base64," + base64.b64encode(png).decode("ascii")


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    # No timestamp or software tag in the file: the same scores give the same bytes.
    figure.savefig(buffer, format="png", dpi=_DPI, metadata={"Software": None})
    return buffer.getvalue()


def _new_figure(width: float, height: float) -> Figure:
    # Imported here: a report without pictures to draw does not pay for matplotlib.
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=_DPI, layout="constrained")


def distribution_png(
    values: Mapping[str, Mapping[str, Sequence[float]]],
    *,
    labels: Mapping[str, str],
    bounded: Collection[str] = (),
) -> bytes:
    """Per class and metric the per-image values as a box plot with every value drawn on it.

    Args:
        values: class -> metric -> the values of its scored pairs (classes top to bottom in
            the order given; a metric with no value leaves its row empty).
        labels: metric -> its axis label, one panel per metric in this order.
        bounded: the metrics that lie in [0, 1] (drawn on that whole range, so classes and
            reports compare at a glance); the others start at 0.

    Returns:
        A PNG.
    """
    names = list(values)
    metrics = list(labels)
    figure = _new_figure(3.2 * len(metrics) + 1.6, 0.42 * len(names) + 1.0)
    axes_row = figure.subplots(1, len(metrics), sharey=True, squeeze=False)[0]
    rows = np.arange(len(names))[::-1]  # the first class on top
    jitter = np.random.default_rng(0)  # seeded: the same scores give the same picture
    for axes, metric in zip(axes_row, metrics):
        present = [(row, np.asarray(values[name][metric], dtype=float)) for row, name in zip(rows, names)]
        present = [(row, data) for row, data in present if data.size]
        for row, data in present:
            _box(axes, data, row)
            spread = jitter.uniform(-0.22, 0.22, size=data.size)
            axes.scatter(data, row + spread, s=9, color=_POINT_COLOUR, alpha=0.55, linewidths=0, zorder=3)
        axes.set_xlabel(labels[metric])
        axes.grid(axis="x", alpha=0.3)
        if metric in bounded:
            axes.set_xlim(-0.03, 1.03)
        else:
            axes.set_xlim(left=0)
    first = axes_row[0]
    first.set_yticks(rows, names)
    first.set_ylim(-0.6, len(names) - 0.4)
    return _png(figure)


def _box(axes: Axes, data: np.ndarray, row: float) -> None:
    """Tukey's box, drawn by hand (matplotlib's `boxplot` changed how it is laid sideways in
    3.10): the quartiles, the median, whiskers to the furthest values within 1.5 IQR."""
    low, median, high = np.percentile(data, [25, 50, 75])
    reach = 1.5 * (high - low)
    inside = data[(data >= low - reach) & (data <= high + reach)]
    half = 0.3
    lines = (
        ([low, high, high, low, low], [row - half, row - half, row + half, row + half, row - half]),
        ([inside.min(), low], [row, row]),
        ([high, inside.max()], [row, row]),
    )
    for xs, ys in lines:
        axes.plot(xs, ys, color=_PLAIN_COLOUR, linewidth=1.0, zorder=2)
    axes.plot([median, median], [row - half, row + half], color="black", linewidth=1.6, zorder=4)


@dataclass(frozen=True)
class ForestRow:
    """One row of the forest plot: a class (or the headline) and, per metric, its paired
    difference A - B.

    Attributes:
        label: the row's name.
        differences: metric -> (mean difference, interval low, interval high, whether the
            interval excludes 0); a metric left out draws nothing on that row.
        bold: draw the label in bold (the headline).
    """

    label: str
    differences: Mapping[str, tuple[float, float, float, bool]]
    bold: bool = False


def forest_png(rows: Sequence[ForestRow], *, labels: Mapping[str, str], columns: int = 3) -> bytes:
    """The paired differences A - B with their intervals, one panel per metric, a line at 0;
    a difference whose interval excludes 0 filled and in vermillion, the others open and grey.

    Args:
        rows: top to bottom.
        labels: metric -> its panel title, panels in this order.
        columns: panels per row of panels.

    Returns:
        A PNG.
    """
    metrics = list(labels)
    grid_rows = -(-len(metrics) // columns)
    figure = _new_figure(3.4 * columns + 1.8, grid_rows * (0.3 * len(rows) + 1.1))
    grid = figure.subplots(grid_rows, columns, sharey=True, squeeze=False)
    positions = np.arange(len(rows))[::-1]
    for index, axes in enumerate(grid.flat):
        if index >= len(metrics):
            axes.set_visible(False)
            continue
        metric = metrics[index]
        _forest_panel(axes, rows, positions, metric)
        axes.set_title(labels[metric], fontsize=10)
    for axes in grid[:, 0]:
        axes.set_yticks(positions, [row.label for row in rows])
        for tick, row in zip(axes.get_yticklabels(), rows):
            if row.bold:
                tick.set_fontweight("bold")
        axes.set_ylim(-0.7, len(rows) - 0.3)
    return _png(figure)


def _forest_panel(axes: Axes, rows: Sequence[ForestRow], positions: np.ndarray, metric: str) -> None:
    axes.axvline(0, color="black", linewidth=0.8)
    for position, row in zip(positions, rows):
        if metric not in row.differences:
            continue
        mean, low, high, excludes = row.differences[metric]
        colour = _MARKED_COLOUR if excludes else _PLAIN_COLOUR
        axes.plot([low, high], [position, position], color=colour, linewidth=1.6)
        axes.plot(
            [mean],
            [position],
            marker="D" if excludes else "o",
            markersize=5.5,
            color=colour,
            markerfacecolor=colour if excludes else "white",
        )
    axes.grid(axis="x", alpha=0.3)
    axes.tick_params(axis="x", labelsize=8)


def outcome_thumbnail(
    image: np.ndarray, *, truth: np.ndarray, prediction: np.ndarray, aspect: tuple[int, int]
) -> bytes:
    """An X-ray with one class's true positives, false positives and false negatives filled in
    `OUTCOME_COLOURS`, at the image's own aspect ratio, its longest side `THUMBNAIL_SIZE`.

    Args:
        image: the greyscale picture, uint8 (h, w) (the size-256 config's square).
        truth, prediction: bool masks of the picture's shape.
        aspect: the original image's (width, height): the square is stretched back to it.

    Returns:
        A PNG.
    """
    grey = np.asarray(image, dtype=np.float32)
    canvas = np.repeat(grey[..., None], 3, axis=2)
    for outcome, where in (
        ("tp", truth & prediction),
        ("fp", prediction & ~truth),
        ("fn", truth & ~prediction),
    ):
        colour = np.asarray(OUTCOME_COLOURS[outcome], dtype=np.float32)
        canvas[where] = OUTCOME_ALPHA * colour + (1 - OUTCOME_ALPHA) * canvas[where]
    picture = Image.fromarray(np.clip(np.rint(canvas), 0, 255).astype(np.uint8), mode="RGB")
    width, height = aspect
    scale = THUMBNAIL_SIZE / max(width, height)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    if size != picture.size:
        picture = picture.resize(size, Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    # Level 1: a sixth larger than the default level, a fifth of its time (35 thumbnails of
    # the atlas's cv report: 1.7 MB in 0.14 s; optimize=True saves a tenth more in 4 s).
    picture.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()
