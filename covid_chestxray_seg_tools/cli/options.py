"""Options defined once and shared by every subcommand, so that each means the same everywhere.

    --source   what is read: a built folder or a Hub dataset repo id (--revision: which commit of the repo)
    --out      what is written (a folder; never an existing one, except `build`, which replaces it)
    --split    which split
    --json     also write the result as JSON to FILE (`-`: JSON on stdout instead of the text)
    --quiet    warnings and errors only: no progress bars, no INFO lines

and, where a subcommand has them:

    --classes    which classes: class names ("Left Lung") or mask columns ("mask_left_lung")
    --tools-url  the repository of these tools, named in the card (`build`, `publish`)

`build`, `validate` and `benchmark` read upstream's files instead of a build: they share the
upstream-source options (`--data-dir`, `--severity-file`, ...).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import covid_chestxray_seg as recipe
from covid_chestxray_seg_tools.source import Source, open_source

__all__ = [
    "CommandParser",
    "add_classes",
    "add_data_dir",
    "add_out",
    "add_source",
    "add_split",
    "add_tools_url",
    "add_upstream_source",
    "opened_source",
    "positive_float",
    "positive_int",
    "subcommand",
]


class CommandParser(argparse.ArgumentParser):
    """A parser that knows which option sets which setting, so that an error naming a setting
    (`errors.CovidSegError`) is worded with the option (`boundary.FlagNames`).

    `add_argument` takes one more keyword, `setting`: the library's name for what the option
    sets, where it is not the option's own (`--allow-modified` sets `verify_upstream` to False).

    Attributes:
        flags: setting -> the option that sets it, for every option added.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Before argparse's own __init__, which adds --help through add_argument.
        self.flags: dict[str, str] = {}
        self._children: list[argparse._SubParsersAction] = []
        super().__init__(*args, **kwargs)

    def add_subparsers(self, **kwargs: Any) -> argparse._SubParsersAction:
        """argparse's, its subcommands' parsers being CommandParsers too, and remembered."""
        action = super().add_subparsers(parser_class=CommandParser, **kwargs)
        self._children.append(action)
        return action

    def commands(self) -> list[CommandParser]:
        """Every subcommand's parser below this one, depth first."""
        found: list[CommandParser] = []
        for action in self._children:
            for child in action.choices.values():
                found += [child, *child.commands()]
        return found

    def add_argument(self, *names: str, setting: str | None = None, **kwargs: Any) -> argparse.Action:
        action = super().add_argument(*names, **kwargs)
        long = [name for name in action.option_strings if name.startswith("--")]
        if long:
            self.flags[setting or action.dest] = long[0]
        return action


def subcommand(
    subparsers: argparse._SubParsersAction, name: str, *, summary: str, description: str, examples: str
) -> CommandParser:
    """A subcommand's parser with the options every subcommand has (`--json`, `--quiet`) and its
    examples under its help; the command's error boundary reads which option sets which setting
    from it (`command_parser`)."""
    parser: CommandParser = subparsers.add_parser(
        name,
        help=summary,
        description=description,
        epilog="examples:\n" + examples.rstrip() + "\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=None,
        metavar="FILE",
        help="also write the result as JSON to FILE; '-' prints the JSON instead of the text",
    )
    parser.add_argument(
        "--quiet", action="store_true", help="only warnings and errors: no progress bars and no INFO lines"
    )
    parser.set_defaults(command_parser=parser)
    return parser


def add_source(
    parser: argparse.ArgumentParser, *, default: str | None = None, what: str = "the dataset", revision: bool = True
) -> None:
    """`--source`: a built folder or a Hub dataset repo id; with `revision`, `--revision` too,
    the repo's branch, tag or commit to read (`opened_source` checks both)."""
    parser.add_argument(
        "--source",
        required=default is None,
        default=default,
        metavar="FOLDER_OR_REPO_ID",
        help=f"{what}: a folder `covid-seg build` wrote, or a Hub dataset repo id (ORG/NAME); its data files are "
        "checked against its checksums.json first" + (f" (default: {default})" if default else ""),
    )
    if revision:
        parser.add_argument(
            "--revision",
            default=None,
            metavar="REV",
            help="with a Hub repo as --source: the branch, tag or commit to read (default: the default branch)",
        )


