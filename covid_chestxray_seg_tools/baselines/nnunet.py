"""nnU-Net v2 as a baseline: its predictions in our layout, its training record, its results file.

nnU-Net trains on a GPU, outside this package (docs/nnunet.md has the recipe): five folds on
the export's `splits_final.json` with `--npz`, and the final model (`fold all`, trained on train
+ validation, as the U-Net's test model is) predicting test with `--save_probabilities`. Then:

- `convert` reads those folders once (`evaluate.nnunet`: region probabilities cut as nnU-Net
  cuts them, a size-256 export's brought back to full size) and writes
  `OUT/<split>/<image_id>/<mask column>.png` (1-bit, full size), the layout `covid-seg evaluate`
  reads: a few MB instead of tens of MB of float32 per case. Every class with a region gets a
  file for every image, empty or not, so the PNG folder scores exactly as the nnU-Net folders do.
- `training_record` reads what nnU-Net logged in the model folder: trainer, plans,
  configuration, planned and trained epochs, iterations per epoch, time, GPU, versions.
- `write_results` scores the converted predictions against the atlas as the U-Net's results
  are scored (`results.score_against_atlas`) and writes `baselines/nnunet.json` in the same
  shape; `card_table` renders it, naming the trainer and the schedule, so that a shortened run
  is never shown as nnU-Net's default.

As of nnunetv2 2.8.1 (its source, 2026-12): a model folder is named
`<trainer>__<plans>__<configuration>`; each `fold_K/` holds `debug.json` (the trainer's
settings as strings: `num_epochs`, `num_iterations_per_epoch`, `device`, `gpu_name` on CUDA,
`torch_version`, `cudnn_version`) and `training_log_*.txt` (a line `Epoch N` per epoch, `Epoch
time: S s` after it, `Training done.` at the end, each line stamped `%Y-%m-%d %H:%M:%S.%f: `).
nnU-Net's default trainer, `nnUNetTrainer`, runs 1000 epochs of 250 iterations.
"""

from __future__ import annotations

import importlib.metadata
import json
import platform
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import covid_chestxray_seg as recipe
from covid_chestxray_seg_tools import __version__, evaluate, nnunet_format, staging
from covid_chestxray_seg_tools.baselines import results
from covid_chestxray_seg_tools.errors import CovidSegError
from covid_chestxray_seg_tools.evaluate import nnunet as nnunet_predictions
from covid_chestxray_seg_tools.source import Source, open_source

__all__ = [
    "DEFAULT_EPOCHS",
    "DEFAULT_ITERATIONS",
    "DEFAULT_RESULTS",
    "DEFAULT_TRAINER",
    "FINAL_FOLD",
    "NAME",
    "ConvertResult",
    "NnUNetBaselineError",
    "card_table",
    "committed_results",
    "convert",
    "is_default_schedule",
    "schedule_label",
    "training_record",
    "write_results",
]

NAME = "nnunet"
DEFAULT_RESULTS = Path("baselines") / "nnunet.json"
DEFAULT_TRAINER = "nnUNetTrainer"
DEFAULT_EPOCHS = 1000
DEFAULT_ITERATIONS = 250
# nnU-Net's fold trained on every training case (train + validation here): the test model.
FINAL_FOLD = "all"
_TEST_SPLIT = "test"
_LOG_LINE = re.compile(r"^(\d{4}-\d{1,2}-\d{1,2} \d{1,2}:\d{2}:\d{2}\.\d+): (.*?)\s*$")
_EPOCH = re.compile(r"^Epoch (\d+)$")
_EPOCH_TIME = re.compile(r"^Epoch time: ([0-9.]+) s$")


class NnUNetBaselineError(CovidSegError, ValueError):
    """nnU-Net's folders lack what the conversion or the results file needs."""


@dataclass(frozen=True)
class ConvertResult:
    """What `convert` wrote.

    Attributes:
        out: the folder written.
        counts: images and masks written per split, in the order the command prints them.
        columns: the mask columns written (the classes with a region in the export).
    """

    out: Path
    counts: dict[str, int]
    columns: tuple[str, ...]


