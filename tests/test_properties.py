"""Property-based tests of the COCO handling: any valid segmentation gives exactly its mask, any
invalid one the build's clear error, never another exception."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image
from pycocotools import mask as mask_utils

import covid_chestxray_seg as recipe
from tests.helpers import mask_to_runs

SOURCE = Path("results.json")


def runs_to_mask(runs: list[int], height: int, width: int) -> np.ndarray:
    """An independent decoder: COCO runs alternate 0 and 1, filled in column-major order."""
    flat = np.zeros(height * width, dtype=bool)
    position = 0
    for index, run in enumerate(runs):
        if index % 2:
            flat[position : position + run] = True
        position += run
    return flat.reshape((width, height)).T


masks = st.tuples(st.integers(1, 48), st.integers(1, 48)).flatmap(lambda shape: arrays(np.bool_, shape))


def image_for(mask: np.ndarray) -> dict:
    return {"id": 1, "file_name": "x.png", "height": mask.shape[0], "width": mask.shape[1]}


def stored_mask(rle: dict) -> np.ndarray:
    return mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode()}).astype(bool)


@settings(max_examples=150, deadline=None)
@given(masks)
def test_compressed_rle_round_trips_exactly(mask):
    encoded = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    segmentation = {"size": list(encoded["size"]), "counts": encoded["counts"].decode()}
    rle = recipe.segmentation_to_rle(segmentation, image_for(mask), SOURCE, "annotation id 1")
    assert np.array_equal(stored_mask(rle), mask)
    assert recipe.compressed_rle_runs(segmentation["counts"]).tolist() == mask_to_runs(mask)


@settings(max_examples=150, deadline=None)
@given(masks)
def test_uncompressed_rle_gives_the_independently_decoded_mask(mask):
    runs = mask_to_runs(mask)
    assert np.array_equal(runs_to_mask(runs, *mask.shape), mask)
    segmentation = {"size": list(mask.shape), "counts": runs}
    rle = recipe.segmentation_to_rle(segmentation, image_for(mask), SOURCE, "annotation id 1")
    assert np.array_equal(stored_mask(rle), mask)


@settings(max_examples=150, deadline=None)
@given(masks)
def test_mask_png_is_lossless(mask):
    assert np.array_equal(recipe.decode_mask(recipe.encode_mask_png(mask)), mask)


@settings(max_examples=150, deadline=None)
@given(
    st.tuples(st.integers(1, 48), st.integers(1, 48)).flatmap(
        lambda shape: st.lists(arrays(np.bool_, shape), min_size=1, max_size=3)
    )
)
def test_a_class_mask_is_the_union_of_its_annotations_packed_within_its_box(parts):
    segmentations = []
    for part in parts:
        encoded = mask_utils.encode(np.asfortranarray(part.astype(np.uint8)))
        segmentations.append({"size": list(encoded["size"]), "counts": encoded["counts"].decode()})
    union = np.any(parts, axis=0)
    decoded, (x0, y0, x1, y1) = recipe.decode_class_mask(segmentations)
    assert np.array_equal(decoded.astype(bool), union)
    assert not union.sum() - union[y0:y1, x0:x1].sum()  # the box holds every pixel
    rows = recipe.pack_mask_rows(decoded, box=(x0, y0, x1, y1))
    assert np.array_equal(rows, np.packbits(union, axis=1))
    assert np.array_equal(recipe.decode_mask(recipe.bit_png(rows, union.shape[1])), union)


@settings(max_examples=150, deadline=None)
@given(masks, st.integers(1, 64), st.integers(1, 64))
def test_mask_thumbnails_sample_the_pixels_pillow_samples(mask, width, height):
    expected = np.asarray(Image.fromarray(mask).resize((width, height), Image.Resampling.NEAREST))
    assert np.array_equal(recipe.thumbnail_mask(np.asfortranarray(mask), (width, height)), expected)


points = st.lists(
    st.tuples(st.floats(-10, 60, allow_nan=False), st.floats(-10, 60, allow_nan=False)), min_size=3, max_size=10
)


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 48), st.integers(1, 48), st.lists(points, min_size=1, max_size=3))
def test_polygons_union_and_stay_inside_the_image_and_their_hull(height, width, polygons):
    # Several polygons per object, concave or self-touching, crossing the border or degenerate.
    segmentation = [[coordinate for point in polygon for coordinate in point] for polygon in polygons]
    image = {"id": 1, "file_name": "x.png", "height": height, "width": width}
    rle = recipe.segmentation_to_rle(segmentation, image, SOURCE, "annotation id 1")
    mask = stored_mask(rle)
    assert mask.shape == (height, width)
    # Union: each polygon's own mask is contained in the object's mask.
    for polygon in segmentation:
        alone = stored_mask(recipe.segmentation_to_rle([polygon], image, SOURCE, "annotation id 1"))
        assert not (alone & ~mask).any()
    # Nothing is set outside the points' bounding box (widened by a pixel for rounding).
    xs = [x for polygon in polygons for x, _ in polygon]
    ys = [y for polygon in polygons for _, y in polygon]
    rows, columns = np.nonzero(mask)
    if rows.size:
        assert columns.min() >= np.floor(min(xs)) - 1 and columns.max() <= np.ceil(max(xs)) + 1
        assert rows.min() >= np.floor(min(ys)) - 1 and rows.max() <= np.ceil(max(ys)) + 1


anything = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5000) | st.floats(allow_nan=True) | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=8) | st.dictionaries(st.sampled_from(["size", "counts", "x"]), children, max_size=3)
    ),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None)
@given(anything, st.integers(1, 32), st.integers(1, 32))
def test_any_segmentation_value_gives_a_mask_or_the_clear_error(value, height, width):
    image = {"id": 1, "file_name": "x.png", "height": height, "width": width}
    try:
        rle = recipe.segmentation_to_rle(value, image, SOURCE, "annotation id 1")
    except recipe.BuildError as error:
        assert str(error).startswith("results.json: annotation id 1: ")  # noqa: PT017 - the input may or may not raise
        return
    if rle is not None:
        assert stored_mask(rle).shape == (height, width)


@settings(max_examples=300, deadline=None)
@given(
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=130), max_size=30),
    st.integers(1, 40),
    st.integers(1, 40),
)
def test_damaged_compressed_counts_never_reach_pycocotools_unchecked(counts, height, width):
    image = {"id": 1, "file_name": "x.png", "height": height, "width": width}
    try:
        rle = recipe.segmentation_to_rle({"size": [height, width], "counts": counts}, image, SOURCE, "annotation id 1")
    except recipe.BuildError as error:
        assert "compressed RLE counts are damaged" in str(error)  # noqa: PT017 - the input may or may not raise
        return
    runs = recipe.compressed_rle_runs(counts)
    assert int(runs.sum()) == height * width
    assert np.array_equal(stored_mask(rle), runs_to_mask(runs.tolist(), height, width))


objects = st.lists(
    st.tuples(
        st.integers(0, len(recipe.CLASSES) - 1),
        st.sampled_from(["compressed", "uncompressed", "polygon", "none"]),
        st.randoms(),
    ),
    max_size=6,
)


@settings(max_examples=6, deadline=None)
@given(st.integers(2, 40), st.integers(2, 40), objects)
def test_a_built_dataset_stores_exactly_the_generated_masks(tmp_path_factory, height, width, specs):
    """Tiny datasets built end to end: every stored class mask equals the union of its objects,
    decoded independently (runs filled by hand; polygons by pycocotools' own rasterizer)."""
    import csv
    import json

    from PIL import Image

    from tests.helpers import FIXTURE_DIR, FIXTURE_SEVERITY

    data = tmp_path_factory.mktemp("generated")
    (data / "images").mkdir()
    (data / "annotation").mkdir()
    names = ["x.png", "y.png", "z.png"]  # three patients, so that no split is empty
    for name in names:
        Image.new("L", (width, height), 128).save(data / "images" / name)
    with open(FIXTURE_DIR / "metadata.csv", newline="", encoding="utf-8") as handle:
        header = next(csv.reader(handle))
    with open(data / "metadata.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for patient, file_name in enumerate(names, start=1):
            writer.writerow(
                [str(patient) if c == "patientid" else file_name if c == "filename" else "" for c in header]
            )
    annotations, expected = [], {}
    for number, (category, kind, rng) in enumerate(specs, start=1):
        mask = np.array([[rng.random() < 0.4 for _ in range(width)] for _ in range(height)], dtype=bool)
        if kind == "compressed":
            encoded = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
            segmentation = {"size": [height, width], "counts": encoded["counts"].decode()}
        elif kind == "uncompressed":
            segmentation = {"size": [height, width], "counts": mask_to_runs(mask)}
        elif kind == "polygon":
            segmentation = [
                [rng.uniform(0, width), rng.uniform(0, height)] * 1
                + [rng.uniform(0, width), rng.uniform(0, height)] * 2
            ]
            mask = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))).astype(bool)
        else:
            segmentation, mask = [], None
        annotations.append(
            {
                "id": number,
                "image_id": 1,
                "category_id": category + 1,
                "iscrowd": int(kind == "uncompressed"),
                "bbox": [0, 0, width, height],
                "area": 0,
                "segmentation": segmentation,
            }
        )
        name = recipe.MASK_COLUMNS[category]
        if mask is None or expected.get(name, 0) is None:
            expected[name] = None
        else:
            expected[name] = expected.get(name, np.zeros((height, width), dtype=bool)) | mask
    coco = {
        "images": [
            {"id": i, "file_name": name, "width": width, "height": height} for i, name in enumerate(names, start=1)
        ],
        "categories": [{"id": i + 1, "name": name} for i, name in enumerate(recipe.CLASSES)],
        "annotations": annotations,
    }
    (data / "annotation" / "results.json").write_text(json.dumps(coco))
    builder = recipe.CovidChestXraySeg(
        data_dir=str(data), severity_file=str(FIXTURE_SEVERITY), cache_dir=str(data / "cache"), verify_upstream=False
    )
    builder.download_and_prepare()
    rows = [row for split in builder.as_dataset().values() for row in split if row["image_id"] == 1]
    assert len(rows) == 1 and len(rows[0]["objects"]) == len(specs)
    for column in recipe.MASK_COLUMNS:
        want = expected.get(column, np.zeros((height, width), dtype=bool))
        got = recipe.decode_mask(rows[0][column])
        assert (got is None) == (want is None), column
        if want is not None:
            assert np.array_equal(got, want), column
