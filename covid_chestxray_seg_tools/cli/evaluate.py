"""`covid-seg evaluate`: predicted masks scored against a split, under cross-validation or on
one fold, per image and class; optionally compared with a second set of predictions."""

from __future__ import annotations

import argparse
import textwrap
from pathlib import Path

import covid_chestxray_seg as recipe
from covid_chestxray_seg_tools import evaluate
from covid_chestxray_seg_tools.cli import options
from covid_chestxray_seg_tools.cli.outcome import Outcome

__all__ = ["register", "request", "run"]

_EXAMPLES = """\
  # score predictions (DIR/test/<image_id>/mask_<class>.png, 0 = background) on the test split
  covid-seg evaluate --source build --split test --predictions preds --json scores.json

  # against the Hub's copy: nothing but `pip install` needed, no clone
  covid-seg evaluate --source ORG/covid-chestxray-seg --split test --predictions preds

  # cross-validation: out-of-fold predictions of every train and validation image, found under
  # preds-cv/train/<image_id>/ and preds-cv/validation/<image_id>/; or one fold of them
  covid-seg evaluate --source build --split cv --predictions preds-cv
  covid-seg evaluate --source build --fold 2 --predictions preds-cv

  # only some classes, one CSV row per image and class
  covid-seg evaluate --source build --predictions preds --classes "Left Lung" "Right Lung" \\
      --per-image lungs.csv

  # is model A better than model B on the same images? paired differences A - B
  covid-seg evaluate --source build --predictions preds-a --compare preds-b

  # probability maps saved as 8-bit PNGs (0-255): cut them at 0.5
  covid-seg evaluate --source build --predictions preds-soft --threshold 0.5

  # a Hub repo at a tag, branch or commit
  covid-seg evaluate --source ORG/covid-chestxray-seg --revision v1.2.0 --predictions preds

  # the ground truth scores itself: Dice 1.0 everywhere
  covid-seg export --source build --format folder --out exports/files --split test
  covid-seg evaluate --source build --split test --predictions exports/files

  # the atlas baseline: fit, write its predictions, score them
  covid-seg baseline atlas --source build --split cv --out preds-atlas
  covid-seg evaluate --source build --split cv --predictions preds-atlas

  # one self-contained HTML page (offline, no scripts): the tables, per-image distributions,
  # each class's 5 worst images coloured by true / false positives and negatives
  covid-seg evaluate --source build --split cv --predictions preds-atlas --report atlas-cv.html \\
      --report-worst 5

The source's data files are checked against its checksums.json first (a damaged copy is named,
not scored).

Dice, IoU, NSD (tolerance in % of the image diagonal), clDice (tubes and lines), HD95 and ASSD
in pixels and in % of the image diagonal, as MONAI and the clDice reference compute them.
"""


