"""The atlas baseline: where each class usually is, learnt from development images only.

For each class, every mask it learns from is resized to one size (`ATLAS_SIZE`, nearest
neighbour, so the aspect ratio is not kept: the atlas lives in coordinates relative to the
image), the masks are averaged into a frequency map (the fraction of images whose mask covers
each pixel), and the map is thresholded at the level of `THRESHOLDS` that gives the highest mean
Dice on those masks themselves (at atlas size, Dice as `evaluate` takes it: pairs with both masks
empty left out). The prediction for an image is that binary shape resized to the image's size. A
null mask (annotated without a mask upstream), and a mask the build flags as missing, is left
out of its class's average.

What it learns from (`evaluate.fit_rounds`): to predict the test split, train + validation; to
predict validation, train (and train, validation); under cross-validation (`cv`), one atlas
per fold, fitted on the other four folds and predicting its own fold's images (out-of-fold).
The masks of the images it predicts are never used for their prediction.

Other baselines live in modules of their own; they share `evaluate.fit_rounds` (what each model
learns from) and the prediction layout (`write_predictions`' `DIR/<split>/<image_id>/`).
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
from PIL import Image

import covid_chestxray_seg as recipe
from covid_chestxray_seg_tools import evaluate, staging
from covid_chestxray_seg_tools.errors import CovidSegError
from covid_chestxray_seg_tools.hub_folder import layout
from covid_chestxray_seg_tools.source import Source, load_rows, open_source

__all__ = [
    "ATLAS_SIZE",
    "DEFAULT_SPLIT",
    "FLAGS_COLUMN",
    "FOLD_COLUMN",
    "NAME",
    "THRESHOLDS",
    "Atlas",
    "AtlasModels",
    "AtlasScore",
    "BaselineError",
    "atlas_predictions",
    "fit_atlas",
    "fit_atlases",
    "score_atlas",
    "write_predictions",
]


class BaselineError(CovidSegError, ValueError):
    """A baseline cannot be fitted or written from the data given."""


NAME = "atlas"
ATLAS_SIZE = (256, 256)  # (width, height)
THRESHOLDS = tuple(round(0.05 * step, 2) for step in range(1, 20))  # 0.05 .. 0.95
DEFAULT_SPLIT = "test"
_SIZE_COLUMNS = ("image_id", "width", "height")
FOLD_COLUMN = "fold"
FLAGS_COLUMN = "quality_flags"
_FIT_COLUMNS = ("image_id", *recipe.MASK_COLUMNS)


@dataclass(frozen=True)
class Atlas:
    """One fitted atlas. Per mask column: the frequency map (float, atlas size), the chosen
    threshold, the mean Dice on the fitting masks at that threshold (None when no pair could be
    scored) and how many masks went into the map."""

    frequency: dict[str, np.ndarray]
    threshold: dict[str, float]
    fit_dice: dict[str, float | None]
    fit_masks: dict[str, int]

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
        """Per class: threshold, Dice on the fitting masks, masks averaged."""
        return {
            name: {
                "threshold": self.threshold[column],
                "fit_dice": self.fit_dice[column],
                "fit_masks": self.fit_masks[column],
            }
            for name, column in zip(recipe.CLASSES, recipe.MASK_COLUMNS)
        }


def _small(cell: Any, *, size: tuple[int, int]) -> np.ndarray | None:
    """A stored mask resized to `size` with nearest neighbour, as a flat bool vector; None for a null mask."""
    if cell is None:
        return None
    data = cell["bytes"] if isinstance(cell, dict) else cell
    with Image.open(io.BytesIO(data)) as image:
        small = image.resize(size, Image.Resampling.NEAREST)
    return (np.asarray(small) > 0).ravel()


def _small_masks(row: Mapping, *, size: tuple[int, int]) -> dict[str, np.ndarray | None]:
    # A mask the build flags as missing is empty by mistake: left out like a null one.
    flags = set(row.get(FLAGS_COLUMN) or ())
    return {
        column: None if recipe.quality_flag("missing", column) in flags else _small(row[column], size=size)
        for column in recipe.MASK_COLUMNS
    }


def _fit(
    images: Sequence[Mapping[str, np.ndarray | None]], *, size: tuple[int, int], thresholds: Sequence[float]
) -> Atlas:
    """The atlas of masks already resized (`_small_masks`), one mapping per image."""
    if not any(mask is not None for image in images for mask in image.values()):
        raise BaselineError("the atlas needs images with masks to learn from; there are none")
    levels = np.asarray(thresholds, dtype=np.float32)
    frequency: dict[str, np.ndarray] = {}
    threshold: dict[str, float] = {}
    fit_dice: dict[str, float | None] = {}
    counts: dict[str, int] = {}
    for column in recipe.MASK_COLUMNS:
        stack = [mask for image in images if (mask := image[column]) is not None]
        counts[column] = len(stack)
        if not stack:
            frequency[column] = np.zeros(size[::-1], dtype=np.float32)
            threshold[column], fit_dice[column] = float(thresholds[-1]), None
            continue
        masks = np.stack(stack).astype(np.float32)  # (N, P)
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
        fit_dice[column] = None if scored_count[best] == 0 else float(mean_dice[best])
    return Atlas(frequency=frequency, threshold=threshold, fit_dice=fit_dice, fit_masks=counts)


def fit_atlas(
    *, rows: Iterable[Mapping], size: tuple[int, int] = ATLAS_SIZE, thresholds: Sequence[float] = THRESHOLDS
) -> Atlas:
    """The atlas of some rows.

    Args:
        rows: rows with the mask columns (stored cells, {"bytes": PNG} or None).
        size: the atlas's (width, height).
        thresholds: the levels tried.

    Returns:
        The atlas.

    Raises:
        BaselineError: no row has a mask.
    """
    return _fit([_small_masks(row, size=size) for row in rows], size=size, thresholds=thresholds)


@dataclass(frozen=True)
class AtlasModels:
    """The atlases that predict a split (one) or the cross-validation (one per fold).

    Attributes:
        split: the split predicted, or "cv".
        rounds: each atlas with what it learnt from and predicts.
    """

    split: str
    rounds: tuple[tuple[evaluate.FitRound, Atlas], ...]

    def atlas_for(self, image_id: int) -> Atlas:
        """The atlas that predicts an image.

        Raises:
            BaselineError: no atlas predicts it.
        """
        for fit_round, atlas in self.rounds:
            if image_id in fit_round.predict:
                return atlas
        raise BaselineError(f"image {image_id} is not predicted by the atlas of {self.split}")

    def __call__(self, image_id: int, width: int, height: int) -> dict[str, np.ndarray]:
        """The predictions of an image, as `evaluate.score` asks for them."""
        return self.atlas_for(image_id).masks(width=width, height=height)

    def summary(self) -> dict:
        """What the JSON result says about the predictor."""
        return {
            "name": NAME,
            "size": list(ATLAS_SIZE),
            "split": self.split,
            "models": [
                {
                    "fold": fit_round.fold,
                    "fit_images": len(fit_round.fit),
                    "predicted_images": len(fit_round.predict),
                    "classes": atlas.summary(),
                }
                for fit_round, atlas in self.rounds
            ],
        }


def fit_atlases(
    *,
    split: str,
    rows: Mapping[str, Sequence[Mapping]],
    size: tuple[int, int] = ATLAS_SIZE,
    thresholds: Sequence[float] = THRESHOLDS,
) -> AtlasModels:
    """The atlases that predict `split`, each fitted on what `evaluate.fit_rounds` allows it.

    Args:
        split: the split predicted, or "cv".
        rows: split -> rows: image_id and the mask columns for the splits learnt from; image_id
            (and fold, under cross-validation) for the split predicted.
        size, thresholds: as for `fit_atlas`.

    Returns:
        The atlases.

    Raises:
        BaselineError: an atlas has no image with masks to learn from.
    """
    rounds = evaluate.fit_rounds(split=split, rows=rows)
    fitting = {int(row["image_id"]): row for name in evaluate.fit_splits(split) for row in rows.get(name, ())}
    # Each mask is resized once, however many folds learn from it.
    small = {image_id: _small_masks(fitting[image_id], size=size) for image_id in sorted(fitting)}
    models = []
    for fit_round in rounds:
        images = [small[image_id] for image_id in sorted(fit_round.fit)]
        models.append((fit_round, _fit(images, size=size, thresholds=thresholds)))
    return AtlasModels(split=split, rounds=tuple(models))


def write_predictions(*, models: AtlasModels, images: Iterable[Mapping], out: Path) -> dict[str, int]:
    """OUT/<split>/<image_id>/<mask column>.png (1-bit, full size) for every class.

    Args:
        models: the atlases.
        images: rows with image_id, width, height and split.
        out: the folder to create; it appears only when all is written.

    Returns:
        What was written, counted.
    """
    counts = {"images": 0, "masks": 0, "empty masks": 0}
    with staging.staged(Path(out), replace=False) as folder:
        for row in images:
            target = folder / row["split"] / str(row["image_id"])
            target.mkdir(parents=True)
            for column, mask in models(int(row["image_id"]), int(row["width"]), int(row["height"])).items():
                Image.fromarray(mask).save(target / f"{column}.png", optimize=False)
                counts["masks"] += 1
                counts["empty masks"] += int(not mask.any())
            counts["images"] += 1
    return counts


def _predicted_splits(split: str) -> tuple[str, ...]:
    return evaluate.Selection(split=split).splits


def atlas_predictions(
    *, source: str | Source, out: Path, split: str = DEFAULT_SPLIT
) -> tuple[AtlasModels, dict[str, int]]:
    """Fit the atlases that predict `split` of `source` and write their predictions.

    Args:
        source: a built folder or a Hub repo id, or a `Source` opened at a revision.
        out: the folder to create, in the layout `evaluate` reads.
        split: the split to predict, or "cv" (out-of-fold predictions for train + validation).

    Returns:
        The atlases, and what was written, counted.

    Raises:
        BaselineError: nothing to learn from.
        source.SourceError: the source cannot be read, is damaged or lacks a split.
    """
    source = open_source(source)
    rows: dict[str, list[dict]] = {}
    if split == evaluate.CV:
        for name in _predicted_splits(split):
            rows[name] = load_rows(
                source=source,
                split=name,
                columns=(*_SIZE_COLUMNS, FOLD_COLUMN, *_FIT_COLUMNS),
                optional=(FLAGS_COLUMN,),
            )
    else:
        for name in evaluate.fit_splits(split):
            rows[name] = load_rows(source=source, split=name, columns=_FIT_COLUMNS, optional=(FLAGS_COLUMN,))
        # The split predicted is read for its image sizes only: its masks are never looked at.
        rows[split] = load_rows(source=source, split=split, columns=_SIZE_COLUMNS)
    models = fit_atlases(split=split, rows=rows)
    images = [dict(row, split=name) for name in _predicted_splits(split) for row in rows[name]]
    return models, write_predictions(models=models, images=images, out=out)


class AtlasScore(evaluate.ScoreResult, total=False):
    """`evaluate.score`'s result with the atlas that was scored: its thresholds and fit Dice."""

    predictor: dict


