"""The `overlay` column: the X-ray with each class drawn in its colour and style (anatomy
outlined, opacities filled, devices as lines), derived from the stored masks, small enough for
the viewer; the colours' CIEDE2000 distances; the legend picture."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

import covid_chestxray_seg as recipe
from covid_chestxray_seg_tools.card import colours
from covid_chestxray_seg_tools.card.legend import LEGEND_PATH, STYLE_GROUPS
from covid_chestxray_seg_tools.card.stats import compute_stats
from tests.helpers import REPO, parquet_rows

# JPEG (quality 80) moves a flat colour by a few levels; means over many pixels by less.
TOLERANCE = 6.0
FILL = recipe.CLASS_STYLES.index("fill")
OUTLINE = recipe.CLASS_STYLES.index("outline")
LINE = recipe.CLASS_STYLES.index("line")


def _thumbnail(png: bytes, size: tuple[int, int]) -> np.ndarray:
    """A stored mask at the overlay's size, nearest neighbour, read independently of the builder."""
    return np.asarray(Image.open(io.BytesIO(png)).convert("L").resize(size, Image.Resampling.NEAREST)) > 0


def _grey_png(width: int, height: int, level: int = 100) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (width, height), level).save(buffer, format="PNG")
    return buffer.getvalue()


def test_overlay_tints_fills_and_outlines_anatomy_where_the_stored_masks_are(fixture_build):
    checked = {"fill": 0, "outline": 0}
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
        fills = [index for index in masks if recipe.CLASS_STYLES[index] == "fill"]
        # The pixels each class paints: an outline class only its outline.
        painted = {
            index: recipe.thick_outline(mask, recipe.OVERLAY_OUTLINE_WIDTH)
            if recipe.CLASS_STYLES[index] == "outline"
            else mask
            for index, mask in masks.items()
        }
        drawn = np.sum([ndimage.binary_dilation(mask, iterations=3) for mask in painted.values()], axis=0)
        for index, mask in masks.items():
            style = recipe.CLASS_STYLES[index]
            others = np.sum([ndimage.binary_dilation(painted[o], iterations=4) for o in masks if o != index], axis=0)
            if style == "fill":
                # Inside one class only, away from every outline and JPEG's ringing at edges.
                alone = ndimage.binary_erosion(mask, iterations=3) & (others == 0)
                if alone.sum() < 50:
                    continue
                expected = (1 - recipe.OVERLAY_ALPHA) * plain[alone] + recipe.OVERLAY_ALPHA * np.asarray(
                    recipe.CLASS_COLOURS[index]
                )
            elif style == "outline":
                # The outline is opaque in the class colour; its inside is the X-ray (or a fill).
                edge = recipe.thick_outline(mask, recipe.OVERLAY_OUTLINE_WIDTH) & (others == 0)
                # (JPEG's chroma subsampling spreads a nearby device's colour a few pixels.)
                near = np.sum([ndimage.binary_dilation(painted[o], iterations=10) for o in masks if o != index], axis=0)
                inner = ndimage.binary_erosion(mask, iterations=6) & (near == 0)
                if edge.sum() < 50 or inner.sum() < 50:
                    continue
                assert np.abs(shown[inner] - plain[inner]).mean() < TOLERANCE, (row["file_name"], index)
                # Two pixels wide, JPEG's chroma subsampling pulls an outline's colour towards the
                # X-ray beside it: its mean is nearer its own colour than the X-ray's or any class's.
                mean = shown[edge].mean(axis=0)
                distance = np.linalg.norm(mean - np.asarray(recipe.CLASS_COLOURS[index]))
                assert distance < np.linalg.norm(mean - plain[edge].mean(axis=0)), (row["file_name"], index)
                for other, colour in enumerate(recipe.CLASS_COLOURS):
                    if other != index:
                        assert distance < np.linalg.norm(mean - np.asarray(colour)), (row["file_name"], index, other)
                checked[style] += 1
                continue
            else:
                continue
            assert np.abs(shown[alone].mean(axis=0) - expected.mean(axis=0)).max() < TOLERANCE, (
                row["file_name"],
                index,
            )
            checked[style] += 1
        assert fills
        background = ndimage.binary_erosion(drawn == 0, iterations=3)
        assert np.abs(shown[background] - plain[background]).mean() < TOLERANCE / 2, row["file_name"]
    assert checked["fill"] >= 3 and checked["outline"] >= 9  # GGO; lungs, heart, airways on each image


