"""nnU-Net's predictions read back: `covid-seg evaluate` on the .npz folders nnU-Net writes (here
written by numpy in nnU-Net's layout; compat/nnunet has nnU-Net write them), `covid-seg baseline
nnunet` converting them to PNG masks, and one clear message for every bad input."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import covid_chestxray_seg as recipe
from covid_chestxray_seg_tools import evaluate
from covid_chestxray_seg_tools.cli import main as covid_seg
from covid_chestxray_seg_tools.evaluate import nnunet as reader
from covid_chestxray_seg_tools.hub_folder import resize
from tests.nnunet_helpers import DATASET, REGIONS, SPLIT_OF, model_folder, prediction_folder, truth_probabilities


@pytest.fixture(scope="module")
def exports(fixture_build, tmp_path_factory) -> dict[str, Path]:
    """dataset.json of the fixture's export in each config."""
    found = {}
    for config in ("default", "size-256"):
        out = tmp_path_factory.mktemp("nnunet-export") / config
        assert covid_seg(["export", "--source", str(fixture_build), "--format", "nnunet", "--out", str(out),
                          "--config", config, "--quiet"]) == 0  # fmt: skip
        found[config] = out / DATASET / "dataset.json"
    return found


def scores(build: Path, predictions: Path, tmp_path: Path, *options: str) -> dict:
    report = tmp_path / "scores.json"
    command = ["evaluate", "--source", str(build), "--predictions", str(predictions), "--json", str(report)]
    assert covid_seg([*command, "--quiet", *options]) == 0
    return json.loads(report.read_text())


def dice(result: dict) -> dict[str, float]:
    return {name: entry["dice"]["mean"] for name, entry in result["classes"].items()}


def test_the_truth_as_nnunet_test_predictions_scores_dice_1(fixture_build, exports, tmp_path):
    folder = prediction_folder(tmp_path / "pred", exports["default"], fixture_build, [83])
    result = scores(fixture_build, folder, tmp_path, "--split", "test")
    assert dice(result) == dict.fromkeys(
        ["Left Lung", "Right Lung", "Cardiomediastinum", "Airways", "Ground Glass Opacities"], 1.0
    )
    # The classes without a training pixel have no region: not predicted, as with any missing class.
    assert result["not_predicted"] == [name for name in recipe.CLASSES if recipe.mask_column(name) not in REGIONS]


def test_out_of_fold_predictions_are_read_from_the_model_folder(fixture_build, exports, tmp_path):
    model = model_folder(tmp_path, exports["default"], fixture_build)
    result = scores(fixture_build, model, tmp_path, "--split", "cv")
    assert result["counts"]["images"] == 2 and set(dice(result).values()) == {1.0}
    # One fold: only its folder is needed.
    shutil.rmtree(model / "fold_1")
    result = scores(fixture_build, model, tmp_path, "--fold", "0")
    assert result["counts"]["images"] == 1 and set(dice(result).values()) == {1.0}


def test_regions_are_cut_above_0_5_as_nnunet_cuts_them(fixture_build, exports, tmp_path):
    folder = prediction_folder(tmp_path / "pred", exports["default"], fixture_build, [83])
    probabilities = np.zeros((5, 1, 631, 790), dtype=np.float32)
    probabilities[0, 0, :10, :10] = 0.5  # not above 0.5: background
    probabilities[0, 0, 20:30, 20:30] = 0.500001
    probabilities[1, 0, 0, 0] = 1.0
    np.savez_compressed(folder / "cxrseg_83.npz", probabilities=probabilities)
    _, targets = evaluate.read_truth(
        source=str(fixture_build), selection=evaluate.Selection.parse(split="test", fold=None)
    )
    masks = evaluate.load_predictions(path=folder, targets=targets)(83, 790, 631)
    assert isinstance(evaluate.load_predictions(path=folder, targets=targets), reader.NnUNetPredictions)
    assert sorted(masks) == sorted(REGIONS)
    assert int(masks["mask_left_lung"].sum()) == 100 and masks["mask_left_lung"][20:30, 20:30].all()
    assert int(masks["mask_right_lung"].sum()) == 1 and not masks["mask_airways"].any()


