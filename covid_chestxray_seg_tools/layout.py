"""The Hub folder's layout: where every file of a build lives and how to read its rows back.

    README.md                                        the dataset card
    dataset_infos.json                               features and split sizes
    assets/preview.png                               the card's preview picture
    data/<config>/<split>-NNNNN-of-NNNNN.parquet     the rows

Every other module (and the tests, in both `datasets` venvs) takes these names from here,
so this module depends on nothing but pyarrow.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, Sequence

import pyarrow.parquet as pq

CONFIG_NAME = "default"
DATA_DIR = "data"
CARD_FILENAME = "README.md"
INFOS_FILENAME = "dataset_infos.json"
PREVIEW_PATH = "assets/preview.png"
# Files a build must hold for publishing (the shards aside).
REQUIRED_FILES = (CARD_FILENAME, INFOS_FILENAME)
# Folders whose whole content a build owns: a publish deletes what a new build no longer has there.
BUILT_FOLDERS = (f"{DATA_DIR}/", "assets/")


def config_dir(config: str = CONFIG_NAME) -> str:
    return f"{DATA_DIR}/{config}"


def shard_name(split: str, index: int, count: int, *, config: str = CONFIG_NAME) -> str:
    """The repo path of shard `index` of `count`, as `datasets` names its own Hub uploads."""
    return f"{config_dir(config)}/{split}-{index:05d}-of-{count:05d}.parquet"


def shard_pattern(split: str, *, config: str = CONFIG_NAME) -> str:
    """The card's `data_files` pattern of a split."""
    return f"{config_dir(config)}/{split}-*.parquet"


def data_files(splits: Sequence[str], *, config: str = CONFIG_NAME) -> list[dict]:
    """The card YAML's `configs[].data_files` of a config."""
    return [{"split": split, "path": shard_pattern(split, config=config)} for split in splits]


def shard_paths(folder: Path, split: str | None = None, *, config: str = CONFIG_NAME) -> list[Path]:
    """The shards of one split of a built folder, or of all its splits, sorted by name."""
    return sorted(Path(folder).glob(shard_pattern(split or "*", config=config)))


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
