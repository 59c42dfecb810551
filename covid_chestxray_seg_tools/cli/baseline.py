"""`covid-seg baseline`: write a baseline's predictions in the layout `covid-seg evaluate` reads."""

from __future__ import annotations

import argparse

import covid_chestxray_seg as recipe
from covid_chestxray_seg_tools import evaluate
from covid_chestxray_seg_tools.baselines import atlas
from covid_chestxray_seg_tools.cli import baseline_nnunet, baseline_unet, options
from covid_chestxray_seg_tools.cli.outcome import Outcome

__all__ = [
    "EXAMPLES",
    "register",
    "run_atlas",
]

EXAMPLES = """\
  # the mean-shape atlas: fit on train + validation, write its test predictions, then score them
  covid-seg baseline atlas --source build --split test --out preds-atlas
  covid-seg evaluate --source build --split test --predictions preds-atlas

  # cross-validation: one atlas per fold, fitted on the other four folds, out-of-fold predictions
  covid-seg baseline atlas --source build --split cv --out preds-atlas-cv
  covid-seg evaluate --source build --split cv --predictions preds-atlas-cv
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = options.subcommand(
        subparsers,
        "baseline",
        summary="write a baseline's predictions (atlas, unet, nnunet)",
        description="Write a baseline's predictions for a split, as DIR/<split>/<image_id>/<mask column>.png: the "
        "layout `covid-seg evaluate --predictions` reads.",
        examples=EXAMPLES,
    )
    kinds = parser.add_subparsers(dest="baseline", metavar="BASELINE", required=True)
    parser = options.subcommand(
        kinds,
        "atlas",
        summary="the per-class mean-shape atlas, fitted on development images",
        description="The per-class mean-shape atlas: masks resized to one size and averaged, thresholded at the level "
        "with the best mean Dice on them, resized to each predicted image. For a split it learns from the development "
        "images outside it (test: train + validation); under cv one atlas per fold learns from the other four folds "
        "and predicts its own. It never sees the labels of the images it predicts.",
        examples=EXAMPLES,
    )
    options.add_source(parser)
    options.add_split(
        parser,
        help=f"split to predict, or {evaluate.CV} (out-of-fold predictions for every train and validation image)",
        default=atlas.DEFAULT_SPLIT,
    )
    options.add_out(parser, help="folder to create for the predictions; must not exist yet")
    parser.set_defaults(handler=run_atlas)
    baseline_unet.register(kinds)
    baseline_nnunet.register(kinds)


def run_atlas(args: argparse.Namespace) -> Outcome:
    models, counts = atlas.atlas_predictions(source=options.opened_source(args), out=args.out, split=args.split)
    lines = [f"wrote {args.out}: " + ", ".join(f"{key} {value}" for key, value in counts.items())]
    summary = models.summary()
    for model in summary["models"]:
        scope = "" if model["fold"] is None else f"fold {model['fold']}: "
        lines.append(f"  {scope}fitted on {model['fit_images']} images, predicts {model['predicted_images']}")
    for name in recipe.CLASSES:
        entries = [model["classes"][name] for model in summary["models"]]
        thresholds = " / ".join(f"{entry['threshold']:.2f}" for entry in entries)
        dice = " / ".join("–" if entry["fit_dice"] is None else f"{entry['fit_dice']:.3f}" for entry in entries)
        lines.append(f"  {name}: threshold {thresholds}, Dice on its fitting masks {dice}")
    lines.append(f"score them: covid-seg evaluate --source {args.source} --split {args.split} --predictions {args.out}")
    return Outcome(text="\n".join(lines), data={"out": str(args.out), "counts": counts, "atlas": summary})