def test_a_size_256_exports_predictions_go_back_to_full_size(fixture_build, exports, tmp_path):
    folder = prediction_folder(tmp_path / "pred", exports["size-256"], fixture_build, [83], config="size-256")
    _, targets = evaluate.read_truth(
        source=str(fixture_build), selection=evaluate.Selection.parse(split="test", fold=None)
    )
    masks = evaluate.load_predictions(path=folder, targets=targets)(83, 790, 631)
    small = truth_probabilities(fixture_build, 83, config="size-256")[:, 0]
    expected = resize.to_full_size(small, width=790, height=631)
    for index, column in enumerate(REGIONS):
        assert masks[column].shape == (631, 790)
        assert np.array_equal(masks[column], expected[index]), column
    result = scores(fixture_build, folder, tmp_path, "--split", "test")
    assert all(0.9 < value < 1.0 for value in dice(result).values()), dice(result)
    model = model_folder(tmp_path / "cv", exports["size-256"], fixture_build, config="size-256")
    assert scores(fixture_build, model, tmp_path, "--split", "cv")["counts"]["images"] == 2


def test_the_conversion_writes_pngs_that_score_as_the_npz_folders(fixture_build, exports, tmp_path, capsys):
    test = prediction_folder(tmp_path / "pred", exports["size-256"], fixture_build, [83], config="size-256")
    model = model_folder(tmp_path / "cv", exports["size-256"], fixture_build, config="size-256")
    out = tmp_path / "preds"
    command = ["baseline", "nnunet", "--source", str(fixture_build), "--cv", str(model), "--test", str(test)]
    assert covid_seg([*command, "--out", str(out)]) == 0
    assert capsys.readouterr().out == (
        f"wrote {out}: train images 1, validation images 1, test images 1, masks 15\n"
        f"score them: covid-seg evaluate --source {fixture_build} --split cv --predictions {out}\n"
        f"score them: covid-seg evaluate --source {fixture_build} --split test --predictions {out}\n"
    )
    assert sorted(str(path.relative_to(out)) for path in out.rglob("*.png")) == sorted(
        f"{SPLIT_OF[image_id]}/{image_id}/{column}.png" for image_id in (22, 1, 83) for column in REGIONS
    )
    with Image.open(out / "test" / "83" / "mask_left_lung.png") as image:
        assert (image.mode, image.size) == ("1", (790, 631))
    for split, folder in (("cv", model), ("test", test)):
        direct = scores(fixture_build, folder, tmp_path, "--split", split)
        converted = scores(fixture_build, out, tmp_path, "--split", split)
        assert converted == direct


def test_the_conversion_refuses_folders_of_two_exports(fixture_build, exports, tmp_path, capsys):
    test = prediction_folder(tmp_path / "pred", exports["size-256"], fixture_build, [83], config="size-256")
    model = model_folder(tmp_path / "cv", exports["default"], fixture_build)
    command = ["baseline", "nnunet", "--source", str(fixture_build), "--cv", str(model), "--test", str(test)]
    assert covid_seg([*command, "--out", str(tmp_path / "preds")]) == 1
    assert f"error: {model} and {test} come from different exports (configs or regions differ)" in (
        capsys.readouterr().err
    )
    assert not (tmp_path / "preds").exists()


def test_the_conversion_needs_a_folder_and_results_need_both(fixture_build, tmp_path, capsys):
    assert covid_seg(["baseline", "nnunet", "--source", str(fixture_build), "--out", str(tmp_path / "o")]) == 1
    assert "error: nothing to convert: give the model folder, the test predictions, or both" in capsys.readouterr().err
    command = [
        "baseline",
        "nnunet",
        "--source",
        str(fixture_build),
        "--test",
        str(tmp_path),
        "--out",
        str(tmp_path / "o"),
    ]
    assert covid_seg([*command, "--results", "r.json"]) == 1
    assert "error: --results r.json: the results file scores cross-validation and test: give both" in (
        capsys.readouterr().err
    )
    assert not (tmp_path / "o").exists()


# --- bad inputs: one message naming the file and the problem, nothing scored -------------------


