"""Helpers of the nnU-Net tests: nnU-Net's prediction and model folders, written by numpy in the
layout nnunetv2 2.8.1 writes them (compat/nnunet has nnU-Net itself write them)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from PIL import Image

import covid_chestxray_seg as recipe
from covid_chestxray_seg_tools.hub_folder import layout

DATASET = "Dataset777_CovidChestXraySeg"
REGIONS = ["mask_left_lung", "mask_right_lung", "mask_cardiomediastinum", "mask_airways", "mask_ground_glass_opacities"]
# The fixture: image 22 (train, fold 0), 1 (validation, fold 1), 83 (test).
SPLIT_OF = {22: "train", 1: "validation", 83: "test"}
FOLD_OF = {22: 0, 1: 1}


def truth_probabilities(build: Path, image_id: int, *, config: str = "default") -> np.ndarray:
    """The truth's regions as nnU-Net's `probabilities`: float32 (regions, 1, H, W), 1 inside."""
    (row,) = [
        row
        for row in layout.iter_rows(build, SPLIT_OF[image_id], columns=["image_id", *REGIONS], config=config)
        if row["image_id"] == image_id
    ]
    return np.stack([recipe.decode_mask(row[column]).astype(np.float32) for column in REGIONS])[:, None]


def prediction_folder(folder: Path, dataset_json: Path, build: Path, ids, *, config: str = "default") -> Path:
    """A folder as `nnUNetv2_predict --save_probabilities` writes it: dataset.json, plans.json and,
    per case, <case>.npz, <case>.png and <case>.pkl (the last two only to be ignored)."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(dataset_json, folder / "dataset.json")
    (folder / "plans.json").write_text("{}")
    for image_id in ids:
        probabilities = truth_probabilities(build, image_id, config=config)
        np.savez_compressed(folder / f"cxrseg_{image_id}.npz", probabilities=probabilities)
        Image.fromarray(np.zeros(probabilities.shape[2:], dtype=np.uint8)).save(folder / f"cxrseg_{image_id}.png")
        (folder / f"cxrseg_{image_id}.pkl").write_bytes(b"")
    return folder


def model_folder(root: Path, dataset_json: Path, build: Path, *, config: str = "default") -> Path:
    """A trained model folder as `nnUNetv2_train --npz` leaves it: dataset.json, plans.json, and
    each fold's out-of-fold predictions in fold_K/validation/ (no dataset.json there)."""
    model = root / "nnUNetTrainer__nnUNetPlans__2d"
    model.mkdir(parents=True)
    shutil.copy(dataset_json, model / "dataset.json")
    (model / "plans.json").write_text("{}")
    for image_id, fold in FOLD_OF.items():
        validation = prediction_folder(model / f"fold_{fold}" / "validation", dataset_json, build, [image_id],
                                       config=config)  # fmt: skip
        (validation / "dataset.json").unlink()
        (validation / "plans.json").unlink()
    return model