def test_each_style_is_drawn_as_it_says():
    mask = np.zeros((20, 40), dtype=bool)
    mask[5:15, 10:30] = True
    image = _grey_png(40, 20)
    colour = np.asarray(recipe.CLASS_COLOURS[FILL], dtype=np.float32)
    filled = np.asarray(recipe.draw_overlay(image, {FILL: mask}), dtype=np.float32)
    # A translucent fill, no edge of its own (PIL's blend rounds to within one level).
    expected = (1 - recipe.OVERLAY_ALPHA) * 100 + recipe.OVERLAY_ALPHA * colour
    assert np.allclose(filled[5, 20], expected, atol=1) and np.allclose(filled[10, 20], expected, atol=1)
    assert np.array_equal(filled[0, 0], [100, 100, 100])  # outside: the X-ray as it is
    outlined = np.asarray(recipe.draw_overlay(image, {OUTLINE: mask}))
    for y, x in ((5, 20), (6, 20), (10, 10), (10, 11)):  # the outline: two pixels wide, opaque
        assert np.array_equal(outlined[y, x], recipe.CLASS_COLOURS[OUTLINE]), (y, x)
    assert np.array_equal(outlined[10, 20], [100, 100, 100]) and np.array_equal(outlined[7, 20], [100, 100, 100])
    line = np.zeros((20, 40), dtype=bool)
    line[10, 5:35] = True
    drawn = np.asarray(recipe.draw_overlay(image, {LINE: line}))
    colour_at = np.all(drawn == recipe.CLASS_COLOURS[LINE], axis=2)
    assert colour_at[10:12, 5:36].all() and colour_at.sum() == 2 * 31  # two pixels wide, opaque


def test_devices_are_drawn_over_outlines_and_outlines_over_fills():
    mask = np.zeros((20, 40), dtype=bool)
    mask[5:15, 10:30] = True
    line = np.zeros((20, 40), dtype=bool)
    line[:, 10] = True
    drawn = np.asarray(recipe.draw_overlay(_grey_png(40, 20), {LINE: line, OUTLINE: mask, FILL: mask}))
    assert np.array_equal(drawn[10, 10], recipe.CLASS_COLOURS[LINE])
    assert np.array_equal(drawn[5, 20], recipe.CLASS_COLOURS[OUTLINE])


def test_a_thin_line_stays_unbroken_when_the_overlay_shrinks_the_image():
    height, width = 1600, 2000
    line = np.zeros((height, width), dtype=np.uint8)
    line[np.arange(100, 1500), np.arange(100, 1500)] = 1  # a one-pixel diagonal tube
    line = np.asfortranarray(line)
    size = recipe.overlay_size(width, height)
    shrunk = recipe.thumbnail_mask_any(line, size)
    # Every thumbnail pixel is set exactly when its block of source pixels holds one.
    rows = (np.arange(size[1] + 1) * height) // size[1]
    cols = (np.arange(size[0] + 1) * width) // size[0]
    expected = np.array(
        [[line[rows[i] : rows[i + 1], cols[j] : cols[j + 1]].any() for j in range(size[0])] for i in range(size[1])]
    )
    assert np.array_equal(shrunk, expected)
    assert ndimage.label(shrunk, structure=np.ones((3, 3)))[1] == 1
    # Nearest-neighbour sampling would cut it into dashes.
    assert ndimage.label(recipe.thumbnail_mask(line, size), structure=np.ones((3, 3)))[1] > 1


def test_the_overlay_is_deterministic(fixture_build):
    row = parquet_rows(fixture_build)[0]
    masks = {
        index: np.asarray(Image.open(io.BytesIO(row[column]["bytes"]))) > 0
        for index, column in enumerate(recipe.MASK_COLUMNS)
        if row[column] is not None
    }
    assert recipe.overlay_jpeg(row["image"]["bytes"], masks) == recipe.overlay_jpeg(row["image"]["bytes"], masks)


# Sharma, Wu and Dalal (2005), "The CIEDE2000 color-difference formula: implementation notes,
# supplementary test data, and mathematical observations", Table 1: (Lab 1, Lab 2, Delta E 00).
SHARMA_PAIRS = [
    ((50.0, 2.6772, -79.7751), (50.0, 0.0, -82.7485), 2.0425),
    ((50.0, 3.1571, -77.2803), (50.0, 0.0, -82.7485), 2.8615),
    ((50.0, 2.8361, -74.0200), (50.0, 0.0, -82.7485), 3.4412),
    ((50.0, 0.0, 0.0), (50.0, -1.0, 2.0), 2.3669),
    ((50.0, 2.5, 0.0), (73.0, 25.0, -18.0), 27.1492),
    ((50.0, 2.5, 0.0), (61.0, -5.0, 29.0), 22.8977),
    ((50.0, 2.5, 0.0), (56.0, -27.0, -3.0), 31.9030),
    ((50.0, 2.5, 0.0), (58.0, 24.0, 15.0), 19.4535),
    ((50.0, 2.5, 0.0), (50.0, 3.1736, 0.5854), 1.0000),
    ((60.2574, -34.0099, 36.2677), (60.4626, -34.1751, 39.4387), 1.2644),
]


