"""Bad predictions: each file or cell that cannot be scored (a decompression bomb, a wrong size, a
truncated or corrupt image, a folder where a file should be, a cell that is no image, a soft mask)
stops `covid-seg evaluate` with one message naming it; `--threshold` cuts probability maps; binary
masks read the same in every form."""

from __future__ import annotations

import io
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image
from scipy import ndimage

from covid_chestxray_seg_tools import evaluate
from covid_chestxray_seg_tools.cli import main as covid_seg
from tests.helpers import bomb_png

SPLIT = "test"


# --- bad predictions: one clear message naming the file -------------------------------------


def _image_folder(root: Path) -> Path:
    (folder,) = (root / SPLIT).iterdir()  # the fixture's test split is one image
    return folder


def _resize(root: Path) -> None:
    Image.new("L", (10, 20)).save(_image_folder(root) / "mask_airways.png")


def _garbage(root: Path) -> None:
    (_image_folder(root) / "mask_airways.png").write_bytes(b"not a png")


def _truncated(root: Path) -> None:
    path = _image_folder(root) / "mask_airways.png"
    path.write_bytes(path.read_bytes()[:80])


def _unknown_class(root: Path) -> None:
    Image.new("L", (790, 631)).save(_image_folder(root) / "mask_heart.png")


def _missing_image(root: Path) -> None:
    shutil.rmtree(_image_folder(root))


def _extra_image(root: Path) -> None:
    (root / SPLIT / "999").mkdir()


def _parquet_without_image_id(root: Path) -> None:
    shutil.rmtree(root / SPLIT)
    pq.write_table(pa.table({"mask_airways": [None]}), root / f"{SPLIT}.parquet")


def _parquet_with_other_image(root: Path) -> None:
    shutil.rmtree(root / SPLIT)
    pq.write_table(pa.table({"image_id": [83, 7]}), root / f"{SPLIT}.parquet")


def _parquet_with_a_path_only_cell(root: Path) -> None:
    # What Dataset.to_parquet writes for an Image column made from file paths.
    shutil.rmtree(root / SPLIT)
    cells = [{"bytes": None, "path": "preds/83/mask_airways.png"}]
    pq.write_table(pa.table({"image_id": [83], "mask_airways": cells}), root / f"{SPLIT}.parquet")


def _parquet_with_a_string_cell(root: Path) -> None:
    shutil.rmtree(root / SPLIT)
    pq.write_table(pa.table({"image_id": [83], "mask_airways": ["mask_airways.png"]}), root / f"{SPLIT}.parquet")


def _parquet_with_a_bomb_cell(root: Path) -> None:
    shutil.rmtree(root / SPLIT)
    pq.write_table(pa.table({"image_id": [83], "mask_airways": [bomb_png(40_000, 40_000)]}), root / f"{SPLIT}.parquet")


def _parquet_with_a_soft_float_cell(root: Path) -> None:
    # Every mask of the image as a cell, the airways as a float TIFF probability map.
    cells = {path.stem: [{"bytes": path.read_bytes(), "path": None}] for path in _image_folder(root).glob("mask_*.png")}
    cells["mask_airways"] = [{"bytes": _float_tiff(_soft(_truth_mask(root, "mask_airways"), scale=1.0)), "path": None}]
    shutil.rmtree(root / SPLIT)
    pq.write_table(pa.table({"image_id": [83], **cells}), root / f"{SPLIT}.parquet")


def _bomb(root: Path) -> None:
    # A few kB on disk, 1.6 GB as an array.
    (_image_folder(root) / "mask_airways.png").write_bytes(bomb_png(40_000, 40_000))


def _folder_as_mask(root: Path) -> None:
    path = _image_folder(root) / "mask_airways.png"
    path.unlink()
    path.mkdir()


def _file_as_image_folder(root: Path) -> None:
    folder = _image_folder(root)
    shutil.rmtree(folder)
    folder.write_bytes(b"")


def _corrupt_crc(root: Path) -> None:
    path = _image_folder(root) / "mask_airways.png"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside the image data: the chunk's CRC no longer matches
    path.write_bytes(bytes(data))


def _soft_8_bit(root: Path) -> None:
    mask = _truth_mask(root, "mask_airways")
    Image.fromarray(_soft(mask, scale=255).astype(np.uint8)).save(_image_folder(root) / "mask_airways.png")


