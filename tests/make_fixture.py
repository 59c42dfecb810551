"""Cut the small real fixture in tests/fixtures/data out of the upstream dataset.

    python tests/make_fixture.py ../shared/data/covid-19-chest-xray-segmentations-dataset

Keeps three images with licences that allow it (two CC BY, one CC BY-SA with a
Monitoring Probes annotation that has no mask), their annotations in both COCO files,
their mask crops and structure.csv rows, and their metadata.csv rows. The files are
copied byte for byte, so the images still match the upstream manifest.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
from pathlib import Path

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "data"
FILE_NAMES = ("X-ray_of_cyst_in_pneumocystis_pneumonia_1.jpg", "pneumocystis-pneumonia-1.jpg", "ARDSSevere.png")


def subset_coco(source: Path, target: Path, file_names: set[str]) -> None:
    data = json.loads(source.read_text(encoding="utf-8"))
    images = [image for image in data["images"] if image["file_name"] in file_names]
    ids = {image["id"] for image in images}
    data["images"] = images
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] in ids]
    target.write_text(json.dumps(data), encoding="utf-8")


def subset_csv(source: Path, target: Path, column: str, keep: set[str]) -> None:
    with open(source, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    index = rows[0].index(column)
    with open(target, "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle, lineterminator="\n").writerows([rows[0]] + [row for row in rows[1:] if row[index] in keep])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("upstream", type=Path, help="the upstream dataset folder")
    args = parser.parse_args(argv)
    shutil.rmtree(FIXTURE, ignore_errors=True)
    for folder in ("images", "masks", "annotation"):
        (FIXTURE / folder).mkdir(parents=True)
    names = set(FILE_NAMES)
    for name in FILE_NAMES:
        shutil.copyfile(args.upstream / "images" / name, FIXTURE / "images" / name)
    for coco in ("results.json", "results_polygons.json"):
        subset_coco(args.upstream / "annotation" / coco, FIXTURE / "annotation" / coco, names)
    subset_csv(args.upstream / "metadata.csv", FIXTURE / "metadata.csv", "filename", names)
    subset_csv(args.upstream / "structure.csv", FIXTURE / "structure.csv", "Filename", names)
    with open(FIXTURE / "structure.csv", newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if row["Mask"]:
                shutil.copyfile(args.upstream / row["Mask"], FIXTURE / row["Mask"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
