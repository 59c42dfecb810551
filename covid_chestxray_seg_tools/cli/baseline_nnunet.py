"""`covid-seg baseline nnunet`: nnU-Net's predictions (trained elsewhere, on a GPU) converted once
into the layout `covid-seg evaluate` reads, and (with --results) scored into the results file."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from covid_chestxray_seg_tools.cli import options
from covid_chestxray_seg_tools.cli.outcome import Outcome

__all__ = ["EXAMPLES", "command", "register", "run"]

EXAMPLES = """\
  # nnU-Net trained on `covid-seg export --format nnunet` (docs/nnunet.md): its out-of-fold .npz
  # (model folder, trained with --npz) and its test .npz (nnUNetv2_predict --save_probabilities)
  # as 1-bit PNGs, then scored like any predictions
  covid-seg baseline nnunet --source build \\
      --cv $nnUNet_results/Dataset777_CovidChestXraySeg/nnUNetTrainer__nnUNetPlans__2d \\
      --test nnunet-test --out preds-nnunet
  covid-seg evaluate --source build --split cv --predictions preds-nnunet

  # the same, and the results file the card shows (needs fold_0..fold_4 and fold_all)
  covid-seg baseline nnunet --source build --cv MODEL_FOLDER --test nnunet-test --out preds-nnunet \\
      --results baselines/nnunet.json

  # evaluate reads nnU-Net's folders directly too (slower: tens of MB of float32 per case)
  covid-seg evaluate --source build --split test --predictions nnunet-test
"""


def register(kinds: argparse._SubParsersAction) -> None:
    """Add `nnunet` under `covid-seg baseline`."""
    parser = options.subcommand(
        kinds,
        "nnunet",
        summary="nnU-Net v2's predictions (trained on a GPU) as PNG masks, and its results file",
        description="Convert nnU-Net v2's predictions of `covid-seg export --format nnunet` once into "
        "OUT/<split>/<image_id>/<mask column>.png (1-bit, full size): the out-of-fold .npz files of a trained model "
        "folder (fold_K/validation/, trained with --npz) for train and validation, and the .npz files "
        "`nnUNetv2_predict --save_probabilities` wrote for test. Region probabilities are cut at 0.5 as nnU-Net "
        "cuts them; a size-256 export's go back to full size. With --results, score them against the atlas "
        "(cv and test) and write the results file with nnU-Net's training record (trainer, schedule, time, GPU).",
        examples=EXAMPLES,
    )
    options.add_source(parser)
    parser.add_argument(
        "--cv",
        type=Path,
        default=None,
        metavar="MODEL_FOLDER",
        help="nnU-Net's trained model folder (.../nnUNetTrainer__nnUNetPlans__2d) whose fold_K/validation/ hold "
        "the out-of-fold .npz files",
    )
    parser.add_argument(
        "--test",
        type=Path,
        default=None,
        metavar="PREDICTIONS",
        help="the folder nnUNetv2_predict --save_probabilities wrote for the export's imagesTs",
    )
    options.add_out(parser, help="folder to create for the PNG predictions; must not exist yet")
    parser.add_argument(
        "--results",
        type=Path,
        default=None,
        metavar="FILE",
        help="score the converted predictions (cv and test, with the atlas and the paired difference) and write "
        "the results file the card is rendered from (needs --cv and --test)",
    )
    parser.set_defaults(handler=run)


def command(args: argparse.Namespace) -> str:
    """The command that repeats this conversion, every setting spelt out."""
    words = ["covid-seg", "baseline", "nnunet", "--source", args.source]
    if args.revision is not None:
        words += ["--revision", args.revision]
    for flag, value in (("--cv", args.cv), ("--test", args.test), ("--out", args.out), ("--results", args.results)):
        if value is not None:
            words += [flag, str(value)]
    return shlex.join(words)


def run(args: argparse.Namespace) -> Outcome:
    from covid_chestxray_seg_tools.baselines import nnunet

    if args.results is not None and (args.cv is None or args.test is None):
        raise nnunet.NnUNetBaselineError(
            "the results file scores cross-validation and test: give both the model folder and the test predictions",
            setting="results",
            value=str(args.results),
        )
    source = options.opened_source(args)
    if args.results is not None:
        # Before the conversion: a model folder without its 6 models or their logs fails at once.
        nnunet.training_record(args.cv, command=command(args))
    converted = nnunet.convert(source=source, out=args.out, cv=args.cv, test=args.test)
    lines = [f"wrote {converted.out}: " + ", ".join(f"{key} {value}" for key, value in converted.counts.items())]
    data: dict = {"out": str(converted.out), "counts": converted.counts, "columns": list(converted.columns)}
    if args.results is not None:
        written = nnunet.write_results(
            source=source, predictions=args.out, model=args.cv, command=command(args), path=args.results
        )
        lines.append(f"  {nnunet.schedule_label(written['training'])}")
        lines.append(f"wrote {args.results}")
        data["results"] = written
    else:
        for split, given in (("cv", args.cv), ("test", args.test)):
            if given is not None:
                lines.append(
                    f"score them: covid-seg evaluate --source {args.source} --split {split} --predictions {args.out}"
                )
    return Outcome(text="\n".join(lines), data=data)