def damage(folder: Path, how: str) -> str:
    """Damage a test prediction folder; the message evaluate must give."""
    npz = folder / "cxrseg_83.npz"
    if how == "label maps only":
        npz.unlink()
        return (
            rf"{folder}: holds nnU-Net's label maps only \(one label per pixel\), no \.npz region probabilities: the "
            r"classes overlap, and a label map keeps one region per pixel; run nnUNetv2_predict \.\.\. "
            r"--save_probabilities, which saves"
        )
    if how == "missing case":
        npz.unlink()
        (folder / "cxrseg_83.png").unlink()
        return rf"{npz}: no such file: image 83 of split test has no prediction"
    if how == "wrong size":
        np.savez_compressed(npz, probabilities=np.zeros((5, 1, 10, 10), dtype=np.float32))
        return (
            rf"{npz}: 'probabilities' is float32 \(5, 1, 10, 10\); expected float \(5, 1, 631, 790\): one "
            r"probability map per region of dataset\.json at the image's 790 x 631"
        )
    if how == "wrong regions":
        np.savez_compressed(npz, probabilities=np.zeros((4, 1, 631, 790), dtype=np.float32))
        return r"'probabilities' is float32 \(4, 1, 631, 790\); expected float \(5, 1, 631, 790\)"
    if how == "not float":
        np.savez_compressed(npz, probabilities=np.zeros((5, 1, 631, 790), dtype=np.uint8))
        return r"'probabilities' is uint8 \(5, 1, 631, 790\); expected float"
    if how == "no probabilities":
        np.savez_compressed(npz, logits=np.zeros((5, 1, 631, 790), dtype=np.float32))
        return (
            rf"{npz}: holds logits, no 'probabilities' array: not the region probabilities nnU-Net saves; predict "
            r"with nnUNetv2_predict \.\.\. --save_probabilities"
        )
    if how == "not an npz":
        npz.write_bytes(b"not a zip file")
        return rf"{npz}: not a readable \.npz file \(BadZipFile"
    if how == "not our case":
        npz.rename(folder / "case0001.npz")
        return rf"{folder / 'case0001.npz'}: 'case0001' is not a case of this export \(expected cxrseg_<image_id>\)"
    if how == "unknown image":
        shutil.copy(npz, folder / "cxrseg_999.npz")
        return rf"{folder / 'cxrseg_999.npz'}: image 999 is not an image of split test"
    if how == "no dataset.json":
        (folder / "dataset.json").unlink()
        return rf"{folder / 'dataset.json'}: no such file: an nnU-Net prediction folder holds a copy"
    if how == "not our dataset.json":
        document = json.loads((folder / "dataset.json").read_text())
        del document["covid_chestxray_seg"]
        (folder / "dataset.json").write_text(json.dumps(document))
        return (
            rf"{folder / 'dataset.json'}: has no 'covid_chestxray_seg' record: not the dataset.json of covid-seg's "
            r"nnU-Net export, so its regions cannot be mapped"
        )
    if how == "other regions":
        document = json.loads((folder / "dataset.json").read_text())
        document["labels"]["Left Lung"] = document["labels"]["Left Lung"][:-1]
        (folder / "dataset.json").write_text(json.dumps(document))
        return (
            rf"{folder / 'dataset.json'}: its regions do not match the export's label combinations \(regions Left Lung "
            r"differ\): the predictions cannot be mapped back"
        )
    if how == "damaged record":
        document = json.loads((folder / "dataset.json").read_text())
        document["covid_chestxray_seg"]["label_classes"]["1"] = ["Heart"]
        (folder / "dataset.json").write_text(json.dumps(document))
        return r"dataset\.json: its 'covid_chestxray_seg' record is damaged \(NnUNetExportError: Heart: not classes of"
    if how == "unreadable dataset.json":
        (folder / "dataset.json").write_text("{")
        return r"dataset\.json: not a readable JSON file \(JSONDecodeError"
    raise AssertionError(how)


BAD = (
    "label maps only",
    "missing case",
    "wrong size",
    "wrong regions",
    "not float",
    "no probabilities",
    "not an npz",
    "not our case",
    "unknown image",
    "no dataset.json",
    "not our dataset.json",
    "other regions",
    "damaged record",
    "unreadable dataset.json",
)