@pytest.mark.parametrize(("first", "second", "expected"), SHARMA_PAIRS)
def test_ciede2000_matches_sharmas_test_data(first, second, expected):
    assert colours.ciede2000(first, second) == pytest.approx(expected, abs=5e-5)
    assert colours.ciede2000(second, first) == pytest.approx(expected, abs=5e-5)


def test_srgb_to_lab_of_white_black_and_red():
    assert colours.srgb_to_lab((255, 255, 255)) == pytest.approx((100, 0, 0), abs=1e-3)
    assert colours.srgb_to_lab((0, 0, 0)) == pytest.approx((0, 0, 0), abs=1e-9)
    assert colours.srgb_to_lab((255, 0, 0)) == pytest.approx((53.2408, 80.0925, 67.2032), abs=1e-3)


def test_every_class_colour_stands_apart():
    contrast = colours.class_contrast()
    # At least about 18: different colours at a glance (the old palette's smallest was 4.3).
    assert contrast.between_classes > 18 and contrast.from_grey > 18
    assert contrast.where_overlapping is None
    assert colours.hex_colour((255, 136, 119)) == "#ff8877"


def test_overlap_colours_count_blends_and_what_covers_what():
    fill, other_fill = [index for index, style in enumerate(recipe.CLASS_STYLES) if style == "fill"][:2]
    alpha = recipe.OVERLAY_ALPHA
    under = colours.drawn_colour(fill)
    assert colours.overlap_colour(fill, other_fill) == pytest.approx(
        tuple((1 - alpha) * u + alpha * c for u, c in zip(under, recipe.CLASS_COLOURS[other_fill]))
    )
    assert colours.overlap_colour(FILL, OUTLINE) == tuple(map(float, recipe.CLASS_COLOURS[OUTLINE]))
    assert colours.overlap_colour(LINE, OUTLINE) == tuple(map(float, recipe.CLASS_COLOURS[LINE]))
    measured = colours.class_contrast([(fill, other_fill)])
    assert measured.where_overlapping is not None and measured.where_overlapping_pair[:2] == (
        recipe.CLASSES[fill],
        recipe.CLASSES[other_fill],
    )


@pytest.mark.slow
def test_the_build_docs_state_the_measured_colour_distances(real_build):
    contrast = colours.class_contrast(compute_stats(real_build)["overlapping_pairs"])
    readme = " ".join((REPO / "docs" / "build.md").read_text().split())
    assert f"between any two classes' drawn colours: {contrast.between_classes:.1f}" in readme
    assert f"where two classes overlap on an image: {contrast.where_overlapping:.1f}" in readme
    assert f"from any grey: {contrast.from_grey:.1f}" in readme
    assert contrast.where_overlapping > 18


def test_the_legend_shows_a_swatch_per_class_in_its_colour(fixture_build):
    with Image.open(fixture_build / LEGEND_PATH) as legend:
        pixels = np.asarray(legend.convert("RGB"))
    for index, colour in enumerate(recipe.CLASS_COLOURS):
        if recipe.CLASS_STYLES[index] == "fill":
            continue  # blended over a grey ramp: no pixel has the pure colour
        assert np.all(pixels == colour, axis=2).sum() >= 40, recipe.CLASSES[index]
    card = (fixture_build / "README.md").read_text()
    assert f"]({LEGEND_PATH})" in card
    legend_block = card.split("GENERATED: legend -->")[1]
    for index, name in enumerate(recipe.CLASSES):
        assert f"| {name} | {recipe.CLASS_STYLES[index]} | `{colours.hex_colour(recipe.CLASS_COLOURS[index])}` |" in (
            legend_block
        )
    assert set(STYLE_GROUPS) == set(recipe.CLASS_STYLES)
    assert re.search(r"!\[[^\]]*\]\(assets/preview\.png\)\s+!\[[^\]]*\]\(assets/legend\.png\)", card)
