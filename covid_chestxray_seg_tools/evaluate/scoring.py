"""Scoring predictions against ground-truth rows, per image and class, summarised per class;
and the paired comparison of two sets of predictions over the same pairs.

Skipped, and counted: a pair whose true mask is null (the class is annotated on the image but
upstream has no mask), a pair the build flags `missing:<mask column>` (the class is empty on the
image because its annotation was left out, not because it is absent), and a pair where prediction
and truth are both empty. Per class: the mean over the scored pairs with a patient-bootstrap 95 %
interval; under cross-validation also the mean of each fold.
"""

from __future__ import annotations

from collections.abc import Collection, Hashable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

import covid_chestxray_seg as recipe
from covid_chestxray_seg_tools.evaluate.bootstrap import BOOTSTRAP_SAMPLES, CONFIDENCE, SEED, bootstrap_interval
from covid_chestxray_seg_tools.evaluate.errors import EvaluateError
from covid_chestxray_seg_tools.evaluate.metrics import (
    DEFAULT_NSD_TOLERANCE_PCT,
    METRICS,
    TUBULAR_CLASSES,
    pair_scores,
)
from covid_chestxray_seg_tools.evaluate.predictions import Predictions
from covid_chestxray_seg_tools.evaluate.protocol import CV, FLAGS_COLUMN, FOLD_COLUMN
from covid_chestxray_seg_tools.evaluate.result import (
    Bootstrap,
    ClassScores,
    Comparison,
    Counts,
    ImageScores,
    Metric,
    MetricDifference,
    MetricSummary,
    PairResult,
    ScoreResult,
    SkippedCounts,
    SkipReason,
)

__all__ = ["SKIP_REASONS", "compare", "resolve_classes", "score"]

SKIP_REASONS: tuple[SkipReason, ...] = ("null_truth", "flagged_missing", "both_empty")


def resolve_classes(names: Sequence[str]) -> list[str]:
    """`--classes` as class names, in class order.

    Args:
        names: class names ("Left Lung") or mask columns ("mask_left_lung").

    Returns:
        The class names, each once, in the dataset's class order.

    Raises:
        EvaluateError: a name that is neither a class nor a mask column.
    """
    by_column = dict(zip(recipe.MASK_COLUMNS, recipe.CLASSES))
    chosen: set[str] = set()
    for name in names:
        if name in recipe.CLASSES:
            chosen.add(name)
        elif name in by_column:
            chosen.add(by_column[name])
        else:
            raise EvaluateError(
                f"not a class of this dataset; give class names ({', '.join(recipe.CLASSES)}) "
                "or mask columns (mask_left_lung, ...)",
                setting="classes",
                value=name,
            )
    return [name for name in recipe.CLASSES if name in chosen]


def _group(image_id: int, patient: Hashable | None) -> Hashable:
    # An image without a patient id is a patient of its own.
    return ("image", image_id) if patient is None else ("patient", patient)


def _mean(values: Sequence[float]) -> float | None:
    return float(np.mean(values)) if values else None


def _summary(values: Sequence[float], groups: Sequence[Hashable], *, samples: int, seed: int) -> MetricSummary:
    if not values:
        return MetricSummary(mean=None, ci95=None, n=0)
    low, high = bootstrap_interval(values=values, groups=groups, samples=samples, seed=seed)
    return MetricSummary(mean=float(np.mean(values)), ci95=[low, high], n=len(values))


