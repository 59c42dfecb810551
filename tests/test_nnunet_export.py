"""covid-seg export --format nnunet: nnU-Net v2's raw dataset, with the overlap kept exactly (each
class combination one label, each class one region) and our folds as splits_final.json."""

from __future__ import annotations

import io
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import covid_chestxray_seg as recipe
from covid_chestxray_seg_tools import nnunet_format
from covid_chestxray_seg_tools.cli import main as covid_seg
from covid_chestxray_seg_tools.export import nnunet
from covid_chestxray_seg_tools.hub_folder import layout
from tests.helpers import FIXTURE_DIR, FIXTURE_SEVERITY

DATASET = "Dataset777_CovidChestXraySeg"
# The fixture's development images: 22 (train, fold 0) and 1 (validation, fold 1); 83 is test.
NOTE = (
    "splits_final.json holds the dataset's 5 patient-grouped folds: nnU-Net reads it from "
    f"$nnUNet_preprocessed/{DATASET}/splits_final.json; nnUNetv2_plan_and_preprocess copies it there from "
    f"$nnUNet_raw/{DATASET}/ (copy it by hand if you preprocess otherwise)"
)
# The fixture's development images have masks of these classes only.
FIXTURE_REGIONS = ["Left Lung", "Right Lung", "Cardiomediastinum", "Airways", "Ground Glass Opacities"]


@pytest.fixture(scope="module")
def exported(fixture_build, tmp_path_factory) -> dict[str, Path]:
    """The fixture exported in both configs, by the command."""
    folders = {}
    for config in nnunet_format.CONFIGS:
        out = tmp_path_factory.mktemp("nnunet") / config
        assert covid_seg(["export", "--source", str(fixture_build), "--format", "nnunet", "--out", str(out),
                          "--config", config, "--quiet"]) == 0  # fmt: skip
        folders[config] = out / DATASET
    return folders


def decoded_through_regions(label_map: np.ndarray, labels: dict) -> dict[str, np.ndarray]:
    """Each region's mask as nnU-Net forms it: the pixels whose label is one of the region's."""
    return {recipe.mask_column(name): np.isin(label_map, ids) for name, ids in labels.items() if name != "background"}


def assert_label_maps_give_back_every_mask(folder: Path, build: Path, *, config: str) -> dict[str, int]:
    """Decoding each label map through dataset.json's regions gives every non-null stored mask of
    the development images pixel for pixel; a class without a region has no pixel."""
    document = json.loads((folder / "dataset.json").read_text())
    counts = {"cases": 0, "masks": 0, "null": 0}
    for split in recipe.FOLD_SPLITS:
        for row in layout.iter_rows(build, split, columns=["image_id", *recipe.MASK_COLUMNS], config=config):
            label_map = np.asarray(Image.open(folder / "labelsTr" / f"cxrseg_{row['image_id']}.png"))
            assert label_map.dtype == np.uint8
            regions = decoded_through_regions(label_map, document["labels"])
            for column in recipe.MASK_COLUMNS:
                stored = recipe.decode_mask(row[column])
                if stored is None:
                    counts["null"] += 1
                    continue
                decoded = regions.get(column, np.zeros(label_map.shape, dtype=bool))
                assert np.array_equal(decoded, stored), (row["image_id"], column)
                counts["masks"] += 1
            counts["cases"] += 1
    return counts


def test_the_export_is_nnunets_raw_layout_with_a_summary(fixture_build, tmp_path, capsys):
    out = tmp_path / "raw"
    assert covid_seg(["export", "--source", str(fixture_build), "--format", "nnunet", "--out", str(out)]) == 0
    assert capsys.readouterr().out == (
        f"exported {out}: training cases 2, test images 1, labels (class combinations) 18, regions (classes with a "
        "training pixel) 5, classes without a training pixel (no region) 9, null masks (annotated without a mask: no "
        f"pixel) 0, masks flagged missing (kept empty) 0, folds 5\n{NOTE}\n"
    )
    assert sorted(str(path.relative_to(out)) for path in out.rglob("*")) == [
        DATASET,
        f"{DATASET}/dataset.json",
        f"{DATASET}/imagesTr",
        f"{DATASET}/imagesTr/cxrseg_1_0000.png",
        f"{DATASET}/imagesTr/cxrseg_22_0000.png",
        f"{DATASET}/imagesTs",
        f"{DATASET}/imagesTs/cxrseg_83_0000.png",
        f"{DATASET}/labelsTr",
        f"{DATASET}/labelsTr/cxrseg_1.png",
        f"{DATASET}/labelsTr/cxrseg_22.png",
        f"{DATASET}/splits_final.json",
    ]
    # Greyscale images at full size, label maps of the same size (nnU-Net checks both).
    sizes = {1: (943, 751), 22: (1600, 1600), 83: (790, 631)}
    for path in out.rglob("*_0000.png"):
        with Image.open(path) as image:
            assert (image.mode, image.size) == ("L", sizes[int(path.name.split("_")[1])])
    for path in (out / DATASET / "labelsTr").iterdir():
        with Image.open(path) as image:
            assert (image.mode, image.size) == ("L", sizes[int(path.stem.split("_")[1])])


