"""The Hub folder's layout: where every file of a build lives and how to read its rows back.

    README.md                                        the dataset card
    LICENSE.md                                       annotations, images, severity scores
    dataset_infos.json                               features and split sizes of each config
    checksums.json                                   size and SHA-256 of every data file (`checksums`)
    assets/                                          the card's pictures
    data/<part>/<split>-NNNNN-of-NNNNN.parquet       the rows

The rows are stored once, in two parts: images whose own licence is known
(`data/licensed/`) and the others (`data/license-unknown/`). Config `default` reads both,
config `licensed` reads the first only, so it costs no copy. The 256-px rows (see `resize`)
are stored the same way, in `data/licensed-256/` and `data/license-unknown-256/`, read by
configs `size-256` (both) and `size-256-licensed` (the first). Every other module (and the
tests, in both `datasets` venvs) takes these names from here, so this module depends on
nothing but pyarrow.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pyarrow.parquet as pq

__all__ = [
    "BUILT_FOLDERS",
    "CARD_FILENAME",
    "CHECKSUMS_FILENAME",
    "CONFIG_NAME",
    "CONFIG_PARTS",
    "DATA_DIR",
    "INFOS_FILENAME",
    "LICENSED_256_PART",
    "LICENSED_CONFIG",
    "LICENSED_PART",
    "LICENSE_FILENAME",
    "PREVIEW_PATH",
    "REQUIRED_FILES",
    "SIZE_256_CONFIG",
    "SIZE_256_CONFIGS",
    "SIZE_256_LICENSED_CONFIG",
    "SIZE_256_PARTS",
    "UNKNOWN_LICENSE_256_PART",
    "UNKNOWN_LICENSE_PART",
    "data_files",
    "iter_rows",
    "read_rows",
    "shard_name",
    "shard_paths",
]

CONFIG_NAME = "default"
LICENSED_CONFIG = "licensed"
LICENSED_PART = "licensed"
UNKNOWN_LICENSE_PART = "license-unknown"
SIZE_256_CONFIG = "size-256"
SIZE_256_LICENSED_CONFIG = "size-256-licensed"
LICENSED_256_PART = "licensed-256"
UNKNOWN_LICENSE_256_PART = "license-unknown-256"
# Config -> the parts it reads, in row order.
CONFIG_PARTS = {
    CONFIG_NAME: (LICENSED_PART, UNKNOWN_LICENSE_PART),
    LICENSED_CONFIG: (LICENSED_PART,),
    SIZE_256_CONFIG: (LICENSED_256_PART, UNKNOWN_LICENSE_256_PART),
    SIZE_256_LICENSED_CONFIG: (LICENSED_256_PART,),
}
# The configs whose rows are `default`'s at 256 x 256 (`resize`), and the full-size part each 256-px part copies.
SIZE_256_CONFIGS = (SIZE_256_CONFIG, SIZE_256_LICENSED_CONFIG)
SIZE_256_PARTS = {LICENSED_PART: LICENSED_256_PART, UNKNOWN_LICENSE_PART: UNKNOWN_LICENSE_256_PART}
DATA_DIR = "data"
CARD_FILENAME = "README.md"
LICENSE_FILENAME = "LICENSE.md"
INFOS_FILENAME = "dataset_infos.json"
CHECKSUMS_FILENAME = "checksums.json"
PREVIEW_PATH = "assets/preview.png"
# Files a build must hold for publishing (the shards aside).
REQUIRED_FILES = (CARD_FILENAME, INFOS_FILENAME, LICENSE_FILENAME, CHECKSUMS_FILENAME)
# Folders whose whole content a build owns: a publish deletes what a new build no longer has there.
BUILT_FOLDERS = (f"{DATA_DIR}/", "assets/")


def shard_name(split: str, index: int, count: int, *, part: str) -> str:
    """The repo path of shard `index` of `count` of a part, as `datasets` names its own Hub uploads."""
    return f"{DATA_DIR}/{part}/{split}-{index:05d}-of-{count:05d}.parquet"


def _shard_pattern(split: str, *, part: str) -> str:
    return f"{DATA_DIR}/{part}/{split}-*.parquet"


def data_files(folder: Path, splits: Sequence[str], *, config: str = CONFIG_NAME) -> list[dict]:
    """The card YAML's `configs[].data_files` of a config: for each split, the parts that have
    files for it in `folder` (a part without rows has no file); a split without any is left out."""
    entries = []
    for split in splits:
        patterns = [
            _shard_pattern(split, part=part)
            for part in CONFIG_PARTS[config]
            if any(Path(folder).glob(_shard_pattern(split, part=part)))
        ]
        if patterns:
            entries.append({"split": split, "path": patterns})
    return entries


def shard_paths(folder: Path, split: str | None = None, *, config: str = CONFIG_NAME) -> list[Path]:
    """The shards of a config's split (or of all its splits) in the order `datasets` reads them:
    part by part, then by name."""
    return [
        path
        for part in CONFIG_PARTS[config]
        for path in sorted(Path(folder).glob(_shard_pattern(split or "*", part=part)))
    ]


def iter_rows(
    folder: Path, split: str | None = None, *, columns: Sequence[str] | None = None, config: str = CONFIG_NAME
) -> Iterator[dict]:
    """The stored rows of a built folder (image and mask bytes undecoded), file by file, so
    a large build never needs to be in memory whole."""
    for path in shard_paths(folder, split, config=config):
        yield from pq.read_table(path, columns=None if columns is None else list(columns)).to_pylist()


def read_rows(
    folder: Path, split: str | None = None, *, columns: Sequence[str] | None = None, config: str = CONFIG_NAME
) -> list[dict]:
    return list(iter_rows(folder, split, columns=columns, config=config))
