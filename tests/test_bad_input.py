"""Every kind of bad input stops the build with one message (file, record, problem) and no output."""

from __future__ import annotations

import json
import re
import struct
import zlib
from pathlib import Path

import pytest

import covid_chestxray_seg as recipe
from covid_chestxray_seg_tools.cli import main as covid_seg
from tests.helpers import FIXTURE_DIR, FIXTURE_SEVERITY, parquet_rows

RESULTS = Path("annotation") / "results.json"


def edit_coco(data: Path, change) -> None:
    path = data / RESULTS
    coco = json.loads(path.read_text())
    change(coco)
    path.write_text(json.dumps(coco))


def first_annotation(coco: dict, **values) -> None:
    coco["annotations"][0].update(values)


def edit_metadata(data: Path, old: str, new: str) -> None:
    path = data / "metadata.csv"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def drop_metadata_row(data: Path, file_name: str) -> None:
    path = data / "metadata.csv"
    lines = path.read_text().splitlines(keepends=True)
    kept = [line for line in lines if file_name not in line]
    assert len(kept) == len(lines) - 1
    path.write_text("".join(kept))


def resize_image_one(coco: dict) -> None:
    next(image for image in coco["images"] if image["id"] == 1).update(width=944)
    # Its RLEs would disagree first; the image-size check is the one under test.
    coco["annotations"] = [a for a in coco["annotations"] if a["image_id"] != 1]


def make_bomb(path: Path) -> None:
    """The PNG with its header claiming 30000 x 30000 pixels: Pillow refuses it on opening."""
    data = bytearray(path.read_bytes())
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", 30000, 30000)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))


def link_outside(data: Path) -> None:
    """An image that is a symlink to a file outside the data folder."""
    outside = data.parent / "secret.png"
    outside.write_bytes((data / "images" / "ARDSSevere.png").read_bytes())
    (data / "images" / "ARDSSevere.png").unlink()
    (data / "images" / "ARDSSevere.png").symlink_to(outside)


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


