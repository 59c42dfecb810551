"""Whether predicted masks track the radiologists: the opacity burden against ieee8023's scores.

An image's opacity burden is the share of its lung fields (`recipe.LUNG_CLASSES`) that
ground-glass opacity or consolidation (`recipe.OPACITY_CLASSES`) covers: the card's
definition. From a prediction it is computed from the prediction alone, its own opacity masks
over its own lung masks, so a model is judged on what it would report, not helped by the
truth's lungs. Over the images the experts scored, Spearman's rho ranks each burden against
each expert score (`recipe.SEVERITY_COLUMNS`), with a patient-bootstrap interval; the same rho
from the truth's masks, on the same images, stands beside it as a reference (not a ceiling:
a model may agree with the three raters better than one team's masks do).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np
from scipy import stats as scipy_stats

import covid_chestxray_seg as recipe
from covid_chestxray_seg_tools.evaluate.bootstrap import BOOTSTRAP_SAMPLES, CONFIDENCE, SEED
from covid_chestxray_seg_tools.evaluate.result import Burden, ImageScores, SeverityAgreement

__all__ = ["BURDEN_COLUMNS", "MIN_IMAGES", "SCORE_COLUMNS", "agreement", "opacity_burden"]

# The mask columns a burden reads, and the expert scores it is ranked against.
BURDEN_COLUMNS = tuple(recipe.mask_column(name) for name in (*recipe.LUNG_CLASSES, *recipe.OPACITY_CLASSES))
SCORE_COLUMNS = tuple(column for column, _ in recipe.SEVERITY_COLUMNS.values())
# Fewer images than this give no rank correlation.
MIN_IMAGES = 3


def opacity_burden(masks: Mapping[str, np.ndarray | None]) -> float | None:
    """The share of the lung fields that the opacity masks cover.

    Args:
        masks: mask column -> bool (H, W) for the two lungs and the two opacity classes; a
            missing or None opacity mask covers nothing.

    Returns:
        A share in [0, 1]; None where a lung mask is missing or the lung fields are empty.
    """
    found = [masks.get(recipe.mask_column(name)) for name in recipe.LUNG_CLASSES]
    lungs = [lung for lung in found if lung is not None]
    if len(lungs) < len(found):
        return None
    field = np.logical_or.reduce(lungs)
    area = int(np.count_nonzero(field))
    if area == 0:
        return None
    opacities = [masks.get(recipe.mask_column(name)) for name in recipe.OPACITY_CLASSES]
    covered = np.zeros_like(field)
    for opacity in opacities:
        if opacity is not None:
            covered |= opacity
    return int(np.count_nonzero(covered & field)) / area


def agreement(
    images: Sequence[ImageScores],
    *,
    groups: Sequence[Hashable],
    samples: int = BOOTSTRAP_SAMPLES,
    seed: int = SEED,
) -> dict[str, SeverityAgreement]:
    """Spearman's rho between the burden and each expert score, predicted and from the truth.

    Args:
        images: per-image records with `burden` and `severity` (those without are left out).
        groups: the patient of each record, for the bootstrap.
        samples, seed: the bootstrap's.

    Returns:
        Score column -> the agreement over the images that have that score and both burdens
        (the same images for the predicted and the truth's rho, so the truth scored as
        predictions gives equal rhos).
    """
    result = {}
    for column in SCORE_COLUMNS:
        chosen = [
            (image["burden"], image["severity"][column], group)
            for image, group in zip(images, groups)
            if "burden" in image
            and image["severity"].get(column) is not None
            and image["burden"]["predicted"] is not None
            and image["burden"]["truth"] is not None
        ]
        scores = np.array([score for _, score, _ in chosen], dtype=float)
        predicted = np.array([_value(burden, "predicted") for burden, _, _ in chosen], dtype=float)
        truth = np.array([_value(burden, "truth") for burden, _, _ in chosen], dtype=float)
        rho_predicted = _rho(predicted, scores)
        interval = None
        if rho_predicted is not None:
            interval = _interval(predicted, scores, [group for _, _, group in chosen], samples=samples, seed=seed)
        result[column] = SeverityAgreement(
            predicted=rho_predicted, truth=_rho(truth, scores), interval=interval, n=len(chosen)
        )
    return result


def _value(burden: Burden, key: str) -> float:
    value = burden["predicted"] if key == "predicted" else burden["truth"]
    return float("nan") if value is None else value


def _rho(x: np.ndarray, y: np.ndarray) -> float | None:
    """Spearman's rho, None for fewer than MIN_IMAGES pairs or a constant side."""
    if len(x) < MIN_IMAGES or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None
    return float(scipy_stats.spearmanr(x, y).statistic)


def _interval(
    x: np.ndarray, y: np.ndarray, groups: Sequence[Hashable], *, samples: int, seed: int
) -> list[float] | None:
    """Percentile interval of rho over resamples of whole patients (a resample in which a side
    is constant has no rho and is left out)."""
    keys = list(dict.fromkeys(groups))
    members: dict[Hashable, list[int]] = {key: [] for key in keys}
    for position, group in enumerate(groups):
        members[group].append(position)
    draws = np.random.default_rng(seed).integers(0, len(keys), size=(samples, len(keys)))
    rhos = []
    for draw in draws:
        rows = [position for k in draw for position in members[keys[k]]]
        rho = _rho(x[rows], y[rows])
        if rho is not None:
            rhos.append(rho)
    if not rhos:
        return None
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(rhos, [tail, 100 - tail])
    return [float(low), float(high)]
