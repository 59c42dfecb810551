"""`covid-seg export`: the dataset back to files, for tools that do not read `datasets`."""

from __future__ import annotations

import argparse

from covid_chestxray_seg_tools import nnunet_format
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

  # nnU-Net v2's raw dataset (Dataset777_CovidChestXraySeg: imagesTr, labelsTr, imagesTs,
  # dataset.json, splits_final.json = our folds); size-256 for a quick run, default for full size
  covid-seg export --source build --format nnunet --config size-256 --out nnUNet_raw
  export nnUNet_raw=$PWD/nnUNet_raw    # then nnUNetv2_plan_and_preprocess -d 777 ... (docs/nnunet.md)

  # a FiftyOne dataset in FiftyOne's export layout, what `covid-seg publish --fiftyone` pushes
  # (needs the extra: pip install 'covid-chestxray-seg[fiftyone]')
  covid-seg export --source build --format fiftyone --out exports/fiftyone
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = options.subcommand(
        subparsers,
        "export",
        summary="export to COCO JSON + images, image / mask PNG files, a FiftyOne dataset or nnU-Net's format",
        description="Export the dataset to COCO JSON + images, to a folder of image.png / mask_<class>.png files, "
        "to a FiftyOne dataset in FiftyOne's export layout, or to nnU-Net v2's raw dataset (each combination of "
        "overlapping classes one label, each class one region, our 5 folds as splits_final.json). "
        "--out appears only when the export succeeded, and is never overwritten.",
        examples=_EXAMPLES,
    )
    options.add_source(parser)
    parser.add_argument(
        "--format",
        required=True,
        choices=FORMATS,
        help="coco: annotations/<split>.json + images/; folder: <split>/<image_id>/image.png + mask_<class>.png; "
        "fiftyone: FiftyOne's FiftyOneDataset layout + fiftyone.yml, README.md, LICENSE.md (the companion repo); "
        "nnunet: Dataset777_CovidChestXraySeg/ with imagesTr, labelsTr, imagesTs, dataset.json, splits_final.json",
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
    parser.add_argument(
        "--config",
        choices=nnunet_format.CONFIGS,
        default=None,
        help=f"nnunet format only: the config exported (default: {nnunet_format.CONFIGS[0]}, full size; "
        f"{nnunet_format.CONFIGS[1]}: "
        "256 x 256, nnU-Net plans small patches and its predictions go back to full size for scoring)",
    )
    parser.add_argument(
        "--dataset-id",
        type=options.positive_int,
        default=None,
        metavar="N",
        help=f"nnunet format only: nnU-Net's dataset number, 1-999 (default: {nnunet_format.DEFAULT_DATASET_ID})",
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
        config=args.config,
        dataset_id=args.dataset_id,
    )
    text = f"exported {result.out}: " + ", ".join(f"{key} {value}" for key, value in result.counts.items())
    text += "".join(f"\n{note}" for note in result.notes)
    return Outcome(text=text, data=result.to_json())
