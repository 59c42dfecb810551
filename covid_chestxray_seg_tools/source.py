"""What the tools read: a built folder or a Hub dataset repo, checked to be this dataset and whole.

`--source` of every subcommand names one of these; `load_dataset` reads both the same way
(a folder through its card's `configs`, a repo id through the Hub). `open_source` checks one
before anything is read from it: its data files against the build's `checksums.json` (a
folder's files hashed, a Hub repo's as its tree lists them, nothing downloaded) and, as rows
are read, each split's rows against the sizes `dataset_infos.json` declares. A shard deleted,
truncated or replaced is named with the fix, instead of a pyarrow traceback or a smaller split
scored as if it were whole.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import pyarrow.parquet as pq
from datasets.exceptions import DatasetNotFoundError
from huggingface_hub import HfApi, RepoFile, constants, hf_hub_download
from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

import covid_chestxray_seg as recipe
from covid_chestxray_seg_tools.errors import CovidSegError
from covid_chestxray_seg_tools.hub_folder import checksums, layout

__all__ = [
    "BUILD_COLUMNS",
    "REPO_ID",
    "Source",
    "SourceError",
    "is_repo_id",
    "load_rows",
    "load_splits",
    "open_source",
]

logger = logging.getLogger(__name__)

# Columns that make a dataset a build of this one; load_splits checks them.
BUILD_COLUMNS = ("image_id", "file_name", "objects", *recipe.MASK_COLUMNS)


# A Hub repo id as --source and --fiftyone take it: ORG/NAME.
REPO_ID = re.compile(r"^[\w.-]+/[\w.-]+$")
_REPO_TYPE = "dataset"


class SourceError(CovidSegError, ValueError):
    """The source cannot be read, is not this dataset, lacks a split, or is damaged or incomplete."""


def is_repo_id(source: str) -> bool:
    """`source` names a Hub repo (ORG/NAME), not a folder on disk."""
    return not Path(source).exists() and bool(REPO_ID.match(source))


@dataclass(frozen=True)
class Source:
    """A source checked by `open_source`.

    Attributes:
        location: the built folder or the Hub repo id, as given.
        revision: for a Hub repo, the commit its files were checked at (every read uses it);
            None for a folder.
        asked: the revision asked for (a branch, tag or commit; None: the default branch).
        declared: config -> split -> rows, as the build's `dataset_infos.json` declares them
            (empty where they could not be read: a Hub repo read offline).
    """

    location: str
    revision: str | None
    asked: str | None
    declared: Mapping[str, Mapping[str, int]]

    @property
    def is_repo(self) -> bool:
        return self.revision is not None

    def __str__(self) -> str:
        if self.revision is None:
            return self.location
        return f"{self.location}@{self.asked or 'main'} (commit {self.revision[:12]})"

    def check_rows(self, *, split: str, rows: int, config: str = layout.CONFIG_NAME) -> None:
        """Raise when `rows` rows were read of `split` of `config`, but the build declares another number.

        Raises:
            SourceError: the counts differ.
        """
        declared = self.declared.get(config, {}).get(split)
        if declared is not None and declared != rows:
            raise SourceError(
                f"split {split} (config {config}): {rows} rows, but its {layout.INFOS_FILENAME} declares {declared}",
                file=self,
                fix=self.fix(),
            )

    def fix(self) -> str:
        """What to do about a damaged or incomplete copy of this source, for a message."""
        if self.is_repo:
            return (
                "this copy is damaged or incomplete: publish the build again, or read an intact revision "
                f"({recipe.setting('revision')})"
            )
        return "this build is damaged or incomplete: build it again"


def open_source(location: str | Source, *, revision: str | None = None) -> Source:
    """Check a built folder or a Hub repo before anything is read from it.

    Args:
        location: a folder `covid-seg build` wrote, or a Hub dataset repo id (ORG/NAME); a
            `Source` is returned as it is (it was checked when it was opened).
        revision: for a Hub repo, a branch, tag or commit (default: its default branch).

    Returns:
        The source, a Hub repo pinned to the commit that was checked.

    Raises:
        SourceError: no such folder or repo, a revision given for a folder, no `checksums.json`
            or `dataset_infos.json`, or a data file missing, extra, or different from the
            checksums (the first named, the others counted).
    """
    if isinstance(location, Source):
        if revision is not None and revision != location.asked:
            raise SourceError(f"{location} was opened at another revision", setting="revision", value=revision)
        return location
    if not is_repo_id(location):
        if revision is not None:
            raise SourceError(
                f"{location} is a folder; a revision names a commit of a Hub repo", setting="revision", value=revision
            )
        folder = Path(location)
        if not folder.is_dir():
            raise SourceError(
                "not a built folder nor a dataset repo on the Hub (no such folder)", setting="source", value=location
            )
        source = Source(
            location=location, revision=None, asked=None, declared=_declared(folder / layout.INFOS_FILENAME, location)
        )
        expected = _manifest((folder / layout.CHECKSUMS_FILENAME), source)
        _raise_mismatches(source, checksums.compare(expected, checksums.scan(folder)))
        for config in layout.CONFIG_PARTS:
            for split in recipe.SPLITS:
                paths = layout.shard_paths(folder, split, config=config)
                if paths or split in source.declared.get(config, {}):
                    rows = sum(pq.read_metadata(path).num_rows for path in paths)
                    source.check_rows(split=split, rows=rows, config=config)
        return source
    return _open_repo(location, revision=revision)


def _open_repo(repo_id: str, *, revision: str | None) -> Source:
    if constants.HF_HUB_OFFLINE:
        # Nothing can be listed offline; `datasets` reads its cached copy.
        logger.warning("offline (HF_HUB_OFFLINE): %s is read from the cache, its files unchecked", repo_id)
        return Source(location=repo_id, revision=revision or "main", asked=revision, declared={})
    api = HfApi()
    try:
        commit = api.dataset_info(repo_id, revision=revision).sha
        if commit is None:
            raise SourceError(
                f"the Hub gave no commit for revision {revision or 'main'}", setting="source", value=repo_id
            )
        listed = list(api.list_repo_tree(repo_id, repo_type=_REPO_TYPE, revision=commit, recursive=True))
    except RevisionNotFoundError:
        raise SourceError(f"{repo_id} has no such branch, tag or commit", setting="revision", value=revision) from None
    except RepositoryNotFoundError:
        raise SourceError(
            "not a built folder nor a dataset repo on the Hub (no such repo, or it is private and the token does "
            "not reach it)",
            setting="source",
            value=repo_id,
        ) from None
    files = {entry.path: entry for entry in listed if isinstance(entry, RepoFile)}
    pending = Source(location=repo_id, revision=commit, asked=revision, declared={})

    def fetch(name: str) -> Path:
        if name not in files:
            raise SourceError(
                f"{name} is missing: not a complete covid-chestxray-seg build", file=pending, fix=pending.fix()
            )
        try:
            return Path(hf_hub_download(repo_id, name, repo_type=_REPO_TYPE, revision=commit))
        except EntryNotFoundError:
            raise SourceError(f"{name} is missing", file=pending, fix=pending.fix()) from None

    source = Source(
        location=repo_id, revision=commit, asked=revision, declared=_declared(fetch(layout.INFOS_FILENAME), pending)
    )
    expected = _manifest(fetch(layout.CHECKSUMS_FILENAME), source)
    found = {
        path: checksums.FileSum(size=entry.size, sha256=entry.lfs.sha256 if entry.lfs else None, git_sha1=entry.blob_id)
        for path, entry in files.items()
        if path.startswith(f"{layout.DATA_DIR}/") and path.endswith(".parquet")
    }
    _raise_mismatches(source, checksums.compare(expected, found))
    return source


def _declared(path: Path, where: object) -> dict[str, dict[str, int]]:
    """config -> split -> rows, from a build's dataset_infos.json."""
    try:
        infos = json.loads(path.read_text(encoding="utf-8"))
        return {
            config: {split: int(entry["num_examples"]) for split, entry in info["splits"].items()}
            for config, info in infos.items()
        }
    except FileNotFoundError:
        raise SourceError(
            f"no {layout.INFOS_FILENAME}: not a covid-chestxray-seg build (or an incomplete one)", file=where
        ) from None
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise SourceError(
            f"{layout.INFOS_FILENAME} is not readable ({type(error).__name__}: {error})", file=where
        ) from None