def opened_source(args: argparse.Namespace) -> Source:
    """`--source` (at `--revision`), checked whole before anything is read (`source.open_source`)."""
    return open_source(args.source, revision=args.revision)


def add_out(parser: argparse.ArgumentParser, *, help: str, default: Path | None = None) -> None:
    """`--out`: the folder written."""
    parser.add_argument(
        "--out",
        type=Path,
        required=default is None,
        default=default,
        metavar="FOLDER",
        help=help + (f" (default: {default})" if default else ""),
    )


def add_split(
    parser: argparse.ArgumentParser,
    *,
    help: str,
    choices: tuple[str, ...] | None = None,
    default: str | None = None,
    repeat: bool = False,
) -> None:
    """`--split`: one split (or, with `repeat`, any number, each given with its own --split)."""
    parser.add_argument(
        "--split",
        action="append" if repeat else "store",
        choices=choices,
        default=default,
        metavar="SPLIT" if choices is None else "{" + ",".join(choices) + "}",
        help=help + (f" (default: {default})" if default else ""),
    )


def add_classes(parser: argparse.ArgumentParser, *, help: str) -> None:
    """`--classes`: class names ("Left Lung") or mask columns ("mask_left_lung"); default all."""
    parser.add_argument("--classes", nargs="+", default=None, metavar="CLASS", help=help)


def add_tools_url(parser: argparse.ArgumentParser, *, help: str, default: str | None) -> None:
    """`--tools-url`: the repository of these tools, which the card tells people to install
    `covid-seg` from."""
    parser.add_argument(
        "--tools-url", default=default, metavar="URL", help=help + (f" (default: {default})" if default else "")
    )


def add_data_dir(parser: argparse.ArgumentParser, *, required: bool) -> None:
    """`--data-dir` and `--annotation-file`: upstream's files on disk."""
    parser.add_argument(
        "--data-dir",
        type=Path,
        required=required,
        default=None,
        help="clone or copy of the upstream repository"
        + ("" if required else "; default: download upstream's archive at the pinned commit"),
    )
    parser.add_argument(
        "--annotation-file",
        default=recipe.ANNOTATION_FILE,
        help=f"COCO file inside the data folder (default: {recipe.ANNOTATION_FILE})",
    )


def add_upstream_source(parser: CommandParser) -> None:
    """What a build reads: upstream's repository and ieee8023's severity file, downloaded at
    their pinned commits unless local copies are given."""
    add_data_dir(parser, required=False)
    parser.add_argument(
        "--data-url",
        default=recipe.ARCHIVE_URL,
        help="archive to download when --data-dir is not given (default: upstream's GitHub archive at the "
        "pinned commit)",
    )
    parser.add_argument(
        "--severity-file",
        type=Path,
        default=None,
        help=f"local copy of ieee8023's {recipe.SEVERITY_PATH}; default: download it at the pinned commit",
    )
    parser.add_argument(
        "--severity-url",
        default=recipe.SEVERITY_URL,
        help="severity file to download when --severity-file is not given (default: ieee8023's repository at the "
        "pinned commit)",
    )
    parser.add_argument(
        "--allow-modified",
        # The builder's setting is the opposite: an error that says verify_upstream=False means this option.
        setting="verify_upstream",
        action="store_true",
        help="accept images, metadata.csv and a severity file that differ from their pinned manifests (the card "
        "lists them)",
    )


def positive_float(text: str) -> float:
    """An argparse type: a number above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number above 0, got {text}")
    return value


def positive_int(text: str) -> int:
    """An argparse type: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value