def score(
    *,
    truth: Iterable[Mapping[str, Any]],
    predictions: Predictions,
    split: str,
    fold: int | None = None,
    classes: Sequence[str] | None = None,
    predicted: Collection[str] | None = None,
    tolerance_pct: float = DEFAULT_NSD_TOLERANCE_PCT,
    samples: int = BOOTSTRAP_SAMPLES,
    seed: int = SEED,
) -> ScoreResult:
    """Score predictions against ground-truth rows.

    Args:
        truth: rows with image_id, patient_id, width, height and the mask columns (stored or
            decoded); under cross-validation `fold` too; `quality_flags` where the source has it.
        predictions: (image_id, width, height) -> {mask column: mask}; a column left out is an
            empty prediction.
        split: the split scored, or "cv" (then the result has each fold's mean too).
        fold: the fold scored, under cross-validation.
        classes: the class names to score; None scores every class in `predicted`.
        predicted: the mask columns predicted for at least one image (None: all); without
            `classes`, the others are reported as not predicted instead of scored as empty.
        tolerance_pct: NSD's tolerance in percent of the image's diagonal.
        samples, seed: the bootstrap's.

    Returns:
        What `--json` writes (see `ScoreResult`): ``{"split", "fold", "classes": {CLASS: {"n",
        METRIC: {"mean", "ci95", "n"[, "folds"]}, ..., "skipped"}}, "not_predicted",
        "nsd_tolerance_pct", "counts", "bootstrap", "images": [{"image_id", "patient_id",
        "split", "fold", "classes": {CLASS: {METRIC: value} or {"skipped": reason}}}]}``,
        classes in class order.

    Raises:
        EvaluateError: no class or no image to score, a true mask of the wrong size, a
            prediction of the wrong size.
    """
    columns = dict(zip(recipe.CLASSES, recipe.MASK_COLUMNS))
    if classes is None:
        scored = [name for name in recipe.CLASSES if predicted is None or columns[name] in predicted]
        not_predicted = [name for name in recipe.CLASSES if name not in scored]
    else:
        scored, not_predicted = list(classes), []
    if not scored:
        raise EvaluateError(
            f"split {split}: no class to score: the predictions hold no mask of any class",
            fix=f"choose the classes to score ({recipe.setting('classes')})",
        )
    per_fold = split == CV and fold is None
    values: dict[str, dict[Metric, list[float]]] = {name: {metric: [] for metric in METRICS} for name in scored}
    groups: dict[str, dict[Metric, list[Hashable]]] = {name: {metric: [] for metric in METRICS} for name in scored}
    folds: dict[str, dict[Metric, list[int | None]]] = {name: {metric: [] for metric in METRICS} for name in scored}
    skipped = {
        name: SkippedCounts(null_truth=0, flagged_missing=0, both_empty=0, distance_one_side_empty=0) for name in scored
    }
    images: list[ImageScores] = []
    patients: set[Hashable] = set()
    # In image id order, so the numbers do not depend on the order the rows were read in.
    for row in sorted(truth, key=lambda row: int(row["image_id"])):
        image_id, width, height = int(row["image_id"]), int(row["width"]), int(row["height"])
        group = _group(image_id, row.get("patient_id"))
        patients.add(group)
        flags = set(row.get(FLAGS_COLUMN) or ())
        predicted_masks = predictions(image_id, width, height)
        results: dict[str, PairResult] = {}
        for name in scored:
            column = columns[name]
            flagged = recipe.quality_flag("missing", column) in flags
            truth_mask = None if flagged else recipe.decode_mask(row[column])
            if truth_mask is None:
                reason: SkipReason = "flagged_missing" if flagged else "null_truth"
                skipped[name][reason] += 1
                results[name] = PairResult(skipped=reason)
                continue
            if truth_mask.shape != (height, width):
                raise EvaluateError(
                    f"split {row.get('split', split)}: image {image_id}: {column} is "
                    f"{truth_mask.shape[1]}x{truth_mask.shape[0]}, the image {width}x{height}"
                )
            result = pair_scores(
                prediction=predicted_masks.get(column),
                truth=truth_mask,
                tolerance_pct=tolerance_pct,
                centreline=name in TUBULAR_CLASSES,
            )
            if result is None:
                skipped[name]["both_empty"] += 1
                results[name] = PairResult(skipped="both_empty")
                continue
            if result.hd95 is None:
                skipped[name]["distance_one_side_empty"] += 1
            pair = result.as_dict()
            for metric in METRICS:
                value = pair[metric]
                if value is not None:
                    values[name][metric].append(value)
                    groups[name][metric].append(group)
                    folds[name][metric].append(row.get(FOLD_COLUMN))
            results[name] = pair
        images.append(
            ImageScores(
                image_id=image_id,
                patient_id=row.get("patient_id"),
                split=row.get("split", split),
                fold=row.get(FOLD_COLUMN),
                classes=results,
            )
        )
    if not images:
        raise EvaluateError(f"split {split} has no images to score")

    summary: dict[str, ClassScores] = {}
    for name in scored:
        metrics: dict[Metric, MetricSummary] = {}
        for metric in METRICS:
            metrics[metric] = _summary(values[name][metric], groups[name][metric], samples=samples, seed=seed)
            if per_fold:
                metrics[metric]["folds"] = [
                    _mean([value for value, of in zip(values[name][metric], folds[name][metric]) if of == k])
                    for k in range(recipe.FOLDS)
                ]
        summary[name] = ClassScores(
            n=len(values[name]["dice"]),
            dice=metrics["dice"],
            iou=metrics["iou"],
            nsd=metrics["nsd"],
            cldice=metrics["cldice"],
            hd95=metrics["hd95"],
            assd=metrics["assd"],
            hd95_pct=metrics["hd95_pct"],
            assd_pct=metrics["assd_pct"],
            skipped=skipped[name],
        )
    counts = Counts(
        images=len(images),
        patients=len(patients),
        pairs=len(images) * len(scored),
        scored=sum(entry["n"] for entry in summary.values()),
        skipped_null_truth=sum(s["null_truth"] for s in skipped.values()),
        skipped_flagged_missing=sum(s["flagged_missing"] for s in skipped.values()),
        skipped_both_empty=sum(s["both_empty"] for s in skipped.values()),
        distance_missing_one_side_empty=sum(s["distance_one_side_empty"] for s in skipped.values()),
    )
    if per_fold:
        counts["fold_images"] = [sum(image["fold"] == k for image in images) for k in range(recipe.FOLDS)]
    return ScoreResult(
        split=split,
        fold=fold,
        classes=summary,
        not_predicted=not_predicted,
        nsd_tolerance_pct=tolerance_pct,
        counts=counts,
        bootstrap=Bootstrap(unit="patient", samples=samples, seed=seed, confidence=CONFIDENCE, method="percentile"),
        images=images,
    )


