"""covid-seg evaluate and the atlas baseline on the test split: metrics by hand, the ground truth
scoring itself, a shifted mask, the skip rules, the patient bootstrap, the atlas. Bad predictions:
test_bad_predictions.py; cross-validation, classes, comparison and the per-image CSV: test_protocol.py; NSD and clDice
against their references: test_metrics.py."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import datasets
import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image
from scipy import ndimage

import covid_chestxray_seg as recipe
from covid_chestxray_seg_tools import evaluate
from covid_chestxray_seg_tools.baselines import atlas
from covid_chestxray_seg_tools.cli import main as covid_seg
from covid_chestxray_seg_tools.hub_folder import layout
from tests.helpers import parquet_rows, shifted

SPLIT = "test"


# --- metrics by hand ---------------------------------------------------------------------


def test_surface_is_the_pixels_with_a_4_connected_background_neighbour():
    mask = np.zeros((9, 9), dtype=bool)
    mask[1:6, 1:6] = True
    mask[2, 2] = False  # a hole: (3, 3) touches it only diagonally, so it is not surface
    expected = mask.copy()
    for interior in [(2, 4), (3, 3), (3, 4), (4, 2), (4, 3), (4, 4)]:
        expected[interior] = False
    assert np.array_equal(recipe.mask_outline(mask), expected)
    full = np.ones((4, 5), dtype=bool)  # outside the image counts as background
    assert np.array_equal(recipe.mask_outline(full), ~np.pad(np.ones((2, 3), dtype=bool), 1, constant_values=False))
    # The same as scipy's erosion with its default (4-connected) structure, on any shape.
    rng = np.random.default_rng(5)
    for _ in range(20):
        mask = rng.random((int(rng.integers(1, 30)), int(rng.integers(1, 30)))) > 0.3
        assert np.array_equal(recipe.mask_outline(mask), mask & ~ndimage.binary_erosion(mask))


def test_distances_of_a_pixel_and_a_bar_by_hand():
    truth = np.zeros((10, 10), dtype=bool)
    truth[5, 5] = True
    prediction = np.zeros((10, 10), dtype=bool)
    prediction[5, 5:8] = True
    # prediction -> truth: 0, 1, 2; truth -> prediction: 0. HD95 (MONAI): the larger of the two
    # directions' 95th percentiles, linear interpolation: 1 + 0.9 * (2 - 1) = 1.9.
    # ASSD: (0 + 1 + 2 + 0) / 4. Dice 2 * 1 / (3 + 1), IoU 1 / 3. The diagonal is sqrt(200):
    # the default NSD tolerance, 1 % of it, is 0.14 px, so only the two distances of 0 count;
    # at 15 % (2.1 px) all four do.
    scores = evaluate.pair_scores(prediction=prediction, truth=truth)
    diagonal = np.sqrt(200)
    assert scores.as_dict() == pytest.approx(
        {
            "dice": 0.5,
            "iou": 1 / 3,
            "nsd": 0.5,
            "cldice": None,
            "hd95": 1.9,
            "assd": 0.75,
            "hd95_pct": 190 / diagonal,
            "assd_pct": 75 / diagonal,
        }
    )
    assert evaluate.pair_scores(prediction=prediction, truth=truth, tolerance_pct=15).nsd == 1.0
    to_truth, to_prediction = evaluate.surface_distances(prediction=prediction, truth=truth)
    assert sorted(to_truth) == [0, 1, 2] and list(to_prediction) == [0]


def test_distances_are_euclidean_in_pixels_up_to_the_image_border():
    truth = np.zeros((6, 6), dtype=bool)
    truth[0, 0] = True
    prediction = np.zeros((6, 6), dtype=bool)
    prediction[3, 4] = True
    assert evaluate.pair_scores(prediction=prediction, truth=truth).as_dict() == {
        "dice": 0.0,
        "iou": 0.0,
        "nsd": 0.0,
        "cldice": None,
        "hd95": 5.0,
        "assd": 5.0,
        "hd95_pct": 500 / np.hypot(6, 6),
        "assd_pct": 500 / np.hypot(6, 6),
    }


def test_surface_distances_equal_scipys_distance_transform_on_the_full_image():
    rng = np.random.default_rng(3)
    truth = ndimage.binary_opening(rng.random((80, 90)) > 0.35, iterations=2)
    prediction = ndimage.binary_dilation(np.roll(truth, (3, -4), axis=(0, 1)), iterations=1)
    to_truth, to_prediction = evaluate.surface_distances(prediction=prediction, truth=truth)

    def edge(mask):
        return mask & ~ndimage.binary_erosion(mask)

    expected_to_truth = ndimage.distance_transform_edt(~edge(truth))[edge(prediction)]
    expected_to_prediction = ndimage.distance_transform_edt(~edge(prediction))[edge(truth)]
    assert np.allclose(to_truth, expected_to_truth) and np.allclose(to_prediction, expected_to_prediction)


def test_empty_masks_are_skipped_or_have_no_distance():
    empty = np.zeros((5, 5), dtype=bool)
    some = empty.copy()
    some[2, 2] = True
    assert evaluate.pair_scores(prediction=empty, truth=empty) is None
    assert evaluate.pair_scores(prediction=None, truth=empty) is None
    one_side = {
        "dice": 0.0,
        "iou": 0.0,
        "nsd": 0.0,
        "cldice": None,
        "hd95": None,
        "assd": None,
        "hd95_pct": None,
        "assd_pct": None,
    }
    assert evaluate.pair_scores(prediction=None, truth=some).as_dict() == one_side
    assert evaluate.pair_scores(prediction=some, truth=empty).as_dict() == one_side
    assert evaluate.pair_scores(prediction=some, truth=empty, centreline=True).as_dict() == {**one_side, "cldice": 0.0}
    with pytest.raises(ValueError, match=r"prediction \(4, 5\) and truth \(5, 5\) differ in size"):
        evaluate.pair_scores(prediction=np.ones((4, 5), dtype=bool), truth=some)


def test_bootstrap_resamples_patients_and_is_seeded():
    # Patient a: four images scored 1; patient b: one image scored 0. Resampling patients, a
    # resample's mean is 1 (a, a), 0.8 (a, b) or 0 (b, b), each pair a quarter of the time,
    # so the 2.5th percentile is 0; resampling images it would hardly ever be.
    values, groups = [1.0, 1.0, 1.0, 1.0, 0.0], ["a", "a", "a", "a", "b"]
    assert evaluate.bootstrap_interval(values=values, groups=groups) == (0.0, 1.0)
    values = list(np.random.default_rng(1).random(40))
    groups = [index // 3 for index in range(40)]
    first = evaluate.bootstrap_interval(values=values, groups=groups, seed=7)
    assert first == evaluate.bootstrap_interval(values=values, groups=groups, seed=7)
    assert first != evaluate.bootstrap_interval(values=values, groups=groups, seed=8)
    assert first[0] < np.mean(values) < first[1]
    assert evaluate.bootstrap_interval(values=[0.5, 0.7], groups=[1, 1]) == pytest.approx((0.6, 0.6))


# --- the ground truth, exported to files, scores itself --------------------------------------


@pytest.fixture(scope="module")
def truth_folder(real_build, tmp_path_factory) -> Path:
    """The folder export of the real build's test split: the ground truth as predictions."""
    out = tmp_path_factory.mktemp("evaluate") / "truth"
    assert (
        covid_seg(["export", "--source", str(real_build), "--format", "folder", "--out", str(out), "--split", SPLIT])
        == 0
    )
    return out


