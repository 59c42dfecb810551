"""NSD and clDice on small hand-made masks: values by hand, NSD against MONAI's
`compute_surface_dice`, clDice against its reference definition (Shit et al., CVPR 2021)."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.morphology import skeletonize

import covid_chestxray_seg as recipe
from covid_chestxray_seg_tools import evaluate
from tests.helpers import require_monai, require_torch


def _canvas(shape=(24, 30)) -> np.ndarray:
    return np.zeros(shape, dtype=bool)


def _pixel_and_bar() -> tuple[np.ndarray, np.ndarray]:
    truth = _canvas((10, 10))
    truth[5, 5] = True
    prediction = _canvas((10, 10))
    prediction[5, 5:8] = True
    return prediction, truth


def hand_made_pairs() -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, prediction, truth): shapes whose surfaces lie at several distances from each other."""
    pairs = []
    square = _canvas()
    square[5:15, 6:16] = True
    pairs.append(("square against itself", square, square))
    pairs.append(("square moved (2, 3)", np.roll(square, (2, 3), axis=(0, 1)), square))
    bigger = _canvas()
    bigger[3:17, 4:18] = True
    pairs.append(("square inside a bigger one", square, bigger))
    corner = _canvas()
    corner[0:8, 0:12] = True  # touches the image border: outside counts as background
    ell = _canvas()
    ell[0:12, 0:4] = True
    ell[8:12, 0:14] = True
    pairs.append(("border rectangle against an L", corner, ell))
    far = _canvas()
    far[18:22, 24:29] = True
    pairs.append(("two masks far apart", far, square))
    ring = _canvas()
    ring[4:20, 5:21] = True
    ring[8:16, 9:17] = False  # a hole: its rim is surface too
    pairs.append(("ring against a square", square, ring))
    rng = np.random.default_rng(11)
    for index in range(3):
        blob = rng.random((24, 30)) > 0.55
        pairs.append(
            (f"random masks {index}", blob, np.roll(blob, (1, -2), axis=(0, 1)) | (rng.random((24, 30)) > 0.9))
        )
    return pairs


# --- NSD ---------------------------------------------------------------------------------------


def test_nsd_of_a_pixel_and_a_bar_by_hand():
    prediction, truth = _pixel_and_bar()
    to_truth, to_prediction = evaluate.surface_distances(prediction=prediction, truth=truth)
    # Distances 0, 1, 2 (bar -> pixel) and 0 (pixel -> bar): within t of the other surface are
    # 2 of 4 pixels for t < 1, 3 of 4 for 1 <= t < 2, all 4 from t = 2.
    for tolerance, expected in ((0.0, 0.5), (0.99, 0.5), (1.0, 0.75), (1.5, 0.75), (2.0, 1.0), (7.0, 1.0)):
        nsd = evaluate.normalised_surface_dice(to_truth=to_truth, to_prediction=to_prediction, tolerance=tolerance)
        assert nsd == expected, tolerance
    # As a percentage of the 10 x 10 image's diagonal (14.1 px): 10 % is 1.41 px.
    assert evaluate.tolerance_pixels(10.0, shape=(10, 10)) == pytest.approx(np.sqrt(2))
    assert evaluate.pair_scores(prediction=prediction, truth=truth, tolerance_pct=10.0).nsd == 0.75


@pytest.mark.slow  # importing torch and MONAI
@pytest.mark.filterwarnings("ignore:monai.metrics.utils get_mask_edges:FutureWarning")  # MONAI calling its own
def test_nsd_equals_monais_compute_surface_dice():
    torch = require_torch()
    require_monai()
    from monai.metrics import compute_surface_dice

    def monai_nsd(prediction: np.ndarray, truth: np.ndarray, tolerance: float) -> float:
        batch = [torch.from_numpy(mask)[None, None].float() for mask in (prediction, truth)]
        return float(compute_surface_dice(*batch, class_thresholds=[tolerance], include_background=True)[0, 0])

    checked = 0
    for name, prediction, truth in hand_made_pairs():
        to_truth, to_prediction = evaluate.surface_distances(prediction=prediction, truth=truth)
        for tolerance in (0.0, 1.0, np.sqrt(2), 1.5, 2.0, 3.2, 8.0):
            ours = evaluate.normalised_surface_dice(to_truth=to_truth, to_prediction=to_prediction, tolerance=tolerance)
            assert ours == pytest.approx(monai_nsd(prediction, truth, tolerance), abs=1e-6), (name, tolerance)
            checked += 1
        # The default tolerance, through pair_scores: the same pixels as MONAI is given.
        tolerance = evaluate.tolerance_pixels(evaluate.DEFAULT_NSD_TOLERANCE_PCT, shape=truth.shape)
        scores = evaluate.pair_scores(prediction=prediction, truth=truth)
        assert scores.nsd == pytest.approx(monai_nsd(prediction, truth, tolerance), abs=1e-6), name
    assert checked == 7 * len(hand_made_pairs())
    # Some pairs are neither 0 nor 1 at 1.5 px, so the comparison tells tolerances apart.
    partial = [
        name
        for name, prediction, truth in hand_made_pairs()
        if 0
        < evaluate.pair_scores(prediction=prediction, truth=truth, tolerance_pct=1.5 / np.hypot(24, 30) * 100).nsd
        < 1
    ]
    assert len(partial) >= 4, partial
    # One mask empty: 0, as MONAI (the surface pixels of the other are infinitely far).
    square = hand_made_pairs()[0][1]
    assert evaluate.pair_scores(prediction=None, truth=square).nsd == 0.0
    with pytest.warns(UserWarning, match=r"the prediction of class 0 is all 0"):
        assert monai_nsd(np.zeros_like(square), square, 2.0) == 0.0


