"""The baselines the benchmark measures against: what a careful user writes by hand.

- `naive_build`: pycocotools' annToMask per annotation, PIL's default PNG save, the same
  overlay drawing, one process, written with `datasets.Dataset.from_generator`.
- `upstream_rows`: the hand-written upstream loader, `structure.csv` + mask crops pasted into
  full-size arrays (by the library's one crop rule).

Development code: it lives beside the tests, not in the installed package.
"""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

import covid_chestxray_seg as recipe
from covid_chestxray_seg_tools.validate import crops


def naive_build(data_dir: str, out: str, severity_file: str) -> None:
    """What a careful user writes by hand with pycocotools and PIL: same records, one process."""
    import datasets
    from pycocotools.coco import COCO

    root = Path(data_dir)
    coco = COCO(str(root / recipe.ANNOTATION_FILE))
    names = {c["id"]: recipe.UPSTREAM_CLASS_ALIASES.get(c["name"], c["name"]) for c in coco.loadCats(coco.getCatIds())}
    metadata = recipe.read_metadata(root / recipe.METADATA_FILE, needed={i["file_name"] for i in coco.imgs.values()})
    severity = recipe.read_severity(Path(severity_file).read_bytes(), Path(severity_file))
    unscored = dict.fromkeys(column for column, _ in recipe.SEVERITY_COLUMNS.values())

    def png(mask: np.ndarray) -> bytes:
        buffer = io.BytesIO()
        Image.fromarray(mask.astype(np.uint8) * 255).save(buffer, format="PNG")
        return buffer.getvalue()

    def records():
        for image_id in sorted(coco.imgs):
            image = coco.imgs[image_id]
            anns = coco.loadAnns(coco.getAnnIds(imgIds=[image_id]))
            masks = {name: np.zeros((image["height"], image["width"]), dtype=bool) for name in recipe.CLASSES}
            missing = set()
            objects = []
            for ann in sorted(anns, key=lambda a: a["id"]):
                name = names[ann["category_id"]]
                segmentation = None
                if ann["segmentation"]:
                    masks[name] |= coco.annToMask(ann).astype(bool)
                    rle = coco.annToRLE(ann)
                    counts = rle["counts"]  # annToRLE hands back a str when the file already had one
                    segmentation = {
                        "size": list(rle["size"]),
                        "counts": counts.decode() if isinstance(counts, bytes) else counts,
                    }
                else:
                    missing.add(name)
                objects.append(
                    {
                        "id": ann["id"],
                        "category": recipe.CLASSES.index(name),
                        "bbox": ann["bbox"],
                        "area": float(ann["area"]),
                        "iscrowd": bool(ann["iscrowd"]),
                        "segmentation": segmentation,
                    }
                )
            data = (root / recipe.IMAGES_DIR / image["file_name"]).read_bytes()
            drawn = {
                index: masks[name]
                for index, name in enumerate(recipe.CLASSES)
                if name not in missing and masks[name].any()
            }
            yield {
                "image": {"path": image["file_name"], "bytes": data},
                "overlay": {"path": None, "bytes": recipe.overlay_jpeg(data, drawn)},
                "image_id": image_id,
                "file_name": image["file_name"],
                "width": image["width"],
                "height": image["height"],
                **{
                    column: (None if name in missing else {"path": None, "bytes": png(masks[name])})
                    for name, column in zip(recipe.CLASSES, recipe.MASK_COLUMNS)
                },
                "objects": objects,
                **metadata[image["file_name"]],
                **severity.get(image["file_name"], unscored),
                "fold": None,
            }

    with tempfile.TemporaryDirectory() as cache:
        dataset = datasets.Dataset.from_generator(records, features=recipe.features(), cache_dir=cache)
        Path(out).mkdir(parents=True, exist_ok=True)
        dataset.to_parquet(str(Path(out) / "naive.parquet"))


def upstream_rows(data_dir: Path):
    """The hand-written upstream loader: image + one full-size array per class from the crops."""
    for file_name, (height, width), masks in crops.image_masks(data_dir):
        image = np.asarray(Image.open(data_dir / recipe.IMAGES_DIR / file_name))
        yield (
            file_name,
            image,
            {name: masks.get(name, np.zeros((height, width), dtype=bool)) for name in recipe.CLASSES},
        )
