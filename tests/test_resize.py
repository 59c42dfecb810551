"""The size-256 configs: the resize rules against references computed independently from the
full-size masks and images, the way back to full size, and the rows the build stores."""

from __future__ import annotations

import io

import datasets
import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

import covid_chestxray_seg as recipe
from covid_chestxray_seg_tools.hub_folder import layout, resize
from tests.helpers import parquet_rows, require_torch


def repeated_reference(mask: np.ndarray, size: int) -> np.ndarray:
    """The mask rule by brute force: every source pixel split into size x size units, every
    output pixel a block of H x W units; set when at least half the block is set."""
    height, width = mask.shape
    units = np.repeat(np.repeat(mask, size, axis=0), size, axis=1).astype(np.int64)
    covered = units.reshape(size, height, size, width).sum(axis=(1, 3))
    return 2 * covered >= height * width


def integral_reference(mask: np.ndarray, size: int = resize.SIZE) -> np.ndarray:
    """The mask rule from the mask's integral image: the area set inside any rectangle is the
    bilinear interpolation of the integral image at its corners (exact, in integers)."""
    height, width = mask.shape
    table = np.zeros((height + 1, width + 1), dtype=np.int64)
    table[1:, 1:] = mask.astype(np.int64).cumsum(axis=0).cumsum(axis=1)
    # Corners of the output pixels in units of 1 / size of a source pixel.
    rows, cols = np.arange(size + 1) * height, np.arange(size + 1) * width
    qy, ry = np.divmod(rows, size)
    qx, rx = np.divmod(cols, size)
    qy1, qx1 = np.minimum(qy + 1, height), np.minimum(qx + 1, width)
    ry, rx = ry[:, None], rx[None, :]
    area = (
        table[np.ix_(qy, qx)] * (size - ry) * (size - rx)
        + table[np.ix_(qy1, qx)] * ry * (size - rx)
        + table[np.ix_(qy, qx1)] * (size - ry) * rx
        + table[np.ix_(qy1, qx1)] * ry * rx
    )
    covered = area[1:, 1:] - area[:-1, 1:] - area[1:, :-1] + area[:-1, :-1]
    return 2 * covered >= height * width


# --- the mask rule ---------------------------------------------------------------------------


def test_a_pixel_covered_exactly_half_is_set_and_less_is_not():
    mask = np.zeros((4, 4), dtype=bool)
    mask[0, 0:2] = True  # top-left output pixel: 2 of its 4 source pixels
    mask[2, 2] = True  # bottom-right: 1 of 4
    mask[0:2, 2] = mask[1, 3] = True  # top-right: 3 of 4
    assert resize.resize_mask(mask, size=2).tolist() == [[True, True], [False, False]]
    # 3 source pixels to 2: each output pixel covers one and a half; the middle one is split.
    assert resize.resize_mask(np.array([[1, 0, 0]]), size=2).tolist() == [[True, False], [True, False]]  # 2/3
    assert not resize.resize_mask(np.array([[0, 1, 0]]), size=2).any()  # 1/3 each
    assert resize.resize_mask(np.array([[0, 1, 1]] * 2), size=2).tolist() == [[False, True], [False, True]]


def test_the_mask_rule_equals_brute_force_on_random_masks():
    rng = np.random.default_rng(0)
    checked = 0
    for trial in range(400):
        height, width = (int(v) for v in rng.integers(1, 40, 2))
        size = int(rng.integers(1, 12))  # shrinking and enlarging
        if trial % 2:
            mask = rng.random((height, width)) < rng.random()
        else:  # a block, so some outputs are covered exactly half
            mask = np.zeros((height, width), dtype=bool)
            mask[rng.integers(0, height) :, rng.integers(0, width) :] = True
        expected = repeated_reference(mask, size)
        assert np.array_equal(resize.resize_mask(mask, size=size), expected), (height, width, size)
        assert np.array_equal(integral_reference(mask, size), expected)
        checked += int(expected.any())
    assert checked > 200


