"""Build the Hub-ready folder: run the builder, write Parquet shards, the card and dataset_infos.json.

    OUT/README.md                                   card: YAML header + generated tables
    OUT/LICENSE.md                                  the licence of each part of a record
    OUT/dataset_infos.json                          features and split sizes of each config
    OUT/checksums.json                              size and SHA-256 of every Parquet file
    OUT/assets/preview.png, legend.png, severity.png  the card's pictures
    OUT/data/<part>/<split>-NNNNN-of-NNNNN.parquet  the rows, full size and 256 px (see `layout`, `resize`)

The folder appears only when the build has succeeded (see `staging`).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import multiprocessing
import os
import tempfile
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import datasets
import pyarrow as pa
from datasets.exceptions import DatasetGenerationError

import covid_chestxray_seg as recipe
from covid_chestxray_seg_tools import staging
from covid_chestxray_seg_tools import validate as quality
from covid_chestxray_seg_tools.baselines import nnunet, results
from covid_chestxray_seg_tools.baselines.atlas import score_atlas
from covid_chestxray_seg_tools.card import render as card_render
from covid_chestxray_seg_tools.card.legend import render_legend
from covid_chestxray_seg_tools.card.license import render_license
from covid_chestxray_seg_tools.card.preview import render_preview
from covid_chestxray_seg_tools.card.render import CardOptions, render_card
from covid_chestxray_seg_tools.card.severity import lesion_shares, render_severity_plot, severity_correlation
from covid_chestxray_seg_tools.card.stats import CardStats, compute_stats
from covid_chestxray_seg_tools.errors import exception_chain
from covid_chestxray_seg_tools.evaluate import CV, format_results
from covid_chestxray_seg_tools.hub_folder import checksums, layout, parquet, resize
from covid_chestxray_seg_tools.hub_folder.viewer import first_rows_shown

__all__ = [
    "DEFAULT_NUM_PROC",
    "BuildOptions",
    "BuildResult",
    "UpstreamSource",
    "build",
]

logger = logging.getLogger(__name__)

# Worker processes the command line builds with unless told otherwise: every core.
DEFAULT_NUM_PROC = os.cpu_count() or 1
# The card's baseline tables: the test split, and the cross-validation beside it.
_BASELINE_SPLITS = ("test", CV)
_IMAGE_COLUMNS = [name for name, feature in recipe.features().items() if isinstance(feature, datasets.Image)]


@dataclass(frozen=True)
class UpstreamSource:
    """What the builder reads: its config's fields (`covid_chestxray_seg.CovidChestXraySegConfig`).

    Attributes:
        data_dir: a clone or copy of the upstream repository; None downloads upstream's
            archive at the pinned commit (`data_url`), through the `datasets` download manager.
        data_url: the archive downloaded without `data_dir`.
        annotation_file: the COCO file inside the data folder.
        verify_upstream: stop when an image, metadata.csv or the severity file differs from
            its pinned manifest entry; False builds from modified data and lists the files.
        severity_file: a local copy of ieee8023's severity file; None downloads it (`severity_url`).
        severity_url: the severity file downloaded without `severity_file`.
    """

    data_dir: Path | None = None
    data_url: str = recipe.ARCHIVE_URL
    annotation_file: str = recipe.ANNOTATION_FILE
    verify_upstream: bool = True
    severity_file: Path | None = None
    severity_url: str = recipe.SEVERITY_URL

    def config(self) -> dict[str, Any]:
        """The builder's config keyword arguments."""
        fields = asdict(self)
        fields["data_dir"] = str(self.data_dir) if self.data_dir else None
        fields["severity_file"] = str(self.severity_file) if self.severity_file else None
        return fields