def expected_counts(build: Path) -> dict[str, int]:
    """Skip counts of the ground truth scored against itself, straight from the Parquet rows
    (a pair the build flags `missing:<mask column>` is skipped as flagged, where it has flags)."""
    flags = ["quality_flags"] if "quality_flags" in pq.read_schema(layout.shard_paths(build, SPLIT)[0]).names else []
    counts = {"null": 0, "flagged": 0, "empty": 0, "scored": 0}
    for row in parquet_rows(build, SPLIT, columns=[*recipe.MASK_COLUMNS, *flags]):
        for column in recipe.MASK_COLUMNS:
            mask = recipe.decode_mask(row[column])
            if f"missing:{column}" in (row.get("quality_flags") or ()):
                counts["flagged"] += 1
            else:
                counts["null" if mask is None else "scored" if mask.any() else "empty"] += 1
    return counts


@pytest.mark.slow
def test_the_ground_truth_scores_dice_1(real_build, truth_folder, tmp_path, capsys):
    report = tmp_path / "scores.json"
    args = ["--source", str(real_build), "--split", SPLIT, "--predictions", str(truth_folder), "--json", str(report)]
    assert covid_seg(["evaluate", *args]) == 0
    table = capsys.readouterr().out
    result = json.loads(report.read_text())
    assert table == evaluate.format_markdown(result)
    assert result["split"] == SPLIT and result["fold"] is None and list(result["classes"]) == list(recipe.CLASSES)
    assert result["not_predicted"] == []  # the export writes a file for every class
    for name, entry in result["classes"].items():
        if entry["n"]:
            for metric in ("dice", "iou", "nsd"):
                assert entry[metric] == {"mean": 1.0, "ci95": [1.0, 1.0], "n": entry["n"]}, (name, metric)
            for metric in evaluate.DISTANCE_METRICS:
                assert entry[metric] == {"mean": 0.0, "ci95": [0.0, 0.0], "n": entry["n"]}, (name, metric)
            if name in evaluate.TUBULAR_CLASSES:
                assert entry["cldice"]["mean"] == 1.0, name
            else:
                assert entry["cldice"] == {"mean": None, "ci95": None, "n": 0}, name
        else:
            assert entry["dice"] == {"mean": None, "ci95": None, "n": 0}, name
    expected = expected_counts(real_build)
    counts = result["counts"]
    assert (
        counts["skipped_null_truth"],
        counts["skipped_flagged_missing"],
        counts["skipped_both_empty"],
        counts["scored"],
    ) == (expected["null"], expected["flagged"], expected["empty"], expected["scored"])
    # The real test split: 16 images of 10 patients; 4 probe annotations without mask; 123 pairs
    # with both masks empty, among them any the build flags as missing.
    assert (counts["images"], counts["patients"], counts["skipped_null_truth"], counts["scored"]) == (16, 10, 4, 97)
    assert counts["skipped_flagged_missing"] + counts["skipped_both_empty"] == 123
    assert counts["distance_missing_one_side_empty"] == 0
    assert "| Left Lung | 16 | 1.000 [1.000, 1.000] | 1.000 [1.000, 1.000] | 1.000 [1.000, 1.000] | n/a |" in table
    assert "| Left Lung | 16 | 0.0 [0.0, 0.0] | 0.00 [0.00, 0.00] | 0.0 [0.0, 0.0] | 0.00 [0.00, 0.00] |" in table
    assert (
        "| Tubings | 3 | 1.000 [1.000, 1.000] | 1.000 [1.000, 1.000] | 1.000 [1.000, 1.000] | 1.000 [1.000, 1.000] |"
        in (table)
    )
    assert "| Chest Tube | 0 | – | – | – | – |" in table
    assert (
        f"4 pairs whose ground truth is null (annotated without mask), {counts['skipped_flagged_missing']} whose class "
        f"the build flags as missing on the image, {counts['skipped_both_empty']} where prediction and truth are both "
        "empty" in table
    )


