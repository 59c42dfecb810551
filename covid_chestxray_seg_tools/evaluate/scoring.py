"""Scoring predictions against ground-truth rows, per image and class, summarised per class;
and the paired comparison of two sets of predictions over the same pairs.

Computed apart from aggregated, as MONAI's metrics are: `score_image` scores one image's pairs
into a plain record (`ImageScores`), `ScoreAccumulator` keeps the records, and its `summary`
gives per class the mean of each metric over the scored pairs with a patient-bootstrap 95 %
interval (under cross-validation each fold's mean too). `score` is the three in a row. What is
skipped and why is the protocol's (`protocol.RULES`), decided in `score_image` alone.
"""

from __future__ import annotations

from collections.abc import Collection, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import covid_chestxray_seg as recipe
from covid_chestxray_seg_tools.evaluate import severity
from covid_chestxray_seg_tools.evaluate.bootstrap import (
    BOOTSTRAP_SAMPLES,
    CONFIDENCE,
    SEED,
    bootstrap_interval,
    macro_bootstrap_interval,
)
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
    Burden,
    ClassScores,
    Counts,
    Headline,
    HeadlineMetric,
    ImageScores,
    Metric,
    MetricSummary,
    PairResult,
    ScoreResult,
    SkippedCounts,
    SkipReason,
)

__all__ = [
    "HEADLINE_METRICS",
    "SKIP_REASONS",
    "ScoreAccumulator",
    "ScoringOptions",
    "patient_group",
    "resolve_classes",
    "score",
    "score_image",
]

SKIP_REASONS: tuple[SkipReason, ...] = ("null_truth", "flagged_missing", "both_empty")
# The metrics the headline number averages: overlap (Dice) and boundary (NSD).
HEADLINE_METRICS: tuple[Metric, ...] = ("dice", "nsd")
_COLUMNS = dict(zip(recipe.CLASSES, recipe.MASK_COLUMNS))


@dataclass(frozen=True)
class ScoringOptions:
    """How pairs are scored and summarised.

    Attributes:
        nsd_tolerance: NSD's tolerance in percent of the image's diagonal.
        samples: the bootstrap's resamples.
        seed: the bootstrap's seed.
    """

    nsd_tolerance: float = DEFAULT_NSD_TOLERANCE_PCT
    samples: int = BOOTSTRAP_SAMPLES
    seed: int = SEED


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


def patient_group(image_id: int, patient: Hashable | None) -> Hashable:
    """The unit the bootstrap resamples: the patient, or the image where no patient id is known
    (it is then a patient of its own)."""
    return ("image", image_id) if patient is None else ("patient", patient)


def score_image(
    row: Mapping[str, Any],
    predicted: Mapping[str, np.ndarray],
    *,
    classes: Sequence[str],
    nsd_tolerance: float = DEFAULT_NSD_TOLERANCE_PCT,
    split: str = "test",
) -> ImageScores:
    """One image's pairs scored: the per-image pass, a plain record.

    Args:
        row: the ground-truth row: image_id, patient_id, width, height, the mask columns
            (stored or decoded); `fold`, `quality_flags` and `split` where the source has them.
        predicted: mask column -> bool (H, W); a column left out is an empty prediction.
        classes: the class names to score.
        nsd_tolerance: NSD's tolerance in percent of the image's diagonal.
        split: the split the row comes from, where the row does not say.

    Returns:
        The image's identity and, per class, its metrics or why the pair is skipped (a null
        true mask, a class the build flags missing on the image, both masks empty).

    Raises:
        EvaluateError: a true mask or a prediction of another size than the image.
    """
    image_id, width, height = int(row["image_id"]), int(row["width"]), int(row["height"])
    flags = set(row.get(FLAGS_COLUMN) or ())
    decoded: dict[str, np.ndarray | None] = {}

    def truth_of(column: str) -> np.ndarray | None:
        # A class the build flags missing on the image has no truth there, whatever is stored.
        if column not in decoded:
            mask = None if recipe.quality_flag("missing", column) in flags else recipe.decode_mask(row[column])
            if mask is not None and mask.shape != (height, width):
                raise EvaluateError(
                    f"{column} is {mask.shape[1]}x{mask.shape[0]}, the image {width}x{height}",
                    file=f"split {row.get('split', split)}: image {image_id}",
                )
            decoded[column] = mask
        return decoded[column]

    results: dict[str, PairResult] = {}
    for name in classes:
        column = _COLUMNS[name]
        truth = truth_of(column)
        if truth is None:
            flagged = recipe.quality_flag("missing", column) in flags
            results[name] = PairResult(skipped="flagged_missing" if flagged else "null_truth")
            continue
        pair = pair_scores(
            prediction=predicted.get(column),
            truth=truth,
            tolerance_pct=nsd_tolerance,
            centreline=name in TUBULAR_CLASSES,
        )
        results[name] = PairResult(skipped="both_empty") if pair is None else pair.as_dict()
    record = ImageScores(
        image_id=image_id,
        patient_id=row.get("patient_id"),
        split=row.get("split", split),
        fold=row.get(FOLD_COLUMN),
        classes=results,
    )
    scores = {column: row.get(column) for column in severity.SCORE_COLUMNS if column in row}
    if any(score is not None for score in scores.values()):
        # Only where an expert scored the image: the burden is what is ranked against the score.
        record["severity"] = scores
        record["burden"] = Burden(
            predicted=severity.opacity_burden({column: predicted.get(column) for column in severity.BURDEN_COLUMNS}),
            truth=severity.opacity_burden({column: truth_of(column) for column in severity.BURDEN_COLUMNS}),
        )
    return record


