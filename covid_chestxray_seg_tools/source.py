"""What the tools read: a built folder or a Hub dataset repo, checked to be this dataset.

`--source` of every subcommand names one of these; `load_dataset` reads both the same way
(a folder through its card's `configs`, a repo id through the Hub).
"""

from __future__ import annotations

from collections.abc import Sequence

import datasets
from datasets.exceptions import DatasetNotFoundError

import covid_chestxray_seg as recipe
from covid_chestxray_seg_tools.errors import CovidSegError

__all__ = ["BUILD_COLUMNS", "SourceError", "load_rows", "load_splits"]

# Columns that make a dataset a build of this one; load_splits checks them.
BUILD_COLUMNS = ("image_id", "file_name", "objects", *recipe.MASK_COLUMNS)


class SourceError(CovidSegError, ValueError):
    """The source cannot be read, or is not this dataset, or lacks a split."""


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
    try:
        loaded = datasets.load_dataset(source, config)
    except ValueError as error:
        if config is None or "BuilderConfig" not in str(error):
            raise
        raise SourceError(f"--source {source}: has no config {config!r} (built by an older covid-seg?)") from None
    except (DatasetNotFoundError, FileNotFoundError) as error:
        raise SourceError(
            f"--source {source}: not a built folder nor a dataset repo on the Hub ({type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else ''})"
        ) from None
    wanted = list(loaded) if splits is None else list(dict.fromkeys(splits))
    unknown = [name for name in wanted if name not in loaded]
    if unknown:
        raise SourceError(f"--split {', '.join(unknown)}: {source} has splits {', '.join(loaded)}")
    for name in wanted:
        missing = [column for column in dict.fromkeys(required) if column not in loaded[name].column_names]
        if missing:
            raise SourceError(f"{source}: split {name} lacks {', '.join(missing)}: not a covid-chestxray-seg build")
    return {name: loaded[name] for name in wanted}


def load_rows(*, source: str, split: str, columns: Sequence[str]) -> list[dict]:
    """The rows of `split` of `source` with only `columns`, masks undecoded.

    Args:
        source: as for `load_splits`.
        split: one split.
        columns: the columns to read; a mask column comes as ``{"bytes": PNG, "path": None}``
            or None (a class annotated without a mask).

    Returns:
        One dict per row, in the split's order.

    Raises:
        SourceError: as `load_splits`.
    """
    loaded = load_splits(source=source, splits=[split], required=(*BUILD_COLUMNS, *columns))[split]
    loaded = loaded.select_columns(list(columns))
    for column in columns:
        if column in recipe.MASK_COLUMNS:
            loaded = loaded.cast_column(column, datasets.Image(decode=False))
    return loaded.to_list()
