"""`covid-seg build`: upstream's files -> the Hub-ready folder (Parquet shards, card, licence file,
dataset_infos.json)."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import covid_chestxray_seg as recipe
from covid_chestxray_seg_tools.baselines import nnunet, results
from covid_chestxray_seg_tools.build import DEFAULT_NUM_PROC, BuildOptions, UpstreamSource, build
from covid_chestxray_seg_tools.card import render as card_render
from covid_chestxray_seg_tools.card.legend import LEGEND_PATH
from covid_chestxray_seg_tools.card.render import CardOptions
from covid_chestxray_seg_tools.cli import options
from covid_chestxray_seg_tools.cli.outcome import Outcome
from covid_chestxray_seg_tools.errors import CovidSegError
from covid_chestxray_seg_tools.hub_folder import layout, parquet

__all__ = [
    "DEFAULT_OUT",
    "EXAMPLES",
    "SyncError",
    "build_options",
    "register",
    "run",
]

DEFAULT_OUT = Path("build")
EXAMPLES = """\
  # from upstream's archive and ieee8023's severity file at their pinned commits (downloaded, cached)
  covid-seg build --out build

  # offline, from local copies of both (as CI does)
  covid-seg build --data-dir ../shared/data/covid-19-chest-xray-segmentations-dataset \\
      --severity-file ../shared/data/ieee8023-covid-chestxray-dataset/annotations/covid-severity-scores.csv --out build

  # with the polygon annotation file, on data that differs from upstream
  covid-seg build --data-dir DIR --annotation-file annotation/results_polygons.json --allow-modified

  # for the repo you will publish to; checked against upstream's crops, with the baselines in the card
  covid-seg build --data-dir DIR --repo-id acme/cxr-seg --validate --baseline
"""


class SyncError(CovidSegError):
    """--sync-repo outside a clone of this repository."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = options.subcommand(
        subparsers,
        "build",
        summary="build the Hub-ready folder from upstream's files",
        description="Build the Hub-ready folder: Parquet shards, the dataset card, LICENSE.md and dataset_infos.json. "
        "It appears (or replaces the previous build) only when everything succeeded.",
        examples=EXAMPLES,
    )
    options.add_upstream_source(parser)
    options.add_out(parser, help="folder to write, replaced on success", default=DEFAULT_OUT)
    parser.add_argument(
        "--shards",
        type=options.positive_int,
        default=parquet.DEFAULT_SHARDS,
        help=f"Parquet files per split at least, at most one per row (default: {parquet.DEFAULT_SHARDS}, one per "
        "streaming worker)",
    )
    parser.add_argument(
        "--max-shard-mb",
        type=options.positive_int,
        default=parquet.DEFAULT_MAX_SHARD_MB,
        help="more files when a split would otherwise have files over this size in MB "
        f"(default: {parquet.DEFAULT_MAX_SHARD_MB})",
    )
    parser.add_argument(
        "--rows-per-row-group",
        type=options.positive_int,
        default=parquet.DEFAULT_ROWS_PER_ROW_GROUP,
        help="rows per Parquet row group; small groups make streaming start fast "
        f"(default: {parquet.DEFAULT_ROWS_PER_ROW_GROUP})",
    )
    parser.add_argument(
        "--num-proc",
        type=options.positive_int,
        default=DEFAULT_NUM_PROC,
        help=f"worker processes for the build (default: all {DEFAULT_NUM_PROC} cores)",
    )
    parser.add_argument(
        "--repo-id",
        default=card_render.DEFAULT_REPO_ID,
        help=f"Hub dataset repo the card's code loads (default: {card_render.DEFAULT_REPO_ID}; `covid-seg publish` "
        "writes the id it publishes to)",
    )
    options.add_tools_url(
        parser,
        help="repository of these tools, which the card tells people to install covid-seg from "
        "(`covid-seg publish --tools-url` can change it)",
        default=card_render.DEFAULT_TOOLS_URL,
    )
    parser.add_argument(
        "--template", type=Path, default=card_render.TEMPLATE, help="card template (default: the package's own)"
    )
    parser.add_argument(
        "--validate",
        action="store_true",
        help="compare every COCO segmentation with upstream's mask crops and put the summary in the card "
        "(what `covid-seg validate` does)",
    )
    parser.add_argument(
        "--baseline",
        action="store_true",
        help="score the mean-shape atlas on the test split and under cross-validation and put its tables in the "
        "card (what `covid-seg baseline atlas` predicts)",
    )
    parser.add_argument(
        "--unet-results",
        type=Path,
        default=None,
        metavar="FILE",
        help="with --baseline: the U-Net's results file to render in the card (default: the repository's "
        "baselines/unet.json, where there is one)",
    )
    parser.add_argument(
        "--nnunet-results",
        type=Path,
        default=None,
        metavar="FILE",
        help="with --baseline: nnU-Net's results file (`covid-seg baseline nnunet --results`) to render in the card "
        "(default: the repository's baselines/nnunet.json, where a GPU run was committed)",
    )
    parser.add_argument(
        "--sync-repo",
        action="store_true",
        help="also copy dataset_infos.json, assets/preview.png and assets/legend.png into this repository's clone "
        "(maintainers)",
    )
    parser.set_defaults(handler=run)


def build_options(args: argparse.Namespace) -> BuildOptions:
    """The build the command line asks for."""
    return BuildOptions(
        out=args.out,
        upstream=UpstreamSource(
            data_dir=args.data_dir,
            data_url=args.data_url,
            annotation_file=args.annotation_file,
            verify_upstream=not args.allow_modified,
            severity_file=args.severity_file,
            severity_url=args.severity_url,
        ),
        cut=parquet.ShardCut(
            shards=args.shards,
            max_shard_bytes=args.max_shard_mb * 1_000_000,
            rows_per_row_group=args.rows_per_row_group,
        ),
        card=CardOptions(template=args.template, repo_id=args.repo_id, tools_url=args.tools_url),
        num_proc=args.num_proc,
        validate=args.validate,
        baseline=args.baseline,
        unet_results=args.unet_results or results.committed_results(),
        nnunet_results=args.nnunet_results or nnunet.committed_results(),
    )


def run(args: argparse.Namespace) -> Outcome:
    result = build(build_options(args))
    text = result.summary()
    if args.sync_repo:
        # The repository keeps the build's infos (a test compares them with a fresh build) and
        # the preview and legend (its README shows them).
        root = Path(recipe.__file__).resolve().parent
        if not (root / "pyproject.toml").is_file():
            raise SyncError(f"--sync-repo copies into a clone of this repository; {root} is an installed package")
        synced = (layout.INFOS_FILENAME, layout.PREVIEW_PATH, LEGEND_PATH)
        for name in synced:
            if (args.out / name).exists():
                (root / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(args.out / name, root / name)
        text += f"\nupdated {', '.join(synced)} in {root}"
    return Outcome(text=text, data=result.to_json())