@dataclass(frozen=True)
class BuildOptions:
    """What a build is asked for: built once by the command line (or a Python caller), passed down whole.

    Attributes:
        out: the folder to write (replaced on success).
        upstream: what the builder reads.
        cut: how the Parquet files are cut.
        card: the card's template, repo id and tools URL.
        num_proc: worker processes for the builder and the 256-px rows.
        validate: compare every segmentation with upstream's crops; the summary goes in the card.
        baseline: score the atlas baseline on the test split and under cross-validation; its
            tables go in the card.
        unet_results: with `baseline`, the U-Net's results file (`covid-seg baseline unet
            --results`): its table goes in the card.
        nnunet_results: with `baseline`, nnU-Net's results file (`covid-seg baseline nnunet
            --results`), where a run was scored: its table goes in the card.
    """

    out: Path
    upstream: UpstreamSource = field(default_factory=UpstreamSource)
    cut: parquet.ShardCut = field(default_factory=parquet.ShardCut)
    card: CardOptions = field(default_factory=CardOptions)
    num_proc: int = 1
    validate: bool = False
    baseline: bool = False
    unet_results: Path | None = None
    nnunet_results: Path | None = None


def build(options: BuildOptions) -> BuildResult:
    """Build the Hub-ready folder from upstream's files.

    The build writes into a hidden folder beside `options.out` and swaps it in only when
    everything succeeded (see `staging`): the folder is always the previous complete build or
    the new one.

    Args:
        options: what to read, how to write it, and what goes in the card.

    Returns:
        What was written, counted.

    Raises:
        covid_chestxray_seg.BuildError: bad input (file, record and problem in the message).
        staging.OutputError: the folder cannot be written (full disk, read-only, denied).
        staging.BusyError: another build holds the folder.
        card.render.CardError: the tools URL is not one pip installs from.
    """
    out = Path(options.out).resolve()
    card_render.check_tools_url(options.card.tools_url)  # before the work, not after it
    # staged holds the lock, removes what a killed build left and binds the workers to this process.
    with staging.staged(out, replace=True) as folder:
        stats, report = _build_into(folder, options=options)
    return BuildResult(out=out, stats=stats, report=report, bytes=staging.folder_bytes(out))


def _build_into(folder: Path, *, options: BuildOptions) -> tuple[CardStats, recipe.BuildReport]:
    # The Arrow cache sits beside the staged folder, under a name the next build removes if
    # this one is killed (in /tmp it would stay for good), and on the output's own disk.
    with (
        tempfile.TemporaryDirectory(
            prefix=f"{folder.name}-cache-", dir=folder.parent, ignore_cleanup_errors=True
        ) as cache_dir,
        _workers(options.num_proc) as pool,
    ):
        builder = recipe.CovidChestXraySeg(cache_dir=cache_dir, **options.upstream.config())
        try:
            builder.download_and_prepare(
                num_proc=options.num_proc if options.num_proc > 1 else None,
                # The archive download is worth keeping across builds; the Arrow cache is not.
                download_config=datasets.DownloadConfig(cache_dir=datasets.config.DOWNLOADED_DATASETS_PATH),
            )
        except DatasetGenerationError as error:
            cause = _build_error_from(error)
            if cause is error:
                # As it is, with what it wraps: staging finds a full disk behind it.
                raise
            raise cause from None
        splits = {split: builder.as_dataset(split=split) for split in recipe.SPLITS}
        parts = {}
        for split, rows in splits.items():
            known = [recipe.has_known_license({"license": license}) for license in rows["license"]]
            parts[split] = {layout.LICENSED_PART: known, layout.UNKNOWN_LICENSE_PART: [not k for k in known]}
            # One pass per part over the same cache, each keeping its rows: no copy of the split.
            for part, keep in parts[split].items():
                parquet.write_split(rows, folder, split, part=part, keep=keep, cut=options.cut)
        # The 256-px rows are made in worker processes while this one writes the card's pieces.
        shrinking = _shrink(splits, pool=pool, cache_dir=Path(cache_dir))
        extras, stats = _card_pieces(folder, builder=builder, options=options)
        _write_size_256(shrinking, splits, parts, folder, cache_dir=Path(cache_dir), cut=options.cut)
        descriptions = {
            **{config.name: config.description for config in recipe.CovidChestXraySeg.BUILDER_CONFIGS},
            **resize.CONFIG_DESCRIPTIONS,
        }
        # The licensed files belong to two configs each: one read of every file serves all four.
        sizes = parquet.arrow_sizes(
            sorted({path for config in layout.CONFIG_PARTS for path in layout.shard_paths(folder, config=config)}),
            pool=pool,
        )
        infos = {
            config: parquet.hub_info(
                builder.info,
                folder,
                config=config,
                description=descriptions[config],
                sizes=sizes,
                features=resize.features() if config in layout.SIZE_256_CONFIGS else None,
            )
            for config in layout.CONFIG_PARTS
        }
        report = builder.report
        if report is None:
            raise AssertionError("the builder reports what it read once it has prepared the splits")
    parquet.write_infos(infos, folder / layout.INFOS_FILENAME)
    checksums.write(folder)
    (folder / layout.LICENSE_FILENAME).write_text(render_license(stats, infos), encoding="utf-8")
    card = render_card(folder=folder, infos=infos, stats=stats, report=report, extras=extras, options=options.card)
    (folder / layout.CARD_FILENAME).write_text(card, encoding="utf-8")
    return stats, report