def test_segmentations_shrink_like_their_decoded_mask():
    rng = np.random.default_rng(1)
    for _ in range(50):
        height, width = (int(v) for v in rng.integers(20, 300, 2))
        masks = [np.zeros((height, width), dtype=np.uint8) for _ in range(int(rng.integers(1, 4)))]
        for mask in masks:
            y, x = int(rng.integers(0, height)), int(rng.integers(0, width))
            mask[y : y + int(rng.integers(1, height)), x : x + int(rng.integers(1, width))] = 1
        stored = []
        for mask in masks:
            rle = mask_utils.encode(np.asfortranarray(mask))
            stored.append({"size": [height, width], "counts": rle["counts"].decode("ascii")})
        union = np.any(masks, axis=0)
        size = int(rng.integers(8, 64))
        expected = resize.resize_mask(union, size=size)
        assert np.array_equal(expected, integral_reference(union, size))
        got = resize.resize_segmentations(stored, height=height, width=width, size=size)
        assert np.array_equal(got, expected)
    assert not resize.resize_segmentations([], height=5, width=5).any()


def test_bad_masks_and_segmentations_are_one_clear_error():
    with pytest.raises(resize.ResizeError, match=r"a mask must be a non-empty 2-D array, not shape \(3,\)"):
        resize.resize_mask(np.zeros(3))
    with pytest.raises(resize.ResizeError, match=r"RLE is damaged or does not cover 10x10 pixels"):
        resize.resize_segmentations([{"size": [10, 10], "counts": "0a"}], height=10, width=10)
    with pytest.raises(resize.ResizeError, match=r"not a readable image \(UnidentifiedImageError"):
        resize.resize_image(b"not an image")


# --- back to full size -----------------------------------------------------------------------


def test_to_full_size_mirrors_the_mask_rule():
    rng = np.random.default_rng(2)
    differing = total = 0
    for _ in range(20):
        height, width = (int(v) for v in rng.integers(300, 900, 2))
        small = np.zeros((resize.SIZE, resize.SIZE), dtype=bool)
        for _ in range(3):
            y, x = (int(v) for v in rng.integers(0, 200, 2))
            small[y : y + int(rng.integers(5, 50)), x : x + int(rng.integers(5, 50))] = True
        full = resize.to_full_size(small, width=width, height=height)
        assert full.shape == (height, width) and full.dtype == bool
        back = resize.resize_mask(full)
        differing += int((back != small).sum())
        total += int(small.sum())
    # Shrinking the full-size result gives the 256-px mask back, but for a rare corner pixel.
    assert differing <= total * 1e-3


def test_to_full_size_interpolates_at_pixel_centres_and_thresholds():
    # A 2 x 2 prediction over a 4 x 4 image: centres at 0.25 and 0.75 of each small pixel.
    prediction = np.array([[0.0, 1.0], [0.0, 1.0]], dtype=np.float32)
    full = resize.to_full_size(prediction, width=4, height=4)
    # Columns sample 0 (edge repeated), 0.25, 0.75, 1: set from 0.5 up.
    assert full.tolist() == [[False, False, True, True]] * 4
    assert not resize.to_full_size(np.full((3, 3), 0.49), width=7, height=5).any()
    stacked = resize.to_full_size(np.stack([prediction, 1 - prediction]), width=4, height=4)
    assert stacked.shape == (2, 4, 4) and np.array_equal(stacked[1], ~full)
    with pytest.raises(resize.ResizeError, match=r"must be \(h, w\) or \(C, h, w\), not shape \(4,\)"):
        resize.to_full_size(np.zeros(4), width=4, height=4)
    with pytest.raises(resize.ResizeError, match=r"the full size must be positive, not 0x4"):
        resize.to_full_size(prediction, width=0, height=4)


def test_to_full_size_is_torchs_bilinear_interpolation():
    torch = require_torch()
    rng = np.random.default_rng(3)
    probabilities = rng.random((3, 256, 256)).astype(np.float32)
    expected = (
        torch.nn.functional.interpolate(
            torch.from_numpy(probabilities)[None], size=(601, 803), mode="bilinear", align_corners=False
        )[0].numpy()
        >= 0.5
    )
    got = resize.to_full_size(probabilities, width=803, height=601)
    # Pillow interpolates in double precision, torch in float: only values within rounding of 0.5 may differ.
    assert (got != expected).sum() <= expected.size * 1e-5


# --- the image rule --------------------------------------------------------------------------


