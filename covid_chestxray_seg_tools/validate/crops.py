"""Upstream's own masks: the RGBA crops in `masks/`, placed by `structure.csv`.

Upstream ships one crop per annotation (its bounding box; non-black pixels are the
object) and a table of where each goes. They are independent of the COCO file, so the
data-quality report and the benchmark's hand-written loader both read them, by the one
rule here.

A row of structure.csv (columns used here)::

    {"Template Name": "Left Lung", "Filename": "covid-19-pneumonia-15-PA.jpg",
     "Mask": "masks/<sha1>_<id>.png", "Resolution": "1024x1024",
     "Top": "120", "Left": "530", "Width": "380", "Height": "610"}

`Mask` is empty for annotations that have no mask (14 Monitoring Probes upstream).
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageChops

from covid_chestxray_seg import UPSTREAM_CLASS_ALIASES
from covid_chestxray_seg_tools.errors import CovidSegError

__all__ = ["STRUCTURE_FILE", "CropsError", "class_of", "image_masks", "read_crop", "structure_rows"]

STRUCTURE_FILE = "structure.csv"


class CropsError(CovidSegError, ValueError):
    """A crop disagrees with its row of structure.csv."""


def structure_rows(data_dir: Path) -> list[dict]:
    """The rows of structure.csv; FileNotFoundError when it is missing."""
    with open(Path(data_dir) / STRUCTURE_FILE, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def class_of(row: dict) -> str:
    """The row's class under this dataset's name (upstream's misspellings renamed)."""
    return UPSTREAM_CLASS_ALIASES.get(row["Template Name"], row["Template Name"])


def read_crop(data_dir: Path, row: dict) -> np.ndarray:
    """The row's crop as a bool (Height, Width) array: True where any RGB channel is above 0.
    Raises OSError or ValueError when the file cannot be read."""
    with Image.open(Path(data_dir) / row["Mask"]) as opened:
        red, green, blue = opened.convert("RGB").split()
        # The channel maximum in C is 20x faster than numpy's any over a channel axis.
        return np.asarray(ImageChops.lighter(ImageChops.lighter(red, green), blue)) > 0


def image_masks(data_dir: Path) -> Iterator[tuple[str, tuple[int, int], dict[str, np.ndarray | None]]]:
    """Per image (sorted by file name): its (height, width) and each class it has rows for,
    as a full-size bool mask merged from the class's crops, or None when an annotation of
    the class has no crop. One image at a time: all masks of the data take gigabytes.
    Raises CropsError when a crop's size disagrees with its row."""
    by_image: dict[str, list[dict]] = {}
    for row in structure_rows(data_dir):
        by_image.setdefault(row["Filename"], []).append(row)
    for file_name in sorted(by_image):
        rows = by_image[file_name]
        width, height = (int(v) for v in rows[0]["Resolution"].split("x"))
        masks: dict[str, np.ndarray | None] = {}
        for row in rows:
            name = class_of(row)
            if not row["Mask"]:
                masks[name] = None
                continue
            if name in masks and masks[name] is None:
                continue
            crop = read_crop(data_dir, row)
            if crop.shape != (int(row["Height"]), int(row["Width"])):
                raise CropsError(
                    f"{row['Mask']}: crop is {crop.shape[1]}x{crop.shape[0]}, "
                    f"{STRUCTURE_FILE} says {row['Width']}x{row['Height']}"
                )
            top, left = int(row["Top"]), int(row["Left"])
            canvas = masks.get(name)
            if canvas is None:
                canvas = masks[name] = np.zeros((height, width), dtype=bool)
            canvas[top : top + crop.shape[0], left : left + crop.shape[1]] |= crop
        yield file_name, (height, width), masks
