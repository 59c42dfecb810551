"""The `overlay` column: the X-ray with each class mask tinted in its colour, derived from the
stored masks, small enough for the viewer."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image
from scipy import ndimage

import covid_chestxray_seg as recipe
from tests.helpers import parquet_rows

# JPEG (quality 80) moves a flat colour by a few levels; means over many pixels by less.
TOLERANCE = 6.0


def _thumbnail(png: bytes, size: tuple[int, int]) -> np.ndarray:
    """A stored mask at the overlay's size, nearest neighbour, read independently of the builder."""
    return np.asarray(Image.open(io.BytesIO(png)).convert("L").resize(size, Image.Resampling.NEAREST)) > 0


def test_overlay_tints_each_class_where_its_stored_mask_is(fixture_build):
    checked = 0
    for row in parquet_rows(fixture_build):
        overlay = Image.open(io.BytesIO(row["overlay"]["bytes"]))
        assert overlay.format == "JPEG" and overlay.mode == "RGB"
        assert max(overlay.size) <= recipe.OVERLAY_MAX_SIDE
        assert overlay.size == recipe.overlay_size(row["width"], row["height"])
        shown = np.asarray(overlay, dtype=np.float32)
        plain = np.asarray(recipe.draw_overlay(row["image"]["bytes"], {}), dtype=np.float32)
        masks = {
            index: _thumbnail(row[column]["bytes"], overlay.size)
            for index, column in enumerate(recipe.MASK_COLUMNS)
            if row[column] is not None
        }
        covered = np.sum(list(masks.values()), axis=0)
        for index, mask in masks.items():
            # Inside one class only, away from every outline and JPEG's ringing at edges.
            alone = ndimage.binary_erosion(mask & (covered == 1), iterations=3)
            if alone.sum() < 50:
                continue
            expected = (1 - recipe.OVERLAY_ALPHA) * plain[alone] + recipe.OVERLAY_ALPHA * np.asarray(
                recipe.CLASS_COLOURS[index]
            )
            assert np.abs(shown[alone].mean(axis=0) - expected.mean(axis=0)).max() < TOLERANCE, (
                row["file_name"],
                index,
            )
            checked += 1
        background = ndimage.binary_erosion(covered == 0, iterations=3)
        assert np.abs(shown[background] - plain[background]).mean() < TOLERANCE / 2, row["file_name"]
    assert checked >= 9  # lungs, heart, airways, GGO ... on each of the three fixture images


def test_overlay_is_derived_from_the_masks_not_the_annotations_alone():
    image = Image.new("L", (40, 20), 100)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    mask = np.zeros((20, 40), dtype=bool)
    mask[5:15, 10:30] = True
    drawn = np.asarray(recipe.draw_overlay(buffer.getvalue(), {0: mask}), dtype=np.float32)
    colour = np.asarray(recipe.CLASS_COLOURS[0], dtype=np.float32)
    # A translucent fill (PIL's blend rounds to within one level).
    assert np.allclose(drawn[10, 20], (1 - recipe.OVERLAY_ALPHA) * 100 + recipe.OVERLAY_ALPHA * colour, atol=1)
    assert np.array_equal(drawn[5, 20], colour)  # the outline is the class colour
    assert np.array_equal(drawn[0, 0], [100, 100, 100])  # outside: the X-ray as it is