def test_the_image_rule_is_antialiased_bilinear_greyscale():
    torch = require_torch()
    rng = np.random.default_rng(4)
    colour = rng.integers(0, 256, (700, 900, 3), dtype=np.uint8)
    colour[200:400, 300:600] = 255  # an edge, so that aliasing would show
    buffer = io.BytesIO()
    Image.fromarray(colour).save(buffer, format="PNG")
    small = resize.resize_image(buffer.getvalue())
    assert small.mode == "L" and small.size == (256, 256)
    # Independently: ITU-R 601-2 luma, then torch's antialiased bilinear resize.
    grey = colour.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    expected = torch.nn.functional.interpolate(
        torch.from_numpy(np.floor(grey + 0.5))[None, None], size=(256, 256), mode="bilinear", antialias=True
    )[0, 0].numpy()
    difference = np.abs(np.asarray(small, dtype=np.float64) - expected)
    assert difference.max() <= 1.5 and difference.mean() < 0.6
    # Not a plain (aliased) bilinear sample: random pixels average out to mid grey.
    assert np.asarray(small)[:150, :50].std() < 20


# --- the stored rows -------------------------------------------------------------------------


def test_size_256_rows_are_defaults_rows_shrunk(fixture_build):
    default = {row["image_id"]: row for row in parquet_rows(fixture_build)}
    small = parquet_rows(fixture_build, config=layout.SIZE_256_CONFIG)
    assert sorted(row["image_id"] for row in small) == sorted(default) and len(small) == 3
    for row in small:
        full = default[row["image_id"]]
        assert set(full) - set(row) == {"overlay"}
        for column, value in row.items():
            if column != "image" and column not in recipe.MASK_COLUMNS:
                assert value == full[column], column
        with Image.open(io.BytesIO(row["image"]["bytes"])) as image:
            assert image.format == "PNG"
            assert np.array_equal(np.asarray(image), np.asarray(resize.resize_image(full["image"]["bytes"])))
        nulls = 0
        for column in recipe.MASK_COLUMNS:
            if full[column] is None:
                assert row[column] is None
                nulls += 1
                continue
            big = recipe.decode_mask(full[column])
            assert np.array_equal(recipe.decode_mask(row[column]), integral_reference(big)), column
        assert nulls == (1 if row["file_name"] == "ARDSSevere.png" else 0)


def test_the_size_256_configs_load_with_their_own_features(fixture_build):
    loaded = datasets.load_dataset(str(fixture_build), layout.SIZE_256_CONFIG)
    assert {split: len(rows) for split, rows in loaded.items()} == {"train": 1, "validation": 1, "test": 1}
    assert loaded["train"].features == resize.features() and "overlay" not in resize.features()
    row = loaded["train"][0]
    assert row["image"].size == (256, 256) and row["mask_left_lung"].size == (256, 256)
    assert (row["width"], row["height"]) != (256, 256)
    stacked = recipe.stack_masks(row)
    assert stacked.shape == (len(recipe.CLASSES), 256, 256) and stacked.any()
    licensed = datasets.load_dataset(str(fixture_build), layout.SIZE_256_LICENSED_CONFIG)
    assert sum(len(rows) for rows in licensed.values()) == 3
    for path in layout.shard_paths(fixture_build, config=layout.SIZE_256_CONFIG):
        assert path.parent.name == layout.LICENSED_256_PART
        assert datasets.Features.from_arrow_schema(pq.read_schema(path)) == resize.features()


@pytest.mark.slow
def test_real_size_256_masks_equal_the_reference_and_stay_small(real_build):
    checked = 0
    for split in ("test", "validation"):
        full = {row["image_id"]: row for row in parquet_rows(real_build, split)}
        for row in parquet_rows(real_build, split, config=layout.SIZE_256_CONFIG):
            for column in recipe.MASK_COLUMNS:
                mask = recipe.decode_mask(full[row["image_id"]][column])
                if mask is None:
                    assert row[column] is None
                elif mask.any():
                    assert np.array_equal(recipe.decode_mask(row[column]), integral_reference(mask)), column
                    checked += 1
                else:
                    assert not recipe.decode_mask(row[column]).any()
    assert checked > 150
    default = sum(path.stat().st_size for path in layout.shard_paths(real_build))
    small = sum(path.stat().st_size for path in layout.shard_paths(real_build, config=layout.SIZE_256_CONFIG))
    assert small <= 0.15 * default
    licensed = parquet_rows(real_build, columns=["image_id"], config=layout.SIZE_256_LICENSED_CONFIG)
    assert len(licensed) == 44
