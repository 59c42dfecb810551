"""The evaluation protocol: cross-validation and folds, chosen and not-predicted classes, the
build's quality flags, the paired comparison, the per-image CSV and the out-of-fold atlas.
Rows built by hand first, then the command on the fixture build, then the full data (slow)."""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import covid_chestxray_seg as recipe
from covid_chestxray_seg_tools import evaluate
from covid_chestxray_seg_tools.baselines import atlas
from covid_chestxray_seg_tools.cli import main as covid_seg
from covid_chestxray_seg_tools.hub_folder import checksums, layout
from tests.helpers import SIZE, cut, dice, hand_row, predictor, shifted, square, write_truth_folder


def cv_rows() -> list[dict]:
    """Two images (two patients) per fold, each with a left lung; fold k's model cuts k rows off it."""
    return [
        hand_row(10 * fold + index, patient=f"p{fold}-{index}", fold=fold, masks={"mask_left_lung": square()})
        for fold in range(recipe.FOLDS)
        for index in range(2)
    ]


def test_cv_pools_every_fold_and_gives_each_folds_mean():
    rows = cv_rows()
    predictions = {row["image_id"]: {"mask_left_lung": cut(square(), row["fold"])} for row in rows}
    result = evaluate.score(truth=rows, predictions=predictor(predictions), split=evaluate.CV, classes=["Left Lung"])
    per_fold = [dice(cut(square(), fold), square()) for fold in range(recipe.FOLDS)]  # 2(10-k)/(20-k)
    assert per_fold[1] == pytest.approx(18 / 19)
    entry = result["classes"]["Left Lung"]
    assert entry["dice"]["folds"] == pytest.approx(per_fold)
    assert entry["dice"]["mean"] == pytest.approx(np.mean(per_fold)) and entry["n"] == 10
    groups = [row["patient_id"] for row in rows]
    values = [per_fold[row["fold"]] for row in rows]
    low, high = evaluate.bootstrap_interval(values=values, groups=[("patient", g) for g in groups])
    assert entry["dice"]["ci95"] == pytest.approx([low, high])
    assert result["counts"]["fold_images"] == [2] * recipe.FOLDS
    assert [image["fold"] for image in result["images"]] == [row["fold"] for row in rows]
    text = evaluate.format_markdown(result)
    assert "Cross-validation (`cv`, out-of-fold predictions, 5 folds): 10 images of 10 patients" in text
    assert "| Class | fold 0 (2 images) | fold 1 (2 images) |" in text
    assert f"| Left Lung | 1.000 / 1.000 | {per_fold[1]:.3f} / " in text
    # One fold: its own images, no per-fold table.
    only = evaluate.score(
        truth=[row for row in rows if row["fold"] == 3],
        predictions=predictor(predictions),
        split=evaluate.CV,
        fold=3,
        classes=["Left Lung"],
    )
    assert only["classes"]["Left Lung"]["dice"]["mean"] == pytest.approx(per_fold[3])
    assert "folds" not in only["classes"]["Left Lung"]["dice"] and "fold_images" not in only["counts"]
    assert evaluate.format_markdown(only).count("fold 3") == 1  # the summary line, no fold table


