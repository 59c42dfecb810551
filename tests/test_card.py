"""The generated card: every number equals what the built Parquet files give; the preview; validate.py."""

from __future__ import annotations

import json
import re
import shutil
import statistics
from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image
from pycocotools import mask as mask_utils

import covid_chestxray_seg as recipe
from covid_chestxray_seg_tools import validate as quality
from covid_chestxray_seg_tools.card import preview as card_preview
from covid_chestxray_seg_tools.cli import main as covid_seg
from covid_chestxray_seg_tools.hub_folder import layout
from tests.helpers import FIXTURE_ARGS, FIXTURE_DIR, parquet_rows


def card_numbers_match_parquet(folder) -> None:
    """Recompute every table of the card from the Parquet files, independently of build.compute_stats."""
    text = (folder / "README.md").read_text()
    columns = ["image_id", "patient_id", "license", "finding", "width", "height", "objects"]
    rows = parquet_rows(folder, columns=columns)
    for split in recipe.SPLITS:
        chosen = parquet_rows(folder, split, columns)
        files = len(layout.shard_paths(folder, split))
        line = (
            f"| {split} | {len(chosen)} | {len({r['patient_id'] for r in chosen})} "
            f"| {sum(len(r['objects']) for r in chosen)} | {files} |"
        )
        assert line in text, line
    for finding, count in Counter(r["finding"] or "none given" for r in rows).items():
        per_split = [
            sum(1 for r in parquet_rows(folder, s, columns) if (r["finding"] or "none given") == finding)
            for s in recipe.SPLITS
        ]
        assert sum(per_split) == count
        assert f"| {finding} | " + " | ".join(map(str, per_split)) + " |" in text
    for license, count in Counter(r["license"] or "none given" for r in rows).items():
        assert f"| {license} | {count} |" in text
    for number, name in enumerate(recipe.CLASSES):
        objects = [(r, o) for r in rows for o in r["objects"] if o["category"] == number]
        images = {r["image_id"] for r, _ in objects}
        missing = sum(o["segmentation"] is None for _, o in objects)
        areas = []
        for image_id in sorted(images):
            row = next(r for r in rows if r["image_id"] == image_id)
            segs = [o["segmentation"] for o in row["objects"] if o["category"] == number]
            if all(s is not None for s in segs):
                union = np.zeros((row["height"], row["width"]), dtype=bool)
                for seg in segs:
                    union |= mask_utils.decode({"size": seg["size"], "counts": seg["counts"].encode()}).astype(bool)
                areas.append(100 * union.sum() / (row["width"] * row["height"]))
        mean = f"{statistics.fmean(areas):.2f}" if areas else "n/a"
        median = f"{statistics.median(areas):.2f}" if areas else "n/a"
        line = (
            f"| {number} | {name} | `{recipe.MASK_COLUMNS[number]}` | {len(objects)} | {len(images)} "
            f"| {missing} | {mean} | {median} |"
        )
        assert line in text, line
    patients = Counter(r["patient_id"] for r in rows)
    series = [n for n in patients.values() if n > 1]
    assert (
        f"{len(series)} patients have a series of images ({sum(series)} images, up to {max(series, default=1)}" in text
    )
    assert f"{len(rows)} images of {len(patients)} patients, {sum(len(r['objects']) for r in rows)} annotations" in text


def test_fixture_card_numbers_equal_the_parquet_files(fixture_build):
    card_numbers_match_parquet(fixture_build)


def test_real_card_numbers_equal_the_parquet_files(real_build):
    card_numbers_match_parquet(real_build)
    text = (real_build / "README.md").read_text()
    assert "| 12 | Chest Tube | `mask_chest_tube` | 0 | 0 | 0 | n/a | n/a |" in text
    assert "588 of 602 annotations compared with upstream's mask crops: 588 identical pixel for pixel" in text


def test_preview_exists_decodes_and_is_small(fixture_build):
    path = fixture_build / layout.PREVIEW_PATH
    assert path.stat().st_size < 1_000_000
    with Image.open(path) as preview:
        preview.load()
        assert preview.mode == "RGB" and preview.height == card_preview.PREVIEW_HEIGHT and preview.width > 3 * 150
        pixels = np.asarray(preview)
    # Overlays colour the X-rays: some pixels are coloured, not grey.
    assert (np.ptp(pixels.astype(int), axis=2) > 30).mean() > 0.05
    text = (fixture_build / "README.md").read_text()
    assert f"]({layout.PREVIEW_PATH})" in text
    for name in ("X-ray_of_cyst_in_pneumocystis_pneumonia_1.jpg", "pneumocystis-pneumonia-1.jpg", "ARDSSevere.png"):
        assert f"`{name}`" in text  # credited under the picture


