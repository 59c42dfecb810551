"""The atlas baseline: where each class usually is, learnt from the train split alone.

For each class, every train mask is resized to one size (`ATLAS_SIZE`, nearest neighbour,
so the aspect ratio is not kept: the atlas lives in coordinates relative to the image), the
masks are averaged into a frequency map (the fraction of train images whose mask covers
each pixel), and the map is thresholded at the level of `THRESHOLDS` that gives the highest
mean Dice on the train masks themselves (at atlas size, Dice as `evaluate` takes it: pairs
with both masks empty left out). The prediction for an image is that binary shape resized to
the image's size. A train mask that is null (annotated without a mask upstream) is left out
of its class's average. The split that is predicted is read for its image sizes only: its
masks are never looked at.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

import covid_chestxray_seg as recipe
from covid_chestxray_seg_tools import evaluate, layout, staging
from covid_chestxray_seg_tools.errors import CovidSegError
from covid_chestxray_seg_tools.source import load_rows


class BaselineError(CovidSegError, ValueError):
    """A baseline cannot be fitted or written from the data given."""


NAME = "atlas"
BASELINES = (NAME,)
ATLAS_SIZE = (256, 256)  # (width, height)
THRESHOLDS = tuple(round(0.05 * step, 2) for step in range(1, 20))  # 0.05 .. 0.95
FIT_SPLIT = "train"
DEFAULT_SPLIT = "test"
SIZE_COLUMNS = ("image_id", "width", "height")


@dataclass(frozen=True)
class Atlas:
    """Per mask column: the frequency map (float, atlas size), the chosen threshold, the mean
    train Dice at that threshold (None when no train pair could be scored) and how many train
    masks went into the map."""

    frequency: dict[str, np.ndarray]
    threshold: dict[str, float]
    train_dice: dict[str, float | None]
    train_masks: dict[str, int]

    def shape(self, *, column: str) -> np.ndarray:
        """The binary shape of a class at atlas size."""
        return self.frequency[column] >= self.threshold[column]

    def masks(self, *, width: int, height: int) -> dict[str, np.ndarray]:
        """The predicted mask of every class at an image's size (bool (H, W))."""
        predicted = {}
        for column in recipe.MASK_COLUMNS:
            shape = Image.fromarray(self.shape(column=column).astype(np.uint8) * 255)
            predicted[column] = np.asarray(shape.resize((width, height), Image.Resampling.NEAREST)) > 0
        return predicted

    def summary(self) -> dict:
        """What the JSON result says about the predictor."""
        return {
            "name": NAME,
            "fit_split": FIT_SPLIT,
            "size": list(ATLAS_SIZE),
            "classes": {
                name: {
                    "threshold": self.threshold[column],
                    "train_dice": self.train_dice[column],
                    "train_masks": self.train_masks[column],
                }
                for name, column in zip(recipe.CLASSES, recipe.MASK_COLUMNS)
            },
        }


def _small(cell, *, size: tuple[int, int]) -> np.ndarray:
    """A stored mask resized to `size` with nearest neighbour, as a flat float32 0/1 vector."""
    data = cell["bytes"] if isinstance(cell, dict) else cell
    with Image.open(io.BytesIO(data)) as image:
        small = image.resize(size, Image.Resampling.NEAREST)
    return (np.asarray(small) > 0).ravel().astype(np.float32)