def test_a_class_flagged_missing_is_skipped_and_counted_like_a_null_mask():
    lung = square()
    rows = [
        # The build says: this image's right lung was left out of the annotation by mistake.
        hand_row(
            1,
            patient="a",
            masks={"mask_left_lung": lung},
            flags=["missing:mask_right_lung", "duplicate:mask_left_lung", "wrong_side:mask_left_lung"],
        ),
        hand_row(2, patient="b", masks={"mask_left_lung": lung, "mask_right_lung": lung}, flags=[]),
        hand_row(3, patient="c", masks={"mask_left_lung": lung, "mask_right_lung": None}),  # no flags column
    ]
    # A model that predicts a right lung everywhere: on image 1 it would score Dice 0 against the
    # empty mask, were the pair not skipped.
    predictions = {image_id: {"mask_left_lung": lung, "mask_right_lung": lung} for image_id in (1, 2, 3)}
    result = evaluate.score(truth=rows, predictions=predictor(predictions), split="test")
    right, left = result["classes"]["Right Lung"], result["classes"]["Left Lung"]
    assert right["n"] == 1 and right["dice"]["mean"] == 1.0
    assert right["skipped"] == {"null_truth": 1, "flagged_missing": 1, "both_empty": 0, "distance_one_side_empty": 0}
    assert left["n"] == 3 and left["dice"]["mean"] == 1.0  # duplicate and wrong_side do not skip
    assert [image["classes"]["Right Lung"] for image in result["images"][:1]] == [{"skipped": "flagged_missing"}]
    assert result["counts"]["skipped_flagged_missing"] == 1 and result["counts"]["skipped_null_truth"] == 1
    assert "1 whose class the build flags as missing on the image" in evaluate.format_markdown(result)


def test_classes_not_predicted_are_listed_and_chosen_classes_are_scored():
    rows = [hand_row(1, patient="a", masks={"mask_left_lung": square(), "mask_consolidation": square(8, 8, 4)})]
    predictions = predictor({1: {"mask_left_lung": square()}})
    result = evaluate.score(truth=rows, predictions=predictions, split="test", predicted={"mask_left_lung"})
    assert list(result["classes"]) == ["Left Lung"]
    assert result["not_predicted"] == [name for name in recipe.CLASSES if name != "Left Lung"]
    assert result["counts"]["pairs"] == 1
    chosen = evaluate.score(
        truth=rows, predictions=predictions, split="test", predicted={"mask_left_lung"}, classes=["Consolidation"]
    )
    assert list(chosen["classes"]) == ["Consolidation"] and chosen["not_predicted"] == []
    assert chosen["classes"]["Consolidation"]["dice"]["mean"] == 0.0  # chosen, not predicted: empty
    assert evaluate.resolve_classes(["mask_tubings", "Left Lung", "mask_left_lung"]) == ["Left Lung", "Tubings"]
    with pytest.raises(ValueError, match=r"classes='Heart': not a class of this dataset; give class names"):
        evaluate.resolve_classes(["Heart"])
    with pytest.raises(ValueError, match=r"no class to score: the predictions hold no mask of any class"):
        evaluate.score(truth=rows, predictions=predictions, split="test", predicted=set())


def test_compare_gives_the_paired_difference_over_the_pairs_both_score():
    lung = square()
    rows = [hand_row(i, patient=f"p{i // 2}", masks={"mask_left_lung": lung}) for i in range(8)]
    rows.append(hand_row(8, patient="p9"))  # no left lung: A predicts none, B a false one
    a = {i: {"mask_left_lung": lung} for i in range(8)}
    b = {i: {"mask_left_lung": cut(lung, i % 4)} for i in range(8)}
    b[8] = {"mask_left_lung": square(0, 0, 3)}
    options = {"truth": rows, "split": "test", "classes": ["Left Lung", "Tubings"]}
    result_a = evaluate.score(predictions=predictor(a), **options)
    result_b = evaluate.score(predictions=predictor(b), **options)
    comparison = evaluate.compare(a=result_a, b=result_b)
    dice = comparison["classes"]["Left Lung"]["dice"]
    differences = [1 - (2 * (10 - k) / (20 - k)) for k in (i % 4 for i in range(8))]
    # Image 8 is skipped for A (both empty) and scored 0 for B: not a pair both score.
    assert dice["n"] == 8 and result_b["classes"]["Left Lung"]["n"] == 9
    assert dice["difference"] == pytest.approx(np.mean(differences)) and dice["mean_a"] == 1.0
    expected = evaluate.bootstrap_interval(
        values=np.asarray(differences), groups=[("patient", f"p{i // 2}") for i in range(8)]
    )
    assert dice["ci95"] == pytest.approx(list(expected)) and dice["ci95"][0] > 0 and dice["excludes_zero"] is True
    assert comparison["classes"]["Left Lung"]["hd95"]["difference"] < 0  # A's surfaces are closer
    assert comparison["classes"]["Tubings"]["dice"] == {
        "n": 0,
        "mean_a": None,
        "mean_b": None,
        "difference": None,
        "ci95": None,
        "excludes_zero": None,
    }
    same = evaluate.compare(a=result_a, b=result_a)["classes"]["Left Lung"]["dice"]
    assert same["difference"] == 0.0 and same["ci95"] == [0.0, 0.0] and same["excludes_zero"] is False
    text = evaluate.format_comparison({"predictions": "A", "against": "B", **comparison})
    assert re.search(r"\| Left Lung \| 8 \| \+0\.\d{3} \[\+0\.\d{3}, \+0\.\d{3}\] \* \|", text), text
    with pytest.raises(ValueError, match=r"compare: the two sets of predictions were scored on different images"):
        evaluate.compare(a=result_a, b=evaluate.score(predictions=predictor(b), **{**options, "truth": rows[:3]}))