CASES = {
    "missing annotation file": (
        lambda d: (d / RESULTS).unlink(),
        r"results\.json: annotation file: file not found",
    ),
    "truncated JSON": (
        lambda d: (d / RESULTS).write_text((d / RESULTS).read_text()[:5000]),
        r"results\.json: JSON: unreadable or truncated",
    ),
    "not a COCO file": (
        lambda d: (d / RESULTS).write_text(json.dumps({"images": []})),
        r"results\.json: top-level key 'annotations': missing or not a list",
    ),
    "annotation on an unknown image": (
        lambda d: edit_coco(d, lambda c: first_annotation(c, image_id=999)),
        r"results\.json: annotation id 1: image_id 999 is not in 'images'",
    ),
    "annotation with an unknown category id": (
        lambda d: edit_coco(d, lambda c: first_annotation(c, category_id=99)),
        r"results\.json: annotation id 1: category_id 99 is not in 'categories'",
    ),
    "unknown category name": (
        lambda d: edit_coco(d, lambda c: c["categories"][3].update(name="Airway")),
        r"results\.json: category id 4: unknown category name 'Airway'; known classes: Left Lung, ",
    ),
    "duplicate annotation id": (
        lambda d: edit_coco(d, lambda c: c["annotations"][1].update(id=c["annotations"][0]["id"])),
        r"results\.json: annotation id 1: duplicate annotation id",
    ),
    "polygon with fewer than 3 points": (
        lambda d: edit_coco(d, lambda c: first_annotation(c, segmentation=[[10, 10, 20, 20]])),
        r"results\.json: annotation id 1: polygon 0 has 4 coordinates; a polygon needs at least 3 \(x, y\) points",
    ),
    "RLE size that disagrees with the image": (
        lambda d: edit_coco(d, lambda c: first_annotation(c, segmentation={"size": [10, 10], "counts": "0"})),
        r"results\.json: annotation id 1: RLE size \[10, 10\] disagrees with the image size "
        r"\[height, width\] = \[751, 943\]",
    ),
    "damaged compressed RLE": (
        lambda d: edit_coco(
            d, lambda c: first_annotation(c, segmentation={"size": [751, 943], "counts": "fif78Pg0:J4"})
        ),
        r"results\.json: annotation id 1: compressed RLE counts are damaged or do not cover 751x943 pixels",
    ),
    "uncompressed RLE of the wrong length": (
        lambda d: edit_coco(
            d, lambda c: first_annotation(c, iscrowd=1, segmentation={"size": [751, 943], "counts": [5, 5]})
        ),
        r"results\.json: annotation id 1: uncompressed RLE counts must be non-negative and sum to 708193",
    ),
    "area that is not a number": (
        lambda d: edit_coco(d, lambda c: first_annotation(c, area="big")),
        r"results\.json: annotation id 1: area 'big' is not a number",
    ),
    "bbox outside the image": (
        lambda d: edit_coco(d, lambda c: first_annotation(c, bbox=[900.0, 0.0, 100.0, 10.0])),
        r"results\.json: annotation id 1: bbox \[900\.0, 0\.0, 100\.0, 10\.0\] lies outside the 943x751 image",
    ),
    "image size that differs from the file": (
        lambda d: edit_coco(d, resize_image_one),
        r"results\.json: image id 1: width x height 944x751 disagrees with "
        r"X-ray_of_cyst_in_pneumocystis_pneumonia_1\.jpg, which is 943x751",
    ),
    "file_name leaving the images folder": (
        lambda d: edit_coco(d, lambda c: c["images"][0].update(file_name="../metadata.csv")),
        r"results\.json: image id \d+: file_name '\.\./metadata\.csv' must name a file inside images/",
    ),
    "missing image file": (
        lambda d: (d / "images" / "ARDSSevere.png").unlink(),
        r"images/ARDSSevere\.png: image id 83: image file not found",
    ),
    "corrupt image bytes": (
        lambda d: truncate(d / "images" / "pneumocystis-pneumonia-1.jpg"),
        r"images/pneumocystis-pneumonia-1\.jpg: image id 22: cannot be decoded as an image: image file is truncated",
    ),
    "image that is not an image": (
        lambda d: (d / "images" / "ARDSSevere.png").write_bytes(b"not a png"),
        r"images/ARDSSevere\.png: image id 83: cannot be decoded as an image",
    ),
    "decompression bomb": (
        lambda d: make_bomb(d / "images" / "ARDSSevere.png"),
        r"images/ARDSSevere\.png: image id 83: cannot be decoded as an image: "
        r"Image size \(900000000 pixels\) exceeds limit",
    ),
    "symlink leaving the data folder": (
        link_outside,
        r"results\.json: image id 83: file_name 'ARDSSevere\.png' resolves outside images/",
    ),
    "fewer patients than splits": (
        lambda d: edit_coco(
            d,
            lambda c: (
                c.update(images=c["images"][:2]),
                c.update(annotations=[a for a in c["annotations"] if a["image_id"] in {i["id"] for i in c["images"]}]),
            ),
        ),
        r"results\.json: images: 2 patient\(s\) cannot fill 3 patient-disjoint splits \(test would be empty\)",
    ),
    "image missing from metadata.csv": (
        lambda d: drop_metadata_row(d, "ARDSSevere.png"),
        r"metadata\.csv: image 'ARDSSevere\.png': has no row \(1 images missing from metadata\.csv\)",
    ),
    "missing metadata.csv": (
        lambda d: (d / "metadata.csv").unlink(),
        r"metadata\.csv: metadata\.csv: file not found",
    ),
    "untyped metadata value": (
        lambda d: edit_metadata(d, "5,,,,ARDS,", "5,x,,,ARDS,"),
        r"metadata\.csv: line 2, column 'offset': value 'x' is not a int32",
    ),
    "metadata row with too many fields": (
        lambda d: (d / "metadata.csv").write_text((d / "metadata.csv").read_text() + "1,2" + ",x" * 40 + "\n"),
        r"metadata\.csv: line 5: has \d+ fields, the header 29",
    ),
    "metadata.csv that is not UTF-8": (
        lambda d: (d / "metadata.csv").write_bytes((d / "metadata.csv").read_bytes() + b"\xff\xfe,\n"),
        r"metadata\.csv: byte \d+: is not UTF-8",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_stops_the_build_with_one_clear_message(case, data_copy, tmp_path, capsys):
    damage, message = CASES[case]
    damage(data_copy)
    out = tmp_path / "out"
    code = covid_seg(
        [
            "build",
            "--data-dir",
            str(data_copy),
            "--severity-file",
            str(FIXTURE_SEVERITY),
            "--out",
            str(out),
            "--allow-modified",
            "--quiet",
            "--num-proc",
            "2",
        ]
    )
    err = capsys.readouterr().err
    assert code == 1
    error_lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(error_lines) == 1, err
    assert re.search(message, error_lines[0]), error_lines[0]
    assert "Traceback" not in err
    leftovers = [
        p.name for p in tmp_path.iterdir() if p.name == "out" or p.name.startswith((".out.partial", ".out.old"))
    ]
    assert leftovers == []  # no output, no hidden partial folder


@pytest.mark.parametrize(
    "case", ["annotation on an unknown image", "corrupt image bytes", "image missing from metadata.csv"]
)
def test_the_builder_raises_the_same_error(case, data_copy, tmp_path):
    damage, message = CASES[case]
    damage(data_copy)
    builder = recipe.CovidChestXraySeg(
        data_dir=str(data_copy),
        severity_file=str(FIXTURE_SEVERITY),
        cache_dir=str(tmp_path / "cache"),
        verify_upstream=False,
    )
    with pytest.raises(recipe.BuildError, match=message):
        builder.download_and_prepare()


def test_data_that_differs_from_upstream_needs_allow_modified(data_copy, tmp_path, capsys):
    # The fixture's metadata.csv keeps 3 rows, so it is not upstream's file.
    code = covid_seg(
        [
            "build",
            "--data-dir",
            str(data_copy),
            "--severity-file",
            str(FIXTURE_SEVERITY),
            "--out",
            str(tmp_path / "out"),
            "--quiet",
        ]
    )
    err = capsys.readouterr().err
    assert code == 1
    assert re.search(
        r"metadata\.csv: metadata\.csv: has 1395 bytes, upstream 495738 \(commit 377a4949\w+\); "
        r"to build from modified data give --allow-modified$",
        err,
    ), err
    assert not (tmp_path / "out").exists()


def test_a_changed_image_is_caught_by_the_manifest(data_copy, tmp_path):
    image = data_copy / "images" / "ARDSSevere.png"
    data = bytearray(image.read_bytes())
    data[-20] ^= 0xFF  # same size, different bytes
    image.write_bytes(bytes(data))
    manifest = recipe.read_manifest(recipe.MANIFEST_PATH)
    report = recipe.BuildReport()
    with pytest.raises(
        recipe.BuildError, match=r"images/ARDSSevere\.png: git blob SHA-1 \w+ differs from upstream 47f9b4ae"
    ):
        recipe.check_upstream(image, "images/ARDSSevere.png", manifest, True, report)
    recipe.check_upstream(image, "images/ARDSSevere.png", manifest, False, report)
    assert report.modified_files == ["images/ARDSSevere.png"]


def test_data_dir_that_is_not_a_folder(tmp_path, capsys):
    code = covid_seg(
        [
            "build",
            "--data-dir",
            str(tmp_path / "nowhere"),
            "--severity-file",
            str(FIXTURE_SEVERITY),
            "--out",
            str(tmp_path / "out"),
            "--quiet",
        ]
    )
    assert code == 1
    assert re.search(r"nowhere: --data-dir: is not a folder", capsys.readouterr().err)
    assert not (tmp_path / "out").exists()


# --- ieee8023's severity file -------------------------------------------------------------

SEVERITY_HEADER = "filename,geographic_mean,opacity_mean\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "## comment,,\nname,score\nARDSSevere.png,1\n",
            r"line 2: header \['name', 'score'\] is not filename,geographic_mean,opacity_mean",
        ),
        ("## only comments,,\n", r"header: header None is not filename,geographic_mean,opacity_mean"),
        (
            SEVERITY_HEADER + "ARDSSevere.png,high,2.0\n",
            r"line 2, column 'geographic_mean': value 'high' is not a number",
        ),
        (SEVERITY_HEADER + "ARDSSevere.png,9.5,2.0\n", r"line 2, column 'geographic_mean': score 9.5 lies outside 0-8"),
        (SEVERITY_HEADER + "ARDSSevere.png,2.0,-1\n", r"line 2, column 'opacity_mean': score -1.0 lies outside 0-6"),
        (SEVERITY_HEADER + "ARDSSevere.png,2.0\n", r"line 2: has 2 fields, the header 3"),
        (
            SEVERITY_HEADER + "ARDSSevere.png,2.0,2.0\nARDSSevere.png,3.0,2.0\n",
            r"line 3: second row for image 'ARDSSevere.png'",
        ),
    ],
    ids=[
        "wrong header",
        "no header",
        "not a number",
        "above the scale",
        "below the scale",
        "missing field",
        "duplicate",
    ],
)
def test_a_malformed_severity_file_stops_the_build_with_one_message(tmp_path, capsys, text, message):
    severity = tmp_path / "covid-severity-scores.csv"
    severity.write_text(text)
    out = tmp_path / "out"
    code = covid_seg(
        [
            "build",
            "--data-dir",
            str(FIXTURE_DIR),
            "--severity-file",
            str(severity),
            "--out",
            str(out),
            "--allow-modified",
            "--quiet",
        ]
    )
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "Traceback" not in err
    assert re.search(rf"^error: {re.escape(str(severity))}: {message}", err), err
    assert not out.exists()


