"""Data for the benchmark and the tests: upstream's data multiplied, and its size on disk."""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import covid_chestxray_seg as recipe


def upstream_bytes(data_dir: Path) -> int:
    files = list((data_dir / "images").iterdir()) + list((data_dir / "masks").iterdir())
    files += [data_dir / "structure.csv", data_dir / "metadata.csv"]
    return sum(path.stat().st_size for path in files if path.is_file())


def replicate(data_dir: Path, target: Path, copies: int) -> None:
    """The data `copies` times over, each copy with new image ids, file names and patients."""
    coco = json.loads((data_dir / recipe.ANNOTATION_FILE).read_text(encoding="utf-8"))
    (target / "images").mkdir(parents=True)
    (target / "annotation").mkdir()
    with open(data_dir / recipe.METADATA_FILE, newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        meta_rows = list(reader)
    name_at, patient_at = header.index("filename"), header.index("patientid")
    by_name = {row[name_at]: row for row in meta_rows}
    images, annotations, out_rows = [], [], []
    step_image = max(i["id"] for i in coco["images"]) + 1
    step_ann = max(a["id"] for a in coco["annotations"]) + 1
    for copy in range(copies):
        for image in coco["images"]:
            name = f"copy{copy}-{image['file_name']}"
            _link_or_copy(data_dir / "images" / image["file_name"], target / "images" / name)
            images.append({**image, "id": image["id"] + copy * step_image, "file_name": name})
            row = list(by_name[image["file_name"]])
            row[name_at] = name
            row[patient_at] = str(int(row[patient_at]) + copy * 100000)
            out_rows.append(row)
        annotations += [
            {**a, "id": a["id"] + copy * step_ann, "image_id": a["image_id"] + copy * step_image}
            for a in coco["annotations"]
        ]
    (target / recipe.ANNOTATION_FILE).write_text(json.dumps({**coco, "images": images, "annotations": annotations}))
    with open(target / recipe.METADATA_FILE, "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([header, *out_rows])


def _link_or_copy(source: Path, target: Path) -> None:
    # Hard links keep 10 copies of 61 MB cheap; another file system needs real copies.
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)
