"""`covid-seg validate`: upstream's COCO segmentations against its own mask crops."""

from __future__ import annotations

import argparse

from covid_chestxray_seg_tools.cli import options
from covid_chestxray_seg_tools.cli.outcome import Outcome
from covid_chestxray_seg_tools.validate import format_report, report_json, validate

__all__ = ["register", "run"]

_EXAMPLES = """\
  covid-seg validate --data-dir ../shared/data/covid-19-chest-xray-segmentations-dataset
  covid-seg validate --data-dir DIR --annotation-file annotation/results_polygons.json --json report.json
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = options.subcommand(
        subparsers,
        "validate",
        summary="compare the COCO segmentations with upstream's mask crops",
        description="Data-quality report: every COCO segmentation against upstream's own mask crops (IoU per "
        "annotation), bboxes and areas against the masks. Exits 1 on hard errors (a missing crop, an image missing "
        "from metadata.csv, unreadable input).",
        examples=_EXAMPLES,
    )
    options.add_data_dir(parser, required=True)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> Outcome:
    report = validate(data_dir=args.data_dir, annotation_file=args.annotation_file)
    return Outcome(text=format_report(report), data=report_json(report), exit_code=1 if report.hard_errors else 0)