def test_the_per_image_csv_has_one_row_per_image_and_class(tmp_path):
    rows = [
        hand_row(1, patient="a", masks={"mask_left_lung": square(), "mask_tubings": square(2, 2, 3)}),
        hand_row(2, patient="a", masks={"mask_left_lung": None}),
    ]
    predictions = predictor({1: {"mask_left_lung": cut(square(), 2), "mask_tubings": square(2, 2, 3)}})
    result = evaluate.score(
        truth=rows, predictions=predictions, split="test", classes=["Left Lung", "Airways", "Tubings"]
    )
    path = tmp_path / "per-image.csv"
    assert evaluate.write_per_image_csv(result, path=path) == 6
    with path.open(newline="", encoding="utf-8") as handle:
        written = list(csv.DictReader(handle))
    assert [(row["image_id"], row["class"], row["skipped"]) for row in written] == [
        ("1", "Left Lung", ""),
        ("1", "Airways", "both_empty"),
        ("1", "Tubings", ""),
        ("2", "Left Lung", "null_truth"),
        ("2", "Airways", "both_empty"),
        ("2", "Tubings", "both_empty"),
    ]
    first = written[0]
    assert list(first) == list(evaluate.report.CSV_COLUMNS)
    assert float(first["dice"]) == result["images"][0]["classes"]["Left Lung"]["dice"] == pytest.approx(16 / 18)
    assert first["cldice"] == "" and float(written[2]["cldice"]) == 1.0  # clDice for tubes only
    assert first["mask_column"] == "mask_left_lung" and first["split"] == "train" and first["fold"] == ""
    assert all(row["dice"] == "" for row in written[1:2] + written[3:])
    with pytest.raises(OSError, match=r"per_image='.*missing/x\.csv': cannot write the file \(No such file"):
        evaluate.write_per_image_csv(result, path=tmp_path / "missing" / "x.csv")


def test_selection_of_split_cv_and_fold():
    assert evaluate.Selection.parse(split=None, fold=None) == evaluate.Selection("test")
    assert evaluate.Selection.parse(split=None, fold=2) == evaluate.Selection("cv", 2)
    assert evaluate.Selection.parse(split="cv", fold=None).splits == ("train", "validation")
    assert evaluate.Selection("cv", 2).label == "cv fold 2" and evaluate.Selection("validation").splits == (
        "validation",
    )
    with pytest.raises(ValueError, match=r"fold=1: scores a fold of the cross-validation: use split=cv, not test"):
        evaluate.Selection.parse(split="test", fold=1)
    with pytest.raises(ValueError, match=r"fold=5: the folds are 0 to 4"):
        evaluate.Selection.parse(split="cv", fold=5)


