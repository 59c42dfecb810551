"""The learned baseline's committed results file, and the card's table rendered from it.

`covid-seg baseline unet --results FILE` scores the U-Net's predictions (the out-of-fold
ones for cross-validation, pooled and per fold, and the test ones) and the atlas under the
same protocol (for cross-validation: an atlas per fold, fitted on the other four), with the
paired U-Net minus atlas difference per class (`evaluate.compare`: the mean of the per-image
differences with a patient-bootstrap interval), all by `covid-seg evaluate`'s functions, and
writes them with the training record (the exact command, versions, seed, CPU time). The
card's baseline table is `card_table` of that file: never typed by hand.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping
from pathlib import Path

import covid_chestxray_seg as recipe
from covid_chestxray_seg_tools import evaluate
from covid_chestxray_seg_tools.baselines import atlas
from covid_chestxray_seg_tools.errors import CovidSegError
from covid_chestxray_seg_tools.source import Source, open_source

__all__ = [
    "COMMITTED_RESULTS",
    "CV",
    "DEFAULT_RESULTS",
    "LEARNT_DICE",
    "TEST_SPLIT",
    "ResultsError",
    "card_table",
    "committed_results",
    "comparison_rows",
    "format_summary",
    "learnt_text",
    "read_results",
    "score_against_atlas",
    "write_results",
    "write_results_file",
]

DEFAULT_RESULTS = Path("baselines") / "unet.json"
# The committed results file, in a clone of the repository (an installed package has none).
COMMITTED_RESULTS = Path(recipe.__file__).resolve().parent / DEFAULT_RESULTS
TEST_SPLIT = "test"
CV = evaluate.CV


class ResultsError(CovidSegError, ValueError):
    """A results file that cannot be written or read."""


def _summary(result: Mapping) -> dict:
    """What the results file keeps of an `evaluate.score` result: everything but the per-image scores."""
    return {key: value for key, value in result.items() if key != "images"}


def score_against_atlas(*, source: str | Source, predictions: Path, name: str) -> dict:
    """A learned baseline's predictions and the atlas's, scored under cross-validation (pooled,
    with each fold's mean) and on test by `covid-seg evaluate`'s protocol, with the paired
    baseline minus atlas difference (`evaluate.compare`).

    Args:
        source: the ground truth: a built folder or a Hub repo id.
        predictions: the baseline's OUT/<split>/<image_id>/<mask column>.png for every train,
            validation and test image (out-of-fold for train and validation).
        name: the baseline's key in the result ("unet", "nnunet").

    Returns:
        ``{"cv": {name, "atlas", "difference"}, "test": {...}}``.

    Raises:
        evaluate.EvaluateError: an image without predictions, a prediction that cannot be scored.
    """
    scores = {}
    source = open_source(source)
    with tempfile.TemporaryDirectory(prefix="covid-seg-results-") as work:
        for label in (CV, TEST_SPLIT):
            selection = evaluate.Selection.parse(split=label, fold=None)
            truth, targets = evaluate.read_truth(source=source, selection=selection)
            atlas_folder = Path(work) / f"atlas-{label}"
            atlas.atlas_predictions(source=source, out=atlas_folder, split=label)
            results = {}
            for kind, folder in ((name, Path(predictions)), ("atlas", atlas_folder)):
                predicted = evaluate.load_predictions(path=folder, targets=targets)
                results[kind] = evaluate.score(
                    truth=truth, predictions=predicted, split=label, predicted=predicted.predicted_columns
                )
            scores[label] = {
                name: _summary(results[name]),
                "atlas": _summary(results["atlas"]),
                "difference": evaluate.compare(a=results[name], b=results["atlas"]),
            }
    return scores


def write_results_file(results: Mapping, path: Path) -> None:
    """Write a results file as JSON (no NaN), its folder made when missing.

    Raises:
        ResultsError: `path` cannot be written.
    """
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(results, indent=1, allow_nan=False) + "\n", encoding="utf-8")
    except OSError as error:
        raise ResultsError(f"{path}: cannot write the results file ({error.strerror or error})") from None


def write_results(*, source: str | Source, predictions: Path, training: Mapping, path: Path) -> dict:
    """Score the U-Net's `predictions` (see `score_against_atlas`) and write them with the
    `training` record to `path`.

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
            "atlas": "covid-seg baseline atlas: fitted on the same images as each U-Net (per fold for cv)",
            "difference": "U-Net minus atlas per image, over the pairs both score (evaluate --compare)",
        },
        "scores": score_against_atlas(source=source, predictions=Path(predictions), name="unet"),
    }
    write_results_file(results, path)
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


