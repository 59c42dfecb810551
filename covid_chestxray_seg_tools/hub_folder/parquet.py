"""Parquet shards and `dataset_infos.json`: the rows of a built split, written as the Hub serves them."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from datasets.arrow_writer import get_parquet_column_options
from datasets.utils.py_utils import asdict

from covid_chestxray_seg_tools.hub_folder import layout
from covid_chestxray_seg_tools.hub_folder.dialect import portable_features, portable_schema

__all__ = [
    "DEFAULT_MAX_SHARD_MB",
    "DEFAULT_ROWS_PER_ROW_GROUP",
    "DEFAULT_SHARDS",
    "ShardCut",
    "arrow_sizes",
    "hub_info",
    "write_infos",
    "write_split",
]

logger = logging.getLogger(__name__)

DEFAULT_SHARDS = 4
DEFAULT_ROWS_PER_ROW_GROUP = 4
# Streaming reads a Parquet file in 5 MB blocks: files this small let the first row
# arrive after one small file, not a tenth of the split.
DEFAULT_MAX_SHARD_MB = 3


@dataclass(frozen=True)
class ShardCut:
    """How a split's rows are cut into Parquet files.

    Attributes:
        shards: files per split at least (one per streaming worker), at most one per row.
        max_shard_bytes: more files when a split would otherwise have files over this size.
        rows_per_row_group: rows per row group; small groups make streaming start fast.
    """

    shards: int = DEFAULT_SHARDS
    max_shard_bytes: int = DEFAULT_MAX_SHARD_MB * 1_000_000
    rows_per_row_group: int = DEFAULT_ROWS_PER_ROW_GROUP


def write_split(
    dataset: datasets.Dataset, folder: Path, split: str, *, part: str, keep: Sequence[bool], cut: ShardCut
) -> list[Path]:
    """Write the rows of `dataset` that `keep` marks as Parquet files of near-equal row counts: at
    least `cut.shards` of them, more when that keeps each under `cut.max_shard_bytes`, never more
    than rows.

    Rows are read batch by batch from the Arrow cache files (not memory-mapped as a whole, and
    not copied to select them), so memory stays bounded by one batch whatever the size of the data.
    """
    cache_files = [entry["filename"] for entry in dataset.cache_files]
    rows = sum(keep)
    kept_bytes = int(_picture_bytes(dataset)[np.asarray(keep, dtype=bool)].sum())
    wanted = max(cut.shards, math.ceil(kept_bytes / cut.max_shard_bytes))
    count = min(wanted, max(1, rows))
    bounds = [index * rows // count for index in range(count + 1)]
    schema = portable_schema(dataset.features)
    options = get_parquet_column_options(dataset.features, schema)
    paths = [Path(folder) / layout.shard_name(split, index, count, part=part) for index in range(count)]
    paths[0].parent.mkdir(parents=True, exist_ok=True)
    shard, position = 0, 0
    pending: list[pa.RecordBatch] = []
    writer: pq.ParquetWriter | None = None

    def flush() -> None:
        if pending:
            # One chunk per row group: page boundaries then follow the rows, not how the
            # Arrow cache happened to be batched (which varies with --num-proc).
            rows = pa.Table.from_batches(pending, schema=schema).combine_chunks()
            assert writer is not None  # a batch is pending only once its file is open
            writer.write_table(rows, row_group_size=cut.rows_per_row_group)
            pending.clear()

    if rows == 0:
        # No file at all: datasets' Parquet reader fails on a file without rows, and the
        # card's data_files name only the parts a split has (layout.data_files).
        logger.info(f"{part}/{split}: no rows, no file")
        return []
    try:
        for batch in _kept_batches(cache_files, keep):
            while batch.num_rows:
                if writer is None:
                    # The settings `datasets` uses for Hub uploads: page index, content-defined chunks for Xet dedup.
                    writer = pq.ParquetWriter(
                        paths[shard],
                        schema,
                        use_content_defined_chunking=datasets.config.DEFAULT_CDC_OPTIONS,
                        write_page_index=True,
                        **options,
                    )
                    writer.add_key_value_metadata(
                        {"content_defined_chunking": json.dumps(datasets.config.DEFAULT_CDC_OPTIONS)}
                    )
                room = min(bounds[shard + 1] - position, cut.rows_per_row_group - sum(b.num_rows for b in pending))
                pending.append(batch.slice(0, room))
                batch, position = batch.slice(room), position + min(room, batch.num_rows)
                if position == bounds[shard + 1] or sum(b.num_rows for b in pending) == cut.rows_per_row_group:
                    flush()
                if position == bounds[shard + 1]:
                    writer.close()
                    writer, shard = None, shard + 1
    finally:
        if writer is not None:
            writer.close()
    logger.info(f"wrote {part}/{split}: {rows} rows in {count} files")
    return paths


def _kept_batches(cache_files: list[str], keep: Sequence[bool]) -> Iterator[pa.RecordBatch]:
    """The cache's record batches, each cut down to the rows that `keep` marks."""
    start = 0
    for name in cache_files:
        with pa.OSFile(name) as source:
            for batch in pa.ipc.open_stream(source):
                chosen = [index for index in range(batch.num_rows) if keep[start + index]]
                start += batch.num_rows
                if chosen:
                    yield batch if len(chosen) == batch.num_rows else batch.take(pa.array(chosen))