def test_fit_rounds_keep_what_is_predicted_out_of_what_is_learnt():
    development = [hand_row(i, patient=i, fold=i % 5, split="train" if i < 8 else "validation") for i in range(10)]
    rows = {
        "train": development[:8],
        "validation": development[8:],
        "test": [hand_row(20, patient=20), hand_row(21, patient=21)],
    }
    (test_round,) = evaluate.fit_rounds(split="test", rows=rows)
    assert test_round.fit == frozenset(range(10)) and test_round.predict == frozenset({20, 21})
    (validation_round,) = evaluate.fit_rounds(split="validation", rows=rows)
    assert validation_round.fit == frozenset(range(8)) and validation_round.predict == frozenset({8, 9})
    rounds = evaluate.fit_rounds(split="cv", rows=rows)
    assert [r.fold for r in rounds] == [0, 1, 2, 3, 4]
    for fit_round in rounds:
        assert fit_round.predict == {i for i in range(10) if i % 5 == fit_round.fold}
        assert fit_round.fit == set(range(10)) - fit_round.predict


def test_the_out_of_fold_atlas_for_fold_k_does_not_depend_on_fold_ks_masks():
    def development(changed_fold: int | None = None) -> dict[str, list[dict]]:
        """15 images in 5 folds with random masks of three classes; `changed_fold`'s masks all full."""
        rng = np.random.default_rng(4)
        rows = []
        for image_id in range(15):
            fold = image_id % 5
            masks = {column: rng.random(SIZE) > 0.6 for column in recipe.MASK_COLUMNS[:3]}
            if fold == changed_fold:
                masks = {column: np.ones(SIZE, dtype=bool) for column in masks}
            rows.append(hand_row(image_id, patient=image_id, fold=fold, masks=masks))
        return {"train": rows[:12], "validation": rows[12:]}

    size = SIZE[::-1]  # an atlas at the images' own size: small, quick
    before = atlas.fit_atlases(split="cv", rows=development(), size=size)
    for fold in range(recipe.FOLDS):
        after = atlas.fit_atlases(split="cv", rows=development(changed_fold=fold), size=size)
        for image in (image_id for image_id in range(15) if image_id % 5 == fold):
            predicted_before, predicted_after = before(image, SIZE[1], SIZE[0]), after(image, SIZE[1], SIZE[0])
            for column in recipe.MASK_COLUMNS:
                assert np.array_equal(predicted_before[column], predicted_after[column]), (fold, image, column)
            assert before.atlas_for(image).fit_masks["mask_left_lung"] == 12
        # The change is real: the other folds' atlases learnt from it.
        other = (fold + 1) % 5
        assert not np.array_equal(
            before.atlas_for(other).frequency["mask_left_lung"], after.atlas_for(other).frequency["mask_left_lung"]
        )


# --- the command, on the fixture build (train image 22 in fold 0, validation image 1 in fold 1) --


@pytest.fixture(scope="module")
def development_truth(fixture_build, tmp_path_factory) -> Path:
    return write_truth_folder(fixture_build, tmp_path_factory.mktemp("dev") / "truth", ["train", "validation"])


