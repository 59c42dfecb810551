"""The benchmark: class tiers by the builder's rule, the headline number (macro mean Dice and NSD
over the headline classes with a joint patient bootstrap), its paired difference, and the
agreement of the predicted opacity burden with the expert severity scores."""

from __future__ import annotations

import numpy as np
import pytest

import covid_chestxray_seg as recipe
from covid_chestxray_seg_tools import evaluate
from covid_chestxray_seg_tools.evaluate import severity
from covid_chestxray_seg_tools.hub_folder import layout
from tests.helpers import SIZE, cut, hand_row, predictor, square

HEADLINE_COLUMNS = [recipe.mask_column(name) for name in recipe.HEADLINE_CLASSES]


# --- tiers -------------------------------------------------------------------------------------


def test_class_tiers_follow_the_stated_rule():
    assert recipe.class_tier("Left Lung", recipe.HEADLINE_MIN_IMAGES) == "headline"
    assert recipe.class_tier("Consolidation", recipe.HEADLINE_MIN_IMAGES - 1) == "reported"
    assert recipe.class_tier("Tubings", recipe.HEADLINE_MIN_IMAGES - 1) == "device"
    assert recipe.class_tier("Tubings", recipe.RARE_BELOW) == "device"
    assert recipe.class_tier("Tubings", recipe.RARE_BELOW - 1) == "rare"
    assert recipe.class_tier("Pneumothorax", 0) == "rare"
    assert recipe.HEADLINE_CLASSES == (
        "Left Lung",
        "Right Lung",
        "Cardiomediastinum",
        "Airways",
        "Ground Glass Opacities",
        "Consolidation",
    )
    devices = [name for name, tier in recipe.CLASS_TIERS.items() if tier == "device"]
    assert devices == ["Endotracheal Tube", "Central Venous Line", "Monitoring Probes", "Nasogastric Tube", "Tubings"]
    assert [name for name, tier in recipe.CLASS_TIERS.items() if tier == "rare"] == [
        "Pleural Effusion",
        "Pneumothorax",
        "Chest Tube",
    ]
    text = evaluate.tiers_text()
    assert text.startswith("Class tiers: headline (a mask on at least 20 development images, averaged): Left Lung")
    assert "rare (a mask on fewer than 3 development images: reported, never averaged): Pleural Effusion" in text


@pytest.mark.slow
def test_the_pinned_counts_are_the_datas_own(real_build):
    """DEVELOPMENT_MASK_IMAGES, from which the tiers follow, counted again from the build: the
    development images whose true mask is non-empty (null and flagged-missing masks left out)."""
    counts = dict.fromkeys(recipe.CLASSES, 0)
    for split in recipe.FOLD_SPLITS:
        for row in layout.iter_rows(real_build, split, columns=["quality_flags", *recipe.MASK_COLUMNS]):
            for name, column in zip(recipe.CLASSES, recipe.MASK_COLUMNS):
                if recipe.quality_flag("missing", column) in row["quality_flags"]:
                    continue
                mask = recipe.decode_mask(row[column])
                counts[name] += mask is not None and bool(mask.any())
    assert counts == recipe.DEVELOPMENT_MASK_IMAGES


# --- the headline number -----------------------------------------------------------------------


def headline_rows(count: int = 10) -> list[dict]:
    """`count` images of `count` patients, each with a square in every headline class."""
    return [
        hand_row(index, patient=f"p{index}", fold=index % recipe.FOLDS, masks=dict.fromkeys(HEADLINE_COLUMNS, square()))
        for index in range(count)
    ]


