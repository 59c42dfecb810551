"""What the tools read: a built folder or a Hub dataset repo, checked to be this dataset.

`--source` of every subcommand names one of these; `load_dataset` reads both the same way
(a folder through its card's `configs`, a repo id through the Hub).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import datasets
import pyarrow.parquet as pq
from datasets.exceptions import DatasetNotFoundError

import covid_chestxray_seg as recipe
from covid_chestxray_seg_tools import layout
from covid_chestxray_seg_tools.errors import CovidSegError

__all__ = ["BUILD_COLUMNS", "REPO_ID", "SourceError", "is_repo_id", "load_rows", "load_splits"]

# Columns that make a dataset a build of this one; load_splits checks them.
BUILD_COLUMNS = ("image_id", "file_name", "objects", *recipe.MASK_COLUMNS)


# A Hub repo id as --source and --fiftyone take it: ORG/NAME.
REPO_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


class SourceError(CovidSegError, ValueError):
    """The source cannot be read, or is not this dataset, or lacks a split."""


def is_repo_id(source: str) -> bool:
    """`source` names a Hub repo (ORG/NAME), not a folder on disk."""
    return not Path(source).exists() and bool(REPO_ID.match(source))


def load_splits(
    *,
    source: str,
    splits: Sequence[str] | None = None,
    required: Sequence[str] = BUILD_COLUMNS,
    config: str | None = None,
) -> dict[str, datasets.Dataset]:
    """The requested splits of `source`, checked to be this dataset.

    Args:
        source: a built folder, a Hub dataset repo id, or anything `load_dataset` reads.
        splits: the splits wanted (default: all, in the source's order).
        required: columns every wanted split must have.
        config: the config to read (default: the source's default config).

    Returns:
        Split name -> `datasets.Dataset`.

    Raises:
        SourceError: `source` cannot be loaded, lacks a split, or lacks a required column.
    """
    loaded = _load(source, name=config)
    wanted = list(loaded) if splits is None else list(dict.fromkeys(splits))
    unknown = [name for name in wanted if name not in loaded]
    if unknown:
        raise SourceError(f"--split {', '.join(unknown)}: {source} has splits {', '.join(loaded)}")
    for name in wanted:
        missing = [column for column in dict.fromkeys(required) if column not in loaded[name].column_names]
        if missing:
            raise SourceError(f"{source}: split {name} lacks {', '.join(missing)}: not a covid-chestxray-seg build")
    return {name: loaded[name] for name in wanted}


def load_rows(*, source: str, split: str, columns: Sequence[str], optional: Sequence[str] = ()) -> list[dict]:
    """The rows of `split` of `source` with only `columns`, masks undecoded.

    Only those columns are read: from a built folder straight from its Parquet files, from the
    Hub streamed with a column projection, which fetches the mask columns' bytes (a few MB)
    instead of every image.

    Args:
        source: as for `load_splits`.
        split: one split.
        columns: the columns to read; a mask column comes as ``{"bytes": PNG, "path": None}``
            or None (a class annotated without a mask).
        optional: columns read too where the source has them (a build of an older builder
            may lack them).

    Returns:
        One dict per row, in the split's order.

    Raises:
        SourceError: as `load_splits`.
    """
    folder = Path(source)
    # A built folder (or a download of the Hub repo): pyarrow reads those columns' pages and
    # nothing else, with no Arrow cache written. (Streaming would too, but as of datasets 5.2
    # every IterableDataset imports torch where it is installed: seconds on their own.)
    local = folder.is_dir() and bool(layout.shard_paths(folder))
    if local:
        splits = [name for name in recipe.SPLITS if layout.shard_paths(folder, name)]
        names = pq.read_schema(layout.shard_paths(folder, split)[0]).names if split in splits else []
    else:
        streams = _load(source, streaming=True)
        splits = list(streams)
        names = streams[split].column_names or [] if split in splits else []
    if split not in splits:
        raise SourceError(f"--split {split}: {source} has splits {', '.join(splits)}")
    missing = [column for column in dict.fromkeys((*BUILD_COLUMNS, *columns)) if column not in names]
    if missing:
        raise SourceError(f"{source}: split {split} lacks {', '.join(missing)}: not a covid-chestxray-seg build")
    wanted = list(dict.fromkeys([*columns, *(column for column in optional if column in names)]))
    if local:
        return [
            row for path in layout.shard_paths(folder, split) for row in pq.read_table(path, columns=wanted).to_pylist()
        ]
    return list(_load(source, split=split, streaming=True, columns=wanted).decode(False))


def _load(source: str, **options: Any) -> Any:
    """`datasets.load_dataset(source, **options)`, a source that does not exist as a SourceError."""
    try:
        return datasets.load_dataset(source, **options)
    except ValueError as error:
        if options.get("name") is None or "BuilderConfig" not in str(error):
            raise
        raise SourceError(
            f"--source {source}: has no config {options['name']!r} (built by an older covid-seg?)"
        ) from None
    except (DatasetNotFoundError, FileNotFoundError) as error:
        raise SourceError(
            f"--source {source}: not a built folder nor a dataset repo on the Hub ({type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else ''})"
        ) from None