@dataclass
class ScoreAccumulator:
    """The per-image records of one set of predictions, and their summary per class.

    Attributes:
        classes: the classes scored, in class order.
        images: the records added, in the order added.
    """

    classes: Sequence[str]
    images: list[ImageScores] = field(default_factory=list)

    def add(self, image: ImageScores) -> None:
        """Keep one image's record (`score_image`)."""
        self.images.append(image)

    def summary(
        self,
        *,
        split: str,
        fold: int | None = None,
        not_predicted: Sequence[str] = (),
        options: ScoringOptions | None = None,
    ) -> ScoreResult:
        """Per class and metric the mean over the scored pairs with a patient-bootstrap interval
        (under cross-validation over all folds also each fold's mean), the counts, the records.

        Args:
            split: the split scored, or "cv".
            fold: the fold scored, under cross-validation.
            not_predicted: the classes left out because no image's predictions hold them.
            options: the NSD tolerance the records were scored with, and the bootstrap's settings.

        Returns:
            What `--json` writes (see `ScoreResult`), images in image id order.

        Raises:
            EvaluateError: no image was added.
        """
        options = options or ScoringOptions()
        if not self.images:
            raise EvaluateError(f"split {split} has no images to score")
        images = sorted(self.images, key=lambda image: image["image_id"])
        per_fold = split == CV and fold is None
        summary = {name: self._class_scores(name, images, per_fold=per_fold, options=options) for name in self.classes}
        groups = [patient_group(image["image_id"], image["patient_id"]) for image in images]
        skipped = [entry["skipped"] for entry in summary.values()]
        counts = Counts(
            images=len(images),
            patients=len({patient_group(image["image_id"], image["patient_id"]) for image in images}),
            pairs=len(images) * len(self.classes),
            scored=sum(entry["n"] for entry in summary.values()),
            skipped_null_truth=sum(s["null_truth"] for s in skipped),
            skipped_flagged_missing=sum(s["flagged_missing"] for s in skipped),
            skipped_both_empty=sum(s["both_empty"] for s in skipped),
            distance_missing_one_side_empty=sum(s["distance_one_side_empty"] for s in skipped),
        )
        if per_fold:
            counts["fold_images"] = [sum(image["fold"] == k for image in images) for k in range(recipe.FOLDS)]
        result = ScoreResult(
            split=split,
            fold=fold,
            summary=_headline(images, self.classes, options=options),
            tiers={name: recipe.CLASS_TIERS[name] for name in self.classes},
            classes=summary,
            not_predicted=list(not_predicted),
            nsd_tolerance_pct=options.nsd_tolerance,
            counts=counts,
            bootstrap=Bootstrap(
                unit="patient", samples=options.samples, seed=options.seed, confidence=CONFIDENCE, method="percentile"
            ),
            images=images,
        )
        if any("severity" in image for image in images):
            result["severity"] = severity.agreement(images, groups=groups, samples=options.samples, seed=options.seed)
        return result

    @staticmethod
    def _class_scores(
        name: str, images: Sequence[ImageScores], *, per_fold: bool, options: ScoringOptions
    ) -> ClassScores:
        pairs = [(image, image["classes"][name]) for image in images]
        reasons = [pair.get("skipped") for _, pair in pairs]
        skipped = SkippedCounts(
            null_truth=reasons.count("null_truth"),
            flagged_missing=reasons.count("flagged_missing"),
            both_empty=reasons.count("both_empty"),
            distance_one_side_empty=sum("skipped" not in pair and pair["hd95"] is None for _, pair in pairs),
        )
        metrics: dict[Metric, MetricSummary] = {}
        for metric in METRICS:
            scored = [(image, pair[metric]) for image, pair in pairs if pair.get(metric) is not None]
            values = [value for _, value in scored if value is not None]
            groups = [patient_group(image["image_id"], image["patient_id"]) for image, _ in scored]
            metrics[metric] = _summary(values, groups, options=options)
            if per_fold:
                metrics[metric]["folds"] = [
                    _mean([value for image, value in scored if value is not None and image["fold"] == k])
                    for k in range(recipe.FOLDS)
                ]
        return ClassScores(
            n=sum("skipped" not in pair for _, pair in pairs),
            dice=metrics["dice"],
            iou=metrics["iou"],
            nsd=metrics["nsd"],
            cldice=metrics["cldice"],
            hd95=metrics["hd95"],
            assd=metrics["assd"],
            hd95_pct=metrics["hd95_pct"],
            assd_pct=metrics["assd_pct"],
            skipped=skipped,
        )