def _manifest(path: Path, source: Source) -> dict[str, checksums.FileSum]:
    try:
        return checksums.parse(path.read_bytes())
    except FileNotFoundError:
        raise SourceError(
            f"no {layout.CHECKSUMS_FILENAME}: not a complete build of this version", file=source, fix=source.fix()
        ) from None
    except ValueError as error:
        raise SourceError(f"{layout.CHECKSUMS_FILENAME}: {error}", file=source, fix=source.fix()) from None


def _raise_mismatches(source: Source, mismatches: Sequence[checksums.Mismatch]) -> None:
    if mismatches:
        raise SourceError(checksums.describe(mismatches), file=source, fix=source.fix())


def load_splits(
    *,
    source: str | Source,
    splits: Sequence[str] | None = None,
    required: Sequence[str] = BUILD_COLUMNS,
    config: str | None = None,
    revision: str | None = None,
) -> dict[str, datasets.Dataset]:
    """The requested splits of `source`, checked to be this dataset, whole.

    Args:
        source: a built folder or a Hub dataset repo id (checked by `open_source`), or an
            opened `Source`.
        splits: the splits wanted (default: all, in the source's order).
        required: columns every wanted split must have.
        config: the config to read (default: the source's default config).
        revision: for a Hub repo id, the branch, tag or commit to read.

    Returns:
        Split name -> `datasets.Dataset`.

    Raises:
        SourceError: `source` cannot be loaded, is damaged, lacks a split or a required column,
            or a split's rows differ from the declared number.
    """
    opened = open_source(source, revision=revision)
    loaded = _load(opened, name=config)
    wanted = list(loaded) if splits is None else list(dict.fromkeys(splits))
    unknown = [name for name in wanted if name not in loaded]
    if unknown:
        raise SourceError(f"{opened} has splits {', '.join(loaded)}", setting="split", value=", ".join(unknown))
    for name in wanted:
        missing = [column for column in dict.fromkeys(required) if column not in loaded[name].column_names]
        if missing:
            raise SourceError(f"split {name} lacks {', '.join(missing)}: not a covid-chestxray-seg build", file=opened)
        opened.check_rows(split=name, rows=len(loaded[name]), config=config or layout.CONFIG_NAME)
    return {name: loaded[name] for name in wanted}


