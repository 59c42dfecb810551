"""Build the Hub-ready folder (Parquet shards, dataset card, dataset_infos.json): the command line.

The work is `covid_chestxray_seg_tools.build.build`; this script parses the options,
calls it and turns its errors into one line.
"""

from __future__ import annotations

import os

# Before pyarrow loads: its default allocator (mimalloc) keeps freed blocks, so the peak
# memory of a build grew with the number of Parquet files it touched; the system
# allocator gives them back. (Only when run as a command; an importer chooses its own.)
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")

import argparse
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

import datasets

import covid_chestxray_seg as recipe
from covid_chestxray_seg_tools import cli, layout, parquet
from covid_chestxray_seg_tools.build import DEFAULT_NUM_PROC, build, format_summary
from covid_chestxray_seg_tools.card import render as card_render

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "build"
# The repository keeps the build's infos (tests compare them with a fresh build) and the preview (its README shows it).
SYNCED_FILES = (layout.INFOS_FILENAME, layout.PREVIEW_PATH)
# The builder names its config fields; a user of this command knows them as options.
OPTION_OF_FIELD = {"set verify_upstream=False": "pass --allow-modified (verify_upstream=False)"}

EXAMPLES = """\
examples:
  # from a local clone or copy of the upstream repository
  python scripts/build.py --data-dir ../shared/data/covid-19-chest-xray-segmentations-dataset --out build

  # from the upstream archive at the pinned commit (downloaded and cached)
  python scripts/build.py --out build

  # with the polygon annotation file, on data that differs from upstream
  python scripts/build.py --data-dir DIR --annotation-file annotation/results_polygons.json --allow-modified

  # for the repo you will publish to, and refresh the repository's dataset_infos.json
  python scripts/build.py --data-dir DIR --repo-id acme/cxr-seg --sync-repo
"""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python scripts/build.py",
        description="Build the Hub-ready folder (Parquet shards, dataset card, dataset_infos.json).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="upstream repository clone or copy; default: download the archive at the pinned commit",
    )
    parser.add_argument(
        "--data-url",
        default=recipe.ARCHIVE_URL,
        help="archive to download when --data-dir is not given (default: upstream's GitHub archive at the pinned commit)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help=f"output folder, replaced on success (default: {DEFAULT_OUT.name}/)",
    )
    parser.add_argument(
        "--annotation-file",
        default=recipe.ANNOTATION_FILE,
        help=f"COCO file inside the data folder (default: {recipe.ANNOTATION_FILE})",
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
        help="severity file to download when --severity-file is not given (default: ieee8023's repository at the pinned commit)",
    )
    parser.add_argument(
        "--allow-modified",
        action="store_true",
        help="accept images, metadata.csv and a severity file that differ from their pinned manifests (they are listed in the card)",
    )
    parser.add_argument(
        "--shards",
        type=int,
        default=parquet.DEFAULT_SHARDS,
        help=f"Parquet files per split at least, at most one per row (default: {parquet.DEFAULT_SHARDS}, one per streaming worker)",
    )
    parser.add_argument(
        "--max-shard-mb",
        type=int,
        default=parquet.DEFAULT_MAX_SHARD_MB,
        help=f"more files when a split would otherwise have files over this size in MB (default: {parquet.DEFAULT_MAX_SHARD_MB})",
    )
    parser.add_argument(
        "--rows-per-row-group",
        type=int,
        default=parquet.DEFAULT_ROWS_PER_ROW_GROUP,
        help=f"rows per Parquet row group; small groups make streaming start fast (default: {parquet.DEFAULT_ROWS_PER_ROW_GROUP})",
    )
    parser.add_argument(
        "--num-proc", type=int, default=DEFAULT_NUM_PROC, help="worker processes for the build (default: all cores)"
    )
    parser.add_argument(
        "--repo-id",
        default=card_render.DEFAULT_REPO_ID,
        help=f"Hub dataset repo the card's code loads (default: {card_render.DEFAULT_REPO_ID}; scripts/publish.py writes the id it publishes to)",
    )
    parser.add_argument(
        "--template",
        type=Path,
        default=card_render.TEMPLATE,
        help="card template (default: the package's card/template.md)",
    )
    parser.add_argument(
        "--validate",
        action="store_true",
        help="compare every COCO segmentation with upstream's mask crops and put the summary in the card (scripts/validate.py)",
    )
    parser.add_argument(
        "--baseline",
        action="store_true",
        help="score the mean-shape atlas on the test split (scripts/evaluate.py --baseline atlas) and put the table in the card",
    )
    parser.add_argument(
        "--sync-repo",
        action="store_true",
        help="also write dataset_infos.json and assets/preview.png to the repository root",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars: only warnings, errors and the summary")
    args = parser.parse_args(argv)
    for name in ("shards", "max_shard_mb", "rows_per_row_group", "num_proc"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    cli.setup_logging(quiet=args.quiet)
    if args.quiet:
        datasets.disable_progress_bars()
        datasets.logging.set_verbosity_error()

    def work() -> None:
        summary = build(
            data_dir=args.data_dir,
            data_url=args.data_url,
            out=args.out,
            annotation_file=args.annotation_file,
            verify_upstream=not args.allow_modified,
            severity_file=args.severity_file,
            severity_url=args.severity_url,
            shards=args.shards,
            max_shard_bytes=args.max_shard_mb * 1_000_000,
            rows_per_row_group=args.rows_per_row_group,
            num_proc=args.num_proc,
            template=args.template,
            repo_id=args.repo_id,
            validate=args.validate,
            baseline=args.baseline,
        )
        print(format_summary(summary))
        if args.sync_repo:
            for name in SYNCED_FILES:
                if (args.out / name).exists():
                    (REPO_ROOT / name).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(args.out / name, REPO_ROOT / name)
            print(f"updated {', '.join(SYNCED_FILES)} in {REPO_ROOT}")

    return cli.run(work, rewrite=_with_options)


def _with_options(message: str) -> str:
    for field, option in OPTION_OF_FIELD.items():
        message = message.replace(field, option)
    return message


if __name__ == "__main__":
    sys.exit(main())
