"""Export the dataset to COCO JSON + images, or to plain image / mask PNG files: the command line.

The work is `covid_chestxray_seg_tools.export.export`; this script parses the options,
calls it and turns its errors into one line.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from covid_chestxray_seg_tools import cli
from covid_chestxray_seg_tools.export import FORMATS, export

EXAMPLES = """\
examples:
  # COCO JSON per split plus the original images, from the folder scripts/build.py wrote
  # (COCOeval-ready: the 14 annotations without a mask upstream are left out and counted)
  python scripts/export.py --source build --format coco --out exports/coco

  # upstream's exact annotations back, `segmentation: []` where there is no mask
  python scripts/export.py --source build --format coco --upstream-form --out exports/coco-upstream

  # image.png + mask_<class>.png per record, test split, lungs only
  python scripts/export.py --source build --format folder --out exports/test-lungs --split test --classes "Left Lung" "Right Lung"

  # from the Hub
  python scripts/export.py --source ORG/covid-chestxray-seg --format coco --out exports/coco
"""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python scripts/export.py",
        description="Export the dataset to COCO JSON + images, or to a folder of image.png / mask_<class>.png files.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--source",
        required=True,
        help="built folder (scripts/build.py --out), Hub repo id, or any path load_dataset reads",
    )
    parser.add_argument(
        "--format",
        required=True,
        choices=FORMATS,
        help="coco: annotations/<split>.json + images/; folder: <split>/<image_id>/image.png + mask_<class>.png",
    )
    parser.add_argument("--out", type=Path, required=True, help="folder to create; must not exist yet")
    parser.add_argument(
        "--split", action="append", default=None, help="split to export (repeat for several; default: all)"
    )
    parser.add_argument(
        "--classes", nargs="+", default=None, help="folder format only: classes to write masks for (default: all 14)"
    )
    parser.add_argument(
        "--upstream-form",
        action="store_true",
        help="coco format only: keep the annotations without a mask as upstream writes them (`segmentation: []`) for an exact "
        "round trip; pycocotools' COCOeval cannot read those, so by default they are left out and counted",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    cli.setup_logging()

    def work() -> None:
        counts = export(
            source=args.source,
            out=args.out,
            format=args.format,
            splits=args.split,
            classes=args.classes,
            upstream_form=args.upstream_form,
        )
        print(f"exported {args.out}: " + ", ".join(f"{key} {value}" for key, value in counts.items()))

    return cli.run(work)


if __name__ == "__main__":
    sys.exit(main())
