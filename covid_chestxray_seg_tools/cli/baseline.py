"""`covid-seg baseline`: write a baseline's predictions in the layout `covid-seg evaluate` reads."""

from __future__ import annotations

import argparse

from covid_chestxray_seg_tools import baseline
from covid_chestxray_seg_tools.cli import baseline_unet, options
from covid_chestxray_seg_tools.cli.outcome import Outcome

__all__ = ["register", "run_atlas"]

EXAMPLES = """\
  # the mean-shape atlas: fit on the train split, write its test predictions, then score them
  covid-seg baseline atlas --source build --split test --out preds-atlas
  covid-seg evaluate --source build --split test --predictions preds-atlas
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = options.subcommand(
        subparsers,
        "baseline",
        summary="write a baseline's predictions (atlas, unet)",
        description="Write a baseline's predictions for a split, as DIR/<split>/<image_id>/<mask column>.png: the "
        "layout `covid-seg evaluate --predictions` reads.",
        examples=EXAMPLES,
    )
    kinds = parser.add_subparsers(dest="baseline", metavar="BASELINE", required=True)
    atlas = options.subcommand(
        kinds,
        "atlas",
        summary="the per-class mean-shape atlas, fitted on the train split",
        description="The per-class mean-shape atlas: the train masks resized to one size and averaged, thresholded "
        "at the level with the best mean train Dice, resized to each predicted image. It never sees the labels of "
        "the split it predicts.",
        examples=EXAMPLES,
    )
    options.add_source(atlas)
    options.add_split(atlas, help="split to predict", default=baseline.DEFAULT_SPLIT)
    options.add_out(atlas, help="folder to create for the predictions; must not exist yet")
    atlas.set_defaults(handler=run_atlas)
    baseline_unet.register(kinds)


def run_atlas(args: argparse.Namespace) -> Outcome:
    atlas, counts = baseline.atlas_predictions(source=args.source, out=args.out, split=args.split)
    lines = [f"wrote {args.out}: " + ", ".join(f"{key} {value}" for key, value in counts.items())]
    summary = atlas.summary()
    for name, entry in summary["classes"].items():
        dice = "–" if entry["train_dice"] is None else f"{entry['train_dice']:.3f}"
        lines.append(f"  {name}: threshold {entry['threshold']:.2f}, train Dice {dice}")
    lines.append(f"score them: covid-seg evaluate --source {args.source} --split {args.split} --predictions {args.out}")
    return Outcome(text="\n".join(lines), data={"out": str(args.out), "counts": counts, "atlas": summary})