def score_atlas(
    folder: Path,
    *,
    split: str = DEFAULT_SPLIT,
    samples: int = evaluate.BOOTSTRAP_SAMPLES,
    seed: int = evaluate.SEED,
) -> AtlasScore:
    """The atlas scored on a split or under cross-validation of a built folder, in memory.

    Args:
        folder: a built folder.
        split: the split predicted, or "cv".
        samples, seed: the bootstrap's.

    Returns:
        The `evaluate.score` result with a "predictor" entry (`AtlasModels.summary`);
        `evaluate.format_results` turns it into the card's table.

    Raises:
        BaselineError: the split has no rows, or nothing to learn from.
    """
    folder = Path(folder)
    shards = layout.shard_paths(folder)
    # What `evaluate` reads where the build has it (builds of an older builder lack some), so
    # the in-memory score is the one `covid-seg evaluate` gives the atlas's files.
    names = pq.read_schema(shards[0]).names if shards else []
    optional = [column for column in evaluate.OPTIONAL_TRUTH_COLUMNS if column in names and column != FOLD_COLUMN]
    flags = (FLAGS_COLUMN,) if FLAGS_COLUMN in names else ()
    columns = (*evaluate.TRUTH_COLUMNS, FOLD_COLUMN, *optional)
    truth = {name: layout.read_rows(folder, name, columns=columns) for name in _predicted_splits(split)}
    rows = dict(truth)
    for name in evaluate.fit_splits(split):
        rows.setdefault(name, layout.read_rows(folder, name, columns=(*_FIT_COLUMNS, *flags)))
    scored = [dict(row, split=name) for name, part in truth.items() for row in part]
    if not scored:
        raise BaselineError(f"{folder}: split {split} has no rows")
    models = fit_atlases(split=split, rows=rows)
    result = evaluate.score(
        truth=scored, predictions=models, split=split, options=evaluate.ScoringOptions(samples=samples, seed=seed)
    )
    return AtlasScore(**result, predictor=models.summary())
