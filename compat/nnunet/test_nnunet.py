"""nnU-Net v2 (nnunetv2 2.8.1, CPU torch) on our export, for real: its planning and preprocessing
with `--verify_dataset_integrity` accept `covid-seg export --format nnunet`; prediction folders
that nnU-Net's own code writes (its predictor with an untrained network, its export of logits)
are read by `covid-seg evaluate` and converted by `covid-seg baseline nnunet`; the truth's regions
put through nnU-Net's export score Dice 1. Run in the venv of compat/nnunet/requirements.txt (see
.ci/run); the real data's size-256 export keeps it to minutes."""

from __future__ import annotations

import importlib.metadata
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import covid_chestxray_seg as recipe
from covid_chestxray_seg_tools import evaluate
from covid_chestxray_seg_tools.cli import main as covid_seg
from covid_chestxray_seg_tools.hub_folder import layout

DATASET = "Dataset777_CovidChestXraySeg"
MODEL = "nnUNetTrainer__nnUNetPlans__2d"
REAL_REGIONS = [name for name in recipe.CLASSES if name != "Chest Tube"]


def exported_and_planned(nnunet, build: Path, config: str):
    """`covid-seg export --format nnunet` into nnU-Net's raw folder, then nnU-Net's planning and
    preprocessing of it with its integrity checks."""
    assert covid_seg(["export", "--source", str(build), "--format", "nnunet", "--config", config, "--out",
                      str(nnunet.raw), "--quiet"]) == 0  # fmt: skip
    planned = nnunet.run(
        "nnUNetv2_plan_and_preprocess", "-d", "777", "-c", "2d", "--verify_dataset_integrity", "-np", "2", "-npfp", "2"
    )
    assert planned.returncode == 0, planned.stdout[-3000:] + planned.stderr[-3000:]
    return nnunet, planned


@pytest.fixture(scope="session")
def real_256(nnunet_folders, real_build):
    return exported_and_planned(nnunet_folders("real-256"), real_build, "size-256")


@pytest.fixture(scope="session")
def fixture_full(nnunet_folders, fixture_build):
    return exported_and_planned(nnunet_folders("fixture-full"), fixture_build, "default")


def scores(build: Path, predictions: Path, tmp_path: Path, *options: str) -> dict:
    report = tmp_path / f"scores-{len(list(tmp_path.glob('scores-*')))}.json"
    command = ["evaluate", "--source", str(build), "--predictions", str(predictions), "--json", str(report), "--quiet"]
    assert covid_seg([*command, *options]) == 0
    return json.loads(report.read_text())


def regions(nnunet) -> list[str]:
    """The region names in nnU-Net's output order: dataset.json's labels as preprocessing keeps them."""
    document = json.loads((nnunet.preprocessed / DATASET / "dataset.json").read_text())
    return [name for name in document["labels"] if name != "background"]


def test_this_venv_runs_nnunet_on_cpu_torch():
    assert importlib.metadata.version("nnunetv2") == "2.8.1"
    assert torch.__version__ == "2.13.0+cpu"


def test_planning_and_preprocessing_with_integrity_checks_accept_the_export(real_256, fixture_full):
    nnunet, planned = real_256
    assert "verify_dataset_integrity Done." in planned.stdout
    preprocessed = nnunet.preprocessed / DATASET
    # The folds: copied by the planner from the raw folder, as the export's note says.
    assert (preprocessed / "splits_final.json").read_bytes() == (
        nnunet.raw / DATASET / "splits_final.json"
    ).read_bytes()
    folds = json.loads((preprocessed / "splits_final.json").read_text())
    assert [len(fold["val"]) for fold in folds] == [17, 17, 17, 17, 16]
    assert all(len(fold["train"]) + len(fold["val"]) == 84 for fold in folds)
    plans = json.loads((preprocessed / "nnUNetPlans.json").read_text())
    assert plans["configurations"]["2d"]["patch_size"] == [256, 256]
    assert len(list((preprocessed / "gt_segmentations").iterdir())) == 84
    # nnU-Net keeps the export's record through its copy of dataset.json.
    assert json.loads((preprocessed / "dataset.json").read_text())["covid_chestxray_seg"]["config"] == "size-256"
    assert regions(nnunet) == REAL_REGIONS
    fixture, _ = fixture_full
    assert len(list((fixture.preprocessed / DATASET / "gt_segmentations").iterdir())) == 2


