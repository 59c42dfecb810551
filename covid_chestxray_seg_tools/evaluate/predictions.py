"""Reading predicted masks: a folder of PNG files, Parquet files, or a `save_to_disk` folder
(`evaluate.loading.load_predictions` gives a path its reader).

    DIR/<split>/<image_id>/<mask column>.png      what `covid-seg export --format folder` and
                                                  `covid-seg baseline` write; a class file
                                                  left out is an empty prediction
    DIR/<split>-*.parquet, DIR/<split>.parquet    rows with image_id and mask columns (Image
    DIR/<split>/*.parquet                         cells {"bytes": PNG} or PNG bytes)
    DIR/dataset_dict.json or DIR/state.json       a `datasets.save_to_disk` folder
    DIR/dataset.json + DIR/<case>.npz             nnU-Net's predictions of an nnU-Net export
    (or DIR/fold_K/validation/<case>.npz)         (`evaluate.nnunet`)

An image is found under its own split (under cross-validation, `train/` and `validation/`).
Everything is checked when the predictions are opened, with work bounded by the files' sizes:
every scored image is there, every file or cell names a mask column, is an image (not a folder,
not a number) whose header gives the image's size (so a decompression bomb is never decoded)
and, for a PNG, is complete. A mask is decoded only when it is scored, and must be binary (at
most two values, 0 the background) unless a threshold says where to cut a probability map.
"""

from __future__ import annotations

import functools
import io
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
from PIL import Image

import covid_chestxray_seg as recipe
from covid_chestxray_seg_tools.evaluate.errors import EvaluateError

