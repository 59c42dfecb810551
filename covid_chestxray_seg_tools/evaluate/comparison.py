"""The paired comparison of two sets of predictions scored on the same images (`evaluate
--compare`): per class and metric, the mean difference A - B over the pairs both score, with a
patient-bootstrap interval; the headline's difference; and each image's Dice in both."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np

import covid_chestxray_seg as recipe
from covid_chestxray_seg_tools.evaluate.bootstrap import bootstrap_interval, macro_bootstrap_interval
from covid_chestxray_seg_tools.evaluate.errors import EvaluateError
from covid_chestxray_seg_tools.evaluate.metrics import METRICS
from covid_chestxray_seg_tools.evaluate.result import (
    Comparison,
    HeadlineDifference,
    ImageDice,
    ImageScores,
    Metric,
    MetricDifference,
    ScoreResult,
)
from covid_chestxray_seg_tools.evaluate.scoring import ScoringOptions, patient_group

__all__ = ["compare"]


def compare(*, a: ScoreResult, b: ScoreResult, options: ScoringOptions | None = None) -> Comparison:
    """The paired difference A - B of two `score` results over the same ground truth.

    Args:
        a, b: `score` results of two sets of predictions for the same images.
        options: the bootstrap's settings.

    Returns:
        ``{"classes": {CLASS: {METRIC: {"n", "mean_a", "mean_b", "difference", "ci95",
        "excludes_zero"}}}, "not_compared": [CLASS, ...]}``: per class scored in both, per
        metric, over the image-class pairs both score (for the distances: where both have
        one), the mean of A - B with a patient-bootstrap interval, and whether the interval
        excludes 0. `not_compared` lists the classes scored in only one of the two. Also
        `summary`, the headline's difference, and `images`: per image, A's and B's Dice of
        each class both score.

    Raises:
        EvaluateError: the two results are not of the same images.
    """
    options = options or ScoringOptions()
    images_b = {image["image_id"]: image for image in b["images"]}
    if sorted(images_b) != sorted(image["image_id"] for image in a["images"]):
        raise EvaluateError("the two sets of predictions were scored on different images", setting="compare")
    names = [name for name in a["classes"] if name in b["classes"]]
    paired = {name: {metric: _paired(a, images_b, name, metric) for metric in METRICS} for name in names}
    classes = {
        name: {metric: _difference(*paired[name][metric], options=options) for metric in METRICS} for name in names
    }
    not_compared = [name for name in recipe.CLASSES if (name in a["classes"]) != (name in b["classes"])]
    summary = None
    if set(recipe.HEADLINE_CLASSES) <= set(names):
        summary = HeadlineDifference(
            classes=list(recipe.HEADLINE_CLASSES),
            dice=_macro_difference([paired[name]["dice"] for name in recipe.HEADLINE_CLASSES], options=options),
            nsd=_macro_difference([paired[name]["nsd"] for name in recipe.HEADLINE_CLASSES], options=options),
        )
    images = []
    for image in a["images"]:
        other = images_b[image["image_id"]]["classes"]
        pairs = [(name, image["classes"][name].get("dice"), other[name].get("dice")) for name in names]
        both = [(name, dice_a, dice_b) for name, dice_a, dice_b in pairs if dice_a is not None and dice_b is not None]
        images.append(
            ImageDice(
                image_id=image["image_id"],
                dice_a={name: dice_a for name, dice_a, _ in both},
                dice_b={name: dice_b for name, _, dice_b in both},
            )
        )
    return Comparison(classes=classes, not_compared=not_compared, summary=summary, images=images)


# One class's paired values of one metric: A's, B's, and each pair's patient.
_Paired = tuple[list[float], list[float], list[Hashable]]


def _paired(a: ScoreResult, images_b: Mapping[int, ImageScores], name: str, metric: Metric) -> _Paired:
    """The pairs both results score (for the distances: where both have one)."""
    pairs_a: list[float] = []
    pairs_b: list[float] = []
    groups: list[Hashable] = []
    for image in a["images"]:
        value_a = image["classes"][name].get(metric)
        value_b = images_b[image["image_id"]]["classes"][name].get(metric)
        if value_a is not None and value_b is not None:
            pairs_a.append(value_a)
            pairs_b.append(value_b)
            groups.append(patient_group(image["image_id"], image["patient_id"]))
    return pairs_a, pairs_b, groups


def _difference(
    pairs_a: list[float], pairs_b: list[float], groups: list[Hashable], *, options: ScoringOptions
) -> MetricDifference:
    if not groups:
        return MetricDifference(n=0, mean_a=None, mean_b=None, difference=None, ci95=None, excludes_zero=None)
    differences = np.asarray(pairs_a) - np.asarray(pairs_b)
    low, high = bootstrap_interval(values=differences, groups=groups, samples=options.samples, seed=options.seed)
    return MetricDifference(
        n=len(groups),
        mean_a=float(np.mean(pairs_a)),
        mean_b=float(np.mean(pairs_b)),
        difference=float(differences.mean()),
        ci95=[low, high],
        excludes_zero=bool(low > 0 or high < 0),
    )


def _macro_difference(paired: Sequence[_Paired], *, options: ScoringOptions) -> MetricDifference:
    """The headline's difference: the macro mean over the classes of each class's mean paired
    difference, with a patient bootstrap resampling all classes jointly."""
    present = [entry for entry in paired if entry[2]]
    if not present:
        return MetricDifference(n=0, mean_a=None, mean_b=None, difference=None, ci95=None, excludes_zero=None)
    series = [(list(np.asarray(a) - np.asarray(b)), groups) for a, b, groups in present]
    low, high = macro_bootstrap_interval(series=series, samples=options.samples, seed=options.seed)
    return MetricDifference(
        n=sum(len(groups) for _, _, groups in present),
        mean_a=float(np.mean([np.mean(a) for a, _, _ in present])),
        mean_b=float(np.mean([np.mean(b) for _, b, _ in present])),
        difference=float(np.mean([np.mean(values) for values, _ in series])),
        ci95=[low, high],
        excludes_zero=bool(low > 0 or high < 0),
    )