def test_the_greyscale_image_is_the_size_256_rule_at_full_size(exported, fixture_build):
    (row,) = layout.read_rows(fixture_build, "test", columns=["image"])
    with Image.open(io.BytesIO(row["image"]["bytes"])) as original:
        expected = np.asarray(original.convert("L"))
    assert np.array_equal(np.asarray(Image.open(exported["default"] / "imagesTs" / "cxrseg_83_0000.png")), expected)
    # size-256: the stored greyscale PNG, byte for byte.
    (small,) = layout.read_rows(fixture_build, "test", columns=["image"], config=layout.SIZE_256_CONFIG)
    assert (exported["size-256"] / "imagesTs" / "cxrseg_83_0000.png").read_bytes() == small["image"]["bytes"]


@pytest.mark.parametrize("config", nnunet_format.CONFIGS)
def test_decoding_the_label_maps_gives_back_every_mask(exported, fixture_build, config):
    counts = assert_label_maps_give_back_every_mask(exported[config], fixture_build, config=config)
    assert counts == {"cases": 2, "masks": 28, "null": 0}


def test_dataset_json_declares_one_region_per_class_with_a_training_pixel(exported, fixture_build):
    document = json.loads((exported["default"] / "dataset.json").read_text())
    assert list(document)[:7] == [
        "channel_names",
        "labels",
        "regions_class_order",
        "numTraining",
        "file_ending",
        "overwrite_image_reader_writer",
        "name",
    ]
    assert document["channel_names"] == {"0": "xray"}
    assert document["numTraining"] == 2 and document["file_ending"] == ".png"
    assert document["licence"] == recipe.LICENSE and document["reference"] == recipe.HOMEPAGE
    labels = document["labels"]
    assert list(labels) == ["background", *FIXTURE_REGIONS] and labels["background"] == 0
    # Label ids run 1..N with no gap (nnU-Net's check), and region-based training is on (a region of 2+ labels).
    assert sorted({i for name in FIXTURE_REGIONS for i in labels[name]}) == list(range(1, 19))
    assert max(len(labels[name]) for name in FIXTURE_REGIONS) > 1
    # The values nnU-Net writes into its output PNG: upstream's category ids, all below 256.
    assert document["regions_class_order"] == [1, 2, 3, 4, 5]
    record = document["covid_chestxray_seg"]
    assert record["config"] == "default" and record["size"] is None and record["case_prefix"] == "cxrseg"
    assert record["classes_without_region"] == [name for name in recipe.CLASSES if name not in FIXTURE_REGIONS]
    assert record["region_columns"] == {name: recipe.mask_column(name) for name in FIXTURE_REGIONS}
    assert (record["null_masks"], record["masks_flagged_missing"]) == (0, 0)
    # Each region is the labels whose combination holds the class; labels fewest classes first.
    combinations = record["label_classes"]
    assert combinations["1"] == ["Left Lung"] and combinations["5"] == ["Ground Glass Opacities"]
    assert [len(combinations[str(label)]) for label in range(1, 19)] == sorted(len(c) for c in combinations.values())
    for name in FIXTURE_REGIONS:
        assert labels[name] == [int(label) for label, classes in combinations.items() if name in classes]
    assert record["splits_final"] == NOTE
    small = json.loads((exported["size-256"] / "dataset.json").read_text())["covid_chestxray_seg"]
    assert (small["config"], small["size"]) == ("size-256", 256)