@pytest.mark.slow
def test_a_shifted_mask_scores_its_hand_computed_dice(real_build, truth_folder, tmp_path):
    # One image of the test split, scored alone: its folder copied, its left lung moved.
    image_id = min(int(folder.name) for folder in (truth_folder / SPLIT).iterdir())
    predictions = tmp_path / "shifted"
    shutil.copytree(truth_folder / SPLIT / str(image_id), predictions / SPLIT / str(image_id))
    path = predictions / SPLIT / str(image_id) / "mask_left_lung.png"
    with Image.open(path) as image:
        truth = np.asarray(image) > 0
    moved = shifted(truth, 7, -12)
    Image.fromarray(moved.astype(np.uint8) * 255).save(path)
    overlap = np.logical_and(truth, moved).sum()
    dice = 2 * overlap / (truth.sum() + moved.sum())
    iou = overlap / np.logical_or(truth, moved).sum()

    rows = [
        row
        for row in parquet_rows(real_build, SPLIT, columns=list(evaluate.TRUTH_COLUMNS))
        if row["image_id"] == image_id
    ]
    targets = evaluate.Targets(
        images={SPLIT: {image_id: (rows[0]["width"], rows[0]["height"])}}, known={SPLIT: frozenset([image_id])}
    )
    result = evaluate.score(
        truth=rows, predictions=evaluate.load_predictions(path=predictions, targets=targets), split=SPLIT
    )
    (scores,) = [image["classes"]["Left Lung"] for image in result["images"]]
    assert 0.5 < dice < 0.99
    assert scores["dice"] == pytest.approx(dice, abs=1e-12) and scores["iou"] == pytest.approx(iou, abs=1e-12)
    # The distances, independently: Euclidean distance transforms of the full image.
    edge_truth, edge_moved = truth & ~ndimage.binary_erosion(truth), moved & ~ndimage.binary_erosion(moved)
    to_truth = ndimage.distance_transform_edt(~edge_truth)[edge_moved]
    to_moved = ndimage.distance_transform_edt(~edge_moved)[edge_truth]
    assert scores["hd95"] == pytest.approx(max(np.percentile(to_truth, 95), np.percentile(to_moved, 95)))
    assert scores["assd"] == pytest.approx(np.concatenate([to_truth, to_moved]).mean())
    diagonal = np.hypot(*truth.shape)
    assert scores["hd95_pct"] == pytest.approx(scores["hd95"] / diagonal * 100)
    assert scores["assd_pct"] == pytest.approx(scores["assd"] / diagonal * 100)

    def nsd(tolerance_pct):
        tolerance = tolerance_pct / 100 * diagonal
        within = np.count_nonzero(to_truth <= tolerance) + np.count_nonzero(to_moved <= tolerance)
        return within / (to_truth.size + to_moved.size)

    # The move, hypot(7, 12) = 13.9 px, is within 1 % of this image's diagonal (the default
    # tolerance); at 0.5 % part of each surface is out.
    assert scores["nsd"] == nsd(1.0) == 1.0
    half = evaluate.pair_scores(prediction=moved, truth=truth, tolerance_pct=0.5).nsd
    assert half == pytest.approx(nsd(0.5)) and 0.1 < half < 0.9
    assert result["classes"]["Left Lung"]["dice"] == {
        "mean": scores["dice"],
        "ci95": [scores["dice"], scores["dice"]],
        "n": 1,
    }
    # The other classes are untouched.
    assert all(result["classes"][name]["dice"]["mean"] in (1.0, None) for name in recipe.CLASSES[1:])


