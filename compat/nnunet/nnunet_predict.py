"""Genuine nnU-Net prediction folders without training a model, by nnunetv2 2.8.1's own code.

    python nnunet_predict.py untrained PREPROCESSED IMAGES OUT
        nnU-Net's predictor with an untrained network (random weights) built from the plans, run
        over IMAGES (<case>_0000.png): OUT is what `nnUNetv2_predict --save_probabilities` writes
        (<case>.npz, .png, .pkl, dataset.json, plans.json, predict_from_raw_data_args.json).
    python nnunet_predict.py logits PREPROCESSED LOGITS OUT
        nnU-Net's `export_prediction_from_logits` on every LOGITS/**/<case>.npy, float32 (regions,
        1, H, W) at the image's size: OUT/**/<case>.npz, .png and .pkl as nnU-Net writes them (the
        folders below LOGITS kept: fold_K/validation/ gives a model folder's), and in every folder
        written but a `validation` one the dataset.json and plans.json copies nnUNetv2_predict
        puts beside them.

PREPROCESSED is `$nnUNet_preprocessed/<dataset>` after `nnUNetv2_plan_and_preprocess -c 2d`: its
nnUNetPlans.json and dataset.json are all either mode needs (no trained model). nnU-Net uses
"spawn" worker pools, so this runs as a script of its own, under a `__main__` guard.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import torch
from batchgenerators.utilities.file_and_folder_operations import load_json
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager


def untrained(preprocessed: Path, images: Path, out: Path) -> None:
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels

    plans = PlansManager(load_json(str(preprocessed / "nnUNetPlans.json")))
    configuration = plans.get_configuration("2d")
    dataset_json = load_json(str(preprocessed / "dataset.json"))
    heads = plans.get_label_manager(dataset_json).num_segmentation_heads
    torch.manual_seed(0)
    network = nnUNetTrainer.build_network_architecture(
        plans,
        configuration,
        determine_num_input_channels(plans, configuration, dataset_json),
        heads,
        enable_deep_supervision=False,
    )
    predictor = nnUNetPredictor(use_mirroring=False, device=torch.device("cpu"), allow_tqdm=False)
    predictor.manual_initialization(
        network, plans, configuration, [network.state_dict()], dataset_json, "nnUNetTrainer", None
    )
    predictor.predict_from_files(
        str(images),
        str(out),
        save_probabilities=True,
        overwrite=True,
        num_processes_preprocessing=1,
        num_processes_segmentation_export=1,
    )


def from_logits(preprocessed: Path, logits: Path, out: Path) -> None:
    from nnunetv2.inference.export_prediction import export_prediction_from_logits

    plans = PlansManager(load_json(str(preprocessed / "nnUNetPlans.json")))
    configuration = plans.get_configuration("2d")
    dataset_json = load_json(str(preprocessed / "dataset.json"))
    folders = set()
    for path in sorted(logits.rglob("*.npy")):
        folder = out / path.parent.relative_to(logits)
        folder.mkdir(parents=True, exist_ok=True)
        folders.add(folder)
        array = np.load(path)
        shape = array.shape[1:]  # (1, H, W): one slice, as nnU-Net reads a 2D image
        # What preprocessing records for an image it neither cropped nor resampled.
        properties = {
            "spacing": (999, 1, 1),
            "shape_before_cropping": shape,
            "bbox_used_for_cropping": [[0, size] for size in shape],
            "shape_after_cropping_and_before_resampling": shape,
        }
        export_prediction_from_logits(
            torch.from_numpy(array),
            properties,
            configuration,
            plans,
            dataset_json,
            str(folder / path.stem),
            save_probabilities=True,
            num_threads_torch=1,
        )
    for folder in folders:
        # nnUNetv2_predict copies these beside its predictions; a trainer's validation folder has none.
        if folder.name != "validation":
            shutil.copy(preprocessed / "dataset.json", folder / "dataset.json")
            shutil.copy(preprocessed / "nnUNetPlans.json", folder / "plans.json")


def main(argv: list[str]) -> None:
    mode, preprocessed, source, out = argv[:4]
    if mode == "untrained":
        untrained(Path(preprocessed), Path(source), Path(out))
    elif mode == "logits":
        from_logits(Path(preprocessed), Path(source), Path(out))
    else:
        raise SystemExit(f"unknown mode {mode!r}: untrained or logits")


if __name__ == "__main__":
    main(sys.argv[1:])
