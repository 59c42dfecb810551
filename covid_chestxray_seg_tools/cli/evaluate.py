"""`covid-seg evaluate`: predicted masks scored against a split, per image and class."""

from __future__ import annotations

import argparse
from pathlib import Path

from covid_chestxray_seg_tools import evaluate
from covid_chestxray_seg_tools.cli import options
from covid_chestxray_seg_tools.cli.outcome import Outcome

__all__ = ["register", "run"]

DEFAULT_SPLIT = "test"

EXAMPLES = """\
  # score predictions (DIR/test/<image_id>/mask_<class>.png, 0 = background) on the test split
  covid-seg evaluate --source build --split test --predictions preds --json scores.json

  # the ground truth scores itself: Dice 1.0 everywhere
  covid-seg export --source build --format folder --out exports/files --split test
  covid-seg evaluate --source build --split test --predictions exports/files

  # the atlas baseline: fit on train, write its test predictions, then score them
  covid-seg baseline atlas --source build --split test --out preds-atlas
  covid-seg evaluate --source build --split test --predictions preds-atlas

  # against the Hub's copy, predictions in Parquet (image_id + mask columns)
  covid-seg evaluate --source ORG/covid-chestxray-seg --split test --predictions preds-parquet

Dice and IoU per image and class; HD95 and ASSD in pixels between the masks' surfaces (pixels
with a 4-connected background neighbour), as MONAI computes them. Pairs whose ground truth is
null (annotated without mask) and pairs with both masks empty are skipped and counted; with one
mask empty Dice and IoU are 0 and the distances are missing (counted). Per class: mean and a
95 % bootstrap interval over patients (seeded).
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = options.subcommand(
        subparsers,
        "evaluate",
        summary="score predicted masks against a split",
        description="Score predicted masks against a split: Dice, IoU, HD95 and ASSD per image and class, and per "
        "class a mean with a patient-bootstrap 95 % interval.",
        examples=EXAMPLES,
    )
    options.add_source(parser, what="the ground truth")
    options.add_split(parser, help="split to score", default=DEFAULT_SPLIT)
    parser.add_argument(
        "--predictions",
        type=Path,
        required=True,
        metavar="DIR",
        help="DIR/<split>/<image_id>/<mask column>.png (a missing class file is an empty prediction), or Parquet "
        "files / a save_to_disk folder with image_id and the mask columns",
    )
    parser.add_argument("--seed", type=int, default=evaluate.SEED, help=f"bootstrap seed (default: {evaluate.SEED})")
    parser.add_argument(
        "--samples",
        type=options.positive_int,
        default=evaluate.BOOTSTRAP_SAMPLES,
        help=f"bootstrap resamples (default: {evaluate.BOOTSTRAP_SAMPLES})",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> Outcome:
    result = evaluate.evaluate(
        source=args.source, split=args.split, predictions=args.predictions, samples=args.samples, seed=args.seed
    )
    return Outcome(text=evaluate.format_markdown(result), data=result)