def test_preview_shows_only_openly_licensed_images(tmp_path, fixture_build):
    folder = tmp_path / "out"
    shutil.copytree(fixture_build, folder)
    (folder / layout.PREVIEW_PATH).unlink()
    for path in layout.shard_paths(folder):
        table = pq.read_table(path)
        column = table.schema.get_field_index("license")
        table = table.set_column(column, table.schema.field(column), pa.array(["CC BY-NC-SA"] * table.num_rows))
        pq.write_table(table, path)
    assert card_preview.render_preview(folder) == []
    assert not (folder / layout.PREVIEW_PATH).exists()


def test_card_sections_come_in_reading_order(fixture_build):
    text = (fixture_build / "README.md").read_text()
    order = [
        "# COVID-19 Chest X-ray Segmentations",
        "GENERATED: preview",
        "## Configs",
        "## Load it",
        "## The record",
        "## Classes",
        "## Splits and folds",
        "## Severity scores",
        "## Evaluation protocol and baseline",
        "## Licences",
        "## How the data was made and checked",
        "## Known issues",
        "## Limitations",
        "## Citation",
    ]
    positions = [text.index(marker) for marker in order]
    assert positions == sorted(positions)
    assert len(re.findall(r"(?im)^#+ .*limitations", text)) == 1


def test_provenance_has_no_timestamp_and_names_the_sources(fixture_build):
    text = (fixture_build / "README.md").read_text()
    provenance = text.split("## How the data was made and checked")[1].split("##")[0]
    assert (
        recipe.SEVERITY_COMMIT in provenance
        and recipe.UPSTREAM_COMMIT in provenance
        and "SHA-256 `" in provenance
        and f"Builder version {recipe.BUILDER_VERSION}" in provenance
    )
    assert not re.search(r"20\d\d-\d\d-\d\d", provenance)


def test_validate_on_the_fixture_is_exact(capsys):
    assert covid_seg(["validate", "--data-dir", str(FIXTURE_DIR)]) == 0
    out = capsys.readouterr().out
    assert "19 of 20 annotations compared with upstream's mask crops: 19 identical pixel for pixel" in out
    assert "annotations without segmentation: 487" in out


def test_validate_reports_polygon_losses_per_class(tmp_path):
    report_path = tmp_path / "report.json"
    assert (
        covid_seg(
            [
                "validate",
                "--data-dir",
                str(FIXTURE_DIR),
                "--annotation-file",
                "annotation/results_polygons.json",
                "--json",
                str(report_path),
            ]
        )
        == 0
    )
    report = json.loads(report_path.read_text())
    assert report["compared"] == 19
    assert all(0 < row["mean_iou"] <= 1 for row in report["per_class"].values())
    assert any(row["mean_iou"] < 1 for row in report["per_class"].values())  # outer contours lose holes and thin tubes


def test_validate_fails_on_hard_errors(tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(FIXTURE_DIR, data)
    crop = next((data / "masks").iterdir())
    crop.write_bytes(b"broken")
    lines = (data / "metadata.csv").read_text().splitlines(keepends=True)
    (data / "metadata.csv").write_text("".join(line for line in lines if "ARDSSevere.png" not in line))
    assert covid_seg(["validate", "--data-dir", str(data)]) == 1
    out = capsys.readouterr().out
    assert re.search(rf"error: .*structure\.csv: line \d+: crop 'masks/{crop.name}' cannot be read", out)
    assert "error: 1 images missing from metadata.csv" in out


def test_validate_notices_a_changed_mask(tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(FIXTURE_DIR, data)
    coco = json.loads((data / "annotation" / "results.json").read_text())
    ann = next(a for a in coco["annotations"] if a["segmentation"])
    mask = mask_utils.decode({"size": ann["segmentation"]["size"], "counts": ann["segmentation"]["counts"].encode()})
    mask[: mask.shape[0] // 2] = 0
    rle = mask_utils.encode(np.asfortranarray(mask))
    ann["segmentation"] = {"size": ann["segmentation"]["size"], "counts": rle["counts"].decode()}
    (data / "annotation" / "results.json").write_text(json.dumps(coco))
    report = quality.validate(data_dir=data)
    assert report.compared == 19 and sum(v < 1 for values in report.iou.values() for v in values) == 1
    assert [a for a, _, _ in report.area_mismatches] == [ann["id"]]


def test_build_with_validate_puts_the_summary_in_the_card(tmp_path):
    out = tmp_path / "out"
    assert covid_seg(["build", *FIXTURE_ARGS, "--out", str(out), "--allow-modified", "--quiet", "--validate"]) == 0
    assert (
        "19 of 20 annotations compared with upstream's mask crops: 19 identical pixel for pixel"
        in (out / "README.md").read_text()
    )


def test_real_polygons_report_losses(shared_data):
    report = quality.validate(data_dir=shared_data, annotation_file="annotation/results_polygons.json")
    per_class = report.per_class()
    assert report.compared == 588 and not report.hard_errors
    assert per_class["Left Lung"]["mean_iou"] > 0.95
    assert per_class["Monitoring Probes"]["mean_iou"] < per_class["Left Lung"]["mean_iou"]