def test_splits_final_is_our_folds(exported, fixture_build):
    folds = {
        row["image_id"]: row["fold"]
        for split in recipe.FOLD_SPLITS
        for row in layout.iter_rows(fixture_build, split, columns=["image_id", "fold"])
    }
    assert folds == {22: 0, 1: 1}
    splits = json.loads((exported["default"] / "splits_final.json").read_text())
    assert splits == [
        {"train": ["cxrseg_1"], "val": ["cxrseg_22"]},
        {"train": ["cxrseg_22"], "val": ["cxrseg_1"]},
        {"train": ["cxrseg_1", "cxrseg_22"], "val": []},
        {"train": ["cxrseg_1", "cxrseg_22"], "val": []},
        {"train": ["cxrseg_1", "cxrseg_22"], "val": []},
    ]
    record = json.loads((exported["default"] / "dataset.json").read_text())["covid_chestxray_seg"]
    assert record["folds"] == [fold["val"] for fold in splits]


@pytest.fixture(scope="module")
def quirky_build(tmp_path_factory) -> Path:
    """The fixture with the validation image's Left Lung annotation removed (flagged missing) and a
    monitoring probe annotated on it without a mask (a null mask)."""
    data = tmp_path_factory.mktemp("quirky") / "data"
    shutil.copytree(FIXTURE_DIR, data)
    coco_path = data / recipe.ANNOTATION_FILE
    coco = json.loads(coco_path.read_text())
    coco["annotations"] = [a for a in coco["annotations"] if a["id"] != 5]  # image 1's Left Lung
    coco["annotations"].append(
        {"id": 900, "image_id": 1, "category_id": 11, "segmentation": [], "bbox": [1, 1, 2, 2], "area": 0,
         "iscrowd": 0}
    )  # fmt: skip
    coco_path.write_text(json.dumps(coco))
    out = tmp_path_factory.mktemp("quirky-build") / "out"
    arguments = ["--data-dir", str(data), "--severity-file", str(FIXTURE_SEVERITY), "--allow-modified", "--quiet"]
    assert covid_seg(["build", *arguments, "--out", str(out), "--num-proc", "1"]) == 0
    return out


def test_null_and_flagged_missing_masks_add_no_pixel_and_are_counted(quirky_build, tmp_path, capsys):
    out = tmp_path / "raw"
    assert covid_seg(["export", "--source", str(quirky_build), "--format", "nnunet", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "null masks (annotated without a mask: no pixel) 1, masks flagged missing (kept empty) 1," in text
    counts = assert_label_maps_give_back_every_mask(out / DATASET, quirky_build, config="default")
    assert counts == {"cases": 2, "masks": 27, "null": 1}
    record = json.loads((out / DATASET / "dataset.json").read_text())["covid_chestxray_seg"]
    assert (record["null_masks"], record["masks_flagged_missing"]) == (1, 1)


def test_labels_are_numbered_by_class_count_then_class_order_whatever_the_order_found():
    patterns = [0b110, 0b1, 0, 0b100, 0b10, 0b101, 0b1, 0b111]
    encoding = nnunet_format.LabelEncoding.from_patterns(patterns)
    assert encoding == nnunet_format.LabelEncoding.from_patterns(reversed(patterns))
    assert encoding.combinations == ((0,), (1,), (2,), (0, 2), (1, 2), (0, 1, 2))
    assert encoding.regions() == {"Left Lung": [1, 4, 6], "Right Lung": [2, 5, 6], "Cardiomediastinum": [3, 4, 5, 6]}
    assert nnunet_format.LabelEncoding.from_labels(encoding.to_labels()) == encoding


def test_encoding_and_decoding_keep_overlapping_masks():
    rng = np.random.default_rng(0)
    # Six overlapping classes (up to 63 combinations), the others empty, one null.
    masks: list[np.ndarray | None] = [
        rng.random((20, 30)) < 0.4 if index < 6 else np.zeros((20, 30), dtype=bool) for index in range(14)
    ]
    masks[13] = rng.random((20, 30)) < 0.1
    masks[10] = None  # a null mask adds no pixel
    bits = nnunet_format.class_bits(masks, shape=(20, 30))
    encoding = nnunet_format.LabelEncoding.from_patterns(np.unique(bits).tolist())
    decoded = encoding.decode(encoding.encode(bits))
    assert sorted(decoded) == sorted(recipe.MASK_COLUMNS[i] for i in (0, 1, 2, 3, 4, 5, 13))
    for index, column in enumerate(recipe.MASK_COLUMNS):
        if column in decoded:
            assert np.array_equal(decoded[column], masks[index])


def test_more_combinations_than_a_uint8_label_map_holds_are_refused():
    with pytest.raises(ValueError, match=r"the training masks hold 300 distinct class combinations: more than the 255"):
        nnunet_format.LabelEncoding.from_patterns(range(1, 301))


def test_a_combination_without_a_label_is_refused():
    encoding = nnunet_format.LabelEncoding.from_patterns([0b1, 0b10])
    with pytest.raises(
        ValueError, match=r"classes \['Left Lung', 'Right Lung'\] meet at a pixel, a combination with no label"
    ):
        encoding.encode(np.array([[0b11]], dtype=np.uint16))


def test_classes_that_never_overlap_are_refused():
    encoding = nnunet_format.LabelEncoding.from_patterns([0b1, 0b10])
    with pytest.raises(
        ValueError, match=r"build: no two classes overlap in the training masks: every region would be a"
    ):
        encoding.checked_regions(where="build")


def test_case_names_map_back_to_image_ids():
    assert nnunet_format.case_name(83) == "cxrseg_83"
    assert nnunet_format.image_id_of_case("cxrseg_83") == 83
    for other in ("cxrseg_083", "case_83", "cxrseg_", "cxrseg_8a", "cxrseg_83_0000"):
        assert nnunet_format.image_id_of_case(other) is None


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--format", "coco", "--config", "size-256"], r"--config: applies to --format nnunet only"),
        (["--format", "folder", "--dataset-id", "5"], r"--dataset-id: applies to --format nnunet only"),
        (["--format", "nnunet", "--dataset-id", "1000"], r"--dataset-id 1000: nnU-Net numbers datasets with three"),
        (["--format", "nnunet", "--split", "test"], r"--split test: an nnU-Net export holds every split"),
        (["--format", "nnunet", "--classes", "Left Lung"], r"--classes: applies to --format folder only"),
    ],
)
def test_bad_options_are_one_clear_error_and_no_output(fixture_build, tmp_path, capsys, options, message):
    out = tmp_path / "out"
    assert covid_seg(["export", "--source", str(fixture_build), "--out", str(out), *options]) == 1
    assert re.search(message, capsys.readouterr().err)
    assert not out.exists() and not list(tmp_path.glob(".out.partial-*"))


