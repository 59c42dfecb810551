"""The learned baseline's committed results file, and the card's table rendered from it.

`covid-seg baseline unet --results FILE` scores the U-Net's predictions (the out-of-fold
ones for cross-validation, pooled and per fold, and the test ones) and the atlas under the
same protocol (for cross-validation: an atlas per fold, fitted on the other four), with the
paired U-Net minus atlas difference of Dice per class (the mean of the per-image differences
with a patient-bootstrap interval), and writes them with the training record (the exact
command, versions, seed, CPU time). The card's baseline table is `card_table` of that file:
never typed by hand.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

import covid_chestxray_seg as recipe
from covid_chestxray_seg_tools import baseline, evaluate
from covid_chestxray_seg_tools.errors import CovidSegError
from covid_chestxray_seg_tools.source import load_rows

__all__ = [
    "COMMITTED_RESULTS",
    "DEFAULT_RESULTS",
    "ResultsError",
    "card_table",
    "committed_results",
    "format_summary",
    "read_results",
    "write_results",
]

DEFAULT_RESULTS = Path("baselines") / "unet.json"
# The committed results file, in a clone of the repository (an installed package has none).
COMMITTED_RESULTS = Path(recipe.__file__).resolve().parent / DEFAULT_RESULTS
DEVELOPMENT_SPLITS = tuple(recipe.FOLD_SPLITS)
TEST_SPLIT = "test"
CV = "cv"


class ResultsError(CovidSegError, ValueError):
    """A results file that cannot be written or read."""


def _predicted(root: Path, split: str, rows: Iterable[dict]) -> list[dict]:
    """The rows that have a prediction folder (a run with --limit predicts some images only)."""
    folder = Path(root) / split
    return [row for row in rows if (folder / str(row["image_id"])).is_dir()]


def _score(rows: list[dict], predictions, *, label: str) -> dict:
    return evaluate.score(truth=rows, predictions=predictions, split=label)


def _difference(unet_result: dict, atlas_result: dict) -> dict:
    """Per class: U-Net minus atlas Dice over the images both scored, mean and patient-bootstrap interval."""
    atlas_by_image = {image["image_id"]: image for image in atlas_result["images"]}
    classes = {}
    for name in recipe.CLASSES:
        values, groups = [], []
        for image in unet_result["images"]:
            ours, theirs = image["classes"][name], atlas_by_image[image["image_id"]]["classes"][name]
            # A pair skipped for either (null truth, or both empty) is left out of the difference.
            if "dice" in ours and "dice" in theirs:
                values.append(ours["dice"] - theirs["dice"])
                patient = image["patient_id"]
                groups.append(("image", image["image_id"]) if patient is None else ("patient", patient))
        if values:
            low, high = evaluate.bootstrap_interval(values=values, groups=groups)
            classes[name] = {"mean": float(np.mean(values)), "ci95": [low, high], "n": len(values)}
        else:
            classes[name] = {"mean": None, "ci95": None, "n": 0}
    return classes


def _summary(result: dict) -> dict:
    """What the results file keeps of a `score` result: per class, Dice and HD95 with intervals."""
    return {
        "counts": result["counts"],
        "classes": {
            name: {"n": entry["n"], "dice": entry["dice"], "iou": entry["iou"], "hd95": entry["hd95"]}
            for name, entry in result["classes"].items()
        },
    }


def _atlas_predictions(atlas: baseline.Atlas):
    return lambda image_id, width, height: atlas.masks(width=width, height=height)


def score_all(*, source: str, predictions: Path) -> dict:
    """U-Net and atlas scores for cross-validation (pooled and per fold) and test, and their
    paired differences, for the images `predictions` holds."""
    columns = (*evaluate.TRUTH_COLUMNS, "fold")
    development = []
    for split in DEVELOPMENT_SPLITS:
        read = load_rows(source=source, split=split, columns=columns)
        development += [dict(row, split=split) for row in _predicted(predictions, split, read)]
    test = _predicted(predictions, TEST_SPLIT, load_rows(source=source, split=TEST_SPLIT, columns=columns))
    if not development or not test:
        raise ResultsError(f"{predictions}: needs out-of-fold predictions for train/validation and test predictions")
    folders = {
        split: evaluate.FolderPredictions(
            root=predictions,
            split=split,
            sizes=evaluate.image_sizes(row for row in (development + test) if row.get("split", TEST_SPLIT) == split),
        )
        for split in (*DEVELOPMENT_SPLITS, TEST_SPLIT)
        if any(row.get("split", TEST_SPLIT) == split for row in development + test)
    }
    split_of = {int(row["image_id"]): row.get("split", TEST_SPLIT) for row in development + test}

    def unet(image_id, width, height):
        return folders[split_of[image_id]](image_id, width, height)

    # Atlases: per fold fitted on the other folds' masks, and on train + validation for test.
    masks = {}
    for split in DEVELOPMENT_SPLITS:
        for row in load_rows(source=source, split=split, columns=("image_id", "fold", *recipe.MASK_COLUMNS)):
            masks[int(row["image_id"])] = row
    folds = sorted({row["fold"] for row in development})
    atlases = {fold: baseline.fit_atlas(rows=[row for row in masks.values() if row["fold"] != fold]) for fold in folds}
    atlas_test = baseline.fit_atlas(rows=list(masks.values()))
    fold_of = {int(row["image_id"]): row["fold"] for row in development}

    def atlas_cv(image_id, width, height):
        return atlases[fold_of[image_id]].masks(width=width, height=height)

    out: dict = {}
    for label, rows, atlas in ((CV, development, atlas_cv), (TEST_SPLIT, test, _atlas_predictions(atlas_test))):
        ours, theirs = _score(rows, unet, label=label), _score(rows, atlas, label=label)
        out[label] = {"unet": _summary(ours), "atlas": _summary(theirs), "difference_dice": _difference(ours, theirs)}
        if label == CV:
            out[label]["folds"] = {
                str(fold): _summary(_score([row for row in rows if row["fold"] == fold], unet, label=f"cv fold {fold}"))
                for fold in folds
            }
    return out


def write_results(*, source: str, predictions: Path, training: Mapping, path: Path) -> dict:
    """Score `predictions` (see `score_all`) and write them with the `training` record to `path`.

    Returns:
        The results written.

    Raises:
        ResultsError: predictions missing for a split, or `path` cannot be written.
    """
    results = {
        "baseline": "unet",
        "training": dict(training),
        "protocol": {
            "bootstrap": {"unit": "patient", "samples": evaluate.BOOTSTRAP_SAMPLES, "seed": evaluate.SEED},
            "atlas": "per-class mean shape (covid-seg baseline atlas), fitted on the same images as each U-Net",
            "difference": "U-Net minus atlas Dice per image, over the pairs both scored",
        },
        "scores": score_all(source=source, predictions=Path(predictions)),
    }
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(results, indent=1, allow_nan=False) + "\n", encoding="utf-8")
    except OSError as error:
        raise ResultsError(f"{path}: cannot write the results file ({error.strerror or error})") from None
    return results


def committed_results() -> Path | None:
    """The repository's committed results file, or None outside a clone."""
    return COMMITTED_RESULTS if COMMITTED_RESULTS.is_file() else None