def test_the_ground_truth_scores_1_under_cv_and_on_a_fold(fixture_build, development_truth, tmp_path, capsys):
    report = tmp_path / "cv.json"
    source = ["--source", str(fixture_build), "--predictions", str(development_truth)]
    assert covid_seg(["evaluate", *source, "--split", "cv", "--json", str(report)]) == 0
    result = json.loads(report.read_text())
    assert (result["split"], result["fold"], result["counts"]["images"]) == ("cv", None, 2)
    assert result["counts"]["fold_images"] == [1, 1, 0, 0, 0]
    assert {image["image_id"]: (image["split"], image["fold"]) for image in result["images"]} == {
        1: ("validation", 1),
        22: ("train", 0),
    }
    left = result["classes"]["Left Lung"]
    assert left["dice"] == {"mean": 1.0, "ci95": [1.0, 1.0], "n": 2, "folds": [1.0, 1.0, None, None, None]}
    assert "| Left Lung | 1.000 / 1.000 | 1.000 / 1.000 | – | – | – |" in capsys.readouterr().out
    # Fold 1 needs only its own image (in validation/): the train folder may be absent, but not for all of cv.
    only = tmp_path / "only-validation"
    shutil.copytree(development_truth / "validation", only / "validation")
    assert covid_seg(["evaluate", "--source", str(fixture_build), "--predictions", str(only), "--fold", "1"]) == 0
    assert "Cross-validation fold 1 (`cv`): 1 images of 1 patients" in capsys.readouterr().out
    assert covid_seg(["evaluate", "--source", str(fixture_build), "--predictions", str(only), "--split", "cv"]) == 1
    assert re.search(
        r"only-validation/train: no such folder: the images of split train have no predictions", capsys.readouterr().err
    )


@pytest.mark.parametrize(
    ("options", "code", "message"),
    [
        (["--fold", "3"], 1, r"error: .*: cv fold 3 has no images to score"),
        (["--fold", "1", "--split", "test"], 1, r"--fold 1: scores a fold of the cross-validation: use --split cv"),
        (["--fold", "7"], 2, r"argument --fold: invalid choice: 7"),
        (["--split", "cv", "--classes", "Heart"], 1, r"--classes Heart: not a class of this dataset"),
        (["--split", "cv", "--nsd-tolerance", "0"], 2, r"--nsd-tolerance: must be a number above 0, got 0"),
        (["--split", "cv", "--compare", "nowhere"], 1, r"error: --compare nowhere: no such folder$"),
        (["--split", "cv", "--per-image", "no/such/dir/x.csv"], 1, r"--per-image no/such/dir/x\.csv: cannot write"),
    ],
)
def test_bad_protocol_options(fixture_build, development_truth, capsys, options, code, message):
    args = ["evaluate", "--source", str(fixture_build), "--predictions", str(development_truth), *options]
    assert covid_seg(args) == code
    assert re.search(message, capsys.readouterr().err)


def test_compare_classes_and_per_image_through_the_command(fixture_build, development_truth, tmp_path, capsys):
    moved = write_truth_folder(
        fixture_build,
        tmp_path / "moved",
        ["train", "validation"],
        change=lambda image_id, column, mask: shifted(mask, 9, -6) if column == "mask_left_lung" else mask,
    )
    per_image, report = tmp_path / "per-image.csv", tmp_path / "compare.json"
    args = [
        "evaluate",
        "--source",
        str(fixture_build),
        "--split",
        "cv",
        "--predictions",
        str(development_truth),
        "--compare",
        str(moved),
        "--classes",
        "mask_left_lung",
        "Right Lung",
        "--per-image",
        str(per_image),
        "--json",
        str(report),
    ]
    assert covid_seg(args) == 0
    out = capsys.readouterr().out
    result = json.loads(report.read_text())
    comparison = result["comparison"]
    assert list(result["classes"]) == list(comparison["classes"]) == ["Left Lung", "Right Lung"]
    assert (comparison["predictions"], comparison["against"]) == (str(development_truth), str(moved))
    left, right = comparison["classes"]["Left Lung"]["dice"], comparison["classes"]["Right Lung"]["dice"]
    assert left["n"] == 2 and left["difference"] > 0.02 and left["ci95"][0] > 0 and left["excludes_zero"]
    assert right["difference"] == 0.0 and not right["excludes_zero"]
    assert "Paired difference A - B" in out and f"wrote {per_image}: 4 rows, one per image and class" in out
    with per_image.open(newline="", encoding="utf-8") as handle:
        assert [(row["image_id"], row["class"], row["fold"]) for row in csv.DictReader(handle)] == [
            ("1", "Left Lung", "1"),
            ("1", "Right Lung", "1"),
            ("22", "Left Lung", "0"),
            ("22", "Right Lung", "0"),
        ]