def load_rows(
    *,
    source: str | Source,
    split: str,
    columns: Sequence[str],
    optional: Sequence[str] = (),
    revision: str | None = None,
) -> list[dict]:
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
        revision: as for `load_splits`.

    Returns:
        One dict per row, in the split's order.

    Raises:
        SourceError: as `load_splits`.
    """
    opened = open_source(source, revision=revision)
    # A built folder (or a download of the Hub repo): pyarrow reads those columns' pages and
    # nothing else, with no Arrow cache written. (Streaming would too, but as of datasets 5.2
    # every IterableDataset imports torch where it is installed: seconds on their own.)
    folder = Path(opened.location)
    if not opened.is_repo:
        splits = [name for name in recipe.SPLITS if layout.shard_paths(folder, name)]
        names = pq.read_schema(layout.shard_paths(folder, split)[0]).names if split in splits else []
    else:
        streams = _load(opened, streaming=True)
        splits = list(streams)
        names = streams[split].column_names or [] if split in splits else []
    if split not in splits:
        raise SourceError(f"{opened} has splits {', '.join(splits)}", setting="split", value=split)
    missing = [column for column in dict.fromkeys((*BUILD_COLUMNS, *columns)) if column not in names]
    if missing:
        raise SourceError(f"split {split} lacks {', '.join(missing)}: not a covid-chestxray-seg build", file=opened)
    wanted = list(dict.fromkeys([*columns, *(column for column in optional if column in names)]))
    if not opened.is_repo:
        rows = [
            row for path in layout.shard_paths(folder, split) for row in pq.read_table(path, columns=wanted).to_pylist()
        ]
    else:
        rows = list(_load(opened, split=split, streaming=True, columns=wanted).decode(False))
    opened.check_rows(split=split, rows=len(rows))
    return rows


def _load(source: Source, **options: Any) -> Any:
    """`datasets.load_dataset` of a checked source (a Hub repo at its checked commit), a config
    it lacks as a SourceError."""
    if source.is_repo:
        options["revision"] = source.revision
    try:
        return datasets.load_dataset(source.location, **options)
    except ValueError as error:
        if options.get("name") is None or "BuilderConfig" not in str(error):
            raise
        raise SourceError(f"has no config {options['name']!r} (built by an older covid-seg?)", file=source) from None
    except (DatasetNotFoundError, FileNotFoundError) as error:
        raise SourceError(
            f"not a built folder nor a dataset repo on the Hub ({type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else ''})",
            setting="source",
            value=str(source),
        ) from None