def _protocol_text() -> str:
    """The benchmark and the protocol's rules (`evaluate.protocol`), wrapped for the terminal."""
    paragraphs = [evaluate.BENCHMARK, *evaluate.RULES.values()]
    wrapped = [textwrap.fill(text, width=100, initial_indent="- ", subsequent_indent="  ") for text in paragraphs]
    return "\nthe benchmark and the protocol:\n" + "\n".join(wrapped) + "\n"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = options.subcommand(
        subparsers,
        "evaluate",
        summary="score predicted masks against a split, cross-validation or a fold",
        description="Score predicted masks against a split (or under cross-validation): Dice, IoU, NSD, clDice, "
        "HD95 and ASSD per image and class, and per class a mean with a patient-bootstrap 95 % interval.",
        examples=_EXAMPLES + _protocol_text(),
    )
    options.add_source(parser, what="the ground truth")
    options.add_split(
        parser,
        help=f"split to score, or {evaluate.CV} for the cross-validation (every train and validation image, "
        "out-of-fold predictions) (default: test; with --fold, cv)",
    )
    parser.add_argument(
        "--fold",
        type=int,
        choices=range(recipe.FOLDS),
        default=None,
        metavar="K",
        help=f"score fold K (0-{recipe.FOLDS - 1}) of the cross-validation only",
    )
    parser.add_argument(
        "--predictions",
        type=Path,
        required=True,
        metavar="DIR",
        help="DIR/<split>/<image_id>/<mask column>.png (a missing class file is an empty prediction), or Parquet "
        "files / a save_to_disk folder with image_id and the mask columns, or nnU-Net's .npz output for an nnU-Net "
        "export (nnUNetv2_predict --save_probabilities; for cv, the model folder trained with --npz; docs/nnunet.md)",
    )
    options.add_classes(
        parser,
        help="classes to score, as names or mask columns (default: every class with a mask in the predictions; "
        "the others are listed as not predicted)",
    )
    parser.add_argument(
        "--compare",
        type=Path,
        default=None,
        metavar="DIR_B",
        help="a second set of predictions B: per class and metric the paired difference A - B over the same "
        "image-class pairs, with a patient-bootstrap 95 %% interval",
    )
    parser.add_argument(
        "--per-image",
        type=Path,
        default=None,
        metavar="FILE.csv",
        help="write one row per image and class of --predictions: the metrics, or why the pair was skipped",
    )
    parser.add_argument(
        "--report",
        type=Path,
        default=None,
        metavar="FILE.html",
        help="also write one self-contained HTML page (inline pictures, no scripts, nothing from the network): "
        "what was scored, the headline number, the tables, per-image distributions, the worst cases drawn, the "
        "severity agreement, with --compare a forest plot, and every image-class pair",
    )
    parser.add_argument(
        "--report-worst",
        type=options.positive_int,
        default=evaluate.DEFAULT_WORST,
        metavar="K",
        help=f"with --report: the K lowest-Dice images of each class drawn (default: {evaluate.DEFAULT_WORST})",
    )
    parser.add_argument(
        "--nsd-tolerance",
        type=options.positive_float,
        default=evaluate.DEFAULT_NSD_TOLERANCE_PCT,
        metavar="PCT",
        help=f"NSD's tolerance in percent of the image diagonal (default: {evaluate.DEFAULT_NSD_TOLERANCE_PCT:g})",
    )
    parser.add_argument(
        "--threshold",
        type=_fraction,
        default=None,
        metavar="T",
        help="cut probability maps (masks with more than two distinct values) at T, a fraction of the format's full "
        "scale (255 for 8-bit, 65535 for 16-bit, 1.0 for float images): foreground from T x full scale up. Without "
        "it such a mask is refused; binary masks (two values, 0 the background) are read as they are either way",
    )
    parser.add_argument("--seed", type=int, default=evaluate.SEED, help=f"bootstrap seed (default: {evaluate.SEED})")
    parser.add_argument(
        "--samples",
        type=options.positive_int,
        default=evaluate.BOOTSTRAP_SAMPLES,
        help=f"bootstrap resamples (default: {evaluate.BOOTSTRAP_SAMPLES})",
    )
    parser.set_defaults(handler=run)


def _fraction(text: str) -> float:
    value = options.positive_float(text)
    if not value < 1:
        raise argparse.ArgumentTypeError(f"must lie between 0 and 1 (a fraction of the full scale), got {text}")
    return value


def request(args: argparse.Namespace) -> evaluate.EvaluateRequest:
    """The evaluation the command line asks for, its source opened (checked) at its revision."""
    return evaluate.EvaluateRequest(
        source=options.opened_source(args),
        predictions=args.predictions,
        split=args.split,
        fold=args.fold,
        classes=None if args.classes is None else tuple(args.classes),
        compare=args.compare,
        threshold=args.threshold,
        scoring=evaluate.ScoringOptions(nsd_tolerance=args.nsd_tolerance, samples=args.samples, seed=args.seed),
    )


def run(args: argparse.Namespace) -> Outcome:
    asked = request(args)
    result = evaluate.evaluate(asked)
    text = evaluate.format_markdown(result)
    if args.per_image is not None:
        written = evaluate.write_per_image_csv(result, path=args.per_image)
        text += f"\nwrote {args.per_image}: {written} rows, one per image and class\n"
    if args.report is not None:
        size = evaluate.write_report(
            result, request=asked, options=evaluate.ReportOptions(path=args.report, worst=args.report_worst)
        )
        text += f"\nwrote {args.report} ({size / 1e6:.1f} MB)\n"
    return Outcome(text=text, data=result)