def _cell(mean: float | None, interval: list | None, *, signed: bool = False) -> str:
    if mean is None or interval is None:
        return "–"
    form = "+.3f" if signed else ".3f"
    return f"{mean:{form}} [{interval[0]:{form}}, {interval[1]:{form}}]"


def _dice(result: Mapping, name: str) -> str:
    entry = result["classes"].get(name)
    return "–" if entry is None else _cell(entry["dice"]["mean"], entry["dice"]["ci95"])


def _difference(comparison: Mapping, name: str) -> str:
    entry = comparison["classes"].get(name)
    if entry is None:
        return "–"
    return _cell(entry["dice"]["difference"], entry["dice"]["ci95"], signed=True)


def _headline(result: Mapping) -> str:
    summary = result.get("summary")
    return "–" if not summary else _cell(summary["dice"]["mean"], summary["dice"]["ci95"])


def _headline_difference(comparison: Mapping) -> str:
    summary = comparison.get("summary")
    return "–" if not summary else _cell(summary["dice"]["difference"], summary["dice"]["ci95"], signed=True)


def comparison_rows(scores: Mapping, *, model: str, label: str) -> list[str]:
    """The Markdown table both baselines' card tables open with: the headline number first (the
    macro mean Dice over the headline classes), then per class Dice of the atlas and the model for
    cross-validation and test with intervals, and the paired model minus atlas difference.

    Args:
        scores: a results file's "scores" (`score_against_atlas` per split).
        model: the model's key in each entry ("unet", "nnunet").
        label: its name in the header.

    Returns:
        The header, its rule and the rows; a dash where a result has no number.
    """
    lines = [
        f"| Class | atlas, cv | {label}, cv | {label} - atlas, cv "
        f"| atlas, test | {label}, test | {label} - atlas, test |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    headline = [f"**Headline** ({len(recipe.HEADLINE_CLASSES)} classes)"]
    for split in (CV, TEST_SPLIT):
        entry = scores[split]
        headline += [_headline(entry["atlas"]), _headline(entry[model]), _headline_difference(entry["difference"])]
    lines.append("| " + " | ".join(headline) + " |")
    for name in recipe.CLASSES:
        row = [name]
        for split in (CV, TEST_SPLIT):
            entry = scores[split]
            row += [_dice(entry["atlas"], name), _dice(entry[model], name), _difference(entry["difference"], name)]
        lines.append("| " + " | ".join(row) + " |")
    return lines


def card_table(results: Mapping) -> str:
    """The card's table: `comparison_rows` for the U-Net; then how it was trained."""
    scores, training = results["scores"], results["training"]
    lines = comparison_rows(scores, model="unet", label="U-Net")
    cv = scores[CV]["unet"]
    folds = cv["classes"]["Left Lung"]["dice"].get("folds") or []
    per_fold = ", ".join(f"{value:.3f}" for value in folds if value is not None)
    settings, versions = training["settings"], training["versions"]
    lines += [
        "",
        f"Dice, mean [95 % patient-bootstrap interval]. cv: out-of-fold predictions for "
        f"{cv['counts']['images']} images, each fold's by a model trained on the other four folds; test: "
        f"{scores[TEST_SPLIT]['unet']['counts']['images']} images, by a model trained on train + validation. "
        f"Left Lung per fold: {per_fold}. U-Net - atlas: the mean per-image difference over the pairs both "
        "score, with its own interval. Headline: the macro mean over the headline classes "
        f"({', '.join(recipe.HEADLINE_CLASSES)}) of each class's mean Dice, its interval from resampling "
        "patients for all of them at once.",
        f"U-Net: MONAI `UNet`, channels {tuple(settings['channels'])}, random initialisation, "
        f"{settings['epochs']} epochs at {settings['size']} px per model, seed {settings['seed']}; "
        f"{len(training['rounds'])} models in {training['cpu_seconds'] / 60:.0f} CPU minutes "
        f"({training['wall_seconds'] / 60:.0f} minutes on {versions['cpus']} cores), torch {versions['torch']}, "
        f"monai {versions['monai']}. Command: `{training['command']}`.",
        "",
        learnt_text(results),
    ]
    severity = _severity_text(scores[CV])
    if severity:
        lines += ["", severity]
    return "\n".join(lines)


def _severity_text(scores: Mapping) -> str:
    """The cross-validation agreement with the expert severity scores, U-Net and atlas beside the truth's masks."""
    unet, atlas = scores["unet"].get("severity"), scores["atlas"].get("severity")
    if not unet or not atlas:
        return ""
    parts = []
    for column, entry in unet.items():
        interval = entry["interval"]
        ours = "–" if entry["predicted"] is None else f"{entry['predicted']:.2f}"
        if interval is not None:
            ours += f" [{interval[0]:.2f}, {interval[1]:.2f}]"
        theirs = atlas[column]["predicted"]
        truth = entry["truth"]
        parts.append(
            f"`{column}` U-Net {ours}, atlas {'–' if theirs is None else f'{theirs:.2f}'}, the truth's masks "
            f"{'–' if truth is None else f'{truth:.2f}'} (n = {entry['n']})"
        )
    return (
        "Agreement with the radiologists (cv): Spearman's rho of the opacity burden from each model's own masks "
        "against ieee8023's expert scores: " + "; ".join(parts) + "."
    )


# A class the U-Net "learns" reaches this cross-validation Dice; below it the model all but
# never draws the class (0.002 for Consolidation against the atlas's 0.102).
LEARNT_DICE = 0.1


def learnt_text(results: Mapping) -> str:
    """Which classes the U-Net learns (cross-validation Dice from `LEARNT_DICE` up), which it
    does not, and why: how few development images hold each, under a loss that weighs every
    class alike."""
    unet, atlas = results["scores"][CV]["unet"]["classes"], results["scores"][CV]["atlas"]["classes"]

    def dice(entry: Mapping | None) -> float | None:
        return None if entry is None else entry["dice"]["mean"]

    learnt = [name for name in recipe.CLASSES if (dice(unet.get(name)) or 0.0) >= LEARNT_DICE]
    missed = []
    for name in recipe.CLASSES:
        if name in learnt:
            continue
        ours, theirs = dice(unet.get(name)), dice(atlas.get(name))
        shown = "not scored" if ours is None else f"{ours:.3f}"
        against = "" if theirs is None or ours is None else f", the atlas {theirs:.3f}"
        images = recipe.DEVELOPMENT_MASK_IMAGES[name]
        missed.append(f"{name} {shown}{against} ({images} image{'' if images == 1 else 's'})")
    return (
        f"What the U-Net learns: {len(learnt)} of {len(recipe.CLASSES)} classes ({', '.join(learnt)}), "
        f"cross-validation Dice from {LEARNT_DICE} up. It all but never draws the others (cv Dice; in "
        f"parentheses the development images holding a mask of the class): {'; '.join(missed)}. Few images "
        "hold each, the devices are a few pixels wide, and the loss weighs every class alike, so they add "
        "little to it; a model that aims at them needs class weights or a sampling rule, chosen on the "
        "training folds (numbers used to choose it are optimistic for it)."
    )


def format_summary(results: Mapping) -> str:
    """A few lines for the terminal: Dice per class, U-Net against the atlas."""
    lines = ["Dice, U-Net vs atlas (cv / test):"]
    headline = [
        " vs ".join(_headline(results["scores"][label][kind]).split(" [")[0] for kind in ("unet", "atlas"))
        for label in (CV, TEST_SPLIT)
    ]
    lines.append(f"  headline ({len(recipe.HEADLINE_CLASSES)} classes): " + " / ".join(headline))
    for name in recipe.CLASSES:
        parts = []
        for label in (CV, TEST_SPLIT):
            entry = results["scores"][label]
            ours, theirs = (
                entry[kind]["classes"].get(name, {}).get("dice", {}).get("mean") for kind in ("unet", "atlas")
            )
            parts.append(f"{'–' if ours is None else f'{ours:.3f}'} vs {'–' if theirs is None else f'{theirs:.3f}'}")
        lines.append(f"  {name}: " + " / ".join(parts))
    return "\n".join(lines)