def convert(*, source: str | Source, out: Path, cv: Path | None = None, test: Path | None = None) -> ConvertResult:
    """nnU-Net's predictions as `OUT/<split>/<image_id>/<mask column>.png` (1-bit, full size).

    `out` appears only when every image is written, and an existing `out` is never overwritten.

    Args:
        source: the ground truth the export was made from (its images' sizes and ids).
        out: the folder to create.
        cv: a trained model folder (`.../nnUNetTrainer__nnUNetPlans__2d`) whose
            `fold_K/validation/` hold the out-of-fold `.npz` files: written to `train/` and
            `validation/`.
        test: the folder `nnUNetv2_predict --save_probabilities` wrote for the test images.

    Returns:
        The folder, counts and the columns written.

    Raises:
        NnUNetBaselineError: neither folder given, or the two come from different exports.
        evaluate.EvaluateError: a folder that is not nnU-Net's predictions of the export, a
            missing or malformed case (see `evaluate.nnunet`).
        staging.ExistsError, staging.OutputError: `out` exists, or cannot be written.
    """
    if cv is None and test is None:
        raise NnUNetBaselineError("nothing to convert: give the model folder, the test predictions, or both")
    source = open_source(source)
    readers = []
    for label, folder in ((evaluate.CV, cv), (_TEST_SPLIT, test)):
        if folder is not None:
            selection = evaluate.Selection.parse(split=label, fold=None)
            truth, targets = evaluate.read_truth(source=source, selection=selection)
            readers.append((truth, nnunet_predictions.NnUNetPredictions(root=Path(folder), targets=targets)))
    exports = {(reader.dataset.config, reader.dataset.columns) for _, reader in readers}
    if len(exports) > 1:
        raise NnUNetBaselineError(
            f"{cv} and {test} come from different exports (configs or regions differ): score one model's "
            "predictions of one export"
        )
    counts: dict[str, int] = {}
    columns: set[str] = set()
    with staging.staged(Path(out), replace=False) as staged:
        for truth, reader in readers:
            for row in truth:
                image_id, split = int(row["image_id"]), row["split"]
                folder = staged / split / str(image_id)
                folder.mkdir(parents=True)
                masks = reader(image_id, int(row["width"]), int(row["height"]))
                for column in masks:
                    (folder / f"{column}.png").write_bytes(recipe.encode_mask_png(masks[column]))
                    columns.add(column)
                counts[f"{split} images"] = counts.get(f"{split} images", 0) + 1
                counts["masks"] = counts.get("masks", 0) + len(masks)
    counts["masks"] = counts.pop("masks", 0)
    return ConvertResult(out=Path(out), counts=counts, columns=tuple(c for c in recipe.MASK_COLUMNS if c in columns))


def _debug(path: Path) -> dict[str, str]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NnUNetBaselineError(
            "no such file: nnU-Net writes it when a fold's training starts; train this fold first", file=path
        ) from None
    except (OSError, ValueError) as error:
        raise NnUNetBaselineError(f"not a readable JSON file ({type(error).__name__}: {error})", file=path) from None
    if not isinstance(document, dict):
        raise NnUNetBaselineError("not nnU-Net's debug.json (not an object)", file=path)
    return {str(key): str(value) for key, value in document.items()}


def _integer(debug: Mapping[str, str], key: str, *, path: Path) -> int:
    try:
        return int(debug[key])
    except (KeyError, ValueError):
        raise NnUNetBaselineError(f"no integer {key!r}: not nnU-Net's debug.json", file=path) from None


def _log(folder: Path) -> dict[str, Any]:
    """What a fold's training logs say: epochs trained, seconds in epochs, the logs' span, finished."""
    logs = sorted(folder.glob("training_log_*.txt"))
    if not logs:
        raise NnUNetBaselineError(f"{folder}: no training_log_*.txt: nnU-Net has not trained this fold")
    epochs: set[int] = set()
    epoch_seconds = 0.0
    stamps: list[datetime] = []
    finished = False
    for path in logs:
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            match = _LOG_LINE.match(line)
            if match is None:
                continue
            stamps.append(datetime.strptime(match[1], "%Y-%m-%d %H:%M:%S.%f"))
            text = match[2]
            if epoch := _EPOCH.match(text):
                epochs.add(int(epoch[1]))
            elif seconds := _EPOCH_TIME.match(text):
                epoch_seconds += float(seconds[1])
            elif text == "Training done.":
                finished = True
    return {
        "epochs_trained": max(epochs) + 1 if epochs else 0,
        "finished": finished,
        "epoch_seconds": round(epoch_seconds, 1),
        "wall_seconds": round((max(stamps) - min(stamps)).total_seconds(), 1) if stamps else 0.0,
        "logs": len(logs),
    }