def test_the_headline_is_the_macro_mean_of_the_headline_classes_with_a_joint_bootstrap():
    rows = headline_rows()
    # Class k is predicted k rows short on image i when i is odd: class means differ.
    predictions = {
        row["image_id"]: {
            column: cut(square(), k if row["image_id"] % 2 else 0) for k, column in enumerate(HEADLINE_COLUMNS)
        }
        for row in rows
    }
    result = evaluate.score(truth=rows, predictions=predictor(predictions), split=evaluate.CV)
    summary = result["summary"]
    assert summary["classes"] == list(recipe.HEADLINE_CLASSES)
    means = [result["classes"][name]["dice"]["mean"] for name in recipe.HEADLINE_CLASSES]
    assert summary["dice"]["mean"] == pytest.approx(np.mean(means)) and len(set(means)) == len(means)
    series = []
    for name in recipe.HEADLINE_CLASSES:
        values = [image["classes"][name]["dice"] for image in result["images"]]
        series.append((values, [("patient", image["patient_id"]) for image in result["images"]]))
    assert summary["dice"]["ci95"] == pytest.approx(list(evaluate.macro_bootstrap_interval(series=series)))
    assert summary["dice"]["ci95"][0] < summary["dice"]["mean"] < summary["dice"]["ci95"][1]
    assert result["tiers"]["Left Lung"] == "headline"
    text = evaluate.format_markdown(result)
    assert text.startswith(f"**Headline** `cv`: Dice {summary['dice']['mean']:.3f} [")
    # The truth itself: a headline of exactly 1.
    truth = {row["image_id"]: dict.fromkeys(HEADLINE_COLUMNS, square()) for row in rows}
    perfect = evaluate.score(truth=rows, predictions=predictor(truth), split="test")["summary"]
    assert perfect["dice"] == {"mean": 1.0, "ci95": [1.0, 1.0]} and perfect["nsd"]["mean"] == 1.0
    # A headline class left out: no headline, said so.
    partial = evaluate.score(truth=rows, predictions=predictor(truth), split="test", classes=["Left Lung"])
    assert partial["summary"] is None
    assert evaluate.format_markdown(partial).startswith("No headline number: it needs every headline class scored")


def test_a_macro_bootstrap_of_one_series_is_the_plain_bootstrap():
    values = [0.9, 0.8, 0.7, 0.95, 0.6, 0.85]
    groups = ["a", "a", "b", "c", "c", "d"]
    assert evaluate.macro_bootstrap_interval(series=[(values, groups)]) == evaluate.bootstrap_interval(
        values=values, groups=groups
    )
    with pytest.raises(ValueError, match=r"a macro bootstrap needs series of values"):
        evaluate.macro_bootstrap_interval(series=[([], [])])


def test_the_headline_difference_is_paired_and_marked():
    rows = headline_rows()
    truth = {row["image_id"]: dict.fromkeys(HEADLINE_COLUMNS, square()) for row in rows}
    worse = {row["image_id"]: dict.fromkeys(HEADLINE_COLUMNS, cut(square(), 3)) for row in rows}
    a = evaluate.score(truth=rows, predictions=predictor(truth), split="test")
    b = evaluate.score(truth=rows, predictions=predictor(worse), split="test")
    summary = evaluate.compare(a=a, b=b)["summary"]
    expected = 1.0 - 2 * 70 / 170  # Dice of a 10 x 10 square against its first 7 rows
    assert summary["dice"]["difference"] == pytest.approx(expected) and summary["dice"]["excludes_zero"] is True
    assert summary["dice"]["mean_a"] == 1.0 and summary["dice"]["n"] == len(rows) * len(HEADLINE_COLUMNS)
    comparison = evaluate.compare(a=a, b=a)["summary"]
    assert comparison["dice"]["difference"] == 0.0 and comparison["dice"]["excludes_zero"] is False


# --- severity ----------------------------------------------------------------------------------


