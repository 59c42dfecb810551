"""Export the dataset back to files, for tools that do not read `datasets`.

Two formats, from a built folder, a Hub repo id or anything `load_dataset` accepts:

    coco     OUT/annotations/<split>.json (COCO: images, categories, annotations with
             compressed RLE, per-image licences) and OUT/images/<file_name> (the original
             bytes). All splits together give back the upstream annotations.
    folder   OUT/<split>/<image_id>/image.png and mask_<class>.png (8-bit, 0 or 255, the
             image's size) for every class mask the record has. A class annotated without
             a mask upstream has no file; the export counts and logs them.

OUT appears only when the export has succeeded (written beside it under a hidden name,
then renamed), and an existing OUT is never overwritten.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Iterable, Iterator, Optional, Sequence

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import datasets  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

import covid_chestxray_seg as recipe  # noqa: E402
from scripts import build  # noqa: E402

logger = logging.getLogger("covid_chestxray_seg.export")

FORMATS = ("coco", "folder")
# Columns a COCO document is made of; skipping the image and the 14 masks reads a small part of the bytes.
COCO_COLUMNS = ("image_id", "file_name", "width", "height", "objects", "license", "url")

EXAMPLES = """\
examples:
  # COCO JSON per split plus the original images, from the folder scripts/build.py wrote
  python scripts/export.py --source build --format coco --out exports/coco

  # image.png + mask_<class>.png per record, test split, lungs only
  python scripts/export.py --source build --format folder --out exports/test-lungs --split test --classes "Left Lung" "Right Lung"

  # from the Hub
  python scripts/export.py --source ORG/covid-chestxray-seg --format coco --out exports/coco
"""


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python scripts/export.py",
        description="Export the dataset to COCO JSON + images, or to a folder of image.png / mask_<class>.png files.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--source", required=True, help="built folder (scripts/build.py --out), Hub repo id, or any path load_dataset reads")
    parser.add_argument("--format", required=True, choices=FORMATS, help="coco: annotations/<split>.json + images/; folder: <split>/<image_id>/image.png + mask_<class>.png")
    parser.add_argument("--out", type=Path, required=True, help="folder to create; must not exist yet")
    parser.add_argument("--split", action="append", default=None, help="split to export (repeat for several; default: all)")
    parser.add_argument("--classes", nargs="+", default=None, help="folder format only: classes to write masks for (default: all 14)")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if args.classes is not None and args.format != "folder":
            raise ValueError("--classes applies to --format folder only (a COCO export keeps every annotation)")
        splits = load_splits(source=args.source, splits=args.split)
        with staged(out=args.out) as staging:
            if args.format == "coco":
                counts = export_coco(splits, out=staging)
            else:
                counts = export_folder(splits, out=staging, classes=args.classes)
    except (ValueError, OSError, FileNotFoundError, datasets.exceptions.DatasetNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"exported {args.out}: " + ", ".join(f"{key} {value}" for key, value in counts.items()))
    return 0


def load_splits(*, source: str, splits: Optional[Sequence[str]] = None) -> dict[str, datasets.Dataset]:
    """The requested splits of `source`, checked to be this dataset."""
    loaded = datasets.load_dataset(source)
    wanted = list(loaded) if splits is None else list(dict.fromkeys(splits))
    unknown = [name for name in wanted if name not in loaded]
    if unknown:
        raise ValueError(f"--split {', '.join(unknown)}: {source} has splits {', '.join(loaded)}")
    for name in wanted:
        missing = [column for column in ("image_id", "file_name", "objects", *recipe.MASK_COLUMNS) if column not in loaded[name].column_names]
        if missing:
            raise ValueError(f"{source}: split {name} lacks {', '.join(missing)}: not a covid-chestxray-seg build")
    return {name: loaded[name] for name in wanted}


def categories() -> list[dict]:
    """COCO categories with upstream's ids (class index + 1) and supercategories."""
    return [
        {"id": index + 1, "name": name, "supercategory": recipe.SUPERCATEGORIES[name]}
        for index, name in enumerate(recipe.CLASSES)
    ]


