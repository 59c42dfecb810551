"""Reading predicted masks: a folder of PNG files, Parquet files, or a `save_to_disk` folder.

    DIR/<split>/<image_id>/<mask column>.png      what `covid-seg export --format folder` and
                                                  `covid-seg baseline` write; a class file
                                                  left out is an empty prediction
    DIR/<split>-*.parquet, DIR/<split>.parquet    rows with image_id and mask columns (Image
    DIR/<split>/*.parquet                         cells {"bytes": PNG} or PNG bytes)
    DIR/dataset_dict.json or DIR/state.json       a `datasets.save_to_disk` folder

An image is found under its own split (under cross-validation, `train/` and `validation/`).
Everything is checked when the predictions are opened (every scored image is there, every file
names a mask column and has the image's size); a mask is decoded only when it is scored.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

import covid_chestxray_seg as recipe
from covid_chestxray_seg_tools import layout
from covid_chestxray_seg_tools.evaluate.errors import EvaluateError

__all__ = [
    "IMAGE_FILE",
    "FolderPredictions",
    "Predictions",
    "TablePredictions",
    "Targets",
    "load_predictions",
    "read_mask",
]

# A file in a prediction folder that is not a class mask (the folder export writes it).
IMAGE_FILE = "image.png"

# (image_id, width, height) -> {mask column: bool (H, W) array}; a column left out is an empty prediction.
Predictions = Callable[[int, int, int], Mapping[str, np.ndarray]]


@dataclass(frozen=True)
class Targets:
    """The images predictions are read for.

    Attributes:
        images: split -> image id -> (width, height), for every image that is scored.
        known: split -> every image id of that split; predictions for a known image that is not
            scored (another fold's) are left alone, an unknown id is an error.
    """

    images: Mapping[str, Mapping[int, tuple[int, int]]]
    known: Mapping[str, frozenset[int]]

    @property
    def splits(self) -> list[str]:
        return list(self.images)

    def describe(self) -> str:
        """ "split test" or "splits train, validation", for messages."""
        return f"split {self.splits[0]}" if len(self.splits) == 1 else f"splits {', '.join(self.splits)}"

    def size(self, image_id: int) -> tuple[int, int] | None:
        """The scored image's (width, height); None when it is not scored."""
        return next((sizes[image_id] for sizes in self.images.values() if image_id in sizes), None)

    def is_known(self, image_id: object) -> bool:
        return any(image_id in ids for ids in self.known.values())


class _LazyMasks(Mapping[str, np.ndarray]):
    """Mask column -> bool (H, W) array, each decoded when first asked for."""

    def __init__(self, loaders: Mapping[str, Callable[[], np.ndarray]]):
        self._loaders = loaders
        self._decoded: dict[str, np.ndarray] = {}

    def __getitem__(self, column: str) -> np.ndarray:
        if column not in self._decoded:
            self._decoded[column] = self._loaders[column]()
        return self._decoded[column]

    def __iter__(self) -> Iterator[str]:
        return iter(self._loaders)

    def __len__(self) -> int:
        return len(self._loaders)


def read_mask(data: bytes | Path, *, name: str, width: int, height: int) -> np.ndarray:
    """A prediction image as a mask.

    Args:
        data: PNG (or any format Pillow reads) bytes, or a file.
        name: the file or cell, for the message.
        width, height: the image's size, which the prediction must have.

    Returns:
        bool (H, W): 0 is background, anything else foreground (in RGB(A), any non-zero colour
        channel; alpha is ignored).

    Raises:
        EvaluateError: not a readable image, or not of the image's size.
    """
    try:
        with Image.open(io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else data) as image:
            size = image.size
            if size == (width, height):
                image.load()
                # Many predictions are empty: Pillow tells without an array being made.
                if image.mode in ("1", "L") and image.getbbox() is None:
                    return np.zeros((height, width), dtype=bool)
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
    """`DIR/<split>/<image_id>/<mask column>.png` for every scored image; see the module's doc.

    Attributes:
        predicted_columns: the mask columns with a file in at least one scored image's folder.
    """

    def __init__(self, *, root: Path, targets: Targets):
        self.root = Path(root)
        self.files: dict[int, dict[str, Path]] = {}
        for split, sizes in targets.images.items():
            split_root = self.root / split
            if not split_root.is_dir():
                raise EvaluateError(
                    f"{split_root}: no such folder: the images of split {split} have no predictions "
                    f"(expected {split_root}/<image_id>/<mask column>.png)"
                )
            folders = {entry.name for entry in split_root.iterdir() if entry.is_dir()}
            extra = sorted(folders - {str(image_id) for image_id in targets.known[split]})
            if extra:
                raise EvaluateError(f"{split_root / extra[0]}: {extra[0]!r} is not an image id of split {split}")
            for image_id, (width, height) in sizes.items():
                folder = split_root / str(image_id)
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
                    _check_size(path, width=width, height=height)
                    files[path.stem] = path
                self.files[image_id] = files
        self.predicted_columns = frozenset(column for files in self.files.values() for column in files)

    def __call__(self, image_id: int, width: int, height: int) -> Mapping[str, np.ndarray]:
        return _LazyMasks(
            {
                column: functools.partial(read_mask, path, name=str(path), width=width, height=height)
                for column, path in self.files[image_id].items()
            }
        )


def _check_size(path: Path, *, width: int, height: int) -> None:
    try:
        with Image.open(path) as image:
            size = image.size
    except (OSError, SyntaxError, ValueError) as error:
        raise _unreadable(str(path), error) from None
    if size != (width, height):
        raise _wrong_size(str(path), size, width=width, height=height)


class TablePredictions:
    """Rows with `image_id` and mask columns (Image cells {"bytes": PNG} or PNG bytes); a null
    cell or a mask column left out is an empty prediction.

    Attributes:
        predicted_columns: the mask columns with a non-null cell in at least one scored row.
    """

    def __init__(self, *, table: pa.Table, name: str, targets: Targets):
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
        self.rows: dict[int, dict[str, bytes | None]] = {}
        seen: set[object] = set()
        for row in table.select(["image_id", *self.columns]).to_pylist():
            image_id = row["image_id"]
            if not targets.is_known(image_id):
                raise EvaluateError(f"{name}: image_id {image_id!r} is not an image id of {targets.describe()}")
            if image_id in seen:
                raise EvaluateError(f"{name}: image_id {image_id} appears twice")
            seen.add(image_id)
            if targets.size(image_id) is None:
                continue  # another fold's image: not scored, not read
            for column in self.columns:
                cell = row[column]
                if isinstance(cell, dict) and cell.get("bytes") is None and cell.get("path") is not None:
                    # A null cell is an empty prediction; a path alone is not one, and would score 0 silently.
                    raise EvaluateError(
                        f"{name}: image {image_id}: {column} holds only a path ({cell['path']!r}), no image bytes; "
                        "write the predictions with the PNG bytes in each cell"
                    )
            self.rows[image_id] = {column: _cell_bytes(row[column]) for column in self.columns}
        for split, sizes in targets.images.items():
            missing = sorted(set(sizes) - set(self.rows))
            if missing:
                raise EvaluateError(
                    f"{name}: no row for image {missing[0]} of split {split} ({len(missing)} images missing)"
                )
        self.predicted_columns = frozenset(
            column for cells in self.rows.values() for column, data in cells.items() if data is not None
        )

    def __call__(self, image_id: int, width: int, height: int) -> Mapping[str, np.ndarray]:
        return _LazyMasks(
            {
                column: functools.partial(
                    read_mask, data, name=f"{self.name}: image {image_id}: {column}", width=width, height=height
                )
                for column, data in self.rows[image_id].items()
                if data is not None
            }
        )


def _cell_bytes(cell: bytes | dict[str, Any] | None) -> bytes | None:
    return cell.get("bytes") if isinstance(cell, dict) else cell


def _parquet_files(root: Path, split: str) -> list[Path]:
    """Parquet files of `split` under `root`: `<split>.parquet`, `<split>-*.parquet` or in a `<split>/` folder;
    in a built folder, its `default` config's files (the size-256 parts hold the same images at 256 px)."""
    built = layout.shard_paths(root, split)
    if built:
        return built
    return sorted(
        path
        for path in root.rglob("*.parquet")
        if path.stem == split or path.stem.startswith(f"{split}-") or split in path.relative_to(root).parts[:-1]
    )


def _prediction_columns(names: list[str]) -> list[str]:
    return [column for column in names if column == "image_id" or column.startswith("mask_")]


def load_predictions(*, path: Path, targets: Targets) -> FolderPredictions | TablePredictions:
    """The predictions in `path` for the images of `targets`.

    Args:
        path: a prediction folder (see the module's doc).
        targets: the images scored, by split, and every image id of those splits.

    Returns:
        A callable (image_id, width, height) -> {mask column: lazily decoded mask}, with the
        set of `predicted_columns`.

    Raises:
        EvaluateError: no such folder, no predictions for a split, an image missing, a file or
            cell that cannot be read or has the wrong size, an unknown image id or class.
    """
    root = Path(path)
    if not root.is_dir():
        raise EvaluateError(f"{root}: no such folder (--predictions)")
    if (root / "dataset_dict.json").is_file() or (root / "state.json").is_file():
        return TablePredictions(table=_saved_table(root, targets), name=str(root), targets=targets)
    files = [file for split in targets.splits for file in _parquet_files(root, split)]
    if files:
        tables = []
        for file in files:
            try:
                columns = _prediction_columns(pq.read_schema(file).names)
                tables.append(pq.read_table(file, columns=columns))
            except (OSError, pa.ArrowException) as error:
                raise EvaluateError(f"{file}: not a readable Parquet file ({type(error).__name__}: {error})") from None
        try:
            table = pa.concat_tables(tables, promote_options="default")
        except pa.ArrowException as error:
            raise EvaluateError(
                f"{root}: the Parquet files of {targets.describe()} differ in schema ({error})"
            ) from None
        name = str(files[0]) if len(files) == 1 else f"{root} ({len(files)} Parquet files of {targets.describe()})"
        return TablePredictions(table=table, name=name, targets=targets)
    if any((root / split).is_dir() for split in targets.splits):
        return FolderPredictions(root=root, targets=targets)
    first = targets.splits[0]
    raise EvaluateError(
        f"{root}: no predictions for {targets.describe()}: expected {root / first}/<image_id>/<mask column>.png, "
        f"Parquet files named {first}-*.parquet, or a datasets.save_to_disk folder"
    )


def _saved_table(root: Path, targets: Targets) -> pa.Table:
    """The image_id and mask columns of a `save_to_disk` folder: the wanted splits of a
    DatasetDict, or the whole of a Dataset."""
    try:
        loaded = datasets.load_from_disk(str(root))
    except (FileNotFoundError, ValueError, KeyError) as error:
        raise EvaluateError(f"{root}: not a readable datasets folder ({type(error).__name__}: {error})") from None
    if isinstance(loaded, datasets.DatasetDict):
        missing = [split for split in targets.splits if split not in loaded]
        if missing:
            raise EvaluateError(f"{root}: has splits {', '.join(loaded)}, not {', '.join(missing)}")
        parts = [loaded[split] for split in targets.splits]
    else:
        parts = [loaded]
    tables = [part.select_columns(_prediction_columns(part.column_names)).with_format("arrow")[:] for part in parts]
    return pa.concat_tables(tables, promote_options="default")