def test_nnunets_predictions_are_read_and_converted(real_256, real_build, tmp_path):
    nnunet, _ = real_256
    predicted = tmp_path / "test-predictions"
    run = nnunet.run("nnunet_predict.py", "untrained", str(nnunet.preprocessed / DATASET),
                     str(nnunet.raw / DATASET / "imagesTs"), str(predicted))  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert {path.suffix for path in predicted.iterdir()} == {".npz", ".png", ".pkl", ".json"}
    assert len(list(predicted.glob("cxrseg_*.npz"))) == 16
    assert {"dataset.json", "plans.json", "predict_from_raw_data_args.json"} <= {p.name for p in predicted.iterdir()}
    with np.load(next(predicted.glob("*.npz"))) as archive:
        assert list(archive) == ["probabilities"]
        assert (archive["probabilities"].dtype, archive["probabilities"].shape) == (np.float32, (13, 1, 256, 256))
    result = scores(real_build, predicted, tmp_path, "--split", "test")
    assert result["counts"]["images"] == 16
    assert result["not_predicted"] == ["Chest Tube"]
    assert list(result["classes"]) == REAL_REGIONS
    # Converted once to PNG masks: the masks evaluate read from nnU-Net's files, pixel for pixel.
    out = tmp_path / "preds"
    assert covid_seg(["baseline", "nnunet", "--source", str(real_build), "--test", str(predicted), "--out", str(out),
                      "--quiet"]) == 0  # fmt: skip
    assert len(list(out.glob("test/*/*.png"))) == 16 * 13
    truth, targets = evaluate.read_truth(
        source=str(real_build), selection=evaluate.Selection.parse(split="test", fold=None)
    )
    direct = evaluate.load_predictions(path=predicted, targets=targets)
    converted = evaluate.load_predictions(path=out, targets=targets)
    for row in truth:
        size = (int(row["image_id"]), int(row["width"]), int(row["height"]))
        ours, theirs = direct(*size), converted(*size)
        assert sorted(ours) == sorted(theirs) == sorted(recipe.mask_column(name) for name in REAL_REGIONS)
        assert all(np.array_equal(ours[column], theirs[column]) for column in ours)
    # nnU-Net's label maps alone lose the overlap: refused.
    maps_only = tmp_path / "maps-only"
    shutil.copytree(predicted, maps_only, ignore=shutil.ignore_patterns("*.npz"))
    assert covid_seg(["evaluate", "--source", str(real_build), "--predictions", str(maps_only)]) == 1


def test_out_of_fold_predictions_from_nnunets_export_are_read_for_cross_validation(real_256, real_build, tmp_path):
    nnunet, _ = real_256
    splits = json.loads((nnunet.preprocessed / DATASET / "splits_final.json").read_text())
    logits = tmp_path / "logits"
    rng = np.random.default_rng(0)
    for fold, split in enumerate(splits):
        folder = logits / f"fold_{fold}" / "validation"
        folder.mkdir(parents=True)
        for case in split["val"]:
            np.save(folder / f"{case}.npy", rng.normal(0, 2, (13, 1, 256, 256)).astype(np.float32))
    model = tmp_path / MODEL
    run = nnunet.run("nnunet_predict.py", "logits", str(nnunet.preprocessed / DATASET), str(logits), str(model))
    assert run.returncode == 0, run.stderr[-3000:]
    # A trained model folder has dataset.json and plans.json at its root, none in fold_K/validation/.
    shutil.copy(nnunet.preprocessed / DATASET / "dataset.json", model / "dataset.json")
    shutil.copy(nnunet.preprocessed / DATASET / "nnUNetPlans.json", model / "plans.json")
    assert len(list(model.glob("fold_*/validation/*.npz"))) == 84
    assert not list(model.glob("fold_*/validation/*.json"))
    # Every case is checked when the folder is opened; one class is scored, to keep this quick.
    result = scores(real_build, model, tmp_path, "--fold", "2", "--classes", "Left Lung")
    assert (result["split"], result["fold"], result["counts"]["images"]) == ("cv", 2, 17)
    assert list(result["classes"]) == ["Left Lung"]


def truth_logits(build: Path, split: str, names: list[str]) -> dict[int, np.ndarray]:
    """Per image of `split`, logits that are +10 inside each region's true mask and -10 outside,
    float32 (regions, 1, H, W), regions in nnU-Net's order."""
    found = {}
    columns = [recipe.mask_column(name) for name in names]
    for row in layout.iter_rows(build, split, columns=["image_id", "width", "height", *columns]):
        masks = [recipe.decode_mask(row[column]) for column in columns]
        shape = (row["height"], row["width"])
        stacked = np.stack([np.zeros(shape, dtype=bool) if mask is None else mask for mask in masks])
        found[row["image_id"]] = np.where(stacked, 10.0, -10.0).astype(np.float32)[:, None]
    return found


def test_the_truths_regions_through_nnunets_export_score_dice_1(fixture_full, fixture_build, tmp_path):
    """At full size (the fixture's default export, planned by nnU-Net): a size-256 export's truth,
    brought back to full size, is not the full-size truth, so Dice 1 is a full-size check."""
    nnunet, _ = fixture_full
    names = regions(nnunet)
    logits = tmp_path / "logits"
    (logits / "test").mkdir(parents=True)
    for image_id, array in truth_logits(fixture_build, "test", names).items():
        np.save(logits / "test" / f"cxrseg_{image_id}.npy", array)
    splits = json.loads((nnunet.preprocessed / DATASET / "splits_final.json").read_text())
    for split in recipe.FOLD_SPLITS:
        for image_id, array in truth_logits(fixture_build, split, names).items():
            fold = next(k for k, entry in enumerate(splits) if f"cxrseg_{image_id}" in entry["val"])
            folder = logits / MODEL / f"fold_{fold}" / "validation"
            folder.mkdir(parents=True, exist_ok=True)
            np.save(folder / f"cxrseg_{image_id}.npy", array)
    out = tmp_path / "nnunet"
    run = nnunet.run("nnunet_predict.py", "logits", str(nnunet.preprocessed / DATASET), str(logits), str(out))
    assert run.returncode == 0, run.stderr[-3000:]
    model = out / MODEL
    shutil.copy(nnunet.preprocessed / DATASET / "dataset.json", model / "dataset.json")
    for split, folder in (("test", out / "test"), ("cv", model)):
        result = scores(fixture_build, folder, tmp_path, "--split", split)
        assert {name: entry["dice"]["mean"] for name, entry in result["classes"].items()} == dict.fromkeys(names, 1.0)
        assert result["counts"]["images"] == {"test": 1, "cv": 2}[split]
