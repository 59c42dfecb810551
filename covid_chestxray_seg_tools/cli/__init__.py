"""`covid-seg`: one command, one subcommand per task.

    covid-seg build      upstream's files -> the Hub-ready folder
    covid-seg publish    a built folder -> a Hub dataset repo, in one verified commit
    covid-seg export     a build or Hub repo -> COCO JSON + images, or image / mask PNG files
    covid-seg validate   upstream's COCO segmentations against its own mask crops
    covid-seg evaluate   predicted masks scored against a split
    covid-seg baseline   a baseline's predictions (atlas, unet; nnunet converts nnU-Net's)
    covid-seg benchmark  build, load, stream and size against baselines (from a clone)

Each subcommand is a module of this package with `register(subparsers)`, which declares its
options (the shared ones come from `options`) and sets `handler`: a function of the parsed
arguments that returns an `Outcome`. `main` parses, sets up logging and runs the handler
inside the one error boundary (`boundary.run`). `python -m covid_chestxray_seg_tools` and the
`scripts/*.py` shims call `main` too.
"""

from __future__ import annotations

import os

# Before pyarrow loads: its default allocator (mimalloc) keeps freed blocks, so the peak memory
# of a build grew with the number of Parquet files it touched; the system allocator gives them
# back. setdefault: a caller's own choice wins, and a process that loaded pyarrow before
# importing this keeps the allocator it has.
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")

import argparse
import sys
from collections.abc import Sequence

import datasets

import covid_chestxray_seg as recipe
from covid_chestxray_seg_tools import __version__
from covid_chestxray_seg_tools.cli import (
    baseline,
    benchmark,
    boundary,
    build,
    evaluate,
    export,
    options,
    publish,
    validate,
)

__all__ = ["PROG", "main", "make_parser", "script"]

PROG = "covid-seg"
_SUBCOMMANDS = (build, publish, export, validate, evaluate, baseline, benchmark)

_EXAMPLES = """\
examples:
  covid-seg build --out build                                  # download upstream at its pinned commit, build
  covid-seg publish --repo-id ORG/covid-chestxray-seg          # one verified commit
  covid-seg export --source ORG/covid-chestxray-seg --format coco --out coco
  covid-seg evaluate --source ORG/covid-chestxray-seg --split test --predictions preds
  covid-seg baseline atlas --source build --split test --out preds-atlas

`covid-seg COMMAND --help` shows a command's options and examples. Set COVID_SEG_DEBUG=1 to see
the traceback behind any error message.
"""


def make_parser() -> options.CommandParser:
    """The command's parser, every subcommand registered."""
    parser = options.CommandParser(
        prog=PROG,
        description="COVID-19 Chest X-ray Segmentations as a Hugging Face dataset: build, publish, export, "
        "validate, evaluate.",
        epilog=_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--version",
        action="version",
        version=f"{PROG} {__version__} (builder {recipe.BUILDER_VERSION}, datasets {datasets.__version__})",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in _SUBCOMMANDS:
        module.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run `covid-seg` with `argv` (default: the process's arguments); returns the exit code.

    Args:
        argv: the arguments after the program name, e.g. ``["evaluate", "--source", "build", ...]``.

    Returns:
        0 on success; 1 after an error (one line on stderr) or a failed check; 2 for a usage
        error (argparse's message); 128 + the signal number after Ctrl-C, SIGTERM or SIGHUP.
    """
    parser = make_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        # --help, --version and usage errors end here, as argparse words them.
        return int(exit_.code or 0) if not isinstance(exit_.code, str) else 2
    boundary.setup_logging(quiet=args.quiet)
    secrets: list[str | None] = getattr(args, "secrets", lambda _: [])(args)
    names = boundary.FlagNames(command=args.command_parser, commands=parser.commands())
    return boundary.run(lambda: args.handler(args).emit(json_path=args.json), secrets=secrets, names=names)


def script(name: str) -> None:
    """What `scripts/<name>.py` runs: `covid-seg <name>` with the script's arguments."""
    sys.exit(main([name, *sys.argv[1:]]))
