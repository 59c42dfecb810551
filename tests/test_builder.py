"""The builder on the small real fixture: records, masks, encodings, metadata, splits."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

import covid_chestxray_seg as recipe
from covid_chestxray_seg_tools.validate.crops import structure_rows
from tests.helpers import FIXTURE_DIR, FIXTURE_SEVERITY, crop_masks, mask_to_runs


def prepare(data_dir: Path, tmp_path: Path, **config) -> datasets.DatasetDict:
    config.setdefault("verify_upstream", False)
    config.setdefault("severity_file", str(FIXTURE_SEVERITY))
    builder = recipe.CovidChestXraySeg(data_dir=str(data_dir), cache_dir=str(tmp_path / "cache"), **config)
    builder.download_and_prepare()
    return builder.as_dataset()


def all_rows(dataset_dict) -> list[dict]:
    return sorted((row for split in dataset_dict.values() for row in split), key=lambda row: row["image_id"])


@pytest.fixture(scope="module")
def fixture_dataset(tmp_path_factory):
    return prepare(FIXTURE_DIR, tmp_path_factory.mktemp("builder"))


def test_counts_and_features(fixture_dataset):
    rows = all_rows(fixture_dataset)
    coco = json.loads((FIXTURE_DIR / "annotation" / "results.json").read_text())
    assert [row["image_id"] for row in rows] == sorted(image["id"] for image in coco["images"])
    assert len(rows) == 3
    assert sum(len(row["objects"]) for row in rows) == len(coco["annotations"]) == 20
    assert fixture_dataset["train"].features == recipe.features()
    assert list(fixture_dataset["train"].features)[:6] == [
        "image",
        "overlay",
        "image_id",
        "file_name",
        "width",
        "height",
    ]
    assert fixture_dataset["train"].features["objects"].feature["category"].names == list(recipe.CLASSES)


def test_image_bytes_are_the_original_files(fixture_dataset):
    for split in fixture_dataset.values():
        plain = split.cast_column("image", datasets.Image(decode=False))
        for row in plain:
            assert row["image"]["bytes"] == (FIXTURE_DIR / "images" / row["file_name"]).read_bytes()
            assert row["image"]["path"] == row["file_name"]


def test_masks_equal_upstream_crops_pixel_for_pixel(fixture_dataset):
    crops = crop_masks(FIXTURE_DIR)
    checked = 0
    for row in all_rows(fixture_dataset):
        for name, column in zip(recipe.CLASSES, recipe.MASK_COLUMNS):
            stored = recipe.decode_mask(row[column])
            if stored is None:
                continue
            assert stored.shape == (row["height"], row["width"])
            expected = crops.get((row["file_name"], name), np.zeros_like(stored))
            assert np.array_equal(stored, expected), (row["file_name"], name)
            checked += int((row["file_name"], name) in crops)
    assert checked == len(crops) == 19


def test_mask_png_is_one_bit_and_lossless():
    mask = np.zeros((5, 11), dtype=bool)
    mask[1:4, 2:9] = True
    mask[0, 10] = True
    png = recipe.encode_mask_png(mask)
    import io

    from PIL import Image

    decoded = Image.open(io.BytesIO(png))
    assert decoded.mode == "1" and decoded.size == (11, 5)
    assert np.array_equal(recipe.decode_mask(png), mask)


def test_null_mask_only_where_a_segmentation_is_missing(fixture_dataset):
    rows = {row["file_name"]: row for row in all_rows(fixture_dataset)}
    probes = rows["ARDSSevere.png"]
    assert probes["mask_monitoring_probes"] is None
    assert [
        o["segmentation"] for o in probes["objects"] if o["category"] == recipe.CLASSES.index("Monitoring Probes")
    ] == [None]
    nulls = [(name, column) for name, row in rows.items() for column in recipe.MASK_COLUMNS if row[column] is None]
    assert nulls == [("ARDSSevere.png", "mask_monitoring_probes")]
    # Not annotated: present and all zero.
    assert not recipe.decode_mask(rows["pneumocystis-pneumonia-1.jpg"]["mask_chest_tube"]).any()


def test_objects_rle_decodes_to_each_crop(fixture_dataset):
    by_row = {int(row["#"]): row for row in structure_rows(FIXTURE_DIR)}
    crops = 0
    for row in all_rows(fixture_dataset):
        for obj in row["objects"]:
            source = by_row[obj["id"]]
            name = recipe.UPSTREAM_CLASS_ALIASES.get(source["Template Name"], source["Template Name"])
            assert recipe.CLASSES[obj["category"]] == name
            if obj["segmentation"] is None:
                assert source["Mask"] == ""
                continue
            seg = obj["segmentation"]
            decoded = mask_utils.decode({"size": seg["size"], "counts": seg["counts"].encode()}).astype(bool)
            top, left = int(source["Top"]), int(source["Left"])
            crop = decoded[top : top + int(source["Height"]), left : left + int(source["Width"])]
            assert decoded.sum() == crop.sum()  # nothing outside the crop box
            assert obj["bbox"] == [float(v) for v in json_bbox(obj["id"])]
            crops += 1
    assert crops == 19


def json_bbox(annotation_id: int) -> list:
    coco = json.loads((FIXTURE_DIR / "annotation" / "results.json").read_text())
    return next(a["bbox"] for a in coco["annotations"] if a["id"] == annotation_id)


def test_metadata_is_typed_and_joined_by_file_name(fixture_dataset):
    rows = {row["file_name"]: row for row in all_rows(fixture_dataset)}
    cyst = rows["X-ray_of_cyst_in_pneumocystis_pneumonia_1.jpg"]
    assert cyst["patient_id"] == 103 and isinstance(cyst["patient_id"], int)
    assert cyst["license"] == "CC BY"
    assert cyst["url"] == "https://en.wikipedia.org/wiki/File:X-ray_of_cyst_in_pneumocystis_pneumonia_1.jpg"
    ards = rows["ARDSSevere.png"]
    assert ards["license"] == "CC BY-SA" and ards["patient_id"] == 5
    # Empty CSV cells are null, not "" or 0.
    assert all(row["extubated"] is None for row in rows.values())
    features = datasets.Features(recipe.features())
    for column, kind in recipe.METADATA_COLUMNS.values():
        assert features[column].dtype == kind


def test_misspelt_class_is_renamed_and_counted(tmp_path):
    builder = recipe.CovidChestXraySeg(
        data_dir=str(FIXTURE_DIR), severity_file=str(FIXTURE_SEVERITY), cache_dir=str(tmp_path), verify_upstream=False
    )
    builder.download_and_prepare()
    assert builder.report.renamed_categories == {"Nosogastric Tube": "Nasogastric Tube"}
    assert builder.report.annotations_without_segmentation == 1
    assert builder.report.images == 3 and builder.report.annotations == 20
    assert builder.report.images_without_license == 0
    # The fixture keeps 3 rows of metadata.csv and a cut of the severity file.
    assert builder.report.modified_files == ["metadata.csv", "annotations/covid-severity-scores.csv"]
    rows = all_rows(builder.as_dataset())
    tube = recipe.CLASSES.index("Nasogastric Tube")
    assert any(o["category"] == tube for row in rows for o in row["objects"])


def test_splits_group_patients_and_are_deterministic(fixture_dataset, tmp_path):
    patients = {split: set(ds["patient_id"]) for split, ds in fixture_dataset.items()}
    assert list(patients) == ["train", "validation", "test"]
    assert [len(ds) for ds in fixture_dataset.values()] == [1, 1, 1]
    assert not (
        patients["train"] & patients["validation"]
        or patients["train"] & patients["test"]
        or patients["validation"] & patients["test"]
    )
    again = prepare(FIXTURE_DIR, tmp_path)
    assert {split: ds["image_id"] for split, ds in again.items()} == {
        split: ds["image_id"] for split, ds in fixture_dataset.items()
    }


def test_assign_splits_keeps_patients_whole_and_near_the_fractions():
    # 40 patients with 1 to 4 images each.
    items = [
        {"image": {"id": 10 * patient + k}, "metadata": {"patient_id": patient}}
        for patient in range(40)
        for k in range(1 + patient % 4)
    ]
    splits = recipe.assign_splits(items)
    owner = {}
    for split, chosen in splits.items():
        for item in chosen:
            assert owner.setdefault(item["metadata"]["patient_id"], split) == split
    assert sum(len(chosen) for chosen in splits.values()) == len(items) == 100
    for split, fraction in recipe.SPLITS.items():
        assert abs(len(splits[split]) - fraction * len(items)) <= 4, (split, len(splits[split]))
    assert recipe.assign_splits(list(reversed(items))) == splits


def test_uncompressed_rle_gives_the_same_masks(tmp_path, fixture_dataset):
    coco = json.loads((FIXTURE_DIR / "annotation" / "results.json").read_text())
    for annotation in coco["annotations"]:
        seg = annotation["segmentation"]
        if seg:
            mask = mask_utils.decode({"size": seg["size"], "counts": seg["counts"].encode()})
            annotation["segmentation"] = {"size": seg["size"], "counts": mask_to_runs(mask)}
            annotation["iscrowd"] = 1
    data = tmp_path / "data"
    import shutil

    shutil.copytree(FIXTURE_DIR, data)
    (data / "annotation" / "uncompressed.json").write_text(json.dumps(coco))
    rebuilt = prepare(data, tmp_path, annotation_file="annotation/uncompressed.json")
    for new, old in zip(all_rows(rebuilt), all_rows(fixture_dataset)):
        for column in recipe.MASK_COLUMNS:
            assert (new[column] is None) == (old[column] is None)
            if new[column] is not None:
                assert np.array_equal(recipe.decode_mask(new[column]), recipe.decode_mask(old[column])), column
        assert [o["segmentation"] for o in new["objects"]] == [o["segmentation"] for o in old["objects"]]
        assert all(o["iscrowd"] for o in new["objects"] if o["segmentation"] is not None)


def test_polygons_are_rasterized_like_pycocotools(tmp_path):
    rebuilt = prepare(FIXTURE_DIR, tmp_path, annotation_file="annotation/results_polygons.json")
    coco = COCO(str(FIXTURE_DIR / "annotation" / "results_polygons.json"))
    names = {c["id"]: recipe.UPSTREAM_CLASS_ALIASES.get(c["name"], c["name"]) for c in coco.loadCats(coco.getCatIds())}
    polygons = 0
    for row in all_rows(rebuilt):
        expected = {}
        for annotation in coco.loadAnns(coco.getAnnIds(imgIds=[row["image_id"]])):
            if annotation["segmentation"]:
                assert isinstance(annotation["segmentation"], list)
                polygons += len(annotation["segmentation"])
                name = names[annotation["category_id"]]
                expected[name] = expected.get(name, 0) | coco.annToMask(annotation).astype(bool)
        for name, column in zip(recipe.CLASSES, recipe.MASK_COLUMNS):
            if row[column] is not None:
                wanted = expected.get(name, np.zeros((row["height"], row["width"]), dtype=bool))
                assert np.array_equal(recipe.decode_mask(row[column]), wanted), (row["file_name"], name)
    assert polygons > 19  # several objects have more than one polygon


def test_compressed_rle_parser_matches_pycocotools():
    rng = np.random.default_rng(7)
    for shape in [(1, 1), (3, 7), (40, 31), (600, 500)]:
        mask = np.asfortranarray(rng.random(shape) > 0.6).astype(np.uint8)
        mask[: shape[0] // 2] = 0  # long runs need several digits
        rle = mask_utils.encode(mask)
        runs = recipe.compressed_rle_runs(rle["counts"].decode())
        assert runs.tolist() == mask_to_runs(mask.astype(bool)), shape
    assert recipe.compressed_rle_runs("0").tolist() == [0]
    assert recipe.compressed_rle_runs("A") is None  # a negative run
    assert recipe.compressed_rle_runs("\x7f") is None  # outside the alphabet
    assert recipe.compressed_rle_runs("o") is None  # a continuation bit with nothing after it


def test_config_rejects_paths_outside_the_data_folder():
    with pytest.raises(ValueError, match=r"annotation_file='\.\./x\.json' must be a path inside the data folder"):
        recipe.CovidChestXraySeg(data_dir=str(FIXTURE_DIR), annotation_file="../x.json")


def test_mask_columns_derive_from_the_class_list():
    assert recipe.MASK_COLUMNS[0] == "mask_left_lung"
    assert recipe.MASK_COLUMNS[recipe.CLASSES.index("Ground Glass Opacities")] == "mask_ground_glass_opacities"
    assert len(set(recipe.MASK_COLUMNS)) == len(recipe.CLASSES) == 14


def test_stack_masks_gives_class_order_arrays_in_every_format(fixture_build):
    loaded = datasets.load_dataset(str(fixture_build), split="validation")
    plain = loaded[0]
    as_numpy = loaded.with_format("numpy")[0]
    undecoded = loaded.cast_column("mask_left_lung", datasets.Image(decode=False))[0]
    stacked = recipe.stack_masks(plain)
    assert stacked.shape == (14, plain["height"], plain["width"]) and stacked.dtype == bool
    assert np.array_equal(recipe.stack_masks(as_numpy), stacked)
    assert np.array_equal(recipe.stack_masks(undecoded), stacked)
    for index, column in enumerate(recipe.MASK_COLUMNS):
        expected = recipe.decode_mask(plain[column])
        assert np.array_equal(stacked[index], expected if expected is not None else np.zeros_like(stacked[0]))
    lungs = recipe.stack_masks(as_numpy, classes=["Right Lung", "Left Lung"])
    assert np.array_equal(lungs, stacked[[1, 0]])


def test_stack_masks_fills_null_masks_and_refuses_unknown_classes(fixture_dataset):
    row = next(r for split in fixture_dataset.values() for r in split if r["mask_monitoring_probes"] is None)
    probes = recipe.CLASSES.index("Monitoring Probes")
    assert not recipe.stack_masks(row)[probes].any()
    assert recipe.stack_masks(row, fill_missing=True)[probes].all()
    with pytest.raises(
        ValueError, match=r"classes=\['Lungs'\] are not classes of this dataset; choose from \['Left Lung'"
    ):
        recipe.stack_masks(row, classes=["Lungs"])
