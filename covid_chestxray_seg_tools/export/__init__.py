"""Export the dataset back to files, for tools that do not read `datasets`.

Three formats, from a built folder, a Hub repo id or anything `load_dataset` accepts:

    coco     OUT/annotations/<split>.json (COCO: images, categories, annotations with
             compressed RLE, per-image licences) and OUT/images/<file_name> (the original
             bytes). The annotations that upstream has without a mask (14 monitoring probes,
             `segmentation: []`, which pycocotools' COCOeval cannot read: annToRLE fails; an
             empty RLE instead would cost them their match, AP < 1) are left out,
             counted and logged, so COCOeval scores the ground truth as its own detections
             with AP 1.0 for segm and bbox. With `upstream_form` (--upstream-form) they are
             kept as upstream writes them, and all splits together give back the upstream
             annotations.
    folder   OUT/<split>/<image_id>/image.png and mask_<class>.png (8-bit, 0 or 255, the
             image's size) for every class mask the record has. A class annotated without
             a mask upstream has no file; the export counts and logs them.
    fiftyone FiftyOne's own export layout (fiftyone.types.FiftyOneDataset) plus fiftyone.yml,
             the companion repo's card and LICENSE.md: see `fiftyone_export` (FiftyOne is an
             optional extra, imported only for this format).
    nnunet   nnU-Net v2's raw dataset, OUT/Dataset777_CovidChestXraySeg/ (imagesTr, labelsTr,
             imagesTs, dataset.json, splits_final.json = our folds) from the `default` or the
             `size-256` config: see `export.nnunet`.

OUT appears only when the export has succeeded, and an existing OUT is never
overwritten (see `staging`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import numpy as np
from PIL import Image

import covid_chestxray_seg as recipe
from covid_chestxray_seg_tools import nnunet_format, staging
from covid_chestxray_seg_tools.errors import CovidSegError
from covid_chestxray_seg_tools.export import nnunet
from covid_chestxray_seg_tools.fiftyone import companion as fiftyone_companion
from covid_chestxray_seg_tools.source import Source, load_splits

__all__ = ["FORMATS", "ExportError", "ExportResult", "export", "write_coco_images"]

logger = logging.getLogger(__name__)

FORMATS = ("coco", "folder", "fiftyone", "nnunet")


class ExportError(CovidSegError, ValueError):
    """Options that do not go together, or a row that cannot be written as a file."""


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote.

    Attributes:
        out: the folder written.
        format: "coco", "folder", "fiftyone" or "nnunet".
        counts: what was written, counted, in the order `covid-seg export` prints it. coco:
            "images", "annotations", and "annotations without mask upstream (left out)" when
            any were; folder: "images", "masks", "masks without data upstream (no file)";
            fiftyone: `fiftyone_export.FiftyOneExport.counts()`; nnunet: see
            `export.nnunet.export_nnunet`.
        notes: lines for the user beside the counts (nnunet: where splits_final.json goes).
    """

    out: Path
    format: str
    counts: dict[str, int]
    notes: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The result as plain JSON values, for `--json`."""
        document: dict[str, Any] = {"out": str(self.out), "format": self.format, "counts": dict(self.counts)}
        if self.notes:
            document["notes"] = list(self.notes)
        return document


# Columns a COCO document is made of; skipping the image and the 14 masks reads a small part of the bytes.
_COCO_COLUMNS = ("image_id", "file_name", "width", "height", "objects", "license", "url")


def _categories() -> list[dict]:
    """COCO categories with upstream's ids (class index + 1) and supercategories."""
    return [
        {"id": index + 1, "name": name, "supercategory": recipe.SUPERCATEGORIES[name]}
        for index, name in enumerate(recipe.CLASSES)
    ]