__all__ = [
    "FULL_SCALE",
    "IMAGE_FILE",
    "FolderPredictions",
    "Predictions",
    "TablePart",
    "TablePredictions",
    "Targets",
    "check_mask_file",
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


def _opened(data: bytes | Path, *, name: str) -> Image.Image:
    """The image in `data`, opened (its header read, nothing decoded).

    Raises:
        EvaluateError: a folder, a header declaring a decompression bomb, or not an image.
    """
    if isinstance(data, Path) and data.is_dir():
        raise EvaluateError(f"{name}: is a folder, not an image file; expected a PNG file of one mask")
    if not isinstance(data, (bytes, bytearray, Path)):
        raise EvaluateError(f"{name}: holds a {type(data).__name__}, not an image; expected PNG bytes (an Image cell)")
    try:
        return Image.open(io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else data)
    except Image.DecompressionBombError as error:
        # Pillow's own check, on the size the header declares: nothing was decoded.
        raise EvaluateError(
            f"{name}: its header declares an image too large to decode ({error}); expected a mask the size of its image"
        ) from None
    except (OSError, SyntaxError, ValueError) as error:
        raise _unreadable(name, error) from None


def check_mask_file(data: bytes | Path, *, name: str, width: int, height: int) -> None:
    """Check a prediction without decoding its pixels: an image of the image's size, and for a PNG,
    complete (every chunk's CRC, up to its end).

    Args:
        data: the image's bytes, or its file.
        name: the file or cell, for the message.
        width, height: the image's size, which the prediction must have.

    Raises:
        EvaluateError: a folder, not an image, a decompression bomb, the wrong size, a truncated
            or corrupt PNG.
    """
    with warnings.catch_warnings():
        # Pillow warns below its hard limit; the size is compared with the image's right after.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with _opened(data, name=name) as image:
            size, kind = image.size, image.format
            if size != (width, height):
                raise _wrong_size(name, size, width=width, height=height)
            if kind == "PNG":
                try:
                    # Reads the chunks and their CRCs, decompressing nothing.
                    image.verify()
                except (OSError, SyntaxError, ValueError) as error:
                    raise _unreadable(name, error) from None


def read_mask(data: bytes | Path, *, name: str, width: int, height: int, threshold: float | None = None) -> np.ndarray:
    """A prediction image as a mask.

    Args:
        data: PNG (or any format Pillow reads) bytes, or a file.
        name: the file or cell, for the message.
        width, height: the image's size, which the prediction must have.
        threshold: for a mask with more than two distinct values (a probability map), the
            fraction of the format's full scale (see `FULL_SCALE`) from which a pixel is
            foreground; None refuses such a mask.

    Returns:
        bool (H, W). A binary mask (at most two distinct values: 0/1, 0/255, mode "1", a colour
        on black) is foreground wherever it is not 0; in RGB(A), any non-zero colour channel,
        alpha ignored.

    Raises:
        EvaluateError: not a readable image, not of the image's size, or not binary without a
            threshold.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with _opened(data, name=name) as image:
            size = image.size
            if size != (width, height):
                raise _wrong_size(name, size, width=width, height=height)
            try:
                image.load()
                # Many predictions are empty: Pillow tells without an array being made.
                if image.mode in ("1", "L") and image.getbbox() is None:
                    return np.zeros((height, width), dtype=bool)
                # One band of 8 bits: Pillow counts the values from its histogram, no array needed.
                binary = image.getcolors(2) is not None if image.mode in _HISTOGRAM_MODES else None
                bands = image.getbands()
                array = np.asarray(image)
            except (OSError, SyntaxError, ValueError) as error:
                raise _unreadable(name, error) from None
    if array.ndim == 3:
        array = array[..., [index for index, band in enumerate(bands) if band != "A"]]
    if binary or (binary is None and _is_binary(array)):
        foreground: np.ndarray = np.asarray(array.any(axis=-1) if array.ndim == 3 else array != 0)
        return foreground
    if threshold is None:
        raise EvaluateError(
            f"not a binary mask: {_values(array)}; expected two values, 0 for background and one other for the class",
            file=name,
            fix=f"threshold a probability map before saving it, or cut it with {recipe.setting('threshold', 'T')}",
        )
    scale = _full_scale(array, name=name)
    level = array.max(axis=-1) if array.ndim == 3 else array
    return level >= threshold * scale


_HISTOGRAM_MODES = ("1", "L", "P")
# The value a probability of 1 has in each array type (`threshold` is a fraction of it); 16-bit
# PNGs come as uint16 ("I;16") or, from some writers, int32 ("I").
FULL_SCALE = {"bool": 1, "uint8": 255, "uint16": 65535, "int32": 65535, "float32": 1.0, "float64": 1.0}


def _is_binary(array: np.ndarray) -> bool:
    """At most two distinct values (pixels, or colours in an (H, W, C) array)."""
    flat = array.reshape(-1, array.shape[-1]) if array.ndim == 3 else array.reshape(-1, 1)
    first = flat[0]
    other = np.flatnonzero((flat != first).any(axis=1))
    if other.size == 0:
        return True
    second = flat[other[0]]
    return not ((flat[other] != second).any(axis=1)).any()


def _values(array: np.ndarray) -> str:
    """The values found, for a message: a few listed, or how many and their range."""
    flat = array.reshape(-1, array.shape[-1]) if array.ndim == 3 else array.reshape(-1)
    found = np.unique(flat, axis=0) if array.ndim == 3 else np.unique(flat)
    kind = f"{array.dtype} {'colours' if array.ndim == 3 else 'values'}"
    if len(found) <= 4:
        return f"{len(found)} distinct {kind}: {', '.join(_value_text(value) for value in found)}"
    return f"{len(found)} distinct {kind} from {_value_text(found[0])} to {_value_text(found[-1])}"


def _value_text(value: np.ndarray) -> str:
    return str(tuple(value.tolist())) if np.ndim(value) else f"{value.item():g}"


def _full_scale(array: np.ndarray, *, name: str) -> float:
    scale = FULL_SCALE.get(str(array.dtype))
    if scale is None:
        raise EvaluateError(f"{name}: a {array.dtype} image cannot be thresholded; save the mask as 8-bit PNG")
    return float(scale)


def _unreadable(name: str, error: BaseException) -> EvaluateError:
    return EvaluateError(
        f"{name}: not a readable image ({type(error).__name__}: {error}); expected a complete PNG file of one mask"
    )


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

    def __init__(self, *, root: Path, targets: Targets, threshold: float | None = None):
        self.root = Path(root)
        self.threshold = threshold
        self.files: dict[int, dict[str, Path]] = {}
        for split, sizes in targets.images.items():
            split_root = self.root / split
            if not split_root.is_dir():
                raise EvaluateError(
                    f"{split_root}: no such folder: the images of split {split} have no predictions "
                    f"(expected {split_root}/<image_id>/<mask column>.png)"
                )
            entries = {entry.name: entry for entry in split_root.iterdir()}
            extra = sorted(set(entries) - {str(image_id) for image_id in targets.known[split]})
            if extra:
                raise EvaluateError(f"{split_root / extra[0]}: {extra[0]!r} is not an image id of split {split}")
            for image_id, (width, height) in sizes.items():
                folder = split_root / str(image_id)
                if str(image_id) not in entries:
                    raise EvaluateError(
                        f"{folder}: no such folder: image {image_id} of split {split} has no predictions "
                        "(an image predicted empty needs an empty folder)"
                    )
                if not folder.is_dir():
                    raise EvaluateError(
                        f"{folder}: is a file, not a folder; expected a folder holding image {image_id}'s "
                        "<mask column>.png files"
                    )
                files = {}
                for path in sorted(folder.glob("*.png")):
                    if path.name == IMAGE_FILE:
                        continue
                    if path.stem not in recipe.MASK_COLUMNS:
                        raise _unknown_class(str(path), path.stem)
                    check_mask_file(path, name=str(path), width=width, height=height)
                    files[path.stem] = path
                self.files[image_id] = files
        self.predicted_columns = frozenset(column for files in self.files.values() for column in files)

    def __call__(self, image_id: int, width: int, height: int) -> Mapping[str, np.ndarray]:
        return _LazyMasks(
            {
                column: functools.partial(
                    read_mask, path, name=str(path), width=width, height=height, threshold=self.threshold
                )
                for column, path in self.files[image_id].items()
            }
        )


@dataclass(frozen=True)
class TablePart:
    """One table of predictions and where it was read from.

    Attributes:
        name: the Parquet file or `save_to_disk` folder (and split), for messages.
        table: its image_id and mask columns.
    """

    name: str
    table: pa.Table


class TablePredictions:
    """Rows with `image_id` and mask columns (Image cells {"bytes": PNG} or PNG bytes); a null
    cell or a mask column left out is an empty prediction.

    Attributes:
        predicted_columns: the mask columns with a non-null cell in at least one scored row.
    """

    def __init__(self, *, parts: Sequence[TablePart], name: str, targets: Targets, threshold: float | None = None):
        self.name = name
        self.threshold = threshold
        self.rows: dict[int, dict[str, tuple[str, bytes | None]]] = {}
        seen: dict[object, str] = {}
        columns: set[str] = set()
        for part in parts:
            where = part.name
            if "image_id" not in part.table.column_names:
                raise EvaluateError(
                    f"{where}: no image_id column; predictions in Parquet need image_id and the mask columns"
                )
            unknown = [
                column
                for column in part.table.column_names
                if column.startswith("mask_") and column not in recipe.MASK_COLUMNS
            ]
            if unknown:
                raise _unknown_class(f"{where}: column {unknown[0]}", unknown[0])
            present = [column for column in recipe.MASK_COLUMNS if column in part.table.column_names]
            columns.update(present)
            for index, row in enumerate(part.table.select(["image_id", *present]).to_pylist()):
                image_id = row["image_id"]
                cell_of = f"{where}: row {index} (image_id {image_id})"
                if not targets.is_known(image_id):
                    raise EvaluateError(
                        f"{where}: row {index}: image_id {image_id!r} is not an image id of {targets.describe()}"
                    )
                if image_id in seen:
                    raise EvaluateError(f"{cell_of}: image_id {image_id} appears twice (also in {seen[image_id]})")
                seen[image_id] = f"{where}, row {index}"
                size = targets.size(image_id)
                if size is None:
                    continue  # another fold's image: not scored, not read
                cells: dict[str, tuple[str, bytes | None]] = {}
                for column in present:
                    name_of_cell = f"{cell_of}, column {column}"
                    data = _cell_bytes(row[column], name=name_of_cell)
                    if data is not None:
                        check_mask_file(data, name=name_of_cell, width=size[0], height=size[1])
                    cells[column] = (name_of_cell, data)
                self.rows[image_id] = cells
        self.columns = [column for column in recipe.MASK_COLUMNS if column in columns]
        for split, sizes in targets.images.items():
            missing = sorted(set(sizes) - set(self.rows))
            if missing:
                raise EvaluateError(
                    f"{name}: no row for image {missing[0]} of split {split} ({len(missing)} images missing)"
                )
        self.predicted_columns = frozenset(
            column for cells in self.rows.values() for column, (_, data) in cells.items() if data is not None
        )

    def __call__(self, image_id: int, width: int, height: int) -> Mapping[str, np.ndarray]:
        return _LazyMasks(
            {
                column: functools.partial(
                    read_mask, data, name=where, width=width, height=height, threshold=self.threshold
                )
                for column, (where, data) in self.rows[image_id].items()
                if data is not None
            }
        )


def _cell_bytes(cell: object, *, name: str) -> bytes | None:
    """The PNG bytes of an Image cell ({"bytes": ..., "path": ...}) or a binary cell; None for a null cell.

    Raises:
        EvaluateError: a cell that holds a path but no bytes, or no image at all (a number, a string).
    """
    if cell is None:
        return None
    if isinstance(cell, dict):
        if cell.get("bytes") is None and cell.get("path") is not None:
            # A null cell is an empty prediction; a path alone is not one, and would score 0 silently.
            raise EvaluateError(
                f"{name}: holds only a path ({cell['path']!r}), no image bytes; "
                "write the predictions with the PNG bytes in each cell"
            )
        cell = cell.get("bytes")
        if cell is None:
            return None
    if not isinstance(cell, (bytes, bytearray)):
        raise EvaluateError(
            f"{name}: holds a {type(cell).__name__}, not an image; expected PNG bytes (an Image cell, or binary)"
        )
    return bytes(cell)