def _picture_bytes(dataset: datasets.Dataset) -> np.ndarray:
    """Each row's bytes of pictures (image, overlay, masks), which make up nearly all of a shard.
    Read from the value offsets of the memory-mapped cache: no picture is loaded."""
    table = dataset.data.table
    total = np.zeros(table.num_rows, dtype=np.int64)
    for name, feature in dataset.features.items():
        if isinstance(feature, datasets.Image):
            lengths = pc.binary_length(pc.struct_field(table.column(name), "bytes"))
            total += lengths.fill_null(0).to_numpy()
    return total


def arrow_sizes(paths: Sequence[Path], *, pool: Executor | None = None) -> dict[Path, int]:
    """The in-memory Arrow size of each file's rows, read one row group at a time.

    The builder's own count depends on how many worker processes wrote the cache, which would
    make the card differ between machines; a file shared by two configs is read once.

    Args:
        paths: written Parquet files.
        pool: worker processes to read them in (None: this process). Reading grows a process's
            heap by more than the largest row group (freed buffers stay with the allocator), and
            at the end of a build that was the build's peak.

    Returns:
        path -> bytes.
    """
    sizes = (pool.map if pool is not None else map)(_file_arrow_bytes, paths)
    return dict(zip(paths, sizes))


def _file_arrow_bytes(path: Path) -> int:
    parquet = pq.ParquetFile(path)
    return sum(parquet.read_row_group(index).nbytes for index in range(parquet.num_row_groups))


def hub_info(
    info: datasets.DatasetInfo,
    folder: Path,
    *,
    config: str,
    description: str,
    sizes: Mapping[Path, int],
    features: datasets.Features | None = None,
) -> datasets.DatasetInfo:
    """The builder's info as the Hub serves it for `config`: no local paths, rows and sizes of
    the written shards (`sizes`, from `arrow_sizes` over them); `features` when the config's rows
    differ from the builder's (size-256)."""
    info = info.copy()
    info.config_name = config
    info.description = description
    if features is not None:
        info.features = features
    info.download_checksums = None
    for name, split in info.splits.items():
        paths = layout.shard_paths(folder, name, config=config)
        split.num_examples = sum(pq.ParquetFile(path).metadata.num_rows for path in paths)
        split.num_bytes = sum(sizes[path] for path in paths)
        split.shard_lengths = None
        split.original_shard_lengths = None
    info.download_size = sum(path.stat().st_size for path in layout.shard_paths(folder, config=config))
    info.dataset_size = sum(split.num_bytes for split in info.splits.values())
    info.size_in_bytes = info.download_size + info.dataset_size
    return info


def write_infos(infos: dict[str, datasets.DatasetInfo], path: Path) -> None:
    """`dataset_infos.json`: each config's info, features in the portable dialect."""
    payload = {name: {**asdict(info), "features": portable_features(info.features)} for name, info in infos.items()}
    path.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n", encoding="utf-8")