def test_a_class_without_files_is_not_predicted_unless_chosen_and_parquet_reads_the_same(
    fixture_build, fixture_truth, tmp_path
):
    predictions = tmp_path / "fewer"
    shutil.copytree(fixture_truth, predictions)
    (predictions / SPLIT / "83" / "mask_right_lung.png").unlink()
    # No Right Lung file in any image folder: not predicted, so not scored (the fixture's test split is one image).
    result = evaluate.evaluate(
        evaluate.EvaluateRequest(source=str(fixture_build), split=SPLIT, predictions=predictions)
    )
    assert "Right Lung" not in result["classes"] and "Right Lung" in result["not_predicted"]
    assert "Not predicted (no mask file in any image's predictions), so not scored: " in evaluate.format_markdown(
        result
    )
    # Chosen with --classes, a missing file is an empty prediction.
    result = evaluate.evaluate(
        evaluate.EvaluateRequest(
            source=str(fixture_build), split=SPLIT, predictions=predictions, classes=("Right Lung", "mask_left_lung")
        )
    )
    assert list(result["classes"]) == ["Left Lung", "Right Lung"] and result["not_predicted"] == []
    right = result["classes"]["Right Lung"]
    assert right["n"] == 1 and right["dice"]["mean"] == 0.0 and right["iou"]["mean"] == 0.0
    assert right["nsd"]["mean"] == 0.0
    assert right["hd95"] == {"mean": None, "ci95": None, "n": 0} and right["assd"]["n"] == 0
    assert right["skipped"] == {"null_truth": 0, "flagged_missing": 0, "both_empty": 0, "distance_one_side_empty": 1}
    assert result["counts"]["distance_missing_one_side_empty"] == 1 and result["counts"]["pairs"] == 2
    assert "distances missing for 1 pairs where one of the two is empty" in evaluate.format_markdown(result)
    # The build itself as Parquet predictions, and a save_to_disk copy: the same numbers as its folder export.
    from_folder = evaluate.evaluate(
        evaluate.EvaluateRequest(source=str(fixture_build), split=SPLIT, predictions=fixture_truth)
    )
    assert all(entry["dice"]["mean"] in (1.0, None) for entry in from_folder["classes"].values())
    assert (
        evaluate.evaluate(evaluate.EvaluateRequest(source=str(fixture_build), split=SPLIT, predictions=fixture_build))
        == from_folder
    )
    datasets.load_dataset(str(fixture_build)).save_to_disk(str(tmp_path / "saved"))
    assert (
        evaluate.evaluate(
            evaluate.EvaluateRequest(source=str(fixture_build), split=SPLIT, predictions=tmp_path / "saved")
        )
        == from_folder
    )