# --- clDice ----------------------------------------------------------------------------------


def reference_cldice(prediction: np.ndarray, truth: np.ndarray) -> float:
    """clDice as Shit et al. (CVPR 2021) define it and their reference code computes it, on the
    full image: Tprec = |S(P) and T| / |S(P)|, Tsens = |S(T) and P| / |S(T)|, S = scikit-image's
    skeletonize, clDice = 2 Tprec Tsens / (Tprec + Tsens)."""
    skeleton_prediction, skeleton_truth = skeletonize(prediction), skeletonize(truth)
    precision = np.sum(skeleton_prediction & truth) / np.sum(skeleton_prediction)
    sensitivity = np.sum(skeleton_truth & prediction) / np.sum(skeleton_truth)
    with np.errstate(invalid="ignore"):  # 0 / 0 where neither skeleton touches the other mask
        return 2 * precision * sensitivity / (precision + sensitivity)


def test_cldice_of_one_pixel_lines_by_hand():
    # A one-pixel line is its own skeleton (thinning never removes an end or a line's middle).
    truth = _canvas()
    truth[5, 2:12] = True  # 10 pixels
    half = _canvas()
    half[5, 2:7] = True  # its first 5 pixels
    # Tprec = 5/5 (the prediction's skeleton lies in the truth), Tsens = 5/10: 2 * 1 * 0.5 / 1.5.
    assert evaluate.centreline_dice(prediction=half, truth=truth) == pytest.approx(2 / 3)
    branch = truth.copy()
    branch[9, 2:12] = True  # the line and a false one: Tprec 10/20, Tsens 10/10
    assert evaluate.centreline_dice(prediction=branch, truth=truth) == pytest.approx(2 / 3)
    beside = np.roll(truth, 1, axis=0)  # one row off: no skeleton pixel in the other mask
    assert evaluate.centreline_dice(prediction=beside, truth=truth) == 0.0
    assert evaluate.centreline_dice(prediction=truth, truth=truth) == 1.0
    assert evaluate.centreline_dice(prediction=np.zeros_like(truth), truth=truth) == 0.0
    with pytest.raises(ValueError, match=r"clDice needs at least one non-empty mask"):
        evaluate.centreline_dice(prediction=np.zeros_like(truth), truth=np.zeros_like(truth))
    with pytest.raises(ValueError, match=r"prediction \(4, 5\) and truth \(24, 30\) differ in size"):
        evaluate.centreline_dice(prediction=np.ones((4, 5), dtype=bool), truth=truth)


def test_cldice_forgives_a_thin_tube_drawn_thick_where_dice_does_not():
    truth = _canvas()
    truth[11, 3:27] = True  # a one-pixel tube
    thick = _canvas()
    thick[9:14, 3:27] = True  # the same tube drawn 5 pixels wide
    scores = evaluate.pair_scores(prediction=thick, truth=truth, centreline=True)
    assert scores.dice == pytest.approx(2 * 24 / (24 + 120))
    # The thick mask's skeleton runs inside the truth except near its ends; the truth lies inside the thick mask.
    assert scores.cldice == pytest.approx(reference_cldice(thick, truth)) and scores.cldice > 0.8 > 0.4 > scores.dice


def test_cldice_equals_the_reference_definition_on_the_full_image():
    checked = 0
    for name, prediction, truth in hand_made_pairs():
        ours, reference = (
            evaluate.centreline_dice(prediction=prediction, truth=truth),
            reference_cldice(prediction, truth),
        )
        if np.isnan(reference):
            # Neither skeleton touches the other mask: the reference divides 0 by 0; we call it 0.
            assert name == "two masks far apart" and ours == 0.0
        else:
            assert ours == pytest.approx(reference, abs=1e-12), name
        checked += 1
    # Tubes: a diagonal line, a bent thick tube against a shifted copy, tubes at the image border.
    diagonal = np.eye(24, 30, dtype=bool) | np.eye(24, 30, k=1, dtype=bool)
    bent = _canvas()
    bent[2:20, 4:7] = True
    bent[17:20, 4:26] = True
    edge = _canvas()
    edge[:, 0:3] = True
    edge_shifted = _canvas()
    edge_shifted[1:, 1:4] = True
    for prediction, truth in (
        (diagonal, np.roll(diagonal, 1, axis=1)),
        (bent, np.roll(bent, (1, 2), axis=(0, 1))),
        (edge, edge_shifted),
    ):
        ours = evaluate.centreline_dice(prediction=prediction, truth=truth)
        assert ours == pytest.approx(reference_cldice(prediction, truth), abs=1e-12) and 0 < ours < 1
        checked += 1
    assert checked == len(hand_made_pairs()) + 3


def test_pair_scores_gives_cldice_only_where_asked():
    prediction, truth = _pixel_and_bar()
    assert evaluate.pair_scores(prediction=prediction, truth=truth).cldice is None
    # bar -> pixel: the bar's skeleton (itself) has 1 of 3 pixels in the truth; the pixel is in the bar.
    assert evaluate.pair_scores(prediction=prediction, truth=truth, centreline=True).cldice == pytest.approx(0.5)
    # The tubes and lines, by the builder's names (the monitoring probes are wires and pads, not tubes).
    assert set(evaluate.TUBULAR_CLASSES) <= set(recipe.CLASSES)
    assert set(evaluate.TUBULAR_CLASSES) == {
        "Endotracheal Tube",
        "Central Venous Line",
        "Nasogastric Tube",
        "Chest Tube",
        "Tubings",
    }
