"""`covid-seg baseline unet`: train the small U-Net on the CPU, write its out-of-fold and test
predictions, and (with --results) score them into the committed results file."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from covid_chestxray_seg_tools.cli import options
from covid_chestxray_seg_tools.cli.outcome import Outcome

__all__ = [
    "EXAMPLES",
    "command",
    "register",
    "run",
]

_TRAINING_FILE = "training.json"

EXAMPLES = """\
  # train 6 models (5 folds + test) on the CPU, write their predictions, score them into the results file
  covid-seg baseline unet --source build --out preds-unet --results baselines/unet.json

  # score predictions an earlier run wrote (and its training record) into the results file again
  covid-seg baseline unet --source build --out preds-unet --results baselines/unet.json --rescore

  # the same out-of-fold and test predictions, scored by hand
  covid-seg evaluate --source build --split test --predictions preds-unet
"""


def register(kinds: argparse._SubParsersAction) -> None:
    """Add `unet` under `covid-seg baseline`."""
    from covid_chestxray_seg_tools.baselines.unet import Settings

    defaults = Settings()
    parser = options.subcommand(
        kinds,
        "unet",
        summary="a small U-Net (MONAI) trained on the CPU from size-256: out-of-fold and test predictions",
        description="Train a small U-Net (MONAI's UNet, random initialisation) on the CPU from the size-256 config, "
        "all 14 classes at once, seeded: one model per fold on the other four folds (out-of-fold predictions for "
        "train and validation) and one on train + validation (test predictions). Predictions are written at full "
        "size as OUT/<split>/<image_id>/<mask column>.png, with OUT/training.json (settings, versions, CPU time). "
        "Needs the [train] extra (torch, monai).",
        examples=EXAMPLES,
    )
    options.add_source(parser)
    options.add_out(parser, help="folder to create for the predictions; must not exist yet (but for --rescore)")
    parser.add_argument(
        "--size",
        type=options.positive_int,
        default=defaults.size,
        help=f"side the model sees, at most 256 (default: {defaults.size})",
    )
    parser.add_argument(
        "--epochs", type=options.positive_int, default=defaults.epochs, help=f"per model (default: {defaults.epochs})"
    )
    parser.add_argument(
        "--width",
        type=options.positive_int,
        default=defaults.channels[0],
        help=f"feature maps of the first level, doubled at each of {len(defaults.channels)} levels "
        f"(default: {defaults.channels[0]})",
    )
    parser.add_argument("--seed", type=int, default=defaults.seed, help=f"(default: {defaults.seed})")
    parser.add_argument(
        "--limit", type=options.positive_int, default=None, help="only the first N images of each split (a quick try)"
    )
    parser.add_argument("--threads", type=options.positive_int, default=None, help="torch threads (default: all cores)")
    parser.add_argument(
        "--results",
        type=Path,
        default=None,
        metavar="FILE",
        help="score the predictions (cross-validation and test, with the atlas and the paired difference) and "
        "write the results file the card is rendered from",
    )
    parser.add_argument(
        "--rescore",
        action="store_true",
        help="do not train: score the predictions and training.json an earlier run wrote to --out (needs --results)",
    )
    parser.set_defaults(handler=run)


def command(args: argparse.Namespace) -> str:
    """The command that repeats this training run, every setting spelt out."""
    words = ["covid-seg", "baseline", "unet", "--source", args.source, "--out", str(args.out)]
    if args.revision is not None:
        words[5:5] = ["--revision", args.revision]
    words += [
        "--size",
        str(args.size),
        "--epochs",
        str(args.epochs),
        "--width",
        str(args.width),
        "--seed",
        str(args.seed),
    ]
    if args.limit is not None:
        words += ["--limit", str(args.limit)]
    if args.threads is not None:
        words += ["--threads", str(args.threads)]
    if args.results is not None:
        words += ["--results", str(args.results)]
    return shlex.join(words)


def run(args: argparse.Namespace) -> Outcome:
    from covid_chestxray_seg_tools.baselines import results, unet

    if args.rescore and args.results is None:
        raise unet.UNetError("--rescore scores an earlier run's predictions into --results FILE: give --results")
    source = options.opened_source(args)
    if args.rescore:
        record_path = args.out / _TRAINING_FILE
        try:
            training = json.loads(record_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise unet.UNetError(f"{record_path}: no readable training record ({error}); train first") from None
        lines = [f"scoring the predictions in {args.out}"]
    else:
        settings = unet.Settings(
            size=args.size,
            epochs=args.epochs,
            channels=tuple(args.width * 2**level for level in range(len(unet.Settings().channels))),
            seed=args.seed,
            limit=args.limit,
            threads=args.threads,
        )
        outcome = unet.train_and_predict(
            source=source,
            out=args.out,
            settings=settings,
            say=(lambda line: None) if args.quiet else (lambda line: print(line, file=sys.stderr, flush=True)),
        )
        training = {**outcome.to_json(), "command": command(args)}
        (args.out / _TRAINING_FILE).write_text(json.dumps(training, indent=1) + "\n", encoding="utf-8")
        lines = [
            f"wrote {args.out}: {outcome.files} masks of {sum(r.predicted_images for r in outcome.rounds)} images "
            f"from {len(outcome.rounds)} models in {outcome.wall_seconds / 60:.1f} min "
            f"(CPU {outcome.cpu_seconds / 60:.1f} min)"
        ]
    data = {"out": str(args.out), "training": training}
    if args.results is not None:
        written = results.write_results(source=source, predictions=args.out, training=training, path=args.results)
        lines.append(results.format_summary(written))
        lines.append(f"wrote {args.results}")
        data["results"] = written
    return Outcome(text="\n".join(lines), data=data)
