"""The dataset as a FiftyOne dataset, written in FiftyOne's own export layout.

FiftyOne is an optional extra (`pip install 'covid-chestxray-seg[fiftyone]'`) and this module
imports it at the top: reach it through `fiftyone_companion.exporter()`, which says how to
install it when it is missing. Creating the dataset starts FiftyOne's database (a `mongod`
child process, stopped by FiftyOne when this process ends).

One sample per record, in the build's order (split by split), each with:

    filepath                 the X-ray, the original bytes (data/<file_name>)
    tags                     the split
    mask_<class>             a Segmentation per class (fields/mask_<class>/<image_id>.png, the
                             stored 1-bit PNG: FiftyOne reads it as 0/255, `mask_targets` maps
                             255 to the class); None where the Parquet mask is null (annotated
                             without a mask), an all-zero mask where the class is not on the image
    objects                  Detections from `objects` (FiftyOne's own COCO conversion): class
                             name, relative bbox, instance mask cropped to the bbox, `iscrowd`,
                             `coco_id` (the annotation id), `supercategory`, `area`; no mask for
                             an annotation without one
    overlay                  a media field: the overlay JPEG (fields/overlay/<image_id>.jpg)
    every other column       a typed field of the same name (image_id, metadata, severity
                             scores, fold, quality_flags when the source has it)

OUT is what `fiftyone.types.FiftyOneDataset` writes (metadata.json, samples.json, data/,
fields/), plus what `fiftyone.utils.huggingface.load_from_hub` reads first (fiftyone.yml), the
companion card (README.md) and the source's LICENSE.md. FiftyOne stamps an export with fresh
ObjectIds, timestamps and random numbers; they are replaced by values that depend only on the
content, so the same build gives byte-identical files (a publish of an unchanged build then
changes nothing). FiftyOne's importer keeps the sample and label ids and replaces the dataset
id, its name and every timestamp when loading (`FiftyOneDatasetImporter._import_samples`,
fiftyone 1.22.1, read 2026-12).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import fiftyone as fo
import fiftyone.core.fields as fof
import fiftyone.core.labels as fol
import yaml
from fiftyone.utils.coco import COCOObject
from huggingface_hub import hf_hub_download
from huggingface_hub.errors import EntryNotFoundError

import covid_chestxray_seg as recipe
from covid_chestxray_seg_tools import staging
from covid_chestxray_seg_tools.card.companion import companion_card, companion_repo_id
from covid_chestxray_seg_tools.card.render import DEFAULT_REPO_ID
from covid_chestxray_seg_tools.errors import CovidSegError
from covid_chestxray_seg_tools.hub_folder import layout
from covid_chestxray_seg_tools.source import Source, load_splits, open_source

__all__ = [
    "CONFIG_FILENAME",
    "DATASET_NAME",
    "FIFTYONE_VERSION",
    "MASK_VALUE",
    "FiftyOneExport",
    "FiftyOneExportError",
    "build_dataset",
    "detections",
    "export_fiftyone",
    "make_reproducible",
]


FIFTYONE_VERSION = fo.__version__
# What load_from_hub looks for first (fiftyone.utils.huggingface.DATASET_METADATA_FILENAMES).
CONFIG_FILENAME = "fiftyone.yml"
DATASET_NAME = "covid-chestxray-seg"
# A stored 1-bit mask pixel that is set reads as 255 (cv2 in Python, the browser in the App).
MASK_VALUE = 255
_OVERLAY_FIELD = "overlay"
_DETECTIONS_FIELD = "objects"
# Columns that become something else than a field of their own name.
_IMAGE_COLUMN = "image"
# FiftyOne's `Segmentation`, `Detections` and media fields reference files written here first,
# inside the staged output, and moved into FiftyOne's layout by its exporter.
_WORK_DIR = ".work"
_EXPORT_DIR = ".export"
# Every timestamp of the export. FiftyOne's importer replaces them all with the time of loading.
_FIXED_DATE = "1970-01-01T00:00:00Z"
_VALUE_FIELDS = {
    "bool": fof.BooleanField,
    "string": fof.StringField,
    "large_string": fof.StringField,
    **dict.fromkeys(("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"), fof.IntField),
    **dict.fromkeys(("float16", "float32", "float64"), fof.FloatField),
}


class FiftyOneExportError(CovidSegError, ValueError):
    """A source that cannot be written as a FiftyOne dataset; the message names the row or column."""


@dataclass(frozen=True)
class FiftyOneExport:
    """What a FiftyOne export wrote, counted."""

    samples: int
    mask_files: int
    null_masks: int
    detections: int
    detections_without_mask: int

    def counts(self) -> dict[str, int]:
        return {
            "samples": self.samples,
            "mask files": self.mask_files,
            "null masks (annotated without a mask: the field is None)": self.null_masks,
            "detections": self.detections,
            "detections without mask": self.detections_without_mask,
        }


def export_fiftyone(
    *,
    source: str | Source,
    out: Path,
    splits: list[str] | None = None,
    repo_id: str | None = None,
    companion_id: str | None = None,
) -> FiftyOneExport:
    """Write `splits` of `source` to `out` as a FiftyOne dataset in FiftyOne's export layout.

    Args:
        source: a built folder or a Hub dataset repo id, or a `Source` opened at a revision.
        out: the folder to create; it must not exist (see `staging.staged`).
        splits: the splits to export (default: all).
        repo_id: the Parquet repo the companion card links back to (default: `source` when it
            is a repo id, else the card's placeholder id).
        companion_id: the repo this export is published as (default: `repo_id` + "-fiftyone").

    Returns:
        The counts of what was written.

    Raises:
        FiftyOneExportError: the source has no LICENSE.md, a file name that is not a plain name,
            or a column FiftyOne cannot hold.
        source.SourceError: `source` cannot be read or is not this dataset.
        staging.ExistsError, staging.OutputError: `out` exists, or cannot be written.
    """
    source = open_source(source)
    loaded = load_splits(source=source, splits=splits)
    license_text = _source_license(source)
    repo_id = repo_id or (source.location if source.is_repo else DEFAULT_REPO_ID)
    companion_id = companion_id or companion_repo_id(repo_id)
    with staging.staged(out, replace=False) as folder, _fiftyone_quiet():
        dataset, result = build_dataset(loaded, work=folder / _WORK_DIR)
        try:
            # Into a folder that does not exist yet: FiftyOne warns that it merges into an existing one.
            dataset.export(
                export_dir=str(folder / _EXPORT_DIR),
                dataset_type=fo.types.FiftyOneDataset,
                export_media="move",
                progress=False,
            )
        finally:
            dataset.delete()
        for entry in sorted((folder / _EXPORT_DIR).iterdir()):
            entry.rename(folder / entry.name)
        (folder / _EXPORT_DIR).rmdir()
        shutil.rmtree(folder / _WORK_DIR)
        make_reproducible(
            folder, fields=[column for column in next(iter(loaded.values())).features if column != _IMAGE_COLUMN]
        )
        (folder / CONFIG_FILENAME).write_text(_config_yaml(), encoding="utf-8")
        (folder / layout.LICENSE_FILENAME).write_bytes(license_text)
        card = companion_card(
            repo_id=repo_id, companion_id=companion_id, samples=result.samples, fiftyone_version=FIFTYONE_VERSION
        )
        (folder / layout.CARD_FILENAME).write_text(card, encoding="utf-8")
    return result


@contextlib.contextmanager
def _fiftyone_quiet() -> Iterator[None]:
    """FiftyOne's INFO lines ("Exporting samples...", twice through its own handler) say nothing
    the export's summary does not."""
    fiftyone_logger = logging.getLogger("fiftyone")
    level = fiftyone_logger.level
    fiftyone_logger.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        fiftyone_logger.setLevel(level)


def _source_license(source: Source) -> bytes:
    """The source's LICENSE.md: the companion repo carries the same licence file."""
    folder = Path(source.location)
    if not source.is_repo:
        path = folder / layout.LICENSE_FILENAME
        if not path.is_file():
            raise FiftyOneExportError(f"{path}: not found; a FiftyOne export carries the build's licence file")
        return path.read_bytes()
    try:
        return Path(
            hf_hub_download(source.location, layout.LICENSE_FILENAME, repo_type="dataset", revision=source.revision)
        ).read_bytes()
    except EntryNotFoundError:
        raise FiftyOneExportError(
            f"has no {layout.LICENSE_FILENAME}; a FiftyOne export carries the dataset's licence file", file=source
        ) from None


def build_dataset(splits: Mapping[str, datasets.Dataset], *, work: Path) -> tuple[fo.Dataset, FiftyOneExport]:
    """A new, non-persistent FiftyOne dataset holding every row of `splits` in order; the files
    its samples reference are written under `work`.

    Args:
        splits: split name -> rows, as `load_splits` gives them.
        work: an empty or missing folder for the media files.

    Returns:
        The dataset (the caller deletes it) and what it holds, counted.

    Raises:
        FiftyOneExportError: a column FiftyOne cannot hold, or a file name that is not plain.
    """
    features = next(iter(splits.values())).features
    tally = dict.fromkeys(("mask_files", "null_masks", "detections", "detections_without_mask"), 0)
    dataset = fo.Dataset()
    try:
        _declare_fields(dataset, features)
        for name, split in splits.items():
            media = split
            for column, feature in split.features.items():
                if isinstance(feature, datasets.Image):
                    media = media.cast_column(column, datasets.Image(decode=False))
            dataset.add_samples(_samples(media, split=name, features=features, work=work, tally=tally), progress=False)
        dataset.compute_metadata(num_workers=1, progress=False)
        dataset.mask_targets = {column: {MASK_VALUE: name} for name, column in zip(recipe.CLASSES, recipe.MASK_COLUMNS)}
        dataset.classes = {_DETECTIONS_FIELD: list(recipe.CLASSES)}
        dataset.app_config.media_fields = ["filepath", _OVERLAY_FIELD]
        dataset.description = (
            "COVID-19 Chest X-ray Segmentations: chest X-rays with radiologist segmentations in 14 classes, "
            "expert severity scores and patient-grouped splits and folds"
        )
        dataset.info = {
            "homepage": recipe.HOMEPAGE,
            "builder_version": recipe.BUILDER_VERSION,
            "license": "annotations CC BY 4.0; each image its own licence (`license` field); "
            "severity scores CC BY-SA 4.0; see LICENSE.md",
        }
        dataset.save()
    except BaseException:
        dataset.delete()
        raise
    return dataset, FiftyOneExport(samples=len(dataset), **tally)


def _declare_fields(dataset: fo.Dataset, features: datasets.Features) -> None:
    """Every field with its type, in column order, before any sample: a field that is None on
    every sample (a null mask, `fold` on test) keeps its type."""
    for column, feature in features.items():
        if column == _IMAGE_COLUMN:
            continue
        if column in recipe.MASK_COLUMNS:
            class_name = recipe.CLASSES[recipe.MASK_COLUMNS.index(column)]
            dataset.add_sample_field(
                column,
                fof.EmbeddedDocumentField,
                embedded_doc_type=fol.Segmentation,
                description=f"{class_name}: {MASK_VALUE} where the class is; None when annotated without a mask",
            )
        elif column == _DETECTIONS_FIELD:
            dataset.add_sample_field(
                column,
                fof.EmbeddedDocumentField,
                embedded_doc_type=fol.Detections,
                description="the COCO annotations: class, bbox, instance mask in the bbox, iscrowd, coco_id",
            )
        elif column == _OVERLAY_FIELD:
            dataset.add_sample_field(column, fof.StringField, description="the X-ray with every class mask drawn")
        else:
            ftype, subfield = _value_field(column, feature)
            dataset.add_sample_field(column, ftype, subfield=subfield)


def _value_field(column: str, feature: Any) -> tuple[type, type | None]:
    if isinstance(feature, datasets.Value) and feature.dtype in _VALUE_FIELDS:
        return _VALUE_FIELDS[feature.dtype], None
    inner = getattr(feature, "feature", None)
    if isinstance(inner, datasets.Value) and inner.dtype in _VALUE_FIELDS:
        return fof.ListField, _VALUE_FIELDS[inner.dtype]
    raise FiftyOneExportError(f"column {column}: {feature} has no FiftyOne field type in this export")


def _samples(
    rows: datasets.Dataset, *, split: str, features: datasets.Features, work: Path, tally: dict[str, int]
) -> Iterator[fo.Sample]:
    for row in rows:
        record = f"split {split}: image id {row['image_id']}"
        fields: dict[str, Any] = {}
        for column in features:
            value = row[column]
            if column == _IMAGE_COLUMN:
                continue
            if column in recipe.MASK_COLUMNS:
                if value is None:
                    fields[column] = None
                    tally["null_masks"] += 1
                else:
                    path = _write(work / column / f"{row['image_id']}.png", value["bytes"])
                    fields[column] = fol.Segmentation(mask_path=path)
                    tally["mask_files"] += 1
            elif column == _DETECTIONS_FIELD:
                fields[column] = detections(row)
                tally["detections"] += len(fields[column].detections)
                tally["detections_without_mask"] += sum(found.mask is None for found in fields[column].detections)
            elif column == _OVERLAY_FIELD:
                fields[column] = _write(work / column / f"{row['image_id']}.jpg", value["bytes"])
            else:
                fields[column] = value
        file_name = row["file_name"]
        if not file_name or Path(file_name).name != file_name or file_name in (".", ".."):
            raise FiftyOneExportError(f"{record}: file_name {file_name!r} must be a plain file name")
        filepath = _write(work / "data" / file_name, row[_IMAGE_COLUMN]["bytes"])
        yield fo.Sample(filepath=filepath, tags=[split], **fields)


def detections(row: dict) -> fol.Detections:
    """A record's `objects` as FiftyOne's COCO importer would make them: relative bbox, the
    instance mask cropped to the bbox, `iscrowd`, `coco_id` (the annotation id) and
    `supercategory`; plus `area`. An annotation without a mask has none."""
    classes = {index + 1: name for index, name in enumerate(recipe.CLASSES)}
    supercategories = {name: {"supercategory": recipe.SUPERCATEGORIES[name]} for name in recipe.CLASSES}
    found = []
    for obj in row["objects"]:
        segmentation = obj["segmentation"]
        detection = COCOObject(
            id=obj["id"],
            image_id=row["image_id"],
            category_id=obj["category"] + 1,
            bbox=[float(value) for value in obj["bbox"]],
            segmentation=None if segmentation is None else recipe.rle_for_pycocotools(segmentation),
            iscrowd=bool(obj["iscrowd"]),
        ).to_detection(
            (row["width"], row["height"]),
            classes_map=classes,
            supercategory_map=supercategories,
            load_segmentation=True,
            include_id=True,
        )
        detection["area"] = obj["area"]
        found.append(detection)
    return fol.Detections(detections=found)


def _write(path: Path, data: bytes) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return str(path)


def make_reproducible(folder: Path, *, fields: list[str]) -> None:
    """Replace what FiftyOne stamps on every export run in metadata.json and samples.json:
    ObjectIds become counters in order of first appearance (one id keeps one value across both
    files), timestamps `_FIXED_DATE`, and each sample's `_rand` (FiftyOne's random-sampling key,
    in [0.999, 1)) a value hashed from its id. The dataset's name is `DATASET_NAME`. FiftyOne
    lists its own fields in a different order on each run: they come first, by name, then
    `fields` (ours) in their order."""
    ids: dict[str, str] = {}

    def new_id(old: str) -> str:
        return ids.setdefault(old, f"{len(ids) + 1:024x}")

    def walk(value: Any) -> Any:
        if isinstance(value, dict):
            if set(value) == {"$oid"}:
                return {"$oid": new_id(value["$oid"])}
            if set(value) == {"$date"}:
                return {"$date": _FIXED_DATE}
            return {key: walk(item) for key, item in value.items()}
        if isinstance(value, list):
            return [walk(item) for item in value]
        return value

    documents = {
        name: json.loads((folder / name).read_text(encoding="utf-8")) for name in ("metadata.json", "samples.json")
    }
    metadata = walk(documents["metadata.json"])
    samples = walk(documents["samples.json"])
    metadata["name"] = metadata["slug"] = DATASET_NAME
    metadata["sample_fields"] = sorted(
        metadata["sample_fields"],
        key=lambda field: (1, fields.index(field["name"]), "") if field["name"] in fields else (0, 0, field["name"]),
    )
    # The collection names embed the dataset id as text.
    for key, value in metadata.items():
        if isinstance(value, str):
            metadata[key] = re.sub(r"[0-9a-f]{24}", lambda match: ids.get(match.group(0), match.group(0)), value)
    for sample in samples["samples"]:
        digest = hashlib.sha256(sample["_id"]["$oid"].encode("ascii")).digest()
        sample["_rand"] = 0.999 + 0.001 * (int.from_bytes(digest[:8], "big") / 2**64)
    for name, document in (("metadata.json", metadata), ("samples.json", samples)):
        (folder / name).write_text(json.dumps(document), encoding="utf-8")


def _config_yaml() -> str:
    """fiftyone.yml: what `load_from_hub` reads first, with the keys `push_to_hub` writes."""
    config = {
        "name": DATASET_NAME,
        "format": "FiftyOneDataset",
        "description": "COVID-19 Chest X-ray Segmentations: masks, instances and metadata",
        "license": "other (see LICENSE.md)",
        "tags": ["fiftyone", "image", "image-segmentation", "object-detection", "medical", "chest-x-ray"],
        # The export's metadata.json is in this FiftyOne version's schema.
        "fiftyone": {"version": f">={FIFTYONE_VERSION}"},
        "app_media_fields": ["filepath", _OVERLAY_FIELD],
    }
    return yaml.safe_dump(config, sort_keys=False)