# --- the atlas ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_atlas_on_the_real_test_split(real_build):
    result = atlas.score_atlas(real_build)
    predictor = result["predictor"]
    assert predictor["name"] == "atlas" and predictor["size"] == [256, 256] and predictor["split"] == SPLIT
    # One atlas, fitted on train + validation (69 + 15 images), predicting the 16 test images.
    (model,) = predictor["models"]
    assert (model["fold"], model["fit_images"], model["predicted_images"]) == (None, 84, 16)
    for name in ("Left Lung", "Right Lung", "Cardiomediastinum"):
        assert model["classes"][name]["threshold"] in atlas.THRESHOLDS
        assert result["classes"][name]["dice"]["mean"] > 0.7, name
    assert model["classes"]["Monitoring Probes"]["fit_masks"] < model["classes"]["Left Lung"]["fit_masks"]  # nulls
    table = evaluate.format_markdown(result)
    # The headline number first, then the tiers, then the tables.
    assert table.startswith("**Headline** `test` (cross-validation is the primary measure): Dice 0.")
    assert (
        "\n\nClass tiers: headline " in table and "\n\n| Class | n | Dice | IoU | NSD (1 % diag.) | clDice |\n" in table
    )
    assert "| Class | n (distances) | HD95 (px) | HD95 (% diag.) | ASSD (px) | ASSD (% diag.) |" in table
    # Two tables of every class (head, rule, 14 rows), and the severity table (head, rule, a row per score).
    rows = [line for line in table.splitlines() if line.startswith("| ")]
    assert len(rows) == 2 * (2 + len(recipe.CLASSES)) + 2 + len(recipe.SEVERITY_COLUMNS)
    # Seeded: each interval comes back, twice, from the per-image values resampled by patient.
    for name in recipe.CLASSES:
        for metric in evaluate.METRICS:
            pairs = [
                (image["classes"][name][metric], image["patient_id"])
                for image in result["images"]
                if image["classes"][name].get(metric) is not None
            ]
            if pairs:
                values, groups = zip(*pairs)
                interval = evaluate.bootstrap_interval(values=values, groups=groups)
                assert interval == evaluate.bootstrap_interval(values=values, groups=groups)
                assert list(interval) == result["classes"][name][metric]["ci95"], (name, metric)
    assert (
        result["counts"]["patients"]
        == len({image["patient_id"] for image in result["images"]})
        < result["counts"]["images"]
    )