def test_the_opacity_burden_is_the_share_of_the_lung_fields_covered():
    left, right = np.zeros(SIZE, bool), np.zeros(SIZE, bool)
    left[:, :12], right[:, 12:] = True, True  # the lung fields: the whole 20 x 24 image
    opacity = np.zeros(SIZE, bool)
    opacity[:5, :] = True  # 120 of 480 pixels
    consolidation = np.zeros(SIZE, bool)
    consolidation[:10, :6] = True  # 60 more, 30 of them already opacity
    masks = {"mask_left_lung": left, "mask_right_lung": right, "mask_ground_glass_opacities": opacity}
    assert severity.opacity_burden(masks) == 120 / 480
    assert severity.opacity_burden({**masks, "mask_consolidation": consolidation}) == 150 / 480
    assert severity.opacity_burden({**masks, "mask_left_lung": None}) is None
    assert severity.opacity_burden({**masks, "mask_left_lung": np.zeros(SIZE, bool), "mask_right_lung": None}) is None
    empty = {"mask_left_lung": np.zeros(SIZE, bool), "mask_right_lung": np.zeros(SIZE, bool)}
    assert severity.opacity_burden(empty) is None


def severity_rows(count: int = 8) -> list[dict]:
    """Images whose opacity covers k rows of the lungs, k = 1..count, scored k / 2 (extent) and
    (count - k) (opacity, the other way round)."""
    rows = []
    lungs = np.zeros(SIZE, bool)
    lungs[:, 2:22] = True
    for k in range(1, count + 1):
        opacity = np.zeros(SIZE, bool)
        opacity[:k, 2:22] = True
        row = hand_row(
            k, patient=f"p{k}", masks={"mask_left_lung": lungs, "mask_right_lung": lungs, "mask_consolidation": opacity}
        )
        row["severity_geographic_extent"] = k / 2
        row["severity_opacity"] = None if k == 1 else float(count - k)
        rows.append(row)
    return rows


def test_severity_agreement_of_the_truth_equals_the_truths_and_ranks_by_burden():
    rows = severity_rows()
    truth = {row["image_id"]: {c: recipe.decode_mask(row[c]) for c in severity.BURDEN_COLUMNS} for row in rows}
    result = evaluate.score(truth=rows, predictions=predictor(truth), split="test")
    extent, opacity = result["severity"]["severity_geographic_extent"], result["severity"]["severity_opacity"]
    assert extent["predicted"] == extent["truth"] == pytest.approx(1.0) and extent["n"] == 8
    assert opacity["predicted"] == opacity["truth"] == pytest.approx(-1.0) and opacity["n"] == 7
    assert extent["interval"] == pytest.approx([1.0, 1.0])
    # A model whose burden ranks the other way: rho -1 against the truth's +1.
    flipped = {
        image_id: {**masks, "mask_consolidation": truth[9 - image_id]["mask_consolidation"]}
        for image_id, masks in truth.items()
    }
    result = evaluate.score(truth=rows, predictions=predictor(flipped), split="test")
    assert result["severity"]["severity_geographic_extent"]["predicted"] == pytest.approx(-1.0)
    assert result["severity"]["severity_geographic_extent"]["truth"] == pytest.approx(1.0)
    lines = evaluate.severity_table(result)
    assert "| `severity_geographic_extent` | 8 | -1.00 [-1.00, -1.00] | 1.00 |" in lines
    # Without lungs in the prediction there is no burden to rank: no rho, n counts none.
    no_lungs = {image_id: {"mask_consolidation": masks["mask_consolidation"]} for image_id, masks in truth.items()}
    result = evaluate.score(truth=rows, predictions=predictor(no_lungs), split="test", classes=list(recipe.CLASSES))
    assert result["severity"]["severity_geographic_extent"] == {
        "predicted": None,
        "truth": None,
        "interval": None,
        "n": 0,
    }


def _words(text: str) -> str:
    return " ".join(text.replace("- ", " ").split())


def test_the_protocols_rules_are_written_once_and_evaluate_help_prints_them(capsys):
    from covid_chestxray_seg_tools.cli import main as covid_seg

    assert covid_seg(["evaluate", "--help"]) == 0
    shown = _words(capsys.readouterr().out)
    for text in (evaluate.BENCHMARK, *evaluate.RULES.values()):
        assert _words(text) in shown
