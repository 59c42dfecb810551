"""nnU-Net v2's raw dataset: `covid-seg export --format nnunet`. The format (names, labels,
regions, what nnU-Net cannot hold) is `covid_chestxray_seg_tools.nnunet_format`'s."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import numpy as np
from PIL import Image

import covid_chestxray_seg as recipe
from covid_chestxray_seg_tools import staging
from covid_chestxray_seg_tools.hub_folder import layout, resize
from covid_chestxray_seg_tools.nnunet_format import (
    CASE_PREFIX,
    CHANNEL_SUFFIX,
    CONFIGS,
    DATASET_JSON,
    DATASET_NAME,
    FILE_ENDING,
    RECORD_KEY,
    SPLITS_FILE,
    LabelEncoding,
    NnUNetExportError,
    case_name,
    class_bits,
    dataset_folder_name,
    splits_note,
)
from covid_chestxray_seg_tools.source import Source, load_splits

__all__ = ["NnUNetExportResult", "export_nnunet"]

logger = logging.getLogger(__name__)

_DEVELOPMENT_SPLITS = tuple(recipe.FOLD_SPLITS)
_TEST_SPLIT = "test"


@dataclass(frozen=True)
class NnUNetExportResult:
    """What `export_nnunet` wrote.

    Attributes:
        folder: the dataset folder (`OUT/Dataset<id>_CovidChestXraySeg`).
        counts: what was written and decided, counted, in the order the command prints it.
        notes: lines for the user (where splits_final.json goes).
    """

    folder: Path
    counts: dict[str, int]
    notes: tuple[str, ...]


_COLUMNS = ("image", "image_id", "fold", *recipe.MASK_COLUMNS)


def _undecoded(split: datasets.Dataset) -> datasets.Dataset:
    """`split` with only the columns the export reads, its pictures as stored bytes."""
    columns = [*_COLUMNS, *(["quality_flags"] if "quality_flags" in split.column_names else [])]
    split = split.select_columns(columns)
    for column in ("image", *recipe.MASK_COLUMNS):
        split = split.cast_column(column, datasets.Image(decode=False))
    return split


def _masks(row: Mapping[str, Any]) -> list[np.ndarray | None]:
    return [recipe.decode_mask(row[column]) for column in recipe.MASK_COLUMNS]


def _image_png(cell: Mapping[str, Any], *, config: str) -> tuple[bytes, tuple[int, int]]:
    """The greyscale PNG nnU-Net reads, and its (H, W). A size-256 image is stored greyscale
    already: its bytes are written as they are."""
    with Image.open(io.BytesIO(cell["bytes"])) as opened:
        if config == layout.SIZE_256_CONFIG and opened.format == "PNG" and opened.mode == "L":
            return cell["bytes"], (opened.height, opened.width)
        # The size-256 image rule's greyscale (ITU-R 601-2 luma, alpha dropped), at full size.
        grey = opened.convert("L")
    buffer = io.BytesIO()
    grey.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue(), (grey.height, grey.width)


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def _check_options(*, config: str, dataset_id: int) -> None:
    if config not in CONFIGS:
        raise NnUNetExportError(f"an nnU-Net export reads one of {', '.join(CONFIGS)}", setting="config", value=config)
    if not 1 <= dataset_id <= 999:
        raise NnUNetExportError(
            "nnU-Net numbers datasets with three digits: 1 to 999", setting="dataset_id", value=dataset_id
        )


def export_nnunet(*, source: str | Source, out: Path, config: str, dataset_id: int) -> NnUNetExportResult:
    """Write nnU-Net v2's raw dataset of `source` (see the module's doc) into `out`.

    `out` (nnU-Net's `nnUNet_raw`, or a folder to move the dataset folder from) appears only
    when the export has succeeded, and an existing `out` is never overwritten.

    Args:
        source: a built folder or a Hub dataset repo id, or an opened `Source`.
        out: the folder to create; it must not exist.
        config: "default" (full-size images) or "size-256" (256 x 256: nnU-Net plans small
            patches and trains in minutes, and predictions go back to full size for scoring).
        dataset_id: nnU-Net's dataset number, 1 to 999.

    Returns:
        The dataset folder, what was written and decided, counted, and where the folds go.

    Raises:
        NnUNetExportError: an unknown config or a dataset id out of range, more class
            combinations than 255 labels, or no two classes that overlap.
        source.SourceError: `source` cannot be read, is damaged, or lacks a split.
        staging.ExistsError, staging.OutputError: `out` exists, or cannot be written.
    """
    _check_options(config=config, dataset_id=dataset_id)
    loaded = load_splits(source=source, config=config)
    development = [_undecoded(loaded[name]) for name in _DEVELOPMENT_SPLITS]
    test = _undecoded(loaded[_TEST_SPLIT])
    counts = {"training cases": 0, "test images": 0}
    patterns: set[int] = set()
    nulls = flagged = 0
    folds: dict[int, list[int]] = {fold: [] for fold in range(recipe.FOLDS)}
    for split in development:
        for row in split.select_columns(["image_id", "fold", *recipe.MASK_COLUMNS, *_flag_column(split)]):
            masks = _masks(row)
            # An image whose masks are all null adds only background, whatever its size.
            shape = next((mask.shape for mask in masks if mask is not None), (1, 1))
            patterns.update(int(value) for value in np.unique(class_bits(masks, shape=shape)))
            nulls += sum(mask is None for mask in masks)
            flagged += sum(recipe.parse_quality_flag(flag)[0] == "missing" for flag in row.get("quality_flags") or ())
            folds[int(row["fold"])].append(int(row["image_id"]))
    encoding = LabelEncoding.from_patterns(patterns)
    regions = encoding.checked_regions(where=source)
    without = [name for name in recipe.CLASSES if name not in regions]
    folder_name = dataset_folder_name(dataset_id)
    with staging.staged(Path(out), replace=False) as staged:
        folder = staged / folder_name
        for sub in ("imagesTr", "labelsTr", "imagesTs"):
            (folder / sub).mkdir(parents=True)
        for split in development:
            for row in split:
                case = case_name(row["image_id"])
                image, shape = _image_png(row["image"], config=config)
                (folder / "imagesTr" / f"{case}{CHANNEL_SUFFIX}{FILE_ENDING}").write_bytes(image)
                labels = encoding.encode(class_bits(_masks(row), shape=shape))
                (folder / "labelsTr" / f"{case}{FILE_ENDING}").write_bytes(_png(labels))
                counts["training cases"] += 1
        for row in test.select_columns(["image", "image_id"]):
            image, _ = _image_png(row["image"], config=config)
            (folder / "imagesTs" / f"{case_name(row['image_id'])}{CHANNEL_SUFFIX}{FILE_ENDING}").write_bytes(image)
            counts["test images"] += 1
        splits = _splits(folds)
        document = _dataset_json(
            encoding=encoding,
            config=config,
            source=source,
            folds=splits,
            dataset_id=dataset_id,
            tallies=(nulls, flagged),
        )
        (folder / DATASET_JSON).write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
        (folder / SPLITS_FILE).write_text(json.dumps(splits, indent=1) + "\n", encoding="utf-8")
    counts.update(
        {
            "labels (class combinations)": len(encoding.combinations),
            "regions (classes with a training pixel)": len(regions),
            "classes without a training pixel (no region)": len(without),
            "null masks (annotated without a mask: no pixel)": nulls,
            "masks flagged missing (kept empty)": flagged,
            "folds": len(splits),
        }
    )
    empty_folds = [str(fold) for fold, ids in folds.items() if not ids]
    if without:
        logger.info(f"no training pixel, so no region: {', '.join(without)} (evaluate lists them as not predicted)")
    if empty_folds:
        logger.warning(f"folds {', '.join(empty_folds)} have no images: nnU-Net cannot train them")
    note = splits_note(dataset_id)
    logger.info(note)
    return NnUNetExportResult(folder=Path(out) / folder_name, counts=counts, notes=(note,))


def _flag_column(split: datasets.Dataset) -> list[str]:
    return ["quality_flags"] if "quality_flags" in split.column_names else []


def _splits(folds: Mapping[int, Sequence[int]]) -> list[dict[str, list[str]]]:
    """nnU-Net's splits_final.json: per fold, `val` = the images of that fold, `train` = the others."""
    return [
        {
            "train": [case_name(i) for i in sorted(i for other, ids in folds.items() if other != fold for i in ids)],
            "val": [case_name(i) for i in sorted(folds[fold])],
        }
        for fold in range(recipe.FOLDS)
    ]


def _dataset_json(
    *,
    encoding: LabelEncoding,
    config: str,
    source: str | Source,
    folds: Sequence[Mapping[str, Sequence[str]]],
    dataset_id: int,
    tallies: tuple[int, int],
) -> dict[str, Any]:
    regions = encoding.regions()
    nulls, flagged = tallies
    return {
        "channel_names": {"0": "xray"},
        # Background first, then one region per class in class order: the order of nnU-Net's output channels.
        "labels": {"background": 0, **regions},
        "regions_class_order": [recipe.CLASSES.index(name) + 1 for name in regions],
        "numTraining": sum(len(fold["val"]) for fold in folds),
        "file_ending": FILE_ENDING,
        "overwrite_image_reader_writer": "NaturalImage2DIO",
        "name": DATASET_NAME,
        "description": "COVID-19 Chest X-ray Segmentations (covid-chestxray-seg), exported by covid-seg export "
        "--format nnunet: each label is one combination of overlapping classes, each region one class.",
        "reference": recipe.HOMEPAGE,
        "licence": recipe.LICENSE,
        "release": recipe.BUILDER_VERSION,
        RECORD_KEY: {
            "builder_version": recipe.BUILDER_VERSION,
            "source": str(source),
            "config": config,
            # Images and label maps are 256 x 256: predictions go back to each image's full size for scoring.
            "size": resize.SIZE if config == layout.SIZE_256_CONFIG else None,
            "case_prefix": CASE_PREFIX,
            "label_classes": encoding.to_labels(),
            "region_columns": {name: recipe.mask_column(name) for name in regions},
            "classes_without_region": [name for name in recipe.CLASSES if name not in regions],
            "null_masks": nulls,
            "masks_flagged_missing": flagged,
            "folds": [list(fold["val"]) for fold in folds],
            "splits_final": splits_note(dataset_id),
        },
    }