def _pairs(images: Sequence[ImageScores], name: str, metric: Metric) -> tuple[list[float], list[Hashable]]:
    """A class's values of a metric over the pairs that have one, and each pair's patient."""
    values, groups = [], []
    for image in images:
        value = image["classes"][name].get(metric)
        if value is not None:
            values.append(value)
            groups.append(patient_group(image["image_id"], image["patient_id"]))
    return values, groups


def _headline(images: Sequence[ImageScores], classes: Sequence[str], *, options: ScoringOptions) -> Headline | None:
    """The benchmark's number: the macro mean over the headline classes of each class's mean Dice
    (and NSD), with a patient-bootstrap interval; None unless every headline class was scored."""
    if not set(recipe.HEADLINE_CLASSES) <= set(classes):
        return None
    metrics = {}
    for metric in HEADLINE_METRICS:
        series = [_pairs(images, name, metric) for name in recipe.HEADLINE_CLASSES]
        series = [(values, groups) for values, groups in series if values]
        if not series:
            metrics[metric] = HeadlineMetric(mean=None, ci95=None)
            continue
        low, high = macro_bootstrap_interval(series=series, samples=options.samples, seed=options.seed)
        mean = float(np.mean([np.mean(values) for values, _ in series]))
        metrics[metric] = HeadlineMetric(mean=mean, ci95=[low, high])
    return Headline(classes=list(recipe.HEADLINE_CLASSES), dice=metrics["dice"], nsd=metrics["nsd"])


def _mean(values: Sequence[float]) -> float | None:
    return float(np.mean(values)) if values else None


def _summary(values: Sequence[float], groups: Sequence[Hashable], *, options: ScoringOptions) -> MetricSummary:
    if not values:
        return MetricSummary(mean=None, ci95=None, n=0)
    low, high = bootstrap_interval(values=values, groups=groups, samples=options.samples, seed=options.seed)
    return MetricSummary(mean=float(np.mean(values)), ci95=[low, high], n=len(values))


def score(
    *,
    truth: Iterable[Mapping[str, Any]],
    predictions: Predictions,
    split: str,
    fold: int | None = None,
    classes: Sequence[str] | None = None,
    predicted: Collection[str] | None = None,
    options: ScoringOptions | None = None,
) -> ScoreResult:
    """Score predictions against ground-truth rows: `score_image` for each row, then the summary.

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
        options: the NSD tolerance and the bootstrap's settings.

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
    options = options or ScoringOptions()
    if classes is None:
        scored = [name for name in recipe.CLASSES if predicted is None or _COLUMNS[name] in predicted]
        not_predicted = [name for name in recipe.CLASSES if name not in scored]
    else:
        scored, not_predicted = list(classes), []
    if not scored:
        raise EvaluateError(
            f"split {split}: no class to score: the predictions hold no mask of any class",
            fix=f"choose the classes to score ({recipe.setting('classes')})",
        )
    accumulator = ScoreAccumulator(classes=scored)
    for row in truth:
        masks = predictions(int(row["image_id"]), int(row["width"]), int(row["height"]))
        accumulator.add(score_image(row, masks, classes=scored, nsd_tolerance=options.nsd_tolerance, split=split))
    return accumulator.summary(split=split, fold=fold, not_predicted=not_predicted, options=options)
