"""Data-quality report: the COCO segmentations against upstream's own mask crops.

Exits 1 on hard errors (bad input, a missing crop, an image missing from the metadata),
0 otherwise. The work is `covid_chestxray_seg_tools.validate`.

examples:
  python scripts/validate.py --data-dir ../shared/data/covid-19-chest-xray-segmentations-dataset
  python scripts/validate.py --data-dir DIR --annotation-file annotation/results_polygons.json --json report.json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import covid_chestxray_seg as recipe
from covid_chestxray_seg_tools import cli
from covid_chestxray_seg_tools.validate import format_report, report_json, validate


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python scripts/validate.py",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n")[-1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--data-dir", type=Path, required=True, help="upstream repository clone or copy")
    parser.add_argument(
        "--annotation-file",
        default=recipe.ANNOTATION_FILE,
        help=f"COCO file inside the data folder (default: {recipe.ANNOTATION_FILE})",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the report as JSON")
    args = parser.parse_args(argv)

    def work() -> int:
        report = validate(data_dir=args.data_dir, annotation_file=args.annotation_file)
        print(format_report(report))
        if args.json:
            args.json.write_text(json.dumps(report_json(report), indent=2) + "\n", encoding="utf-8")
        return 1 if report.hard_errors else 0

    return cli.run(work)


if __name__ == "__main__":
    sys.exit(main())
