"""MONAI on the dataset's rows: the README's recipe (dictionary transforms that move the image and
its masks together) and MONAI's own metrics giving evaluate.py's numbers.

Runs where monai is installed; CI installs it after torch and sets COVID_SEG_REQUIRE_TORCH=1,
so there a missing monai fails instead of skipping."""

from __future__ import annotations

import re

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from tests.helpers import REPO, parquet_rows, require_monai, require_torch

pytestmark = pytest.mark.filterwarnings(
    "ignore:monai.metrics.utils get_mask_edges:FutureWarning"
)  # MONAI calling its own deprecated argument

torch = require_torch()
monai = require_monai()

import datasets  # noqa: E402
from monai.metrics import DiceMetric, compute_average_surface_distance, compute_hausdorff_distance  # noqa: E402

import covid_chestxray_seg as recipe  # noqa: E402
from covid_chestxray_seg_tools import evaluate  # noqa: E402
from covid_chestxray_seg_tools.baselines import atlas  # noqa: E402
from covid_chestxray_seg_tools.cli import main as covid_seg  # noqa: E402
from covid_chestxray_seg_tools.hub_folder import layout, resize  # noqa: E402


def _readme_recipe() -> dict:
    """The MONAI recipe of docs/baselines.md, run as it stands there up to the line that loads the
    published repo (the tests call its functions on the fixture's build instead)."""
    text = (REPO / "docs" / "baselines.md").read_text(encoding="utf-8")
    block = next(block for block in re.findall(r"```python\n(.*?)```", text, flags=re.S) if "monai.transforms" in block)
    code = block.split('small = load_dataset("ORG/covid-chestxray-seg", "size-256")')[0]
    assert "def write_predictions" in code
    namespace: dict = {}
    exec(compile(code, "docs/baselines.md (MONAI recipe)", "exec"), namespace)
    return namespace


RECIPE = _readme_recipe()
keys, transform, to_monai = RECIPE["keys"], RECIPE["transform"], RECIPE["to_monai"]


def test_the_recipe_trains_on_size_256_and_its_predictions_are_scored_at_full_size(fixture_build, tmp_path, capsys):
    small = datasets.load_dataset(str(fixture_build), layout.SIZE_256_CONFIG)
    torch.manual_seed(0)
    before = [parameter.detach().clone() for parameter in RECIPE["model"].parameters()]
    RECIPE["train_epoch"](small["train"])
    assert any(not torch.equal(a, b) for a, b in zip(before, RECIPE["model"].parameters()))
    RECIPE["write_predictions"](small["test"], tmp_path / "predictions")
    row = small["test"][0]
    for key in keys[1:]:
        with Image.open(tmp_path / "predictions" / "test" / str(row["image_id"]) / f"{key}.png") as mask:
            assert mask.size == (row["width"], row["height"])
    # The recipe's way back is the project's rule.
    probabilities = torch.rand(2, 256, 256)
    full = torch.nn.functional.interpolate(
        probabilities[None], size=(row["height"], row["width"]), mode="bilinear", align_corners=False
    )[0]
    helper = resize.to_full_size(probabilities.numpy(), width=row["width"], height=row["height"])
    assert ((full >= 0.5).numpy() != helper).sum() <= helper.size * 1e-5
    capsys.readouterr()
    code = covid_seg(
        ["evaluate", "--source", str(fixture_build), "--split", "test", "--predictions", str(tmp_path / "predictions")]
    )
    assert code == 0 and "| Left Lung | 1 |" in capsys.readouterr().out


