"""The metrics of one predicted mask against one true mask of the same image and class.

- Dice = 2|P and T| / (|P| + |T|), IoU = |P and T| / |P or T|.
- Surface: the mask pixels with a 4-connected background neighbour (outside the image counts
  as background), `recipe.mask_outline`, as MONAI's `get_mask_edges` takes it.
- Surface distances: from each surface pixel of one mask the Euclidean distance, in pixels, to
  the nearest surface pixel of the other (scipy's KD-tree, as MONAI does on CPU; it gives
  exactly `distance_transform_edt` of the other surface's complement at those pixels).
- HD95: MONAI's `compute_hausdorff_distance(percentile=95)`: the larger of the two directions'
  95th percentiles (linear interpolation). ASSD: MONAI's
  `compute_average_surface_distance(symmetric=True)`: the mean of both directions pooled.
  Both in pixels and in percent of the image's diagonal (`_pct`): the images come from papers
  and websites, with no pixel spacing, and are 247 to 4095 pixels wide.
- NSD (normalised surface distance, Nikolov et al. 2021; MONAI's `compute_surface_dice`): the
  share of both surfaces lying within the tolerance of the other surface, the tolerance given
  in percent of the image's diagonal.
- clDice (Shit et al., CVPR 2021), for the tube and line classes only: the harmonic mean of
  the share of the predicted skeleton inside the true mask and the share of the true skeleton
  inside the predicted mask; skeletons by scikit-image's `skeletonize` (Zhang's thinning, the
  reference implementation's choice).
- Both masks empty: nothing to score (None). Exactly one empty: Dice, IoU, NSD and clDice 0,
  the distances missing (None), never 0 or infinity.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy.spatial import cKDTree

import covid_chestxray_seg as recipe
from covid_chestxray_seg_tools.evaluate.errors import EvaluateError

__all__ = [
    "DEFAULT_NSD_TOLERANCE_PCT",
    "DISTANCE_METRICS",
    "HD_PERCENTILE",
    "METRICS",
    "OVERLAP_METRICS",
    "TUBULAR_CLASSES",
    "PairScores",
    "centreline_dice",
    "diagonal",
    "normalised_surface_dice",
    "pair_scores",
    "surface_distances",
    "tolerance_pixels",
]

OVERLAP_METRICS = ("dice", "iou", "nsd", "cldice")
DISTANCE_METRICS = ("hd95", "assd", "hd95_pct", "assd_pct")
METRICS = (*OVERLAP_METRICS, *DISTANCE_METRICS)
HD_PERCENTILE = 95.0
# About 5 mm where an image shows a whole 35 x 43 cm detector (a 55 cm diagonal): a boundary
# within it counts as right. Images cropped from papers show less, so it is a share of the
# image, not a length.
DEFAULT_NSD_TOLERANCE_PCT = 1.0
# Thin tubular masks, scored by clDice too (Metrics Reloaded's choice for tubular structures).
TUBULAR_CLASSES = ("Endotracheal Tube", "Central Venous Line", "Nasogastric Tube", "Chest Tube", "Tubings")


@dataclass(frozen=True)
class PairScores:
    """The metrics of one scored pair. Distances are None when one mask is empty; `cldice` is
    None for the classes that are not tubes or lines.

    Attributes:
        dice, iou: overlap, 0 to 1.
        nsd: normalised surface distance at the tolerance it was computed with, 0 to 1.
        cldice: centreline Dice, 0 to 1 (tubes and lines only).
        hd95, assd: in pixels.
        hd95_pct, assd_pct: in percent of the image's diagonal.
    """

    dice: float
    iou: float
    nsd: float
    cldice: float | None
    hd95: float | None
    assd: float | None
    hd95_pct: float | None
    assd_pct: float | None

    def as_dict(self) -> dict[str, float | None]:
        """The metrics by name, in `METRICS` order."""
        return asdict(self)


def diagonal(shape: tuple[int, ...]) -> float:
    """The diagonal of an image of `shape` (height, width), in pixels."""
    return math.hypot(shape[0], shape[1])


def tolerance_pixels(tolerance_pct: float, *, shape: tuple[int, ...]) -> float:
    """NSD's tolerance in pixels for an image of `shape` (height, width), given in percent of its diagonal."""
    return tolerance_pct / 100 * diagonal(shape)


