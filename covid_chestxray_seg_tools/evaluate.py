"""Score predicted masks against a split: Dice, IoU, HD95 and ASSD per image and class, and
per class a mean with a 95 % bootstrap interval over patients.

Conventions (the card's baseline table says the same in short):

- A mask is a 2-D boolean array at the image's full size; in a prediction file 0 is
  background and anything else foreground.
- Dice = 2|P and T| / (|P| + |T|), IoU = |P and T| / |P or T|, per image and class, where
  |P and T| counts the pixels foreground in both prediction and truth, |P or T| in either.
- Surface: the mask pixels with a 4-connected background neighbour (up, down, left or right;
  outside the image counts as background): ``mask & ~scipy.ndimage.binary_erosion(mask)``,
  as MONAI's `get_mask_edges` and medpy (connectivity 1) take it.
- Surface distance: from each surface pixel of one mask the Euclidean distance, in pixels, to
  the nearest surface pixel of the other (scipy's KD-tree, as MONAI does on CPU; it gives
  exactly `distance_transform_edt` of the other surface's complement at those pixels, about
  15 times faster on these image sizes).
- HD95: MONAI's `compute_hausdorff_distance(percentile=95)`: the 95th percentile (linear
  interpolation) of the distances from prediction to truth, the same from truth to
  prediction, and the larger of the two. (medpy's `hd95` takes the percentile of both
  directions pooled instead; the two differ slightly.)
- ASSD: MONAI's `compute_average_surface_distance(symmetric=True)`: the mean of the
  distances of both directions pooled.
- Skipped, and counted: a pair whose ground truth is null (the class is annotated on the
  image but upstream has no mask), and a pair where prediction and truth are both empty.
  Where one of the two is empty, Dice and IoU are 0 and the distances are missing (counted,
  left out of the distance means, never 0 or infinity).
- Per class: the mean over the scored pairs, and a 95 % percentile-bootstrap interval that
  resamples patients (all images of a patient together, with replacement), seeded, so the
  same input gives the same numbers.

Predictions come as a folder (`DIR/<split>/<image_id>/<mask column>.png`, what
`covid-seg export --format folder` writes) or as Parquet / a `save_to_disk` folder with
`image_id` and the mask columns.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image
from scipy.spatial import cKDTree

import covid_chestxray_seg as recipe
from covid_chestxray_seg_tools.errors import CovidSegError
from covid_chestxray_seg_tools.source import load_rows


class EvaluateError(CovidSegError, ValueError):
    """Predictions that cannot be scored: the message names the file or cell and the problem."""


METRICS = ("dice", "iou", "hd95", "assd")
DISTANCE_METRICS = ("hd95", "assd")
HD_PERCENTILE = 95.0
CONFIDENCE = 0.95
BOOTSTRAP_SAMPLES = 2000
SEED = 0
# Columns of the ground truth that scoring reads (the image bytes are never decoded).
TRUTH_COLUMNS = ("image_id", "patient_id", "width", "height", *recipe.MASK_COLUMNS)
# A file in a prediction folder that is not a class mask (the folder export writes it).
IMAGE_FILE = "image.png"

# (image_id, width, height) -> {mask column: bool (H, W) array}; a column left out is an empty prediction.
Predictions = Callable[[int, int, int], Mapping[str, np.ndarray]]


# --- metrics of one pair -----------------------------------------------------------------


def _crop_to_union(prediction: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both masks cut to the bounding box of their union plus one pixel: the surfaces are the
    same as in the full image (the margin is background, the image border stays a border)."""
    union = prediction | truth
    rows = np.flatnonzero(union.any(axis=1))
    cols = np.flatnonzero(union.any(axis=0))
    window = (slice(max(rows[0] - 1, 0), rows[-1] + 2), slice(max(cols[0] - 1, 0), cols[-1] + 2))
    return prediction[window], truth[window]


