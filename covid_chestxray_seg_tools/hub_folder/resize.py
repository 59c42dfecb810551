"""The size-256 configs: every image and mask at 256 x 256 by two fixed rules, and the way back.

The rules (the card says the same):

- Image: decoded, made greyscale (Pillow's ``convert("L")``: ITU-R 601-2 luma of RGB, alpha
  dropped), then resized to 256 x 256 with Pillow's bilinear filter, which antialiases when it
  shrinks (its support widens with the scale factor; torch's
  ``interpolate(mode="bilinear", antialias=True)`` follows the same filter). Stored as an 8-bit
  greyscale PNG, so the stored pixels are exactly the rule's output.
- Mask: a 256-px pixel is set when at least half of its area is covered by the full-size mask
  (each full-size pixel it overlaps counts with the area of the overlap). Computed in integers,
  so a pixel covered exactly half is set on every machine. Stored as a 1-bit PNG like
  `default`'s masks; a null mask stays null, an all-zero mask stays all-zero.
- Back to full size (`to_full_size`, for predictions): the 256-px values (probabilities, or a
  0/1 mask) are interpolated bilinearly at the centre of each full-size pixel (half-pixel
  centres, edges repeated: torch's ``interpolate(mode="bilinear", align_corners=False)``),
  and a pixel is set where the value is at least 0.5. It mirrors the mask rule: shrinking its
  output with `resize_mask` gives back the 256-px mask.

The aspect ratio is not kept (a 256 x 256 square, like the atlas): `width` and `height` in a
size-256 row stay the original image's, so a prediction goes back to the size it is scored at.
The rows of the size-256 configs are `default`'s rows with `image` and the masks replaced and
`overlay` left out; every other column is copied as it is.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import datasets
import numpy as np
import pyarrow as pa
from PIL import Image

import covid_chestxray_seg as recipe
from covid_chestxray_seg_tools.errors import CovidSegError
from covid_chestxray_seg_tools.hub_folder import layout

__all__ = [
    "CONFIG_DESCRIPTIONS",
    "DROPPED_COLUMNS",
    "SIZE",
    "THRESHOLD",
    "ResizeError",
    "features",
    "resize_image",
    "resize_mask",
    "resize_segmentations",
    "small_rows",
    "to_full_size",
]

SIZE = 256
THRESHOLD = 0.5
# The overlay is a picture for the viewer; `default` has it, and nobody trains on it.
DROPPED_COLUMNS = ("overlay",)
CONFIG_DESCRIPTIONS = {
    layout.SIZE_256_CONFIG: f"The records of `default` with `image` (greyscale) and every mask at {SIZE} x {SIZE}, "
    "no `overlay`; `width` and `height` stay the original size.",
    layout.SIZE_256_LICENSED_CONFIG: f"The records of `{layout.SIZE_256_CONFIG}` whose image has a known licence, "
    "each in the same split.",
}


class ResizeError(CovidSegError, ValueError):
    """An image or mask that the rules cannot resize (unreadable bytes, a wrong shape)."""


def features() -> datasets.Features:
    """The schema of the size-256 configs: `default`'s without `overlay`."""
    return datasets.Features({name: value for name, value in recipe.features().items() if name not in DROPPED_COLUMNS})


# --- the image rule ------------------------------------------------------------------------


def resize_image(data: bytes, *, size: int = SIZE) -> Image.Image:
    """The image rule: greyscale (`convert("L")`), then Pillow's antialiased bilinear resize to
    `size` x `size`.

    Args:
        data: the image file's bytes (any format Pillow reads).
        size: the side of the result.

    Returns:
        A mode "L" image of `size` x `size`.

    Raises:
        ResizeError: the bytes are not a readable image.
    """
    try:
        with Image.open(io.BytesIO(data)) as opened:
            grey = opened.convert("L")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise ResizeError(f"not a readable image ({type(error).__name__}: {error})") from None
    return grey.resize((size, size), Image.Resampling.BILINEAR)


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    # Level 1: a tenth more bytes than Pillow's default level, a third of its time per image.
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


# --- the mask rule -------------------------------------------------------------------------
#
# In an axis `full` pixels long shrunk to `out`, source pixel k covers [k * out, (k + 1) * out)
# and output pixel i covers [i * full, (i + 1) * full), in units of 1 / out of a source pixel:
# every overlap is an integer, and an output pixel's area is height * width units of both axes.