@pytest.mark.parametrize("how", BAD)
def test_a_bad_prediction_folder_is_one_clear_message(fixture_build, exports, tmp_path, capsys, how):
    folder = prediction_folder(tmp_path / "pred", exports["default"], fixture_build, [83])
    message = damage(folder, how)
    command = ["evaluate", "--source", str(fixture_build), "--predictions", str(folder), "--split", "test"]
    assert covid_seg(command) == 1
    err = capsys.readouterr().err
    assert re.search(f"^error: .*{message}", err), err
    # The library says the same, without the command's words.
    _, targets = evaluate.read_truth(
        source=str(fixture_build), selection=evaluate.Selection.parse(split="test", fold=None)
    )
    with pytest.raises(evaluate.EvaluateError, match=message):
        evaluate.load_predictions(path=folder, targets=targets)


def test_logits_saved_as_probabilities_are_refused_when_scored(fixture_build, exports, tmp_path, capsys):
    folder = prediction_folder(tmp_path / "pred", exports["default"], fixture_build, [83])
    np.savez_compressed(folder / "cxrseg_83.npz", probabilities=np.full((5, 1, 631, 790), -3.0, dtype=np.float32))
    assert covid_seg(["evaluate", "--source", str(fixture_build), "--predictions", str(folder)]) == 1
    assert (
        f"error: {folder / 'cxrseg_83.npz'}: 'probabilities' runs from -3 to -3: not probabilities in [0, 1]"
        in capsys.readouterr().err
    )


@pytest.mark.parametrize(
    ("how", "options", "message"),
    [
        ("model", ["--split", "test"], r"a trained model folder \(fold_0, fold_1\): its fold_K/validation/ hold the"),
        ("flat", ["--split", "cv"], r"an nnU-Net prediction folder is not out of fold: cross-validation reads the"),
        ("wrong fold", ["--split", "cv"], r"cxrseg_22\.npz: image 22 belongs to fold 0, not 1: not an out-of-fold"),
        ("no fold", ["--split", "cv"], r"fold_1/validation: no such folder: fold 1 has no out-of-fold predictions; "
                                       r"train fold 1 with nnUNetv2_train \.\.\. --npz"),
        ("missing case", ["--fold", "1"], r"fold_1/validation/cxrseg_1\.npz: no such file: image 1 of split "
                                          r"validation \(fold 1\) has no out-of-fold prediction"),
        ("pngs only", ["--fold", "1"], r"fold_1/validation: holds nnU-Net's label maps only .*; run nnUNetv2_train "
                                       r"\.\.\. --npz"),
        ("model", ["--split", "cv", "--threshold", "0.5"], r"--threshold 0\.5: nnU-Net's region probabilities are cut"),
    ],
)  # fmt: skip
def test_a_bad_model_folder_is_one_clear_message(fixture_build, exports, tmp_path, capsys, how, options, message):
    model = model_folder(tmp_path, exports["default"], fixture_build)
    folder = model
    if how == "flat":
        folder = prediction_folder(tmp_path / "flat", exports["default"], fixture_build, [22, 1])
    elif how == "wrong fold":
        shutil.copy(model / "fold_0" / "validation" / "cxrseg_22.npz", model / "fold_1" / "validation")
    elif how == "no fold":
        shutil.rmtree(model / "fold_1")
    elif how == "missing case":
        (model / "fold_1" / "validation" / "cxrseg_1.npz").unlink()
        (model / "fold_1" / "validation" / "cxrseg_1.png").unlink()
    elif how == "pngs only":
        (model / "fold_1" / "validation" / "cxrseg_1.npz").unlink()
    assert covid_seg(["evaluate", "--source", str(fixture_build), "--predictions", str(folder), *options]) == 1
    err = capsys.readouterr().err
    assert re.search(f"^error: .*{message}", err), err


def test_npz_files_without_dataset_json_are_named(fixture_build, exports, tmp_path, capsys):
    model = model_folder(tmp_path, exports["default"], fixture_build)
    validation = model / "fold_0" / "validation"
    assert covid_seg(["evaluate", "--source", str(fixture_build), "--predictions", str(validation), "--fold", "0"]) == 1
    assert f"error: {validation / 'dataset.json'}: no such file: an nnU-Net prediction folder holds a copy of the" in (
        capsys.readouterr().err
    )


def test_the_folder_kinds_are_told_apart(tmp_path):
    assert not reader.is_nnunet_folder(tmp_path)
    (tmp_path / "test").mkdir()
    assert not reader.is_nnunet_folder(tmp_path)
    (tmp_path / "fold_0").mkdir()
    assert reader.is_nnunet_folder(tmp_path)