def test_the_atlas_scores_the_same_in_memory_and_from_its_files(fixture_build, tmp_path, capsys):
    result = atlas.score_atlas(fixture_build)
    out = tmp_path / "atlas"
    assert covid_seg(["baseline", "atlas", "--source", str(fixture_build), "--out", str(out)]) == 0
    assert f"wrote {out}: images 1, masks 14" in capsys.readouterr().out
    for folder in (out / SPLIT).iterdir():
        assert sorted(p.name for p in folder.iterdir()) == sorted(f"{c}.png" for c in recipe.MASK_COLUMNS)
    report = tmp_path / "atlas.json"
    assert (
        covid_seg(
            [
                "evaluate",
                "--source",
                str(fixture_build),
                "--split",
                SPLIT,
                "--predictions",
                str(out),
                "--json",
                str(report),
            ]
        )
        == 0
    )
    scored = json.loads(report.read_text())
    # The same numbers twice (seeded bootstrap), whether scored in memory or from the files.
    assert scored["classes"] == result["classes"] and scored["counts"] == result["counts"]
    assert evaluate.format_markdown(scored) == capsys.readouterr().out


def test_the_atlas_reads_only_the_sizes_of_the_split_it_predicts(fixture_build, tmp_path, monkeypatch):
    calls = []
    load_rows = atlas.load_rows

    def spy(*, source, split, columns, optional=()):
        calls.append((split, tuple(columns)))
        return load_rows(source=source, split=split, columns=columns, optional=optional)

    monkeypatch.setattr(atlas, "load_rows", spy)
    _, counts = atlas.atlas_predictions(source=str(fixture_build), out=tmp_path / "atlas", split=SPLIT)
    fitting = ("image_id", *recipe.MASK_COLUMNS)
    assert calls == [("train", fitting), ("validation", fitting), (SPLIT, ("image_id", "width", "height"))]
    assert counts == {"images": 1, "masks": 14, "empty masks": counts["empty masks"]}
    with Image.open(tmp_path / "atlas" / SPLIT / "83" / "mask_left_lung.png") as mask:
        assert mask.size == (790, 631)


def test_help_has_every_mode_and_examples(capsys):
    assert covid_seg(["evaluate", "--help"]) == 0
    text = capsys.readouterr().out
    for option in (
        "--source",
        "--split",
        "--fold",
        "--predictions",
        "--classes",
        "--compare",
        "--per-image",
        "--nsd-tolerance",
        "--json",
        "--quiet",
        "--seed",
        "--samples",
    ):
        assert option in text
    assert "covid-seg evaluate --source build --split test --predictions preds --json scores.json" in text
    assert "covid-seg evaluate --source build --split cv --predictions preds-cv" in text
    assert covid_seg(["baseline", "atlas", "--help"]) == 0
    text = capsys.readouterr().out
    for option in ("--source", "--split", "--out", "--json", "--quiet"):
        assert option in text
    assert "covid-seg baseline atlas --source build --split test --out preds-atlas" in text
    assert "covid-seg baseline atlas --source build --split cv --out preds-atlas-cv" in text