def test_a_missing_severity_file_is_named(tmp_path, capsys):
    missing = tmp_path / "nowhere.csv"
    code = covid_seg(
        [
            "build",
            "--data-dir",
            str(FIXTURE_DIR),
            "--severity-file",
            str(missing),
            "--out",
            str(tmp_path / "out"),
            "--allow-modified",
            "--quiet",
        ]
    )
    assert code == 1
    assert (
        f"error: {missing}: --severity-file: file not found; "
        "pass a copy of ieee8023's annotations/covid-severity-scores.csv"
    ) in capsys.readouterr().err


def test_a_changed_severity_file_needs_allow_modified(tmp_path, capsys):
    with pytest.raises(
        recipe.BuildError,
        match=r"annotations/covid-severity-scores.csv: has \d+ bytes, upstream 5162 \(commit 81fba7aa",
    ):
        recipe.check_upstream(
            FIXTURE_SEVERITY,
            recipe.SEVERITY_PATH,
            recipe.SEVERITY_MANIFEST,
            True,
            recipe.BuildReport(),
            commit=recipe.SEVERITY_COMMIT,
        )
    report = recipe.BuildReport()
    assert (
        recipe.check_upstream(FIXTURE_SEVERITY, recipe.SEVERITY_PATH, recipe.SEVERITY_MANIFEST, False, report)
        == FIXTURE_SEVERITY.read_bytes()
    )
    assert report.modified_files == [recipe.SEVERITY_PATH]


def test_the_fixture_severity_scores_are_joined_by_file_name(fixture_build):
    rows = {
        row["file_name"]: row
        for row in parquet_rows(fixture_build, columns=["file_name", "severity_geographic_extent", "severity_opacity"])
    }
    assert (rows["ARDSSevere.png"]["severity_geographic_extent"], rows["ARDSSevere.png"]["severity_opacity"]) == (
        4.3,
        3.0,
    )
    # 0.0 is a score, not a missing one.
    assert (
        rows["pneumocystis-pneumonia-1.jpg"]["severity_geographic_extent"],
        rows["pneumocystis-pneumonia-1.jpg"]["severity_opacity"],
    ) == (0.0, 0.0)
    unscored = rows["X-ray_of_cyst_in_pneumocystis_pneumonia_1.jpg"]
    assert unscored["severity_geographic_extent"] is None and unscored["severity_opacity"] is None