def coco_dict(rows: Iterable[dict], *, description: str) -> dict:
    """One COCO document from records (objects as stored: compressed RLE, null when none)."""
    rows = list(rows)
    licences = sorted({row["license"] for row in rows if row["license"]})
    licence_ids = {name: index + 1 for index, name in enumerate(licences)}
    images, annotations = [], []
    for row in rows:
        images.append(
            {
                "id": row["image_id"],
                "file_name": row["file_name"],
                "width": row["width"],
                "height": row["height"],
                # The image's own licence; 0 where upstream's metadata.csv gives none.
                "license": licence_ids.get(row["license"], 0),
                "url": row["url"],
            }
        )
        for obj in row["objects"]:
            segmentation = obj["segmentation"]
            annotations.append(
                {
                    "id": obj["id"],
                    "image_id": row["image_id"],
                    "category_id": obj["category"] + 1,
                    "iscrowd": int(obj["iscrowd"]),
                    "bbox": [float(value) for value in obj["bbox"]],
                    "area": obj["area"],
                    # COCO's own form for "no mask" is an empty polygon list, as upstream writes it.
                    "segmentation": [] if segmentation is None else {"size": list(segmentation["size"]), "counts": segmentation["counts"]},
                }
            )
    return {
        "info": {"description": description, "url": recipe._HOMEPAGE, "version": recipe.BUILDER_VERSION},
        "licenses": [{"id": 0, "name": "none given upstream", "url": ""}]
        + [{"id": licence_ids[name], "name": name, "url": ""} for name in licences],
        "categories": categories(),
        "images": sorted(images, key=lambda image: image["id"]),
        "annotations": sorted(annotations, key=lambda annotation: annotation["id"]),
    }


def export_coco(splits: dict[str, datasets.Dataset], *, out: Path) -> dict[str, int]:
    """OUT/annotations/<split>.json and OUT/images/<file_name> (original bytes)."""
    (out / "annotations").mkdir(parents=True)
    (out / "images").mkdir()
    counts = {"images": 0, "annotations": 0}
    for name, split in splits.items():
        document = coco_dict(split.select_columns(list(COCO_COLUMNS)), description=f"covid-chestxray-seg {name} split, exported from Parquet")
        images = split.select_columns(["image", "image_id", "file_name"]).cast_column("image", datasets.Image(decode=False))
        write_coco_images(images, out=out, split=name)
        (out / "annotations" / f"{name}.json").write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
        counts["images"] += len(document["images"])
        counts["annotations"] += len(document["annotations"])
    return counts


def write_coco_images(rows: Iterable[dict], *, out: Path, split: str) -> None:
    """Each row's original image bytes as OUT/images/<file_name>."""
    for row in rows:
        file_name = row["file_name"]
        if not file_name or Path(file_name).name != file_name or file_name in (".", ".."):
            # The names come from the data: one with a folder in it could write outside images/.
            raise ValueError(f"split {split}: image id {row['image_id']}: file_name {file_name!r} must be a plain file name")
        (out / "images" / file_name).write_bytes(row["image"]["bytes"])


def export_folder(splits: dict[str, datasets.Dataset], *, out: Path, classes: Optional[Sequence[str]] = None) -> dict[str, int]:
    """OUT/<split>/<image_id>/image.png and one mask_<class>.png per class with a mask."""
    columns = [recipe.mask_column(name) for name in recipe.class_names(classes, argument="--classes ")]
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
        logger.info(f"{counts['masks without data upstream (no file)']} class masks are null (annotated upstream without a mask): no file written")
    return counts


@contextlib.contextmanager
def staged(*, out: Path) -> Iterator[Path]:
    """A hidden folder beside `out`, moved to `out` only when the block succeeds."""
    out = Path(out)
    if out.exists():
        raise ValueError(f"{out}: already exists; choose a new --out (an export never overwrites)")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    build.move_into_place(staging, out)


if __name__ == "__main__":
    sys.exit(main())