def read_results(path: Path) -> dict:
    """A results file `write_results` wrote.

    Raises:
        ResultsError: missing or not a results file.
    """
    try:
        results = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ResultsError(f"{path}: not a readable results file ({error})") from None
    if not isinstance(results, dict) or "scores" not in results or "training" not in results:
        raise ResultsError(f"{path}: not a results file of covid-seg baseline unet (no scores or training)")
    return results


def _cell(metric: Mapping | None, digits: int = 3, *, signed: bool = False) -> str:
    if not metric or metric.get("mean") is None:
        return "–"
    low, high = metric["ci95"]
    form = f"+.{digits}f" if signed else f".{digits}f"
    return f"{metric['mean']:{form}} [{low:{form}}, {high:{form}}]"


def card_table(results: Mapping) -> str:
    """The card's table: per class, Dice of the atlas and the U-Net for cross-validation and
    test with intervals, and the paired U-Net minus atlas difference; then how it was trained."""
    scores, training = results["scores"], results["training"]
    lines = [
        "| Class | atlas, cv | U-Net, cv | U-Net - atlas, cv | atlas, test | U-Net, test | U-Net - atlas, test |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name in recipe.CLASSES:
        row = [name]
        for label in (CV, TEST_SPLIT):
            entry = scores[label]
            row += [
                _cell(entry["atlas"]["classes"][name]["dice"]),
                _cell(entry["unet"]["classes"][name]["dice"]),
                _cell(entry["difference_dice"][name], signed=True),
            ]
        lines.append("| " + " | ".join(row) + " |")
    folds = scores[CV].get("folds", {})
    per_fold = ", ".join(
        f"fold {fold} {entry['classes']['Left Lung']['dice']['mean']:.3f}"
        for fold, entry in folds.items()
        if entry["classes"]["Left Lung"]["dice"]["mean"] is not None
    )
    settings, versions = training["settings"], training["versions"]
    lines += [
        "",
        f"Dice, mean [95 % patient-bootstrap interval]. cv: the out-of-fold predictions of {len(folds)} models "
        f"({scores[CV]['unet']['counts']['images']} images), each trained on the other folds; test: one model "
        f"trained on train + validation ({scores[TEST_SPLIT]['unet']['counts']['images']} images). "
        f"Left Lung per fold: {per_fold}.",
        f"U-Net: MONAI `UNet`, channels {tuple(settings['channels'])}, random initialisation, "
        f"{settings['epochs']} epochs at {settings['size']} px per model, seed {settings['seed']}, "
        f"CPU time {training['cpu_seconds'] / 60:.0f} min (wall {training['wall_seconds'] / 60:.0f} min, "
        f"{versions['cpus']} cores); torch {versions['torch']}, monai {versions['monai']}. "
        f"Command: `{training['command']}`.",
    ]
    return "\n".join(lines)


def format_summary(results: Mapping) -> str:
    """A few lines for the terminal: Dice per class, U-Net against the atlas."""
    lines = ["Dice (cv / test): U-Net vs atlas"]
    for name in recipe.CLASSES:
        parts = []
        for label in (CV, TEST_SPLIT):
            entry = results["scores"][label]
            ours, theirs = (
                entry["unet"]["classes"][name]["dice"]["mean"],
                entry["atlas"]["classes"][name]["dice"]["mean"],
            )
            parts.append(
                "–" if ours is None else f"{ours:.3f} vs {theirs:.3f}" if theirs is not None else f"{ours:.3f}"
            )
        lines.append(f"  {name}: " + " / ".join(parts))
    return "\n".join(lines)