def _with_flags(build: Path, out: Path, flags: dict[int, list[str]] | None) -> Path:
    """A copy of a build whose `quality_flags` are `flags` (image id -> codes, [] for the rest),
    or, for None, without that column, as a build of a builder before 1.2.0."""
    from huggingface_hub import DatasetCard

    shutil.copytree(build, out)
    for path in layout.shard_paths(out):
        table = pq.read_table(path)
        index = table.schema.get_field_index("quality_flags")
        if flags is None:
            table = table.remove_column(index)
        else:
            codes = [flags.get(image_id, []) for image_id in table["image_id"].to_pylist()]
            table = table.set_column(index, table.schema.field(index), pa.array(codes, pa.list_(pa.string())))
        pq.write_table(table, path)
    if flags is None:
        card = DatasetCard.load(out / layout.CARD_FILENAME)
        for info in card.data["dataset_info"]:
            info["features"] = [feature for feature in info["features"] if feature["name"] != "quality_flags"]
        card.save(out / layout.CARD_FILENAME)
    checksums.write(out)  # the files it holds are this build's now
    return out


def test_quality_flags_are_read_where_the_source_has_them(fixture_build, tmp_path):
    truth = write_truth_folder(fixture_build, tmp_path / "truth", ["train", "validation"])
    flagged = _with_flags(
        fixture_build, tmp_path / "flagged", {22: ["missing:mask_left_lung", "duplicate:mask_airways"]}
    )
    result = evaluate.evaluate(
        evaluate.EvaluateRequest(source=str(flagged), split="cv", predictions=truth, classes=["Left Lung", "Airways"])
    )
    assert result["counts"]["skipped_flagged_missing"] == 1
    by_image = {image["image_id"]: image["classes"] for image in result["images"]}
    assert by_image[22]["Left Lung"] == {"skipped": "flagged_missing"} and by_image[22]["Airways"]["dice"] == 1.0
    # A build without the column (an older builder): nothing is flagged, nothing fails.
    older = _with_flags(fixture_build, tmp_path / "older", None)
    assert "quality_flags" not in pq.read_schema(layout.shard_paths(older)[0]).names
    plain = evaluate.evaluate(
        evaluate.EvaluateRequest(source=str(older), split="cv", predictions=truth, classes=["Left Lung"])
    )
    assert plain["counts"]["skipped_flagged_missing"] == 0 and plain["classes"]["Left Lung"]["n"] == 2


# --- the full data (slow) ----------------------------------------------------------------------


@pytest.mark.slow
def test_the_real_ground_truth_scores_1_under_cv_and_each_fold(real_build, real_truth_cv):
    truth = real_truth_cv / "truth"
    pooled = json.loads((real_truth_cv / "scores.json").read_text())
    # 84 development images of 63 patients in 5 folds of 16-17 images.
    assert (pooled["counts"]["images"], pooled["counts"]["patients"]) == (84, 63)
    assert sum(pooled["counts"]["fold_images"]) == 84 and min(pooled["counts"]["fold_images"]) >= 16
    images = 0
    for fold in range(recipe.FOLDS):
        result = evaluate.evaluate(evaluate.EvaluateRequest(source=str(real_build), fold=fold, predictions=truth))
        assert {image["fold"] for image in result["images"]} == {fold}
        assert result["counts"]["images"] == pooled["counts"]["fold_images"][fold]
        images += result["counts"]["images"]
        for name, entry in result["classes"].items():
            assert entry["dice"]["mean"] in (1.0, None) and entry["nsd"]["mean"] in (1.0, None), (fold, name)
            assert entry["hd95"]["mean"] in (0.0, None), (fold, name)
            assert pooled["classes"][name]["dice"]["folds"][fold] == entry["dice"]["mean"]
    assert images == 84
    for name, entry in pooled["classes"].items():
        assert entry["dice"]["mean"] in (1.0, None) and entry["cldice"]["mean"] in (1.0, None), name
    assert pooled["classes"]["Left Lung"]["n"] == 83  # covid-19-pneumonia-12.jpg has none


