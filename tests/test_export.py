"""covid-seg export: COCO JSON that gives back upstream's annotations, and plain image/mask files."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import datasets
import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO

import covid_chestxray_seg as recipe
from covid_chestxray_seg_tools.cli import main as covid_seg
from covid_chestxray_seg_tools.export import ExportResult, export, write_coco_images
from tests.helpers import FIXTURE_DIR, SHARED_DIR

SPLITS = ("train", "validation", "test")


def exported_annotations(out: Path) -> tuple[list[dict], list[dict], list[dict]]:
    """images, annotations and the categories of the three split files together."""
    images, annotations, categories = [], [], None
    for split in SPLITS:
        document = json.loads((out / "annotations" / f"{split}.json").read_text())
        images += document["images"]
        annotations += document["annotations"]
        assert categories in (None, document["categories"])
        categories = document["categories"]
    return images, annotations, categories


def assert_round_trip(upstream_file: Path, out: Path) -> int:
    upstream = json.loads(upstream_file.read_text())
    images, annotations, categories = exported_annotations(out)
    names = {c["id"]: recipe.UPSTREAM_CLASS_ALIASES.get(c["name"], c["name"]) for c in upstream["categories"]}
    assert [(c["id"], c["name"], c["supercategory"]) for c in categories] == [
        (c["id"], names[c["id"]], c["supercategory"]) for c in upstream["categories"]
    ]
    keep = ("id", "file_name", "width", "height")
    assert sorted(tuple(i[k] for k in keep) for i in images) == sorted(
        tuple(i[k] for k in keep) for i in upstream["images"]
    )
    ours = {a["id"]: a for a in annotations}
    assert len(ours) == len(annotations) == len(upstream["annotations"])
    for theirs in upstream["annotations"]:
        mine = ours[theirs["id"]]
        segmentation = theirs["segmentation"]
        # Upstream writes some segmentations as the repr of a dict (a quirk the builder reads).
        segmentation = ast.literal_eval(segmentation) if isinstance(segmentation, str) else segmentation
        for key in ("image_id", "category_id", "iscrowd", "bbox", "area"):
            assert mine[key] == theirs[key], (theirs["id"], key)
        assert mine["segmentation"] == segmentation, theirs["id"]
    return len(annotations)


def test_coco_export_of_the_full_data_gives_back_upstreams_annotations(real_build, tmp_path, capsys):
    out = tmp_path / "coco"
    assert (
        covid_seg(["export", "--source", str(real_build), "--format", "coco", "--upstream-form", "--out", str(out)])
        == 0
    )
    assert "images 100, annotations 602" in capsys.readouterr().out
    assert assert_round_trip(SHARED_DIR / "annotation" / "results.json", out) == 602
    upstream_images = {p.name: p.read_bytes() for p in (SHARED_DIR / "images").iterdir()}
    exported = {p.name: p.read_bytes() for p in (out / "images").iterdir()}
    assert exported == {name: upstream_images[name] for name in exported} and len(exported) == 100


def test_coco_export_summary_counts(fixture_build, tmp_path, capsys):
    coco = json.loads((FIXTURE_DIR / "annotation" / "results.json").read_text())
    assert (
        covid_seg(["export", "--source", str(fixture_build), "--format", "coco", "--out", str(tmp_path / "coco")]) == 0
    )
    # By default the fixture's probe annotation without a mask is left out (COCOeval cannot read it).
    assert (
        f"images 3, annotations {len(coco['annotations']) - 1}, annotations without mask upstream (left out) 1\n"
        in capsys.readouterr().out
    )
    assert (
        covid_seg(
            [
                "export",
                "--source",
                str(fixture_build),
                "--format",
                "coco",
                "--upstream-form",
                "--out",
                str(tmp_path / "upstream"),
            ]
        )
        == 0
    )
    assert f"images 3, annotations {len(coco['annotations'])}\n" in capsys.readouterr().out


def test_coco_export_reads_in_pycocotools_as_the_stored_masks(fixture_build, tmp_path):
    out = tmp_path / "coco"
    assert (
        covid_seg(["export", "--source", str(fixture_build), "--format", "coco", "--upstream-form", "--out", str(out)])
        == 0
    )
    assert_round_trip(FIXTURE_DIR / "annotation" / "results.json", out)
    loaded = datasets.load_dataset(str(fixture_build))
    for split in SPLITS:
        coco = COCO(str(out / "annotations" / f"{split}.json"))
        for row in loaded[split]:
            for index, name in enumerate(recipe.CLASSES):
                anns = coco.loadAnns(coco.getAnnIds(imgIds=[row["image_id"]], catIds=[index + 1]))
                stored = recipe.decode_mask(row[recipe.mask_column(name)])
                if stored is None:
                    assert any(a["segmentation"] == [] for a in anns), (row["image_id"], name)
                    continue
                union = np.zeros((row["height"], row["width"]), dtype=bool)
                for ann in anns:
                    union |= coco.annToMask(ann).astype(bool)
                assert np.array_equal(union, stored), (row["image_id"], name)
            license = next(
                lic["name"] for lic in coco.dataset["licenses"] if lic["id"] == coco.imgs[row["image_id"]]["license"]
            )
            assert license == (row["license"] or "none given upstream")


def test_folder_export_writes_image_and_one_png_per_class_mask(fixture_build, tmp_path, capsys):
    out = tmp_path / "files"
    assert covid_seg(["export", "--source", str(fixture_build), "--format", "folder", "--out", str(out)]) == 0
    loaded = datasets.load_dataset(str(fixture_build))
    nulls = 0
    for split in SPLITS:
        for row in loaded[split]:
            folder = out / split / str(row["image_id"])
            expected_masks = [c for c in recipe.MASK_COLUMNS if row[c] is not None]
            nulls += len(recipe.MASK_COLUMNS) - len(expected_masks)
            assert sorted(p.name for p in folder.iterdir()) == sorted(
                ["image.png", *(f"{c}.png" for c in expected_masks)]
            )
            with Image.open(folder / "image.png") as image:
                assert image.format == "PNG" and np.array_equal(np.asarray(image), np.asarray(row["image"]))
            for column in expected_masks:
                with Image.open(folder / f"{column}.png") as mask:
                    pixels = np.asarray(mask)
                assert mask.mode == "L" and set(np.unique(pixels)) <= {0, 255}
                assert np.array_equal(pixels == 255, np.asarray(row[column])), (row["image_id"], column)
    assert nulls == 1  # the fixture's probe annotation without segmentation
    assert f"images 3, masks {3 * 14 - 1}, masks without data upstream (no file) 1" in capsys.readouterr().out


def test_folder_export_of_chosen_classes_and_split(fixture_build, tmp_path):
    out = tmp_path / "lungs"
    args = [
        "--source",
        str(fixture_build),
        "--format",
        "folder",
        "--out",
        str(out),
        "--split",
        "test",
        "--classes",
        "Left Lung",
        "Right Lung",
    ]
    assert covid_seg(["export", *args]) == 0
    assert [p.name for p in out.iterdir()] == ["test"]
    (row_folder,) = (out / "test").iterdir()
    assert sorted(p.name for p in row_folder.iterdir()) == ["image.png", "mask_left_lung.png", "mask_right_lung.png"]


def test_export_returns_what_it_wrote_as_the_command_reports_it(fixture_build, tmp_path, capsys):
    out = tmp_path / "lungs"
    result = export(source=str(fixture_build), out=out, format="folder", splits=["test"], classes=["Left Lung"])
    assert result == ExportResult(
        out=out, format="folder", counts={"images": 1, "masks": 1, "masks without data upstream (no file)": 0}
    )
    assert result.to_json() == {
        "out": str(out),
        "format": "folder",
        "counts": {"images": 1, "masks": 1, "masks without data upstream (no file)": 0},
    }
    # The command prints and writes the same.
    report = tmp_path / "export.json"
    again = ["--format", "folder", "--split", "test", "--classes", "Left Lung", "--json", str(report)]
    assert covid_seg(["export", "--source", str(fixture_build), "--out", str(tmp_path / "again"), *again]) == 0
    assert (
        capsys.readouterr().out
        == f"exported {tmp_path / 'again'}: images 1, masks 1, masks without data upstream (no file) 0\n"
    )
    assert json.loads(report.read_text(encoding="utf-8")) == {**result.to_json(), "out": str(tmp_path / "again")}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--format", "coco", "--split", "dev"], r"--split dev: .* has splits train, validation, test"),
        (["--format", "folder", "--classes", "Heart"], r"--classes Heart: not classes of this dataset"),
        (["--format", "coco", "--classes", "Left Lung"], r"--classes: applies to --format folder only"),
        (["--format", "folder", "--upstream-form"], r"--upstream-form: applies to --format coco only"),
    ],
)
def test_bad_options_are_one_clear_error_and_no_output(fixture_build, tmp_path, capsys, options, message):
    out = tmp_path / "out"
    assert covid_seg(["export", "--source", str(fixture_build), "--out", str(out), *options]) == 1
    assert re.search(message, capsys.readouterr().err)
    assert not out.exists() and not list(tmp_path.glob(".out.partial-*"))


def test_an_existing_out_is_never_overwritten(fixture_build, tmp_path, capsys):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert covid_seg(["export", "--source", str(fixture_build), "--format", "coco", "--out", str(out)]) == 1
    assert "taken: already exists (an export never overwrites); choose a new --out" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_a_source_that_is_not_this_dataset_is_refused(tmp_path, capsys):
    other = tmp_path / "other"
    other.mkdir()
    (other / "train.csv").write_text("a,b\n1,2\n")
    assert covid_seg(["export", "--source", str(other), "--format", "coco", "--out", str(tmp_path / "out")]) == 1
    assert re.search(
        r"other: no dataset_infos\.json: not a covid-chestxray-seg build \(or an incomplete one\)",
        capsys.readouterr().err,
    )
    assert not (tmp_path / "out").exists()


def test_a_source_that_does_not_exist_is_one_clear_error(hub, tmp_path, capsys):
    assert (
        covid_seg(["export", "--source", "org/no-such-dataset", "--format", "coco", "--out", str(tmp_path / "out")])
        == 1
    )
    assert re.search(r"^error: .*org/no-such-dataset", capsys.readouterr().err)
    assert not (tmp_path / "out").exists()


def test_a_file_name_with_a_folder_is_refused(tmp_path, capsys):
    rows = [
        {
            "image": {"bytes": b"x", "path": None},
            "image_id": 7,
            "file_name": "../escape.jpg",
            "width": 1,
            "height": 1,
            "objects": [],
            "license": None,
            "url": None,
        }
    ]
    with pytest.raises(
        ValueError, match=r"split train: image id 7: file_name '\.\./escape\.jpg' must be a plain file name"
    ):
        write_coco_images(rows, out=tmp_path, split="train")
    assert not (tmp_path.parent / "escape.jpg").exists()


def test_help_has_options_and_examples(capsys):
    assert covid_seg(["export", "--help"]) == 0
    text = capsys.readouterr().out
    for option in ("--source", "--format", "--out", "--split", "--classes", "--upstream-form"):
        assert option in text
    assert "examples:" in text and "covid-seg export --source build --format coco --out exports/coco" in text