def fit_atlas(
    *, rows: Iterable[dict], size: tuple[int, int] = ATLAS_SIZE, thresholds: Sequence[float] = THRESHOLDS
) -> Atlas:
    """The atlas of the train rows (their mask columns, stored or as {"bytes": PNG})."""
    stacks: dict[str, list[np.ndarray]] = {column: [] for column in recipe.MASK_COLUMNS}
    for row in rows:
        for column in recipe.MASK_COLUMNS:
            if row[column] is not None:
                stacks[column].append(_small(row[column], size=size))
    if not any(stacks.values()):
        raise BaselineError("the atlas needs train rows with masks; the train split has none")
    levels = np.asarray(thresholds, dtype=np.float32)
    frequency, threshold, train_dice, counts = {}, {}, {}, {}
    for column, stack in stacks.items():
        counts[column] = len(stack)
        if not stack:
            frequency[column] = np.zeros(size[::-1], dtype=np.float32)
            threshold[column], train_dice[column] = float(thresholds[-1]), None
            continue
        masks = np.stack(stack)  # (N, P)
        mean = masks.mean(axis=0)
        shapes = (mean[None, :] >= levels[:, None]).astype(np.float32)  # (T, P)
        overlap = masks @ shapes.T  # (N, T)
        pixels = masks.sum(axis=1)[:, None] + shapes.sum(axis=1)[None, :]  # (N, T)
        scored = pixels > 0
        dice = np.where(scored, 2 * overlap / np.where(scored, pixels, 1), 0.0)
        scored_count = scored.sum(axis=0)
        mean_dice = np.where(scored_count > 0, dice.sum(axis=0) / np.maximum(scored_count, 1), -1.0)
        best = int(np.argmax(mean_dice))  # the lowest threshold among equals
        frequency[column] = mean.reshape(size[::-1])
        threshold[column] = float(thresholds[best])
        train_dice[column] = None if scored_count[best] == 0 else float(mean_dice[best])
    return Atlas(frequency=frequency, threshold=threshold, train_dice=train_dice, train_masks=counts)


def write_predictions(*, atlas: Atlas, images: Iterable[dict], out: Path, split: str) -> dict[str, int]:
    """OUT/<split>/<image_id>/<mask column>.png (1-bit, full size) for every class, for images
    given as rows with image_id, width and height. OUT appears only when all is written."""
    counts = {"images": 0, "masks": 0, "empty masks": 0}
    with staging.staged(Path(out), replace=False) as folder:
        for row in images:
            target = folder / split / str(row["image_id"])
            target.mkdir(parents=True)
            for column, mask in atlas.masks(width=int(row["width"]), height=int(row["height"])).items():
                Image.fromarray(mask).save(target / f"{column}.png", optimize=False)
                counts["masks"] += 1
                counts["empty masks"] += int(not mask.any())
            counts["images"] += 1
    return counts


def atlas_predictions(*, source: str, out: Path, split: str = DEFAULT_SPLIT) -> tuple[Atlas, dict[str, int]]:
    """Fit the atlas on the train split of `source` (a build folder, a Hub repo id) and write its
    predictions for `split` to `out` in the folder layout `evaluate` reads. Returns the atlas
    and what was written, counted."""
    train = load_rows(source=source, split=FIT_SPLIT, columns=recipe.MASK_COLUMNS)
    atlas = fit_atlas(rows=train)
    images = load_rows(source=source, split=split, columns=SIZE_COLUMNS)
    return atlas, write_predictions(atlas=atlas, images=images, out=out, split=split)


def score_atlas(
    folder: Path, *, split: str = DEFAULT_SPLIT, samples: int = evaluate.BOOTSTRAP_SAMPLES, seed: int = evaluate.SEED
) -> dict:
    """The atlas fitted on the train split of a built folder, scored on `split` (in memory, no
    files): the `evaluate.score` result, with a "predictor" entry (the thresholds and train
    Dice). `evaluate.format_markdown` turns it into the card's table."""
    atlas = fit_atlas(rows=layout.iter_rows(Path(folder), FIT_SPLIT, columns=recipe.MASK_COLUMNS))
    truth = layout.read_rows(Path(folder), split, columns=evaluate.TRUTH_COLUMNS)
    if not truth:
        raise BaselineError(f"{folder}: split {split} has no rows")
    result = evaluate.score(
        truth=truth,
        predictions=lambda image_id, width, height: atlas.masks(width=width, height=height),
        split=split,
        samples=samples,
        seed=seed,
    )
    result["predictor"] = atlas.summary()
    return result
