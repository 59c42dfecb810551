"""Build the Hub-ready folder: run the builder, write Parquet shards, the card and dataset_infos.json.

    OUT/README.md                                   card: YAML header + generated tables
    OUT/dataset_infos.json                          features and split sizes
    OUT/assets/preview.png                          the card's preview picture
    OUT/data/default/<split>-NNNNN-of-NNNNN.parquet

The folder appears only when the build has succeeded (see `staging`).
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import datasets
from datasets.exceptions import DatasetGenerationError

import covid_chestxray_seg as recipe
from covid_chestxray_seg_tools import layout, parquet, staging
from covid_chestxray_seg_tools import validate as quality
from covid_chestxray_seg_tools.card.preview import render_preview
from covid_chestxray_seg_tools.card.render import render_card
from covid_chestxray_seg_tools.card.stats import compute_stats

logger = logging.getLogger(__name__)


def build(
    *,
    data_dir: Path | None,
    out: Path,
    template: Path,
    data_url: str = recipe.ARCHIVE_URL,
    annotation_file: str = recipe.ANNOTATION_FILE,
    verify_upstream: bool = True,
    shards: int = parquet.DEFAULT_SHARDS,
    max_shard_bytes: int = parquet.DEFAULT_MAX_SHARD_MB * 1_000_000,
    rows_per_row_group: int = parquet.DEFAULT_ROWS_PER_ROW_GROUP,
    num_proc: int = 1,
    validate: bool = False,
) -> dict:
    """Build into a hidden folder beside `out`, then swap it in; returns the summary."""
    out = Path(out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    with staging.exclusive(out):
        # Under the lock, hidden folders left by a killed build are nobody's.
        staging.remove_leftovers(out)
        with staging.staged(out, replace=True) as folder:
            stats, report = _build_into(
                folder, data_dir=data_dir, data_url=data_url, annotation_file=annotation_file, verify_upstream=verify_upstream,
                shards=shards, max_shard_bytes=max_shard_bytes, rows_per_row_group=rows_per_row_group, num_proc=num_proc,
                template=template, validate=validate,
            )
    return {"out": out, "stats": stats, "report": report, "bytes": staging.folder_bytes(out)}


def _build_into(
    folder: Path, *, data_dir, data_url, annotation_file, verify_upstream, shards, max_shard_bytes, rows_per_row_group,
    num_proc, template, validate,
):
    with tempfile.TemporaryDirectory(prefix="covid-chestxray-seg-cache-") as cache_dir:
        builder = recipe.CovidChestXraySeg(
            cache_dir=cache_dir,
            data_dir=str(data_dir) if data_dir else None,
            data_url=data_url,
            annotation_file=annotation_file,
            verify_upstream=verify_upstream,
        )
        try:
            builder.download_and_prepare(
                num_proc=num_proc if num_proc > 1 else None,
                # The archive download is worth keeping across builds; the Arrow cache is not.
                download_config=datasets.DownloadConfig(cache_dir=datasets.config.DOWNLOADED_DATASETS_PATH),
            )
        except DatasetGenerationError as error:
            raise _build_error_from(error) from None
        splits = {}
        for split in recipe.SPLITS:
            splits[split] = parquet.write_split(
                builder.as_dataset(split=split), folder, split,
                shards=shards, max_shard_bytes=max_shard_bytes, rows_per_row_group=rows_per_row_group,
            )
        info = parquet.hub_info(builder.info, folder, {split: parquet.arrow_bytes(paths) for split, paths in splits.items()})
        stats = compute_stats(folder)
        report = builder.report
        extras = {"preview": render_preview(folder)}
        if validate:
            checked = quality.validate(data_dir=builder.data_root, annotation_file=annotation_file)
            if checked.hard_errors:
                raise recipe.BuildError(builder.data_root, "--validate", checked.hard_errors[0])
            extras["validation"] = checked
    parquet.write_infos({layout.CONFIG_NAME: info}, folder / layout.INFOS_FILENAME)
    card = render_card(template, info=info, stats=stats, report=report, extras=extras)
    (folder / layout.CARD_FILENAME).write_text(card, encoding="utf-8")
    return stats, report


def _build_error_from(error: BaseException) -> BaseException:
    """The BuildError behind datasets' generic wrapper, so the user sees file, record and problem."""
    cause = error
    while cause is not None:
        if isinstance(cause, recipe.BuildError):
            return cause
        cause = cause.__cause__ or cause.__context__
    return error


def format_summary(summary: dict) -> str:
    stats, report = summary["stats"], summary["report"]
    lines = [
        f"built {summary['out']} ({summary['bytes'] / 1e6:.1f} MB)",
        f"  images {stats['images']}, patients {stats['patients']}, annotations {stats['annotations']}",
        "  per split: " + ", ".join(f"{s} {r['images']} images / {r['patients']} patients / {r['files']} files" for s, r in stats["splits"].items()),
        "  per class: " + ", ".join(f"{name} {row['instances']}" for name, row in stats["classes"].items()),
        f"  flagged: {report.annotations_without_segmentation} annotations without segmentation (mask null); "
        f"{report.images_without_license} images without licence (license null); "
        f"renamed categories {report.renamed_categories or 'none'}; "
        f"modified upstream files {len(report.modified_files)}; "
        f"annotation file {'upstream' if report.annotation_upstream else 'not upstream'} (sha256 {report.annotation_sha256[:12]}...)",
    ]
    return "\n".join(lines)
