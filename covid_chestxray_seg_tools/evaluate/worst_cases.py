"""The report's worst cases: for each scored class, the images where the predictions' Dice is
lowest, drawn as thumbnails with the class's true positives, false positives and false negatives.

Which images: the pairs the result scores, lowest Dice first (then lowest NSD, then image id);
a pair the protocol skips has no Dice and is never shown as a failure. What is drawn: the
source's `size-256` config where it has one (a Hub source then costs no full-size download):
its greyscale picture and its true mask, and the prediction brought down to 256 px by the same
rule as those masks (`hub_folder.resize.resize_mask`), so truth and prediction line up pixel
for pixel. A source without that config (a build of an older builder) gives its full-size
image and masks, brought down by the same rules. Predictions are read back through
`load_predictions` for the chosen images only, and only their chosen classes are decoded.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

import covid_chestxray_seg as recipe
from covid_chestxray_seg_tools.evaluate.figures import outcome_thumbnail
from covid_chestxray_seg_tools.evaluate.loading import load_predictions
from covid_chestxray_seg_tools.evaluate.predictions import Targets
from covid_chestxray_seg_tools.evaluate.protocol import CV, DEVELOPMENT_SPLITS
from covid_chestxray_seg_tools.evaluate.result import ImageScores, ScoreResult
from covid_chestxray_seg_tools.hub_folder import layout
from covid_chestxray_seg_tools.hub_folder.resize import SIZE, resize_image, resize_mask
from covid_chestxray_seg_tools.source import Source, SourceError, load_rows, load_splits

__all__ = ["DEFAULT_WORST", "Case", "Cases", "draw_cases", "worst_pairs"]

DEFAULT_WORST = 3
_COLUMNS = dict(zip(recipe.CLASSES, recipe.MASK_COLUMNS))
# What is read of each row: who it is, and (for the chosen images) its picture and masks.
_IDENTITY = ("image_id", "file_name", "width", "height")


@dataclass(frozen=True)
class Case:
    """One worst case: a class on an image, its scores and its thumbnail.

    Attributes:
        name: the class.
        image: the image's record in the result (identity and every class's scores).
        thumbnail: the PNG, at most 256 px on its longest side.
        visible: whether the truth or the prediction covers a pixel at 256 px (a thin tube
            or a small probe may cover none).
    """

    name: str
    image: ImageScores
    thumbnail: bytes
    visible: bool


@dataclass(frozen=True)
class Cases:
    """What the report shows of the source's images.

    Attributes:
        file_names: image id -> its file name, for every image of the splits scored.
        by_class: class -> its worst cases, lowest Dice first (a class without a scored pair
            has none).
        config: the config the pictures come from (`size-256`, or `default` brought down).
    """

    file_names: Mapping[int, str]
    by_class: Mapping[str, Sequence[Case]]
    config: str


def worst_pairs(result: ScoreResult, *, count: int) -> dict[str, list[ImageScores]]:
    """Per scored class, the `count` images with the lowest Dice (then NSD, then image id).

    Args:
        result: a `score` result.
        count: images per class.

    Returns:
        Class -> image records, lowest first; only pairs that have a Dice (a skipped pair never).
    """
    chosen = {}
    for name in result["classes"]:
        scored = [image for image in result["images"] if image["classes"][name].get("dice") is not None]

        def key(image: ImageScores, name: str = name) -> tuple[float, float, int]:
            pair = image["classes"][name]
            return (pair.get("dice") or 0.0, pair.get("nsd") or 0.0, image["image_id"])

        chosen[name] = sorted(scored, key=key)[:count]
    return chosen


def _splits(result: ScoreResult) -> tuple[str, ...]:
    return DEVELOPMENT_SPLITS if result["split"] == CV else (result["split"],)


def _table_rows(source: Source, split: str, columns: Sequence[str]) -> tuple[list[dict], str] | None:
    """The size-256 rows of `split` with `columns` (pictures undecoded), or None where the
    source has no size-256 config."""
    config = layout.SIZE_256_CONFIG
    if not source.is_repo:
        paths = layout.shard_paths(Path(source.location), split, config=config)
        if not paths:
            return None
        return layout.read_rows(Path(source.location), split, columns=columns, config=config), config
    if source.declared and config not in source.declared:
        return None
    try:
        loaded = load_splits(source=source, splits=[split], required=_IDENTITY, config=config)
    except SourceError:
        # A repo read offline declares nothing; one without the config says so when loaded.
        return None
    return loaded[split].select_columns(list(columns)).with_format("arrow")[:].to_pylist(), config


def _rows(source: Source, split: str, columns: Sequence[str]) -> tuple[list[dict], str]:
    """The rows of `split` with their picture and `columns`' masks, undecoded: the size-256
    config's, or (a source without it) the default config's, which `_picture` and `_truth`
    bring down by the same rules."""
    wanted = [*_IDENTITY, "image", *columns]
    read = _table_rows(source, split, wanted)
    if read is not None:
        return read
    return load_rows(source=source, split=split, columns=wanted), layout.CONFIG_NAME


def _picture(data: bytes, *, config: str) -> np.ndarray:
    """The greyscale picture at 256 px, uint8."""
    if config != layout.SIZE_256_CONFIG:
        return np.asarray(resize_image(data))
    with Image.open(io.BytesIO(data)) as opened:
        return np.asarray(opened.convert("L"))


def _truth(cell: object, *, config: str) -> np.ndarray:
    """The true mask at 256 px (a null one, never chosen, as empty)."""
    mask = recipe.decode_mask(cell)
    if mask is None:
        return np.zeros((SIZE, SIZE), dtype=bool)
    return mask if config == layout.SIZE_256_CONFIG else resize_mask(mask)


def draw_cases(result: ScoreResult, *, source: Source, predictions: Path, threshold: float | None, count: int) -> Cases:
    """Each scored class's `count` worst cases drawn, and every image's file name.

    Args:
        result: the `score` result of `predictions`.
        source: the ground truth it was scored against (opened).
        predictions: the predictions scored (any form `load_predictions` reads).
        threshold: the threshold they were scored with.
        count: worst cases per class.

    Returns:
        The file names and the worst cases.

    Raises:
        source.SourceError: the source cannot be read.
        EvaluateError: the predictions cannot be read (they were read when scored).
    """
    worst = worst_pairs(result, count=count)
    chosen: dict[int, set[str]] = {}
    for name, images in worst.items():
        for image in images:
            chosen.setdefault(image["image_id"], set()).add(_COLUMNS[name])
    columns = sorted({column for wanted in chosen.values() for column in wanted})
    file_names: dict[int, str] = {}
    sizes: dict[int, tuple[int, int]] = {}
    pictures: dict[int, dict] = {}
    known: dict[str, frozenset[int]] = {}
    targets: dict[str, dict[int, tuple[int, int]]] = {}
    config = layout.SIZE_256_CONFIG
    for split in _splits(result):
        rows, config = _rows(source, split, columns)
        known[split] = frozenset(int(row["image_id"]) for row in rows)
        for row in rows:
            image_id = int(row["image_id"])
            file_names[image_id] = row["file_name"]
            sizes[image_id] = (int(row["width"]), int(row["height"]))
            if image_id in chosen:
                pictures[image_id] = row
                targets.setdefault(split, {})[image_id] = sizes[image_id]
    by_class: dict[str, list[Case]] = {name: [] for name in worst}
    if chosen:
        predicted = load_predictions(
            path=predictions, targets=Targets(images=targets, known=known), threshold=threshold
        )
        small: dict[tuple[int, str], np.ndarray] = {}
        for image_id, wanted in chosen.items():
            masks = predicted(image_id, *sizes[image_id])
            for column in wanted:
                mask = masks.get(column)
                small[image_id, column] = np.zeros((SIZE, SIZE), bool) if mask is None else resize_mask(mask)
        grey: dict[int, np.ndarray] = {}
        for name, images in worst.items():
            column = _COLUMNS[name]
            for image in images:
                image_id = image["image_id"]
                row = pictures[image_id]
                if image_id not in grey:
                    grey[image_id] = _picture(row["image"]["bytes"], config=config)
                truth, prediction = _truth(row[column], config=config), small[image_id, column]
                thumbnail = outcome_thumbnail(
                    grey[image_id], truth=truth, prediction=prediction, aspect=sizes[image_id]
                )
                visible = bool(truth.any() or prediction.any())
                by_class[name].append(Case(name=name, image=image, thumbnail=thumbnail, visible=visible))
    return Cases(file_names=file_names, by_class=by_class, config=config)
