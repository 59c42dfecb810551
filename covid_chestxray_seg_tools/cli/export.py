"""`covid-seg export`: the dataset back to files, for tools that do not read `datasets`."""

from __future__ import annotations

import argparse

from covid_chestxray_seg_tools.cli import options
from covid_chestxray_seg_tools.cli.outcome import Outcome
from covid_chestxray_seg_tools.export import FORMATS, export

__all__ = ["register", "run"]

_EXAMPLES = """\
  # COCO JSON per split plus the original images, from the folder `covid-seg build` wrote
  # (COCOeval-ready: the 14 annotations without a mask upstream are left out and counted)
  covid-seg export --source build --format coco --out exports/coco

  # upstream's exact annotations back, `segmentation: []` where there is no mask
  covid-seg export --source build --format coco --upstream-form --out exports/coco-upstream

  # image.png + mask_<class>.png per record, test split, lungs only
  covid-seg export --source build --format folder --out exports/test-lungs --split test \\
      --classes "Left Lung" "Right Lung"

  # from the Hub
  covid-seg export --source ORG/covid-chestxray-seg --format coco --out exports/coco

  # a FiftyOne dataset in FiftyOne's export layout, what `covid-seg publish --fiftyone` pushes
  # (needs the extra: pip install 'covid-chestxray-seg[fiftyone]')
  covid-seg export --source build --format fiftyone --out exports/fiftyone
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = options.subcommand(
        subparsers,
        "export",
        summary="export to COCO JSON + images, image / mask PNG files, or a FiftyOne dataset",
        description="Export the dataset to COCO JSON + images, to a folder of image.png / mask_<class>.png files, "
        "or to a FiftyOne dataset in FiftyOne's export layout. "
        "--out appears only when the export succeeded, and is never overwritten.",
        examples=_EXAMPLES,
    )
    options.add_source(parser)
    parser.add_argument(
        "--format",
        required=True,
        choices=FORMATS,
        help="coco: annotations/<split>.json + images/; folder: <split>/<image_id>/image.png + mask_<class>.png; "
        "fiftyone: FiftyOne's FiftyOneDataset layout + fiftyone.yml, README.md, LICENSE.md (the companion repo)",
    )
    options.add_out(parser, help="folder to create; must not exist yet")
    options.add_split(parser, help="split to export; repeat for several (default: all)", repeat=True)
    parser.add_argument(
        "--classes", nargs="+", default=None, help="folder format only: classes to write masks for (default: all 14)"
    )
    parser.add_argument(
        "--upstream-form",
        action="store_true",
        help="coco format only: keep the annotations without a mask as upstream writes them (`segmentation: []`) "
        "for an exact round trip; pycocotools' COCOeval cannot read those, so by default they are left out",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> Outcome:
    result = export(
        source=options.opened_source(args),
        out=args.out,
        format=args.format,
        splits=args.split,
        classes=args.classes,
        upstream_form=args.upstream_form,
    )
    text = f"exported {result.out}: " + ", ".join(f"{key} {value}" for key, value in result.counts.items())
    return Outcome(text=text, data=result.to_json())