def test_the_recipe_moves_image_and_masks_together(fixture_build):
    row = datasets.load_dataset(str(fixture_build), layout.SIZE_256_CONFIG, split="train")[0]
    # Black out the left lung (holes filled) in the image and nowhere else: wherever the moved
    # mask is, the moved image must be black.
    lung = ndimage.binary_fill_holes(np.asarray(row["mask_left_lung"]))
    assert lung.any()
    pixels = np.maximum(np.asarray(row["image"].convert("L")), 1)
    pixels[lung] = 0
    marked = dict(row, image=Image.fromarray(pixels), mask_left_lung=Image.fromarray(lung))

    transform.set_random_state(seed=0)
    sample = to_monai(marked)
    transform.set_random_state(seed=0)
    again = to_monai(marked)
    image, moved = sample["image"], sample["mask_left_lung"]
    assert tuple(image.shape) == tuple(moved.shape) == (1, 256, 256)
    assert torch.equal(image, again["image"]) and torch.equal(moved, again["mask_left_lung"])  # seeded
    assert set(torch.unique(moved).tolist()) <= {0.0, 1.0} and float(image.min()) >= 0 and float(image.max()) <= 1

    # The move is real: the mask is not where resizing alone puts it.
    still = lung
    moved = moved[0].numpy() > 0
    assert (moved & still).sum() / (moved | still).sum() < 0.9
    # Inside the moved mask (3 px in from its edge, past the resampling blend) the image is black,
    # and just outside it is not.
    inside = ndimage.binary_erosion(moved, iterations=2)
    ring = ndimage.binary_dilation(moved, iterations=5) & ~ndimage.binary_dilation(moved, iterations=2)
    image = image[0].numpy()
    assert inside.sum() > 1000 and np.all(image[inside] == 0)
    assert np.mean(image[ring] > 0) > 0.95


@pytest.fixture(scope="module")
def atlas_pairs(real_build):
    """(prediction, truth, evaluate's scores) of every scored pair of the atlas on the three
    smallest test images (MONAI's metrics take a few seconds on the largest)."""
    model = atlas.fit_atlas(rows=parquet_rows(real_build, "train", columns=list(recipe.MASK_COLUMNS)))
    rows = sorted(
        parquet_rows(real_build, "test", columns=list(evaluate.TRUTH_COLUMNS)),
        key=lambda row: row["width"] * row["height"],
    )[:3]
    rows.sort(key=lambda row: row["image_id"])
    result = evaluate.score(
        truth=rows, predictions=lambda image_id, width, height: model.masks(width=width, height=height), split="test"
    )
    pairs = []
    for row, image in zip(rows, result["images"]):
        predicted = model.masks(width=row["width"], height=row["height"])
        for name, column in zip(recipe.CLASSES, recipe.MASK_COLUMNS):
            if "skipped" not in image["classes"][name]:
                pairs.append((predicted[column], recipe.decode_mask(row[column]), image["classes"][name]))
    return pairs


def as_batch(mask: np.ndarray):
    return torch.from_numpy(mask)[None, None].float()  # (B=1, C=1, H, W)


def test_monais_dice_metric_gives_evaluates_dice(atlas_pairs):
    metric = DiceMetric(include_background=True, reduction="none", ignore_empty=False)
    assert len(atlas_pairs) > 15
    for prediction, truth, scores in atlas_pairs:
        dice = float(metric(as_batch(prediction), as_batch(truth))[0, 0])
        assert dice == pytest.approx(scores["dice"], abs=1e-6)


def test_monais_surface_distances_give_evaluates_hd95_and_assd(atlas_pairs):
    checked = 0
    for prediction, truth, scores in atlas_pairs:
        if scores["hd95"] is None:
            assert not prediction.any() or not truth.any()
            continue
        hd95 = float(
            compute_hausdorff_distance(as_batch(prediction), as_batch(truth), include_background=True, percentile=95)[
                0, 0
            ]
        )
        assd = float(
            compute_average_surface_distance(
                as_batch(prediction), as_batch(truth), include_background=True, symmetric=True
            )[0, 0]
        )
        assert hd95 == pytest.approx(scores["hd95"], rel=1e-5, abs=1e-4)
        assert assd == pytest.approx(scores["assd"], rel=1e-5, abs=1e-4)
        checked += 1
    assert checked > 10


@pytest.mark.filterwarnings("ignore:the (prediction|ground truth) of class 0 is all 0:UserWarning")  # one mask empty
def test_monais_surface_dice_gives_evaluates_nsd(atlas_pairs):
    from monai.metrics import compute_surface_dice

    partial = 0
    for prediction, truth, scores in atlas_pairs:
        tolerance = evaluate.tolerance_pixels(evaluate.DEFAULT_NSD_TOLERANCE_PCT, shape=truth.shape)
        nsd = float(
            compute_surface_dice(
                as_batch(prediction), as_batch(truth), class_thresholds=[tolerance], include_background=True
            )[0, 0]
        )
        assert nsd == pytest.approx(scores["nsd"], abs=1e-6)
        partial += 0 < nsd < 1
    assert partial > 10