def surface_distances(*, prediction: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(distances from each surface pixel of `prediction` to the nearest one of `truth`, and the
    reverse), Euclidean, in pixels. Both masks must be non-empty."""
    prediction, truth = np.asarray(prediction, dtype=bool), np.asarray(truth, dtype=bool)
    if prediction.shape != truth.shape:
        raise EvaluateError(f"prediction {prediction.shape} and truth {truth.shape} differ in size")
    if not prediction.any() or not truth.any():
        raise EvaluateError("surface distances need two non-empty masks")
    prediction, truth = _crop_to_union(prediction, truth)
    points_prediction = np.argwhere(recipe.mask_outline(prediction))
    points_truth = np.argwhere(recipe.mask_outline(truth))
    to_truth = cKDTree(points_truth).query(points_prediction, k=1)[0]
    to_prediction = cKDTree(points_prediction).query(points_truth, k=1)[0]
    return to_truth, to_prediction


def pair_scores(*, prediction: np.ndarray | None, truth: np.ndarray) -> dict[str, float | None] | None:
    """Dice, IoU, HD95 and ASSD of one prediction against one truth mask (same size);
    `prediction` None is an empty prediction. None when both are empty (nothing to score);
    HD95 and ASSD None when exactly one is empty."""
    truth = np.asarray(truth, dtype=bool)
    truth_pixels = int(np.count_nonzero(truth))
    if prediction is None:
        prediction_pixels = 0
    else:
        prediction = np.asarray(prediction, dtype=bool)
        if prediction.shape != truth.shape:
            raise EvaluateError(f"prediction {prediction.shape} and truth {truth.shape} differ in size")
        prediction_pixels = int(np.count_nonzero(prediction))
    if prediction_pixels == 0 and truth_pixels == 0:
        return None
    if prediction_pixels == 0 or truth_pixels == 0:
        return {"dice": 0.0, "iou": 0.0, "hd95": None, "assd": None}
    overlap = int(np.count_nonzero(prediction & truth))
    to_truth, to_prediction = surface_distances(prediction=prediction, truth=truth)
    return {
        "dice": 2 * overlap / (prediction_pixels + truth_pixels),
        "iou": overlap / (prediction_pixels + truth_pixels - overlap),
        "hd95": float(max(np.percentile(to_truth, HD_PERCENTILE), np.percentile(to_prediction, HD_PERCENTILE))),
        "assd": float((to_truth.sum() + to_prediction.sum()) / (to_truth.size + to_prediction.size)),
    }


# --- the bootstrap -----------------------------------------------------------------------


def bootstrap_interval(
    *,
    values: Sequence[float],
    groups: Sequence,
    samples: int = BOOTSTRAP_SAMPLES,
    seed: int = SEED,
    confidence: float = CONFIDENCE,
) -> tuple[float, float]:
    """Percentile-bootstrap interval of the mean of `values`, resampling whole groups (patients)
    with replacement: each resample draws as many groups as there are and averages all their
    values. Seeded: the same input (in the same order) gives the same interval."""
    if len(values) != len(groups) or len(values) == 0:
        raise EvaluateError(
            "bootstrap needs one group per value and at least one value "
            f"(got {len(values)} values, {len(groups)} groups)"
        )
    keys = list(dict.fromkeys(groups))
    index = {key: position for position, key in enumerate(keys)}
    members = np.array([index[group] for group in groups])
    sums = np.bincount(members, weights=np.asarray(values, dtype=float), minlength=len(keys))
    counts = np.bincount(members, minlength=len(keys)).astype(float)
    draws = np.random.default_rng(seed).integers(0, len(keys), size=(samples, len(keys)))
    means = sums[draws].sum(axis=1) / counts[draws].sum(axis=1)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


# --- scoring a split ---------------------------------------------------------------------


def score(
    *,
    truth: Iterable[dict],
    predictions: Predictions,
    split: str,
    samples: int = BOOTSTRAP_SAMPLES,
    seed: int = SEED,
) -> dict:
    """Score `predictions` against the ground-truth rows of `split` (image_id, patient_id, width,
    height and the mask columns, stored or decoded). The result is what `--json` writes:
    ``{"split", "classes": {CLASS: {"n", "dice": {"mean", "ci95", "n"}, "iou", "hd95", "assd",
    "skipped"}}, "counts", "bootstrap", "images"}``."""
    per_class: dict[str, dict[str, list]] = {
        name: {"values": {m: [] for m in METRICS}, "groups": {m: [] for m in METRICS}} for name in recipe.CLASSES
    }
    skipped = {name: {"null_truth": 0, "both_empty": 0, "distance_one_side_empty": 0} for name in recipe.CLASSES}
    images, patients = [], set()
    # In image id order, so the numbers do not depend on the order the rows were read in.
    for row in sorted(truth, key=lambda row: int(row["image_id"])):
        image_id, width, height = int(row["image_id"]), int(row["width"]), int(row["height"])
        patient = row.get("patient_id")
        # An image without a patient id is a patient of its own.
        group = ("image", image_id) if patient is None else ("patient", patient)
        patients.add(group)
        predicted = predictions(image_id, width, height)
        scores: dict[str, dict] = {}
        for name, column in zip(recipe.CLASSES, recipe.MASK_COLUMNS):
            truth_mask = recipe.decode_mask(row[column])
            if truth_mask is None:
                skipped[name]["null_truth"] += 1
                scores[name] = {"skipped": "null_truth"}
                continue
            if truth_mask.shape != (height, width):
                raise EvaluateError(
                    f"split {split}: image {image_id}: {column} is {truth_mask.shape[1]}x{truth_mask.shape[0]}, "
                    f"the image {width}x{height}"
                )
            result = pair_scores(prediction=predicted.get(column), truth=truth_mask)
            if result is None:
                skipped[name]["both_empty"] += 1
                scores[name] = {"skipped": "both_empty"}
                continue
            if result["hd95"] is None:
                skipped[name]["distance_one_side_empty"] += 1
            for metric, value in result.items():
                if value is not None:
                    per_class[name]["values"][metric].append(value)
                    per_class[name]["groups"][metric].append(group)
            scores[name] = result
        images.append({"image_id": image_id, "patient_id": patient, "classes": scores})
    if not images:
        raise EvaluateError(f"split {split} has no images to score")

    classes = {}
    for name in recipe.CLASSES:
        entry: dict = {"n": len(per_class[name]["values"]["dice"])}
        for metric in METRICS:
            values, groups = per_class[name]["values"][metric], per_class[name]["groups"][metric]
            if values:
                low, high = bootstrap_interval(values=values, groups=groups, samples=samples, seed=seed)
                entry[metric] = {"mean": float(np.mean(values)), "ci95": [low, high], "n": len(values)}
            else:
                entry[metric] = {"mean": None, "ci95": None, "n": 0}
        entry["skipped"] = skipped[name]
        classes[name] = entry
    pairs = len(images) * len(recipe.CLASSES)
    counts = {
        "images": len(images),
        "patients": len(patients),
        "pairs": pairs,
        "scored": sum(entry["n"] for entry in classes.values()),
        "skipped_null_truth": sum(s["null_truth"] for s in skipped.values()),
        "skipped_both_empty": sum(s["both_empty"] for s in skipped.values()),
        "distance_missing_one_side_empty": sum(s["distance_one_side_empty"] for s in skipped.values()),
    }
    return {
        "split": split,
        "classes": classes,
        "counts": counts,
        "bootstrap": {
            "unit": "patient",
            "samples": samples,
            "seed": seed,
            "confidence": CONFIDENCE,
            "method": "percentile",
        },
        "images": images,
    }


def format_markdown(result: dict) -> str:
    """The per-class table of a `score` result, with a line on what was skipped."""

    def cell(metric: dict, digits: int) -> str:
        if metric["mean"] is None:
            return "–"
        low, high = metric["ci95"]
        return f"{metric['mean']:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"

    lines = [
        "| Class | n | Dice | IoU | n (distances) | HD95 (px) | ASSD (px) |",
        "| --- | ---: | --- | --- | ---: | --- | --- |",
    ]
    for name, entry in result["classes"].items():
        lines.append(
            f"| {name} | {entry['n']} | {cell(entry['dice'], 3)} | {cell(entry['iou'], 3)} | {entry['hd95']['n']} "
            f"| {cell(entry['hd95'], 1)} | {cell(entry['assd'], 1)} |"
        )
    counts, bootstrap = result["counts"], result["bootstrap"]
    lines += [
        "",
        f"Split `{result['split']}`: {counts['images']} images of {counts['patients']} patients, "
        f"{counts['scored']} of {counts['pairs']} image-class pairs scored. "
        f"Mean [{bootstrap['confidence']:.0%} interval: bootstrap over patients, "
        f"{bootstrap['samples']} resamples, seed {bootstrap['seed']}]. "
        f"Skipped: {counts['skipped_null_truth']} pairs whose ground truth is null (annotated without mask), "
        f"{counts['skipped_both_empty']} where prediction and truth are both empty; "
        f"distances missing for {counts['distance_missing_one_side_empty']} pairs where one of the two is empty.",
    ]
    return "\n".join(lines) + "\n"


def write_json(result: dict, *, path: Path) -> None:
    Path(path).write_text(json.dumps(result, indent=1, allow_nan=False) + "\n", encoding="utf-8")


# --- reading the ground truth ------------------------------------------------------------


def image_sizes(rows: Iterable[dict]) -> dict[int, tuple[int, int]]:
    """image id -> (width, height)."""
    return {int(row["image_id"]): (int(row["width"]), int(row["height"])) for row in rows}


# --- reading predictions -----------------------------------------------------------------


def read_mask(data: bytes | Path, *, name: str, width: int, height: int) -> np.ndarray:
    """A prediction image (PNG or any format Pillow reads) as a bool (H, W) mask: 0 is
    background, anything else foreground (in RGB(A), any non-zero colour channel; alpha is
    ignored). `name` is the file or cell for the message."""
    try:
        with Image.open(io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else data) as image:
            size = image.size
            if size == (width, height):
                image.load()
                bands = image.getbands()
                array = np.asarray(image)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise _unreadable(name, error) from None
    if size != (width, height):
        raise _wrong_size(name, size, width=width, height=height)
    if array.ndim == 3:
        colour = [index for index, band in enumerate(bands) if band != "A"]
        return (array[..., colour] != 0).any(axis=-1)
    return array != 0


def _unreadable(name: str, error: BaseException) -> EvaluateError:
    return EvaluateError(f"{name}: not a readable image ({type(error).__name__}: {error})")


def _wrong_size(name: str, size: tuple[int, int], *, width: int, height: int) -> EvaluateError:
    return EvaluateError(
        f"{name}: {size[0]}x{size[1]} pixels, but the image is {width}x{height} (width x height); "
        "a prediction must have the image's full size"
    )


def _unknown_class(name: str, stem: str) -> EvaluateError:
    return EvaluateError(
        f"{name}: {stem!r} is no mask column of this dataset; expected one of {', '.join(recipe.MASK_COLUMNS)}"
    )


class FolderPredictions:
    """`DIR/<split>/<image_id>/<mask column>.png`; a class file left out is an empty prediction.
    The folder is checked whole when opened (every image has a folder, every PNG names a
    mask column and has the image's size); the masks are decoded when scored."""

    def __init__(self, *, root: Path, split: str, sizes: Mapping[int, tuple[int, int]]):
        self.root = Path(root) / split
        self.files: dict[int, dict[str, Path]] = {}
        folders = {entry.name: entry for entry in self.root.iterdir() if entry.is_dir()}
        known = {str(image_id) for image_id in sizes}
        extra = sorted(set(folders) - known)
        if extra:
            raise EvaluateError(f"{self.root / extra[0]}: {extra[0]!r} is not an image id of split {split}")
        for image_id, (width, height) in sizes.items():
            folder = self.root / str(image_id)
            if str(image_id) not in folders:
                raise EvaluateError(
                    f"{folder}: no such folder: image {image_id} of split {split} has no predictions "
                    "(an image predicted empty needs an empty folder)"
                )
            files = {}
            for path in sorted(folder.glob("*.png")):
                if path.name == IMAGE_FILE:
                    continue
                if path.stem not in recipe.MASK_COLUMNS:
                    raise _unknown_class(str(path), path.stem)
                self._check_size(path, width=width, height=height)
                files[path.stem] = path
            self.files[image_id] = files

    @staticmethod
    def _check_size(path: Path, *, width: int, height: int) -> None:
        try:
            with Image.open(path) as image:
                size = image.size
        except (OSError, SyntaxError, ValueError) as error:
            raise _unreadable(str(path), error) from None
        if size != (width, height):
            raise _wrong_size(str(path), size, width=width, height=height)

    def __call__(self, image_id: int, width: int, height: int) -> dict[str, np.ndarray]:
        return {
            column: read_mask(path, name=str(path), width=width, height=height)
            for column, path in self.files[image_id].items()
        }


class TablePredictions:
    """Rows with `image_id` and mask columns (Image cells {"bytes": PNG} or PNG bytes); a null
    cell or a mask column left out is an empty prediction."""

    def __init__(self, *, table: pa.Table, name: str, split: str, sizes: Mapping[int, tuple[int, int]]):
        self.name = name
        if "image_id" not in table.column_names:
            raise EvaluateError(
                f"{name}: no image_id column; predictions in Parquet need image_id and the mask columns"
            )
        unknown = [
            column for column in table.column_names if column.startswith("mask_") and column not in recipe.MASK_COLUMNS
        ]
        if unknown:
            raise _unknown_class(f"{name}: column {unknown[0]}", unknown[0])
        self.columns = [column for column in recipe.MASK_COLUMNS if column in table.column_names]
        self.rows: dict[int, dict] = {}
        for row in table.select(["image_id", *self.columns]).to_pylist():
            image_id = row["image_id"]
            if image_id not in sizes:
                raise EvaluateError(f"{name}: image_id {image_id!r} is not an image id of split {split}")
            if image_id in self.rows:
                raise EvaluateError(f"{name}: image_id {image_id} appears twice")
            for column in self.columns:
                cell = row[column]
                if isinstance(cell, dict) and cell.get("bytes") is None and cell.get("path") is not None:
                    # A null cell is an empty prediction; a path alone is not one, and would score 0 silently.
                    raise EvaluateError(
                        f"{name}: image {image_id}: {column} holds only a path ({cell['path']!r}), no image bytes; "
                        "write the predictions with the PNG bytes in each cell"
                    )
            self.rows[image_id] = row
        missing = sorted(set(sizes) - set(self.rows))
        if missing:
            raise EvaluateError(
                f"{name}: no row for image {missing[0]} of split {split} ({len(missing)} images missing)"
            )

    def __call__(self, image_id: int, width: int, height: int) -> dict[str, np.ndarray]:
        masks = {}
        for column in self.columns:
            cell = self.rows[image_id][column]
            if isinstance(cell, dict):
                cell = cell.get("bytes")
            if cell is None:
                continue
            masks[column] = read_mask(cell, name=f"{self.name}: image {image_id}: {column}", width=width, height=height)
        return masks


def _parquet_files(root: Path, split: str) -> list[Path]:
    """Parquet files of `split` under `root`: `<split>.parquet`, `<split>-*.parquet` or in a `<split>/` folder."""
    return sorted(
        path
        for path in root.rglob("*.parquet")
        if path.stem == split or path.stem.startswith(f"{split}-") or split in path.relative_to(root).parts[:-1]
    )


def load_predictions(*, path: Path, split: str, sizes: Mapping[int, tuple[int, int]]) -> Predictions:
    """Predictions for the images of `sizes` (image id -> (width, height)) of `split`, from a
    folder export layout, Parquet files, or a `datasets.save_to_disk` folder."""
    root = Path(path)
    if not root.is_dir():
        raise EvaluateError(f"{root}: no such folder (--predictions)")
    if (root / "dataset_dict.json").is_file() or (root / "state.json").is_file():
        try:
            loaded = datasets.load_from_disk(str(root))
        except (FileNotFoundError, ValueError, KeyError) as error:
            raise EvaluateError(f"{root}: not a readable datasets folder ({type(error).__name__}: {error})") from None
        if isinstance(loaded, datasets.DatasetDict):
            if split not in loaded:
                raise EvaluateError(f"{root}: has splits {', '.join(loaded)}, not {split}")
            loaded = loaded[split]
        columns = [column for column in loaded.column_names if column == "image_id" or column.startswith("mask_")]
        table = loaded.select_columns(columns).with_format("arrow")[:]
        return TablePredictions(table=table, name=str(root), split=split, sizes=sizes)
    files = _parquet_files(root, split)
    if files:
        tables = []
        for file in files:
            try:
                schema = pq.read_schema(file)
                columns = [column for column in schema.names if column == "image_id" or column.startswith("mask_")]
                tables.append(pq.read_table(file, columns=columns))
            except (OSError, pa.ArrowException) as error:
                raise EvaluateError(f"{file}: not a readable Parquet file ({type(error).__name__}: {error})") from None
        try:
            table = pa.concat_tables(tables, promote_options="default")
        except pa.ArrowException as error:
            raise EvaluateError(f"{root}: the Parquet files of split {split} differ in schema ({error})") from None
        name = str(files[0]) if len(files) == 1 else f"{root} ({len(files)} Parquet files of split {split})"
        return TablePredictions(table=table, name=name, split=split, sizes=sizes)
    if (root / split).is_dir():
        return FolderPredictions(root=root, split=split, sizes=sizes)
    raise EvaluateError(
        f"{root}: no predictions for split {split}: expected {root / split}/<image_id>/<mask column>.png, "
        f"Parquet files named {split}-*.parquet, or a datasets.save_to_disk folder"
    )


def evaluate(*, source: str, split: str, predictions: Path, samples: int = BOOTSTRAP_SAMPLES, seed: int = SEED) -> dict:
    """Score the predictions in folder `predictions` against `split` of `source`."""
    rows = load_rows(source=source, split=split, columns=TRUTH_COLUMNS)
    predicted = load_predictions(path=predictions, split=split, sizes=image_sizes(rows))
    return score(truth=rows, predictions=predicted, split=split, samples=samples, seed=seed)