def _coco_dict(rows: Iterable[dict], *, description: str, upstream_form: bool = False) -> dict:
    """One COCO document from records (objects as stored: compressed RLE, null when none).
    An object without a mask is left out, or with `upstream_form` written as upstream has it."""
    rows = list(rows)
    licenses = sorted({row["license"] for row in rows if row["license"]})
    license_ids = {name: index + 1 for index, name in enumerate(licenses)}
    images, annotations = [], []
    for row in rows:
        images.append(
            {
                "id": row["image_id"],
                "file_name": row["file_name"],
                "width": row["width"],
                "height": row["height"],
                # The image's own licence; 0 where upstream's metadata.csv gives none.
                "license": license_ids.get(row["license"], 0),
                "url": row["url"],
            }
        )
        for obj in row["objects"]:
            segmentation = obj["segmentation"]
            if segmentation is None and not upstream_form:
                continue
            annotations.append(
                {
                    "id": obj["id"],
                    "image_id": row["image_id"],
                    "category_id": obj["category"] + 1,
                    "iscrowd": int(obj["iscrowd"]),
                    "bbox": [float(value) for value in obj["bbox"]],
                    "area": obj["area"],
                    # COCO's own form for "no mask" is an empty polygon list, as upstream writes it.
                    "segmentation": []
                    if segmentation is None
                    else {"size": list(segmentation["size"]), "counts": segmentation["counts"]},
                }
            )
    return {
        "info": {"description": description, "url": recipe.HOMEPAGE, "version": recipe.BUILDER_VERSION},
        "licenses": [{"id": 0, "name": "none given upstream", "url": ""}]
        + [{"id": license_ids[name], "name": name, "url": ""} for name in licenses],
        "categories": _categories(),
        "images": sorted(images, key=lambda image: image["id"]),
        "annotations": sorted(annotations, key=lambda annotation: annotation["id"]),
    }


def _export_coco(splits: dict[str, datasets.Dataset], *, out: Path, upstream_form: bool = False) -> dict[str, int]:
    """OUT/annotations/<split>.json and OUT/images/<file_name> (original bytes)."""
    (out / "annotations").mkdir(parents=True)
    (out / "images").mkdir()
    counts = {"images": 0, "annotations": 0}
    left_out = 0
    for name, split in splits.items():
        rows = split.select_columns(list(_COCO_COLUMNS)).to_list()
        if not upstream_form:
            left_out += sum(obj["segmentation"] is None for row in rows for obj in row["objects"])
        document = _coco_dict(
            rows, description=f"covid-chestxray-seg {name} split, exported from Parquet", upstream_form=upstream_form
        )
        images = split.select_columns(["image", "image_id", "file_name"]).cast_column(
            "image", datasets.Image(decode=False)
        )
        write_coco_images(images, out=out, split=name)
        (out / "annotations" / f"{name}.json").write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
        counts["images"] += len(document["images"])
        counts["annotations"] += len(document["annotations"])
    if left_out:
        counts["annotations without mask upstream (left out)"] = left_out
        logger.info(
            f"{left_out} annotations have no mask upstream: left out, as COCOeval cannot read `segmentation: []` "
            "(an export in upstream's form keeps them)"
        )
    return counts


def write_coco_images(rows: Iterable[dict], *, out: Path, split: str) -> None:
    """Each row's original image bytes as OUT/images/<file_name>."""
    for row in rows:
        file_name = row["file_name"]
        if not file_name or Path(file_name).name != file_name or file_name in (".", ".."):
            # The names come from the data: one with a folder in it could write outside images/.
            raise ExportError(
                f"split {split}: image id {row['image_id']}: file_name {file_name!r} must be a plain file name"
            )
        (out / "images" / file_name).write_bytes(row["image"]["bytes"])


def _export_folder(
    splits: dict[str, datasets.Dataset], *, out: Path, classes: Sequence[str] | None = None
) -> dict[str, int]:
    """OUT/<split>/<image_id>/image.png and one mask_<class>.png per class with a mask."""
    try:
        names = recipe.class_names(classes)
    except ValueError:
        unknown = [name for name in classes or () if name not in recipe.CLASSES]
        raise ExportError(
            f"not classes of this dataset; choose from {', '.join(recipe.CLASSES)}", setting="classes", value=unknown
        ) from None
    columns = [recipe.mask_column(name) for name in names]
    counts = {"images": 0, "masks": 0, "masks without data upstream (no file)": 0}
    for name, split in splits.items():
        for row in split.select_columns(["image", "image_id", *columns]):
            folder = out / name / str(row["image_id"])
            folder.mkdir(parents=True)
            row["image"].save(folder / "image.png")
            counts["images"] += 1
            for column in columns:
                mask = recipe.decode_mask(row[column])
                if mask is None:
                    counts["masks without data upstream (no file)"] += 1
                    continue
                Image.fromarray(mask.astype(np.uint8) * 255).save(folder / f"{column}.png")
                counts["masks"] += 1
    if counts["masks without data upstream (no file)"]:
        logger.info(
            f"{counts['masks without data upstream (no file)']} class masks are null "
            "(annotated upstream without a mask): no file written"
        )
    return counts