@pytest.mark.slow
def test_compare_of_the_truth_against_a_shifted_copy_is_above_0(real_build, tmp_path):
    lungs = ("mask_left_lung", "mask_right_lung")
    truth = write_truth_folder(real_build, tmp_path / "truth", ["test"])
    moved = write_truth_folder(
        real_build,
        tmp_path / "moved",
        ["test"],
        change=lambda image_id, column, mask: shifted(mask, 5, -4) if column in lungs else mask,
    )
    result = evaluate.evaluate(
        evaluate.EvaluateRequest(source=str(real_build), split="test", predictions=truth, compare=moved, classes=lungs)
    )
    for name in ("Left Lung", "Right Lung"):
        entry = result["comparison"]["classes"][name]
        assert entry["dice"]["n"] == result["classes"][name]["n"] >= 15
        assert 0 < entry["dice"]["ci95"][0] <= entry["dice"]["difference"] <= entry["dice"]["ci95"][1], name
        assert entry["dice"]["excludes_zero"] and entry["iou"]["excludes_zero"] and entry["nsd"]["ci95"][0] >= 0
        assert entry["hd95"]["ci95"][1] < 0 and entry["hd95"]["excludes_zero"]  # the truth is closer to itself
    assert result["comparison"]["not_compared"] == []


def _with_fold_changed(build: Path, out: Path, fold: int) -> Path:
    """A copy of a build whose fold-`fold` images have every mask full (the rest unchanged)."""
    shutil.copytree(build, out)
    changed = 0
    for path in layout.shard_paths(out):
        table = pq.read_table(path)
        rows = table.to_pylist()
        for row in rows:
            if row["fold"] == fold:
                full = recipe.encode_mask_png(np.ones((row["height"], row["width"]), dtype=bool))
                for column in recipe.MASK_COLUMNS:
                    row[column] = {"bytes": full, "path": None}
                changed += 1
        pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), path)
    assert changed >= 16
    checksums.write(out)  # the changed masks are this copy's data
    return out


@pytest.mark.slow
def test_the_out_of_fold_atlas_of_the_real_build_ignores_its_folds_masks(
    real_build, real_atlas_cv, real_atlas_scores, tmp_path, capsys
):
    fold = 2
    changed = _with_fold_changed(real_build, tmp_path / "changed", fold)
    before, after = real_atlas_cv / "predictions", tmp_path / "after"
    assert covid_seg(["baseline", "atlas", "--source", str(changed), "--split", "cv", "--out", str(after)]) == 0
    assert "fold 2: fitted on 67 images, predicts 17" in capsys.readouterr().out
    folds = {
        row["image_id"]: (row["fold"], split)
        for split in ("train", "validation")
        for row in layout.read_rows(real_build, split, columns=["image_id", "fold"])
    }
    same = different = 0
    for image_id, (image_fold, split) in folds.items():
        files = sorted((before / split / str(image_id)).iterdir())
        assert len(files) == 14
        equal = all(file.read_bytes() == (after / split / str(image_id) / file.name).read_bytes() for file in files)
        if image_fold == fold:
            assert equal, image_id
            same += 1
        else:
            different += not equal
    assert same == 17 and different == 84 - 17  # every other fold's atlas learnt from the change
    # `covid-seg evaluate` of the files scores what the build scores in memory for the card.
    scored = json.loads((real_atlas_cv / "scores.json").read_text())
    assert scored["classes"]["Left Lung"]["dice"]["mean"] > 0.7
    in_memory = dict(real_atlas_scores["cv"])
    del in_memory["predictor"]
    assert scored == in_memory