def _installed(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def training_record(model: Path, *, command: str) -> dict[str, Any]:
    """What nnU-Net logged while training the 5 folds and the final model, for the results file.

    Args:
        model: the trained model folder, `<trainer>__<plans>__<configuration>`, with `fold_0`
            to `fold_4` and `fold_all`.
        command: the command that wrote the results, recorded as it is.

    Returns:
        trainer, plans, configuration, the export's config, the schedule (epochs, iterations,
        whether it is nnU-Net's default), one round per model (fold, images, epochs planned
        and trained, seconds), hardware and versions.

    Raises:
        NnUNetBaselineError: a folder not named as nnU-Net names model folders, a model missing,
            a debug.json or training log missing or unreadable.
        evaluate.EvaluateError: the model folder's dataset.json is not the export's.
    """
    model = Path(model)
    parts = model.name.split("__")
    if len(parts) != 3 or not all(parts):
        raise NnUNetBaselineError(
            "not an nnU-Net model folder: its name is <trainer>__<plans>__<configuration>, "
            "e.g. nnUNetTrainer__nnUNetPlans__2d",
            file=model,
        )
    trainer, plans, configuration = parts
    dataset = nnunet_predictions.NnUNetDataset.read(model / nnunet_format.DATASET_JSON)
    development = sum(len(ids) for ids in dataset.folds)
    rounds: list[dict[str, Any]] = []
    debug: dict[str, str] = {}
    for fold in [*range(recipe.FOLDS), FINAL_FOLD]:
        folder = model / nnunet_predictions.fold_folder(fold)
        if not folder.is_dir():
            raise NnUNetBaselineError(
                f"{folder}: no such folder: the results need the {recipe.FOLDS} folds and the final model "
                f"(fold {FINAL_FOLD}, trained on train + validation, which predicts test)"
            )
        debug = _debug(folder / "debug.json")
        predicted = None if fold == FINAL_FOLD else len(dataset.folds[int(fold)])
        rounds.append(
            {
                "fold": None if fold == FINAL_FOLD else fold,
                "model": folder.name,
                "fit_images": development - (predicted or 0),
                "predicted_images": predicted,
                "epochs": _integer(debug, "num_epochs", path=folder / "debug.json"),
                "iterations_per_epoch": _integer(debug, "num_iterations_per_epoch", path=folder / "debug.json"),
                **_log(folder),
            }
        )
    schedules = sorted({(r["epochs"], r["iterations_per_epoch"]) for r in rounds})
    epochs, iterations = schedules[0]
    return {
        "framework": "nnU-Net v2",
        "model_folder": str(model),
        "trainer": trainer,
        "plans": plans,
        "configuration": configuration,
        "export": {"config": dataset.config, "regions": len(dataset.columns)},
        "schedule": {
            "epochs": epochs,
            "iterations_per_epoch": iterations,
            "same_for_every_model": len(schedules) == 1,
            "all_epochs_trained": all(r["finished"] and r["epochs_trained"] == r["epochs"] for r in rounds),
        },
        "rounds": rounds,
        "epoch_seconds": round(sum(r["epoch_seconds"] for r in rounds), 1),
        "wall_seconds": round(sum(r["wall_seconds"] for r in rounds), 1),
        # The last model's: one machine trains them all in the recipe.
        "hardware": {"device": debug.get("device"), "gpu": debug.get("gpu_name"), "cudnn": debug.get("cudnn_version")},
        "versions": {
            "covid-chestxray-seg": __version__,
            # Where covid-seg runs beside nnU-Net (the recipe's one venv); nnU-Net logs no version of its own.
            "nnunetv2": _installed("nnunetv2"),
            "torch": debug.get("torch_version"),
            "python": platform.python_version(),
        },
        "command": command,
    }


def is_default_schedule(training: Mapping[str, Any]) -> bool:
    """The record is nnU-Net's default: its default trainer, 1000 epochs of 250 iterations for
    every model, every epoch trained."""
    schedule = training["schedule"]
    return (
        training["trainer"] == DEFAULT_TRAINER
        and schedule["same_for_every_model"]
        and (schedule["epochs"], schedule["iterations_per_epoch"]) == (DEFAULT_EPOCHS, DEFAULT_ITERATIONS)
        and schedule["all_epochs_trained"]
    )


def schedule_label(training: Mapping[str, Any]) -> str:
    """The trainer and schedule in words, saying how a run differs from nnU-Net's default."""
    schedule = training["schedule"]
    text = (
        f"trainer `{training['trainer']}`, {schedule['epochs']} epochs of {schedule['iterations_per_epoch']} "
        "iterations per model"
    )
    if is_default_schedule(training):
        return text + " (nnU-Net's default schedule)"
    differences = []
    if training["trainer"] != DEFAULT_TRAINER:
        differences.append(f"not nnU-Net's default trainer `{DEFAULT_TRAINER}`")
    planned = schedule["epochs"] * schedule["iterations_per_epoch"]
    if planned < DEFAULT_EPOCHS * DEFAULT_ITERATIONS:
        differences.append("shortened")
    elif (schedule["epochs"], schedule["iterations_per_epoch"]) != (DEFAULT_EPOCHS, DEFAULT_ITERATIONS):
        differences.append("changed")
    if not schedule["same_for_every_model"]:
        differences.append("not the same for every model")
    if not schedule["all_epochs_trained"]:
        trained = ", ".join(str(r["epochs_trained"]) for r in training["rounds"])
        differences.append(f"stopped early (epochs trained per model: {trained})")
    return (
        text + f" ({'; '.join(differences)}: NOT nnU-Net's default of `{DEFAULT_TRAINER}`, {DEFAULT_EPOCHS} epochs "
        f"of {DEFAULT_ITERATIONS} iterations)"
    )


def write_results(*, source: str | Source, predictions: Path, model: Path, command: str, path: Path) -> dict[str, Any]:
    """Score the converted predictions against the atlas (cross-validation and test, as the
    U-Net's are) and write them with nnU-Net's training record to `path`.

    Args:
        source: the ground truth.
        predictions: `convert`'s output, with train, validation and test predictions.
        model: the trained model folder (`training_record`).
        command: the command that writes the results, recorded.
        path: the results file to write (`baselines/nnunet.json`).

    Returns:
        The results written.

    Raises:
        NnUNetBaselineError: the model folder lacks a model or its logs.
        evaluate.EvaluateError: predictions missing for an image.
        results.ResultsError: `path` cannot be written.
    """
    training = training_record(model, command=command)
    written = {
        "baseline": NAME,
        "training": training,
        "protocol": {
            "bootstrap": {"unit": "patient", "samples": evaluate.BOOTSTRAP_SAMPLES, "seed": evaluate.SEED},
            "atlas": "covid-seg baseline atlas: fitted on the same images as each nnU-Net model (per fold for cv)",
            "difference": "nnU-Net minus atlas per image, over the pairs both score (evaluate --compare)",
            "test_model": f"fold {FINAL_FOLD}: trained on train + validation, as the export's imagesTr",
        },
        "scores": results.score_against_atlas(source=source, predictions=Path(predictions), name=NAME),
    }
    results.write_results_file(written, path)
    return written


def committed_results() -> Path | None:
    """The repository's committed nnU-Net results file, or None (none is committed until a GPU run)."""
    path = Path(recipe.__file__).resolve().parent / DEFAULT_RESULTS
    return path if path.is_file() else None


def card_table(written: Mapping[str, Any]) -> str:
    """The card's nnU-Net table: per class, Dice of the atlas and nnU-Net for cross-validation
    and test with intervals, and the paired difference; then the trainer and schedule (said to
    be shortened when it is not nnU-Net's default), the hardware, time and command.

    Raises:
        NnUNetBaselineError: not an nnU-Net results file.
    """
    if written.get("baseline") != NAME:
        raise NnUNetBaselineError(f"not an nnU-Net results file (baseline {written.get('baseline')!r})")
    scores, training = written["scores"], written["training"]
    lines = results.comparison_rows(scores, model=NAME, label="nnU-Net")
    cv = scores[evaluate.CV][NAME]
    folds = cv["classes"].get("Left Lung", {}).get("dice", {}).get("folds") or []
    per_fold = ", ".join(f"{value:.3f}" for value in folds if value is not None) or "–"
    versions, hardware = training["versions"], training["hardware"]
    machine = hardware.get("gpu") or hardware.get("device") or "an unrecorded device"
    not_predicted = ", ".join(cv.get("not_predicted") or []) or "none"
    lines += [
        "",
        f"Dice, mean [95 % patient-bootstrap interval]. cv: out-of-fold predictions for {cv['counts']['images']} "
        f"images, each fold's by a model trained on the other four folds (the export's splits_final.json); test: "
        f"{scores[_TEST_SPLIT][NAME]['counts']['images']} images, by the model trained on train + validation "
        f"(fold {FINAL_FOLD}). Left Lung per fold: {per_fold}. nnU-Net - atlas: the mean per-image difference over "
        f"the pairs both score, with its own interval. Not predicted (no training pixel, so no region): "
        f"{not_predicted}.",
        f"nnU-Net v2 {versions.get('nnunetv2') or '(version not recorded)'}: {schedule_label(training)}; plans "
        f"`{training['plans']}`, configuration `{training['configuration']}`, on the `{training['export']['config']}` "
        f"export; {len(training['rounds'])} models in {training['epoch_seconds'] / 3600:.1f} hours of epochs "
        f"({training['wall_seconds'] / 3600:.1f} hours with validation) on {machine}, torch {versions.get('torch')}. "
        f"Command: `{training['command']}`.",
    ]
    return "\n".join(lines)
