"""Which reader a prediction path gets: a folder of PNG files, Parquet files, a `save_to_disk`
folder (`evaluate.predictions`) or nnU-Net's predictions (`evaluate.nnunet`); the forms and the
checks are described in `evaluate.predictions`."""

from __future__ import annotations

from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq

from covid_chestxray_seg_tools.evaluate import nnunet
from covid_chestxray_seg_tools.evaluate.errors import EvaluateError
from covid_chestxray_seg_tools.evaluate.nnunet import NnUNetPredictions
from covid_chestxray_seg_tools.evaluate.predictions import FolderPredictions, TablePart, TablePredictions, Targets
from covid_chestxray_seg_tools.hub_folder import layout

__all__ = ["load_predictions"]


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


def load_predictions(
    *, path: Path, targets: Targets, threshold: float | None = None, setting: str = "predictions"
) -> FolderPredictions | TablePredictions | NnUNetPredictions:
    """The predictions in `path` for the images of `targets`, every file or cell checked (header,
    size, a complete PNG) before anything is decoded.

    Args:
        path: a prediction folder (see the module's doc).
        targets: the images scored, by split, and every image id of those splits.
        threshold: where a probability map (a mask with more than two values) is cut, as a
            fraction of its format's full scale (`read_mask`); None refuses such masks.
        setting: the setting that named `path`, for the message when it does not exist.

    Returns:
        A callable (image_id, width, height) -> {mask column: lazily decoded mask}, with the
        set of `predicted_columns`.

    Raises:
        EvaluateError: no such folder, no predictions for a split, an image missing, a file or
            cell that cannot be read, is no image or has the wrong size, an unknown image id or class.
    """
    root = Path(path)
    if threshold is not None and not 0 < threshold < 1:
        raise EvaluateError(
            "must lie between 0 and 1 (a fraction of the full scale)", setting="threshold", value=threshold
        )
    if not root.is_dir():
        raise EvaluateError("no such folder", setting=setting, value=str(root))
    if nnunet.is_nnunet_folder(root):
        return nnunet.NnUNetPredictions(root=root, targets=targets, threshold=threshold)
    if (root / "dataset_dict.json").is_file() or (root / "state.json").is_file():
        parts = _saved_parts(root, targets)
        return TablePredictions(parts=parts, name=str(root), targets=targets, threshold=threshold)
    files = [file for split in targets.splits for file in _parquet_files(root, split)]
    if files:
        parts = []
        for file in files:
            try:
                columns = _prediction_columns(pq.read_schema(file).names)
                parts.append(TablePart(name=str(file), table=pq.read_table(file, columns=columns)))
            except (OSError, pa.ArrowException) as error:
                raise EvaluateError(f"{file}: not a readable Parquet file ({type(error).__name__}: {error})") from None
        name = str(files[0]) if len(files) == 1 else f"{root} ({len(files)} Parquet files of {targets.describe()})"
        return TablePredictions(parts=parts, name=name, targets=targets, threshold=threshold)
    if any((root / split).is_dir() for split in targets.splits):
        return FolderPredictions(root=root, targets=targets, threshold=threshold)
    first = targets.splits[0]
    raise EvaluateError(
        f"{root}: no predictions for {targets.describe()}: expected {root / first}/<image_id>/<mask column>.png, "
        f"Parquet files named {first}-*.parquet, or a datasets.save_to_disk folder"
    )


def _saved_parts(root: Path, targets: Targets) -> list[TablePart]:
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
        named = [(f"{root} (split {split})", loaded[split]) for split in targets.splits]
    else:
        named = [(str(root), loaded)]
    return [
        TablePart(name=name, table=part.select_columns(_prediction_columns(part.column_names)).with_format("arrow")[:])
        for name, part in named
    ]