def _soft_16_bit(root: Path) -> None:
    mask = _truth_mask(root, "mask_airways")
    Image.fromarray(_soft(mask, scale=65535).astype(np.uint16)).save(_image_folder(root) / "mask_airways.png")


def _nothing(root: Path) -> None:
    shutil.rmtree(root / SPLIT)


def _truth_mask(root: Path, column: str) -> np.ndarray:
    with Image.open(_image_folder(root) / f"{column}.png") as image:
        return np.asarray(image) != 0


def _soft(mask: np.ndarray, *, scale: float) -> np.ndarray:
    """A probability map of `mask`: 0.8 inside, 0.3 on a one-pixel ring outside, 0.1 elsewhere
    (cut at 0.5, it is `mask` again)."""
    ring = ndimage.binary_dilation(mask) & ~mask
    return np.where(mask, 0.8, np.where(ring, 0.3, 0.1)) * scale


def _float_tiff(values: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(values.astype(np.float32), mode="F").save(buffer, format="TIFF")
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (
            _resize,
            r"truth/test/83/mask_airways\.png: 10x20 pixels, but the image is 790x631 \(width x height\); "
            r"a prediction must have the image's full size",
        ),
        (_garbage, r"truth/test/83/mask_airways\.png: not a readable image \(UnidentifiedImageError"),
        (_truncated, r"truth/test/83/mask_airways\.png: not a readable image .*; expected a complete PNG file"),
        (_corrupt_crc, r"truth/test/83/mask_airways\.png: not a readable image \(SyntaxError: broken PNG file"),
        (
            _bomb,
            r"truth/test/83/mask_airways\.png: its header declares an image too large to decode "
            r"\(Image size \(1600000000 pixels\) exceeds limit .*\); expected a mask the size of its image",
        ),
        (_folder_as_mask, r"truth/test/83/mask_airways\.png: is a folder, not an image file; expected a PNG file"),
        (_file_as_image_folder, r"truth/test/83: is a file, not a folder; expected a folder holding image 83's"),
        (
            _soft_8_bit,
            r"truth/test/83/mask_airways\.png: not a binary mask: 3 distinct uint8 values: 25, 76, 204; expected two "
            r"values, 0 for background and one other for the class; threshold a probability map before saving it, "
            r"or cut it with --threshold T$",
        ),
        (
            _soft_16_bit,
            r"truth/test/83/mask_airways\.png: not a binary mask: 3 distinct uint16 values: 6553, 19660, 52428",
        ),
        (
            _unknown_class,
            r"truth/test/83/mask_heart\.png: 'mask_heart' is no mask column of this dataset; "
            r"expected one of mask_left_lung, ",
        ),
        (_missing_image, r"truth/test/83: no such folder: image 83 of split test has no predictions"),
        (_extra_image, r"truth/test/999: '999' is not an image id of split test"),
        (_parquet_without_image_id, r"truth/test\.parquet: no image_id column"),
        (_parquet_with_other_image, r"truth/test\.parquet: row 1: image_id 7 is not an image id of split test"),
        (
            _parquet_with_a_path_only_cell,
            r"truth/test\.parquet: row 0 \(image_id 83\), column mask_airways: holds only a path "
            r"\('preds/83/mask_airways\.png'\), no image bytes",
        ),
        (
            _parquet_with_a_string_cell,
            r"truth/test\.parquet: row 0 \(image_id 83\), column mask_airways: holds a str, not an image; "
            r"expected PNG bytes",
        ),
        (
            _parquet_with_a_bomb_cell,
            r"truth/test\.parquet: row 0 \(image_id 83\), column mask_airways: its header declares an image too large",
        ),
        (
            _parquet_with_a_soft_float_cell,
            r"truth/test\.parquet: row 0 \(image_id 83\), column mask_airways: not a binary mask: "
            r"3 distinct float32 values: 0.1, 0.3, 0.8",
        ),
        (_nothing, r"truth: no predictions for split test: expected .*truth/test/<image_id>/<mask column>\.png"),
    ],
)
def test_bad_predictions_stop_with_one_message_naming_the_file(
    fixture_build, fixture_truth, tmp_path, capsys, damage, message
):
    predictions = tmp_path / "truth"
    shutil.copytree(fixture_truth, predictions)
    damage(predictions)
    report = tmp_path / "scores.json"
    args = ["--source", str(fixture_build), "--split", SPLIT, "--predictions", str(predictions), "--json", str(report)]
    assert covid_seg(["evaluate", *args]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and re.search(message, err), err
    assert not report.exists()


@pytest.mark.parametrize("damage", [_soft_8_bit, _soft_16_bit, _parquet_with_a_soft_float_cell])
def test_a_threshold_cuts_probability_maps_and_leaves_binary_masks_alone(
    fixture_build, fixture_truth, tmp_path, capsys, damage
):
    """8-bit, 16-bit and float probability maps of the truth, cut at half their full scale, are the
    truth again: Dice 1 for the class, and every binary mask of the image still scores 1."""
    predictions = tmp_path / "soft"
    shutil.copytree(fixture_truth, predictions)
    damage(predictions)
    args = ["--source", str(fixture_build), "--split", SPLIT, "--predictions", str(predictions), "--json", "-"]
    assert covid_seg(["evaluate", *args, "--threshold", "0.5"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["classes"]["Airways"]["dice"]["mean"] == 1.0 and result["classes"]["Airways"]["n"] == 1
    assert all(entry["dice"]["mean"] in (1.0, None) for entry in result["classes"].values())
    # Cut higher than the map's inside (0.8), nothing is foreground: Dice 0.
    assert covid_seg(["evaluate", *args, "--threshold", "0.9"]) == 0
    assert json.loads(capsys.readouterr().out)["classes"]["Airways"]["dice"]["mean"] == 0.0
    for bad in ("0", "1", "1.5", "x"):
        assert covid_seg(["evaluate", *args, "--threshold", bad]) == 2
    assert "--threshold: must lie between 0 and 1" in capsys.readouterr().err


def test_binary_masks_read_the_same_in_every_form(tmp_path):
    """0/1 and 0/255 greyscale, mode "1", a colour on black, 16-bit 0/65535: the same mask."""
    expected = np.zeros((5, 7), dtype=bool)
    expected[1:3, 2:6] = True
    forms = {
        "ones.png": Image.fromarray(expected.astype(np.uint8)),
        "full.png": Image.fromarray(expected.astype(np.uint8) * 255),
        "bits.png": Image.fromarray(expected),
        "colour.png": Image.fromarray(
            np.stack([expected * 200, expected * 10, expected * 0], axis=-1).astype(np.uint8)
        ),
        "sixteen.png": Image.fromarray(expected.astype(np.uint16) * 65535),
    }
    for name, image in forms.items():
        image.save(tmp_path / name)
        for threshold in (None, 0.5):
            read = evaluate.read_mask(tmp_path / name, name=name, width=7, height=5, threshold=threshold)
            assert np.array_equal(read, expected), name


def test_bad_sources_and_options(fixture_build, fixture_truth, tmp_path, capsys):
    assert (
        covid_seg(["evaluate", "--source", str(fixture_build), "--split", "dev", "--predictions", str(fixture_truth)])
        == 1
    )
    assert re.search(r"--split dev: .* has splits train, validation, test", capsys.readouterr().err)
    assert covid_seg(["evaluate", "--source", str(fixture_build), "--predictions", str(tmp_path / "none")]) == 1
    assert re.search(r"error: --predictions \S*none: no such folder$", capsys.readouterr().err)
    for options in (
        [],  # --predictions is required
        ["--predictions", str(fixture_truth), "--out", "x"],
        ["--predictions", str(fixture_truth), "--samples", "0"],
    ):
        assert covid_seg(["evaluate", "--source", str(fixture_build), *options]) == 2
    assert "--samples: must be at least 1, got 0" in capsys.readouterr().err
    with pytest.raises(ValueError, match=r"bootstrap needs one group per value"):
        evaluate.bootstrap_interval(values=[1.0], groups=[])


def test_a_colour_or_palette_png_counts_any_non_zero_as_foreground(tmp_path):
    rgba = np.zeros((3, 4, 4), dtype=np.uint8)
    rgba[..., 3] = 255  # opaque everywhere: alpha is not foreground
    rgba[1, 2, 0] = 9
    Image.fromarray(rgba, "RGBA").save(tmp_path / "m.png")
    expected = np.zeros((3, 4), dtype=bool)
    expected[1, 2] = True
    assert np.array_equal(evaluate.read_mask(tmp_path / "m.png", name="m.png", width=4, height=3), expected)