@contextlib.contextmanager
def _workers(num_proc: int) -> Iterator[ProcessPoolExecutor | None]:
    """Worker processes for the 256-px rows (None for one process), forked now, before the builder
    fills this process's memory: a child forked later would count all of it in its peak RSS."""
    if num_proc <= 1:
        yield None
        return
    pool = ProcessPoolExecutor(num_proc, mp_context=multiprocessing.get_context("fork"))
    try:
        # With fork, the first task starts every worker at once.
        pool.submit(os.getpid).result()
        yield pool
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _card_pieces(
    folder: Path, *, builder: recipe.CovidChestXraySeg, options: BuildOptions
) -> tuple[dict[str, Any], CardStats]:
    """The card's statistics, pictures, baselines and quality report, from the written default parts."""
    stats = compute_stats(folder)
    shares = lesion_shares(folder)
    correlation = severity_correlation(shares)
    extras: dict[str, Any] = {
        "preview": render_preview(folder),
        "legend": render_legend(folder),
        "severity": {"correlation": correlation, "plot": render_severity_plot(folder, shares, correlation)},
    }
    # For maintainers (the build summary), not the card: how much of each split the viewer's first page shows.
    stats["viewer_first_rows"] = {
        split: first_rows_shown(layout.iter_rows(folder, split), image_columns=_IMAGE_COLUMNS)
        for split in recipe.SPLITS
    }
    if options.baseline:
        extras["baseline"] = format_results([score_atlas(folder, split=split) for split in _BASELINE_SPLITS])
        if options.unet_results is not None:
            extras["unet"] = results.card_table(results.read_results(options.unet_results))
        if options.nnunet_results is not None:
            extras["nnunet"] = nnunet.card_table(results.read_results(options.nnunet_results))
    if options.validate:
        if builder.data_root is None:
            raise AssertionError("the builder records where it read the data once it has prepared the splits")
        checked = quality.validate(data_dir=builder.data_root, annotation_file=options.upstream.annotation_file)
        if checked.hard_errors:
            raise recipe.BuildError(builder.data_root, recipe.setting("validate"), checked.hard_errors[0])
        extras["validation"] = checked
    return extras, stats


def _shrink_slice(files: list[str], start: int, stop: int, target: str) -> str:
    """Rows start..stop of the builder's cache files (memory-mapped) as size-256 rows, written to
    the Arrow file `target` (a worker's task: the rows wait on disk, not in the main process)."""
    table = pa.concat_tables([pa.ipc.open_stream(pa.memory_map(name)).read_all() for name in files])
    small = resize.small_rows(table.slice(start, stop - start))
    with pa.OSFile(target, "wb") as sink, pa.ipc.new_stream(sink, small.schema) as writer:
        writer.write_table(small)
    return target