def export(
    *,
    source: str | Source,
    out: Path,
    format: str,
    splits: Sequence[str] | None = None,
    classes: Sequence[str] | None = None,
    upstream_form: bool = False,
    config: str | None = None,
    dataset_id: int | None = None,
) -> ExportResult:
    """Export a build or a Hub repo to files, for tools that do not read `datasets`.

    `out` appears only when the export has succeeded, and an existing `out` is never
    overwritten (see `staging.staged`).

    Args:
        source: a built folder or a Hub dataset repo id (checked, see `source.open_source`), or a
            `Source` opened at a revision.
        out: the folder to create; it must not exist.
        format: "coco" (COCO JSON per split and the original images), "folder" (image.png and
            mask_<class>.png per record), "fiftyone" (FiftyOne's export layout, the companion
            repo's files; needs the `fiftyone` extra) or "nnunet" (nnU-Net v2's raw dataset,
            every split: see `export.nnunet`).
        splits: the splits to export (default: all).
        classes: with "folder", the class names to write masks of (default: all).
        upstream_form: with "coco", keep the annotations without a mask as upstream writes
            them (`segmentation: []`), which pycocotools' COCOeval cannot read; by default
            they are left out and counted.
        config: with "nnunet", the config exported: "default" (full size, the default) or
            "size-256".
        dataset_id: with "nnunet", nnU-Net's dataset number (default 777, see `export.nnunet`).

    Returns:
        The folder, the format and what was written, counted.

    Raises:
        ExportError: an unknown format, options of another format, an unknown class, or a
            file name that is not a plain name.
        source.SourceError: `source` cannot be read, is damaged, or lacks a split.
        staging.ExistsError, staging.OutputError: `out` exists, or cannot be written.
        fiftyone_companion.FiftyOneMissingError: "fiftyone" without FiftyOne installed.
        fiftyone_export.FiftyOneExportError: a source FiftyOne cannot hold.
        export.nnunet_format.NnUNetExportError: data nnU-Net's format cannot hold, a bad config or id.
    """
    if format not in FORMATS:
        raise ExportError(f"is not one of {', '.join(FORMATS)}", setting="format", value=format)
    if classes is not None and format != "folder":
        raise ExportError(
            f"applies to {recipe.setting('format', 'folder')} only (a COCO export writes every class)",
            setting="classes",
        )
    if upstream_form and format != "coco":
        raise ExportError(f"applies to {recipe.setting('format', 'coco')} only", setting="upstream_form")
    for name, value in (("config", config), ("dataset_id", dataset_id)):
        if value is not None and format != "nnunet":
            raise ExportError(f"applies to {recipe.setting('format', 'nnunet')} only", setting=name)
    if format == "nnunet":
        if splits is not None:
            raise ExportError(
                "an nnU-Net export holds every split (imagesTr: train + validation, imagesTs: test)",
                setting="split",
                value=list(splits),
            )
        written = nnunet.export_nnunet(
            source=source,
            out=Path(out),
            config=config or nnunet_format.CONFIGS[0],
            dataset_id=nnunet_format.DEFAULT_DATASET_ID if dataset_id is None else dataset_id,
        )
        return ExportResult(out=Path(out), format=format, counts=written.counts, notes=written.notes)
    if format == "fiftyone":
        written = fiftyone_companion.exporter().export_fiftyone(source=source, out=out, splits=splits)
        return ExportResult(out=Path(out), format=format, counts=written.counts())
    loaded = load_splits(source=source, splits=splits)
    with staging.staged(out, replace=False) as folder:
        if format == "coco":
            counts = _export_coco(loaded, out=folder, upstream_form=upstream_form)
        else:
            counts = _export_folder(loaded, out=folder, classes=classes)
    return ExportResult(out=Path(out), format=format, counts=counts)
