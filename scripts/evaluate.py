"""Score predicted masks against a split, or write the atlas baseline's predictions: the command line.

The work is `covid_chestxray_seg_tools.evaluate` (metrics, bootstrap, reading predictions)
and `covid_chestxray_seg_tools.baseline` (the atlas); this script parses the options, calls
them and turns their errors into one line.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from covid_chestxray_seg_tools import baseline, cli, evaluate

EXAMPLES = """\
examples:
  # score predictions (DIR/test/<image_id>/mask_<class>.png, 0 = background) on the test split
  python scripts/evaluate.py --source build --split test --predictions preds --json scores.json

  # the ground truth scores itself: Dice 1.0 everywhere
  python scripts/export.py --source build --format folder --out exports/files --split test
  python scripts/evaluate.py --source build --split test --predictions exports/files

  # the atlas baseline: fit on train, write its test predictions, then score them
  python scripts/evaluate.py --baseline atlas --source build --split test --out preds-atlas
  python scripts/evaluate.py --source build --split test --predictions preds-atlas

  # predictions in Parquet (image_id + mask columns), from the Hub's copy of the data
  python scripts/evaluate.py --source ORG/covid-chestxray-seg --split test --predictions preds-parquet

Dice and IoU per image and class; HD95 and ASSD in pixels between the masks' surfaces
(pixels with a 4-connected background neighbour), as MONAI computes them. Pairs whose ground
truth is null (annotated without mask) and pairs with both masks empty are skipped and
counted; with one mask empty Dice and IoU are 0 and the distances are missing (counted).
Per class: mean and a 95 % bootstrap interval over patients (seeded).
"""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python scripts/evaluate.py",
        description="Score predicted masks against a split (Dice, IoU, HD95, ASSD per class with patient-bootstrap "
        "intervals), or write the atlas baseline's predictions.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--source",
        required=True,
        help="built folder (scripts/build.py --out), Hub repo id, or any path load_dataset reads",
    )
    parser.add_argument(
        "--split", default=baseline.DEFAULT_SPLIT, help=f"split to score or predict (default: {baseline.DEFAULT_SPLIT})"
    )
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument(
        "--predictions",
        type=Path,
        metavar="DIR",
        help="predictions to score: DIR/<split>/<image_id>/<mask column>.png (a missing class file is an empty prediction), "
        "or Parquet files / a save_to_disk folder with image_id and the mask columns",
    )
    mode.add_argument(
        "--baseline",
        choices=baseline.BASELINES,
        help="write this baseline's predictions for --split to --out instead of scoring",
    )
    parser.add_argument(
        "--json", type=Path, default=None, metavar="FILE", help="with --predictions: also write the scores as JSON"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="DIR",
        help="with --baseline: folder to create for the predictions; must not exist yet",
    )
    parser.add_argument("--seed", type=int, default=evaluate.SEED, help=f"bootstrap seed (default: {evaluate.SEED})")
    parser.add_argument(
        "--samples",
        type=int,
        default=evaluate.BOOTSTRAP_SAMPLES,
        help=f"bootstrap resamples (default: {evaluate.BOOTSTRAP_SAMPLES})",
    )
    args = parser.parse_args(argv)
    if args.baseline and args.out is None:
        parser.error("--baseline needs --out DIR")
    if args.baseline and args.json is not None:
        parser.error("--json applies to --predictions (score the baseline's folder with --predictions)")
    if args.predictions and args.out is not None:
        parser.error("--out applies to --baseline")
    if args.samples < 1:
        parser.error("--samples must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    cli.setup_logging()

    def work() -> None:
        if args.baseline:
            atlas, counts = baseline.atlas_predictions(source=args.source, out=args.out, split=args.split)
            print(f"wrote {args.out}: " + ", ".join(f"{key} {value}" for key, value in counts.items()))
            for name, entry in atlas.summary()["classes"].items():
                dice = "–" if entry["train_dice"] is None else f"{entry['train_dice']:.3f}"
                print(f"  {name}: threshold {entry['threshold']:.2f}, train Dice {dice}")
            print(
                f"score them: python scripts/evaluate.py --source {args.source} --split {args.split} --predictions {args.out}"
            )
            return
        result = evaluate.evaluate(
            source=args.source, split=args.split, predictions=args.predictions, samples=args.samples, seed=args.seed
        )
        print(evaluate.format_markdown(result), end="")
        if args.json is not None:
            evaluate.write_json(result, path=args.json)

    return cli.run(work)


if __name__ == "__main__":
    sys.exit(main())