def _crop_to_union(prediction: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both masks cut to the bounding box of their union plus one pixel: surfaces and skeletons
    are the same as in the full image (the margin is background, the image border stays a border)."""
    union = prediction | truth
    rows = np.flatnonzero(union.any(axis=1))
    cols = np.flatnonzero(union.any(axis=0))
    window = (slice(max(rows[0] - 1, 0), rows[-1] + 2), slice(max(cols[0] - 1, 0), cols[-1] + 2))
    return prediction[window], truth[window]


def _checked(prediction: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    prediction, truth = np.asarray(prediction, dtype=bool), np.asarray(truth, dtype=bool)
    if prediction.shape != truth.shape:
        raise EvaluateError(f"prediction {prediction.shape} and truth {truth.shape} differ in size")
    return prediction, truth


def surface_distances(*, prediction: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distances between the two masks' surfaces.

    Args:
        prediction, truth: non-empty bool (H, W) masks of one size.

    Returns:
        (from each surface pixel of `prediction` to the nearest one of `truth`, the reverse),
        Euclidean, in pixels.

    Raises:
        EvaluateError: the masks differ in size, or one is empty.
    """
    prediction, truth = _checked(prediction, truth)
    if not prediction.any() or not truth.any():
        raise EvaluateError("surface distances need two non-empty masks")
    prediction, truth = _crop_to_union(prediction, truth)
    points_prediction = np.argwhere(recipe.mask_outline(prediction))
    points_truth = np.argwhere(recipe.mask_outline(truth))
    to_truth = cKDTree(points_truth).query(points_prediction, k=1)[0]
    to_prediction = cKDTree(points_prediction).query(points_truth, k=1)[0]
    return to_truth, to_prediction


def normalised_surface_dice(*, to_truth: np.ndarray, to_prediction: np.ndarray, tolerance: float) -> float:
    """NSD from the two directions' surface distances (`surface_distances`).

    Args:
        to_truth, to_prediction: the distances, in pixels.
        tolerance: in pixels; a surface pixel at most this far from the other surface counts.

    Returns:
        (surface pixels within `tolerance` of the other surface, both masks) / (all surface
        pixels, both masks), as MONAI's `compute_surface_dice` (without sub-pixel areas).
    """
    within = int(np.count_nonzero(to_truth <= tolerance)) + int(np.count_nonzero(to_prediction <= tolerance))
    return within / (to_truth.size + to_prediction.size)


def centreline_dice(*, prediction: np.ndarray, truth: np.ndarray) -> float:
    """clDice of two masks (Shit et al. 2021).

    Args:
        prediction, truth: bool (H, W) masks of one size, not both empty.

    Returns:
        2 Tprec Tsens / (Tprec + Tsens), Tprec = |skeleton(P) and T| / |skeleton(P)|,
        Tsens = |skeleton(T) and P| / |skeleton(T)|; 0 when one mask is empty or the two
        skeletons miss the other mask entirely. (Zhang's thinning never removes the last pixel
        of a component, so a non-empty mask has a non-empty skeleton.)

    Raises:
        EvaluateError: the masks differ in size, or both are empty.
    """
    prediction, truth = _checked(prediction, truth)
    if not prediction.any() and not truth.any():
        raise EvaluateError("clDice needs at least one non-empty mask")
    if not prediction.any() or not truth.any():
        return 0.0
    # Imported here: scikit-image takes most of a second to import, and only clDice needs it.
    from skimage.morphology import skeletonize

    prediction, truth = _crop_to_union(prediction, truth)
    skeleton_prediction, skeleton_truth = skeletonize(prediction), skeletonize(truth)
    precision = np.count_nonzero(skeleton_prediction & truth) / np.count_nonzero(skeleton_prediction)
    sensitivity = np.count_nonzero(skeleton_truth & prediction) / np.count_nonzero(skeleton_truth)
    if precision + sensitivity == 0:
        return 0.0
    return float(2 * precision * sensitivity / (precision + sensitivity))


def pair_scores(
    *,
    prediction: np.ndarray | None,
    truth: np.ndarray,
    tolerance_pct: float = DEFAULT_NSD_TOLERANCE_PCT,
    centreline: bool = False,
) -> PairScores | None:
    """Every metric of one prediction against one true mask.

    Args:
        prediction: bool (H, W); None is an empty prediction.
        truth: bool (H, W), the image's full size.
        tolerance_pct: NSD's tolerance, in percent of the image's diagonal.
        centreline: also compute clDice (the tube and line classes).

    Returns:
        The scores; None when both masks are empty (nothing to score).

    Raises:
        EvaluateError: the masks differ in size.
    """
    truth = np.asarray(truth, dtype=bool)
    truth_pixels = int(np.count_nonzero(truth))
    if prediction is None:
        prediction_pixels = 0
    else:
        prediction, truth = _checked(prediction, truth)
        prediction_pixels = int(np.count_nonzero(prediction))
    if prediction_pixels == 0 and truth_pixels == 0:
        return None
    if prediction_pixels == 0 or truth_pixels == 0:
        return PairScores(
            dice=0.0,
            iou=0.0,
            nsd=0.0,
            cldice=0.0 if centreline else None,
            hd95=None,
            assd=None,
            hd95_pct=None,
            assd_pct=None,
        )
    overlap = int(np.count_nonzero(prediction & truth))
    to_truth, to_prediction = surface_distances(prediction=prediction, truth=truth)
    hd95 = float(max(np.percentile(to_truth, HD_PERCENTILE), np.percentile(to_prediction, HD_PERCENTILE)))
    assd = float((to_truth.sum() + to_prediction.sum()) / (to_truth.size + to_prediction.size))
    scale = 100.0 / diagonal(truth.shape)
    return PairScores(
        dice=2 * overlap / (prediction_pixels + truth_pixels),
        iou=overlap / (prediction_pixels + truth_pixels - overlap),
        nsd=normalised_surface_dice(
            to_truth=to_truth, to_prediction=to_prediction, tolerance=tolerance_pixels(tolerance_pct, shape=truth.shape)
        ),
        cldice=centreline_dice(prediction=prediction, truth=truth) if centreline else None,
        hd95=hd95,
        assd=assd,
        hd95_pct=hd95 * scale,
        assd_pct=assd * scale,
    )