def _column_pieces(runs: np.ndarray, *, height: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The set pixels of a column-major run-length mask as (column, first row, end row) pieces,
    one per column a run touches."""
    ends = np.cumsum(runs)
    starts = ends - runs
    first, end = starts[1::2], ends[1::2]  # runs alternate unset, set, unset, ...
    keep = end > first
    first, end = first[keep], end[keep]
    if first.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    column_first, column_last = first // height, (end - 1) // height
    count = column_last - column_first + 1
    run = np.repeat(np.arange(first.size), count)
    step = np.arange(run.size) - np.repeat(np.cumsum(count) - count, count)
    column = column_first[run] + step
    top = np.where(step == 0, first[run] - column_first[run] * height, 0)
    bottom = np.where(column == column_last[run], end[run] - column_last[run] * height, height)
    return column, top, bottom


def _spans(index: np.ndarray, *, full: int, out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For source pixels `index` of an axis `full` long: (which of them, output pixel, overlap)
    for every output pixel each overlaps (one or two when shrinking)."""
    first = index * out // full
    count = ((index + 1) * out - 1) // full - first + 1
    which = np.repeat(np.arange(index.size), count)
    output = first[which] + np.arange(which.size) - np.repeat(np.cumsum(count) - count, count)
    overlap = np.minimum((output + 1) * full, (index[which] + 1) * out) - np.maximum(output * full, index[which] * out)
    return which, output, overlap


def _runs_to_size(runs: np.ndarray, *, height: int, width: int, size: int) -> np.ndarray:
    column, top, bottom = _column_pieces(np.asarray(runs, dtype=np.int64), height=height)
    if column.size == 0:
        return np.zeros((size, size), dtype=bool)
    # Each piece once per output column its source column overlaps, weighted by that overlap.
    which, output_column, weight = _spans(column, full=width, out=size)
    start, stop = top[which] * size, bottom[which] * size
    first_row, last_row = start // height, (stop - 1) // height
    span = first_row != last_row
    base = output_column * (size + 1)
    cells = size * (size + 1)
    # The rows a piece covers in part: its first and its last.
    ends = np.bincount(
        np.concatenate([base + first_row, base[span] + last_row[span]]),
        weights=np.concatenate(
            [
                weight * (np.where(span, (first_row + 1) * height, stop) - start),
                weight[span] * (stop[span] - last_row[span] * height),
            ]
        ),
        minlength=cells,
    )
    # The rows between them, covered whole: +height where they begin, -height where they end,
    # summed along the rows below.
    steps = np.bincount(
        np.concatenate([base[span] + first_row[span] + 1, base[span] + last_row[span]]),
        weights=np.concatenate([weight[span] * height, -weight[span] * height]),
        minlength=cells,
    )
    # bincount sums in float64: exact, every partial sum is an integer below 2**53.
    cover = ends.astype(np.int64).reshape(size, size + 1) + np.cumsum(
        steps.astype(np.int64).reshape(size, size + 1), axis=1
    )
    # cover[j, i]: the area of output pixel (row i, column j) that is set, in units of
    # 1 / (size * size) of a source pixel; the whole output pixel is height * width of them.
    return (2 * cover[:, :size] >= height * width).T


def _mask_runs(mask: np.ndarray) -> np.ndarray:
    """Column-major run lengths of a bool mask, starting with unset pixels (COCO's order)."""
    flat = mask.ravel(order="F").astype(np.int8)
    changes = np.flatnonzero(np.diff(flat)) + 1
    runs = np.diff(np.concatenate([[0], changes, [flat.size]]))
    return runs if flat[0] == 0 else np.concatenate([[0], runs])


def resize_mask(mask: np.ndarray, *, size: int = SIZE) -> np.ndarray:
    """The mask rule: a `size`-px pixel is set when at least half of its area is covered by `mask`.

    Args:
        mask: a (H, W) mask (bool, or anything where non-zero is set).
        size: the side of the result.

    Returns:
        A bool (size, size) array.

    Raises:
        ResizeError: `mask` is not 2-D or is empty.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2 or mask.size == 0:
        raise ResizeError(f"a mask must be a non-empty 2-D array, not shape {mask.shape}")
    height, width = mask.shape
    return _runs_to_size(_mask_runs(mask != 0), height=height, width=width, size=size)


def resize_segmentations(segmentations: Sequence[dict], *, height: int, width: int, size: int = SIZE) -> np.ndarray:
    """The mask rule applied to the union of stored COCO segmentations (`objects[...]["segmentation"]`,
    compressed RLE), without decoding the full-size mask: the same result as `resize_mask` of it.

    Raises:
        ResizeError: a segmentation's counts are damaged or do not cover `height` x `width`.
    """
    if not segmentations:
        return np.zeros((size, size), dtype=bool)
    counts = recipe.union_rle(segmentations)["counts"]
    runs = recipe.compressed_rle_runs(counts.decode("ascii") if isinstance(counts, bytes) else counts)
    if runs is None or int(runs.sum()) != height * width:
        raise ResizeError(f"a segmentation's RLE is damaged or does not cover {height}x{width} pixels")
    return _runs_to_size(runs, height=height, width=width, size=size)


# --- back to full size ---------------------------------------------------------------------


def to_full_size(prediction: np.ndarray, *, width: int, height: int, threshold: float = THRESHOLD) -> np.ndarray:
    """A prediction made at 256 px (or any size) brought back to an image's full size.

    Bilinear interpolation at each full-size pixel's centre (half-pixel centres, edges
    repeated, as torch's ``interpolate(mode="bilinear", align_corners=False)``), then a pixel
    is set where the value is at least `threshold`. Give probabilities (a network's sigmoid)
    for the smoothest outlines; a 0/1 mask works too.

    Args:
        prediction: (h, w) or (C, h, w) values in [0, 1] (bool is taken as 0/1).
        width, height: the image's full size (a size-256 row's `width` and `height`).
        threshold: the level at which a pixel is set.

    Returns:
        A bool (height, width) or (C, height, width) array.

    Raises:
        ResizeError: `prediction` is not 2-D or 3-D, or the size is not positive.
    """
    values = np.asarray(prediction, dtype=np.float32)
    if values.ndim not in (2, 3) or 0 in values.shape:
        raise ResizeError(f"a prediction must be (h, w) or (C, h, w), not shape {values.shape}")
    if width < 1 or height < 1:
        raise ResizeError(f"the full size must be positive, not {width}x{height}")
    if values.ndim == 3:
        return np.stack([to_full_size(plane, width=width, height=height, threshold=threshold) for plane in values])
    if not (values >= threshold).any():
        # Interpolation never exceeds the largest value: nothing can reach the threshold.
        return np.zeros((height, width), dtype=bool)
    # Pillow's bilinear filter when enlarging is the two-tap tent at half-pixel centres with
    # the edges repeated, computed in double precision from float32 values.
    grown = Image.fromarray(values, mode="F").resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(grown) >= threshold


# --- the size-256 rows ---------------------------------------------------------------------


def small_rows(batch: pa.Table) -> pa.Table:
    """`default` rows (an Arrow batch, pictures undecoded) as size-256 rows: `image` and the mask
    columns by the rules, `overlay` left out, every other column as it is.

    A mask is shrunk from the union of its class's RLEs in `objects`, which are the stored mask's
    pixels (tests compare with the stored full-size masks); a null mask stays null.
    """
    rows = batch.to_pylist()
    for row in rows:
        row["image"] = {"path": None, "bytes": _png(resize_image(row["image"]["bytes"]))}
        by_class: dict[int, list[dict]] = {}
        for obj in row["objects"]:
            by_class.setdefault(obj["category"], []).append(obj["segmentation"])
        for index, column in enumerate(recipe.MASK_COLUMNS):
            if row[column] is None:
                continue
            segmentations = by_class.get(index, [])
            if not segmentations:
                row[column] = {"path": None, "bytes": recipe.empty_mask_png(SIZE, SIZE)}
                continue
            small = resize_segmentations(segmentations, height=row["height"], width=row["width"])
            row[column] = {"path": None, "bytes": recipe.encode_mask_png(small)}
        for column in DROPPED_COLUMNS:
            del row[column]
    return pa.Table.from_pylist(rows, schema=features().arrow_schema)