def _shrink(splits: dict[str, datasets.Dataset], *, pool: ProcessPoolExecutor | None, cache_dir: Path) -> list:
    """Every split's rows, batch by batch, as size-256 rows in Arrow files: for each batch, a
    function that waits for its file (a task of `pool`) or (no pool) writes it, and returns its path."""
    files = [entry["filename"] for split in splits.values() for entry in split.cache_files]
    total = sum(len(split) for split in splits.values())
    step = recipe.CovidChestXraySeg.DEFAULT_WRITER_BATCH_SIZE
    tasks = [
        (files, start, min(start + step, total), str(cache_dir / f"size-{resize.SIZE}-{start:08d}.arrow"))
        for start in range(0, total, step)
    ]
    if pool is None:
        return [functools.partial(_shrink_slice, *task) for task in tasks]
    return [pool.submit(_shrink_slice, *task).result for task in tasks]


def _write_size_256(
    shrinking: list,
    splits: dict[str, datasets.Dataset],
    parts: dict[str, dict[str, list[bool]]],
    folder: Path,
    *,
    cache_dir: Path,
    cut: parquet.ShardCut,
) -> None:
    """The 256-px parts: the shrunk rows (in the order of the splits) gathered into one Arrow
    file beside the builder's cache, then each split's rows of each part written as `default`'s are."""
    path = cache_dir / f"size-{resize.SIZE}.arrow"
    schema = resize.features().arrow_schema
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
        for collect in shrinking:
            part = Path(collect())
            with pa.memory_map(str(part)) as source:
                for batch in pa.ipc.open_stream(source):
                    writer.write_batch(batch)
            part.unlink()
    small = datasets.Dataset.from_file(str(path))
    before, total = 0, len(small)
    for split, rows in splits.items():
        after = total - before - len(rows)
        for name, keep in parts[split].items():
            # The split's rows of the part, among all splits' rows.
            chosen = [False] * before + keep + [False] * after
            parquet.write_split(small, folder, split, part=layout.SIZE_256_PARTS[name], keep=chosen, cut=cut)
        before += len(rows)


def _build_error_from(error: BaseException) -> BaseException:
    """The BuildError behind datasets' generic wrapper, so the user sees file, record and problem."""
    return next((link for link in exception_chain(error) if isinstance(link, recipe.BuildError)), error)


@dataclass(frozen=True)
class BuildResult:
    """What `build` wrote.

    Attributes:
        out: the built folder.
        stats: counts per split, fold, class, finding and licence (`card.stats.compute_stats`).
        report: what the builder read and the upstream quirks it handled.
        bytes: the folder's size on disk.
    """

    out: Path
    stats: CardStats
    report: recipe.BuildReport
    bytes: int

    def summary(self) -> str:
        """A few lines for the terminal."""
        stats, report = self.stats, self.report
        lines = [
            f"built {self.out} ({self.bytes / 1e6:.1f} MB)",
            f"  images {stats['images']}, patients {stats['patients']}, annotations {stats['annotations']}",
            "  per split: "
            + ", ".join(
                f"{s} {r['images']} images / {r['patients']} patients / {r['files']} files"
                for s, r in stats["splits"].items()
            ),
            "  per class: " + ", ".join(f"{name} {row['instances']}" for name, row in stats["classes"].items()),
            f"  flagged: {report.annotations_without_segmentation} annotations without segmentation (mask null); "
            f"{report.images_without_license} images without licence (license null); "
            f"renamed categories {report.renamed_categories or 'none'}; "
            f"images, metadata and severity files that differ from the manifest {len(report.modified_files)}; "
            f"annotation file {'upstream' if report.annotation_upstream else 'not upstream (a rebuild)'} "
            f"(sha256 {report.annotation_sha256[:12]}...)",
            f"  quality flags: {len(report.quality_flags)} images"
            + "".join(f"; {name}: {', '.join(flags)}" for name, flags in sorted(report.quality_flags.items())),
        ]
        if stats.get("viewer_first_rows"):
            lines.append(
                "  viewer's first page shows: "
                + ", ".join(
                    f"{split} {count} of {stats['splits'][split]['images']} rows"
                    for split, count in stats["viewer_first_rows"].items()
                )
            )
        return "\n".join(lines)

    def to_json(self) -> dict:
        """Plain JSON values: `covid-seg build --json`."""
        return {"out": str(self.out), "bytes": self.bytes, "stats": self.stats, "report": asdict(self.report)}