def compare(*, a: ScoreResult, b: ScoreResult, samples: int = BOOTSTRAP_SAMPLES, seed: int = SEED) -> Comparison:
    """The paired difference A - B of two `score` results over the same ground truth.

    Args:
        a, b: `score` results of two sets of predictions for the same images.
        samples, seed: the bootstrap's.

    Returns:
        ``{"classes": {CLASS: {METRIC: {"n", "mean_a", "mean_b", "difference", "ci95",
        "excludes_zero"}}}, "not_compared": [CLASS, ...]}``: per class scored in both, per
        metric, over the image-class pairs both score (for the distances: where both have
        one), the mean of A - B with a patient-bootstrap interval, and whether the interval
        excludes 0. `not_compared` lists the classes scored in only one of the two.

    Raises:
        EvaluateError: the two results are not of the same images.
    """
    images_b = {image["image_id"]: image for image in b["images"]}
    if sorted(images_b) != sorted(image["image_id"] for image in a["images"]):
        raise EvaluateError("the two sets of predictions were scored on different images", setting="compare")
    names = [name for name in a["classes"] if name in b["classes"]]
    classes: dict[str, dict[Metric, MetricDifference]] = {}
    for name in names:
        entry: dict[Metric, MetricDifference] = {}
        for metric in METRICS:
            pairs_a: list[float] = []
            pairs_b: list[float] = []
            groups: list[Hashable] = []
            for image in a["images"]:
                value_a = image["classes"][name].get(metric)
                value_b = images_b[image["image_id"]]["classes"][name].get(metric)
                if value_a is not None and value_b is not None:
                    pairs_a.append(value_a)
                    pairs_b.append(value_b)
                    groups.append(_group(image["image_id"], image["patient_id"]))
            if not groups:
                entry[metric] = MetricDifference(
                    n=0, mean_a=None, mean_b=None, difference=None, ci95=None, excludes_zero=None
                )
                continue
            differences = np.asarray(pairs_a) - np.asarray(pairs_b)
            low, high = bootstrap_interval(values=differences, groups=groups, samples=samples, seed=seed)
            entry[metric] = MetricDifference(
                n=len(groups),
                mean_a=float(np.mean(pairs_a)),
                mean_b=float(np.mean(pairs_b)),
                difference=float(differences.mean()),
                ci95=[low, high],
                excludes_zero=bool(low > 0 or high < 0),
            )
        classes[name] = entry
    not_compared = [name for name in recipe.CLASSES if (name in a["classes"]) != (name in b["classes"])]
    return Comparison(classes=classes, not_compared=not_compared)