def test_a_library_call_with_a_bad_config_names_the_setting(fixture_build, tmp_path):
    with pytest.raises(ValueError, match=r"config='licensed': an nnU-Net export reads one of default, size-256"):
        nnunet.export_nnunet(source=str(fixture_build), out=tmp_path / "out", config="licensed", dataset_id=777)


def test_an_existing_out_is_never_overwritten(fixture_build, tmp_path, capsys):
    out = tmp_path / "taken"
    out.mkdir()
    assert covid_seg(["export", "--source", str(fixture_build), "--format", "nnunet", "--out", str(out)]) == 1
    assert "taken: already exists (an export never overwrites); choose a new --out" in capsys.readouterr().err
    assert list(out.iterdir()) == []


def test_another_dataset_id_names_the_folder(fixture_build, tmp_path, capsys):
    out = tmp_path / "raw"
    assert covid_seg(["export", "--source", str(fixture_build), "--format", "nnunet", "--out", str(out),
                      "--dataset-id", "42", "--quiet"]) == 0  # fmt: skip
    assert [path.name for path in out.iterdir()] == ["Dataset042_CovidChestXraySeg"]
    assert "$nnUNet_preprocessed/Dataset042_CovidChestXraySeg/splits_final.json" in capsys.readouterr().out


@pytest.mark.parametrize("config", nnunet_format.CONFIGS)
def test_the_84_real_cases_decode_to_every_mask(real_build, tmp_path, config, capsys):
    out = tmp_path / "raw"
    command = ["export", "--source", str(real_build), "--format", "nnunet", "--out", str(out), "--config", config]
    assert covid_seg(command) == 0
    text = capsys.readouterr().out
    labels = {"default": 146, "size-256": 141}[config]
    assert text.startswith(
        f"exported {out}: training cases 84, test images 16, labels (class combinations) {labels}, regions (classes "
        "with a training pixel) 13, classes without a training pixel (no region) 1, null masks (annotated without a "
        "mask: no pixel) 10, masks flagged missing (kept empty) 2, folds 5\n"
    )
    counts = assert_label_maps_give_back_every_mask(out / DATASET, real_build, config=config)
    assert counts == {"cases": 84, "masks": 84 * 14 - 10, "null": 10}
    record = json.loads((out / DATASET / "dataset.json").read_text())["covid_chestxray_seg"]
    assert record["classes_without_region"] == ["Chest Tube"]
    assert [len(fold) for fold in record["folds"]] == [17, 17, 17, 17, 16]
