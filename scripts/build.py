"""Build the Hub-ready folder: Parquet shards, the dataset card and dataset_infos.json.

The builder (covid_chestxray_seg.py) is the recipe; this script runs it and lays out
what the Hub serves with no custom code:

    OUT/README.md                                   card: YAML header + generated tables
    OUT/dataset_infos.json                          features and split sizes
    OUT/data/default/<split>-NNNNN-of-NNNNN.parquet

The folder appears only when the build has succeeded: it is written beside OUT
under a hidden name and renamed into place, so a failed build leaves nothing.
"""

from __future__ import annotations

import os

# Before pyarrow loads: its default allocator (mimalloc) keeps freed blocks, so the peak
# memory of a build grew with the number of Parquet files it touched; the system
# allocator gives them back. (Only when run as a script; an importer chooses its own.)
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")

import argparse
import contextlib
import fcntl
import io
import json
import logging
import math
import shutil
import statistics
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Optional, Sequence

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from datasets.arrow_writer import get_parquet_column_options
from datasets.exceptions import DatasetGenerationError
from datasets.info import DatasetInfosDict
from datasets.utils.py_utils import asdict
from huggingface_hub import DatasetCard, DatasetCardData
from pycocotools import mask as mask_utils

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    # Running `python scripts/build.py` from a checkout that is not pip-installed.
    sys.path.insert(0, str(REPO_ROOT))

import covid_chestxray_seg as recipe  # noqa: E402
from scripts import validate as quality  # noqa: E402

CONFIG_NAME = "default"
DEFAULT_OUT = REPO_ROOT / "build"
DEFAULT_SHARDS = 4
DEFAULT_ROWS_PER_ROW_GROUP = 4
# Streaming reads a Parquet file in 5 MB blocks: files this small let the first row
# arrive after one small file, not a tenth of the split.
DEFAULT_MAX_SHARD_MB = 3
DEFAULT_MAX_SHARD_BYTES = DEFAULT_MAX_SHARD_MB * 1_000_000
CARD_TEMPLATE = REPO_ROOT / "README.md"
INFOS_FILENAME = "dataset_infos.json"

EXAMPLES = """\
examples:
  # from a local clone or copy of the upstream repository
  python scripts/build.py --data-dir ../shared/data/covid-19-chest-xray-segmentations-dataset --out build

  # from the upstream archive at the pinned commit (downloaded and cached)
  python scripts/build.py --out build

  # with the polygon annotation file, on data that differs from upstream
  python scripts/build.py --data-dir DIR --annotation-file annotation/results_polygons.json --allow-modified

  # rebuild and refresh the repository's README.md and dataset_infos.json
  python scripts/build.py --data-dir DIR --sync-repo
"""

logger = logging.getLogger("build")


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python scripts/build.py",
        description="Build the Hub-ready folder (Parquet shards, dataset card, dataset_infos.json).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--data-dir", type=Path, default=None,
        help="upstream repository clone or copy; default: download the archive at the pinned commit",
    )
    parser.add_argument(
        "--data-url", default=recipe._URLS["archive"],
        help="archive to download when --data-dir is not given (default: upstream's GitHub archive at the pinned commit)",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder, replaced on success (default: {DEFAULT_OUT.name}/)")
    parser.add_argument(
        "--annotation-file", default=recipe.ANNOTATION_FILE,
        help=f"COCO file inside the data folder (default: {recipe.ANNOTATION_FILE})",
    )
    parser.add_argument(
        "--allow-modified", action="store_true",
        help="accept images and metadata.csv that differ from the upstream manifest (they are listed in the card)",
    )
    parser.add_argument(
        "--shards", type=int, default=DEFAULT_SHARDS,
        help=f"Parquet files per split at least, at most one per row (default: {DEFAULT_SHARDS}, one per streaming worker)",
    )
    parser.add_argument(
        "--max-shard-mb", type=int, default=DEFAULT_MAX_SHARD_MB,
        help=f"more files when a split would otherwise have files over this size in MB (default: {DEFAULT_MAX_SHARD_MB})",
    )
    parser.add_argument(
        "--rows-per-row-group", type=int, default=DEFAULT_ROWS_PER_ROW_GROUP,
        help=f"rows per Parquet row group; small groups make streaming start fast (default: {DEFAULT_ROWS_PER_ROW_GROUP})",
    )
    parser.add_argument("--num-proc", type=int, default=os.cpu_count() or 1, help="worker processes for the build (default: all cores)")
    parser.add_argument("--template", type=Path, default=CARD_TEMPLATE, help="card template (default: the repository's README.md)")
    parser.add_argument(
        "--validate", action="store_true",
        help="compare every COCO segmentation with upstream's mask crops and put the summary in the card (scripts/validate.py)",
    )
    parser.add_argument(
        "--sync-repo", action="store_true",
        help="also write the card, dataset_infos.json and assets/preview.png to the repository root",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars: only warnings, errors and the summary")
    args = parser.parse_args(argv)
    for name in ("shards", "max_shard_mb", "rows_per_row_group", "num_proc"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s")
    if args.quiet:
        datasets.disable_progress_bars()
        datasets.logging.set_verbosity_error()
    try:
        summary = build(
            data_dir=args.data_dir,
            data_url=args.data_url,
            out=args.out,
            annotation_file=args.annotation_file,
            verify_upstream=not args.allow_modified,
            shards=args.shards,
            max_shard_bytes=args.max_shard_mb * 1_000_000,
            rows_per_row_group=args.rows_per_row_group,
            num_proc=args.num_proc,
            template=args.template,
            validate=args.validate,
        )
    except recipe.BuildError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(format_summary(summary))
    if args.sync_repo:
        for name in SYNCED_FILES:
            if (args.out / name).exists():
                (REPO_ROOT / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(args.out / name, REPO_ROOT / name)
        print(f"updated {', '.join(SYNCED_FILES)} in {REPO_ROOT}")
    return 0


def build(
    *,
    data_dir: Optional[Path],
    out: Path,
    data_url: str = recipe._URLS["archive"],
    annotation_file: str = recipe.ANNOTATION_FILE,
    verify_upstream: bool = True,
    shards: int = DEFAULT_SHARDS,
    max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES,
    rows_per_row_group: int = DEFAULT_ROWS_PER_ROW_GROUP,
    num_proc: int = 1,
    template: Path = CARD_TEMPLATE,
    validate: bool = False,
) -> dict:
    """Build into a hidden folder beside `out`, then swap it in; returns the summary."""
    out = Path(out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    with _exclusive(out):
        # Under the lock, hidden folders left by a killed build are nobody's: remove them.
        for leftover in out.parent.glob(f".{out.name}.partial-*"):
            shutil.rmtree(leftover, ignore_errors=True)
        for leftover in out.parent.glob(f".{out.name}.old-*"):
            shutil.rmtree(leftover, ignore_errors=True)
        stats, report = _build_locked(
            data_dir=data_dir, out=out, data_url=data_url, annotation_file=annotation_file, verify_upstream=verify_upstream,
            shards=shards, max_shard_bytes=max_shard_bytes, rows_per_row_group=rows_per_row_group, num_proc=num_proc,
            template=template, validate=validate,
        )
    return {"out": out, "stats": stats, "report": report, "bytes": _folder_bytes(out)}


@contextlib.contextmanager
def _exclusive(out: Path):
    """Hold the lock beside `out` for the whole build: a second build into it refuses at once."""
    lock_path = out.parent / f".{out.name}.lock"
    with open(lock_path, "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise recipe.BuildError(
                out, "output folder", f"another build is writing it (it holds {lock_path.name}); wait for it to finish"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _build_locked(
    *, data_dir, out, data_url, annotation_file, verify_upstream, shards, max_shard_bytes, rows_per_row_group, num_proc,
    template, validate,
):
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
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
                dataset = builder.as_dataset(split=split)
                splits[split] = write_split(
                    dataset, staging / "data" / CONFIG_NAME, split,
                    shards=shards, max_shard_bytes=max_shard_bytes, rows_per_row_group=rows_per_row_group,
                )
            info = hub_info(builder.info, staging, {split: arrow_bytes(paths) for split, paths in splits.items()})
            stats = compute_stats(staging)
            report = builder.report
            extras = {"preview": render_preview(staging)}
            if validate:
                checked = quality.validate(data_dir=builder.data_root, annotation_file=annotation_file)
                if checked.hard_errors:
                    raise recipe.BuildError(builder.data_root, "--validate", checked.hard_errors[0])
                extras["validation"] = checked
        write_infos(info, staging / INFOS_FILENAME)
        card = render_card(template, info=info, stats=stats, report=report, extras=extras)
        (staging / "README.md").write_text(card, encoding="utf-8")
        move_into_place(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return stats, report


def _build_error_from(error: BaseException) -> BaseException:
    """The BuildError behind datasets' generic wrapper, so the user sees file, record and problem."""
    cause = error
    while cause is not None:
        if isinstance(cause, recipe.BuildError):
            return cause
        cause = cause.__cause__ or cause.__context__
    return error


def move_into_place(staging: Path, out: Path) -> None:
    """Make the finished hidden `staging` folder `out`, replacing an older `out` whole."""
    # mkdtemp makes the folder private; the result is an ordinary folder.
    umask = os.umask(0)
    os.umask(umask)
    staging.chmod(0o777 & ~umask)
    _swap_into_place(staging, out)


def _swap_into_place(staging: Path, out: Path) -> None:
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        os.replace(out, old / out.name)
        os.replace(staging, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, out)


def write_split(
    dataset: datasets.Dataset, folder: Path, split: str, *, shards: int, max_shard_bytes: int, rows_per_row_group: int
) -> list[Path]:
    """Write `dataset` as Parquet files of near-equal row counts: at least `shards` of them, more when
    that keeps each under `max_shard_bytes`, never more than rows.

    Rows are read batch by batch from the Arrow cache files (not memory-mapped as a whole),
    so memory stays bounded by one batch whatever the size of the data.
    """
    folder.mkdir(parents=True, exist_ok=True)
    cache_files = [entry["filename"] for entry in dataset.cache_files]
    rows = dataset.num_rows
    wanted = max(shards, math.ceil(sum(os.path.getsize(f) for f in cache_files) / max_shard_bytes))
    count = min(wanted, max(1, rows))
    bounds = [index * rows // count for index in range(count + 1)]
    schema = portable_schema(dataset.features)
    options = get_parquet_column_options(dataset.features, schema)
    paths = [folder / f"{split}-{index:05d}-of-{count:05d}.parquet" for index in range(count)]
    shard, position, pending, writer = 0, 0, [], None

    def flush() -> None:
        if pending:
            # One chunk per row group: page boundaries then follow the rows, not how the
            # Arrow cache happened to be batched (which varies with --num-proc).
            rows = pa.Table.from_batches(pending, schema=schema).combine_chunks()
            writer.write_table(rows, row_group_size=rows_per_row_group)
            pending.clear()

    try:
        for batch in _cache_batches(cache_files):
            while batch.num_rows:
                if writer is None:
                    # The settings `datasets` uses for Hub uploads: page index, content-defined chunks for Xet dedup.
                    writer = pq.ParquetWriter(
                        paths[shard], schema, use_content_defined_chunking=datasets.config.DEFAULT_CDC_OPTIONS,
                        write_page_index=True, **options,
                    )
                    writer.add_key_value_metadata({"content_defined_chunking": json.dumps(datasets.config.DEFAULT_CDC_OPTIONS)})
                room = min(bounds[shard + 1] - position, rows_per_row_group - sum(b.num_rows for b in pending))
                pending.append(batch.slice(0, room))
                batch, position = batch.slice(room), position + min(room, batch.num_rows)
                if position == bounds[shard + 1] or sum(b.num_rows for b in pending) == rows_per_row_group:
                    flush()
                if position == bounds[shard + 1]:
                    writer.close()
                    writer, shard = None, shard + 1
        if rows == 0:
            pq.write_table(schema.empty_table(), paths[0], **options)
    finally:
        if writer is not None:
            writer.close()
    logger.info(f"wrote {split}: {rows} rows in {count} files")
    return paths


def _cache_batches(cache_files: list[str]):
    for name in cache_files:
        with pa.OSFile(name) as source:
            yield from pa.ipc.open_stream(source)


# datasets >= 4 writes lists as `{"_type": "List"}` (YAML `list:` with `length:`), which
# datasets 3.x cannot read: "Feature type 'List' not found". Both read a plain JSON list
# for a list of any length and `Sequence` for a fixed length, so every file the Hub
# serves (Parquet schema, dataset_infos.json, card YAML) uses that dialect.


def portable_features(features: datasets.Features) -> dict:
    """`features.to_dict()` in the dialect that datasets 3.x and >= 4 both read."""
    def convert(node):
        if isinstance(node, list):
            return [convert(value) for value in node]
        if not isinstance(node, dict):
            return node
        if node.get("_type") == "List":
            feature = convert(node["feature"])
            length = node.get("length", -1)
            if length == -1:
                return [feature]
            if isinstance(feature, (dict, list)) and "_type" not in feature:
                # datasets 3.x turns a Sequence of dicts into a dict of lists: not the same rows.
                raise ValueError(f"a fixed-length list of {feature!r} has no form datasets 3.x reads as a list; drop length={length}")
            return {"_type": "Sequence", "feature": feature, "length": length}
        return {key: convert(value) for key, value in node.items()}

    return convert(features.to_dict())


def portable_schema(features: datasets.Features) -> pa.Schema:
    """The Arrow schema of `features`, its `huggingface` metadata in the portable dialect."""
    schema = features.arrow_schema
    metadata = {**(schema.metadata or {}), b"huggingface": json.dumps({"info": {"features": portable_features(features)}}).encode()}
    return schema.with_metadata(metadata)


def portable_yaml_features(yaml_features: list) -> list:
    """The card's `dataset_info.features` with fixed-length `list:` entries as `sequence:`."""
    def convert(node):
        if isinstance(node, list):
            return [convert(value) for value in node]
        if not isinstance(node, dict):
            return node
        node = {key: convert(value) for key, value in node.items()}
        if "list" in node and "length" in node:
            # The type key must stay first: both readers dispatch on the first key.
            node = {("sequence" if key == "list" else key): value for key, value in node.items()}
        return node

    return convert(yaml_features)


def arrow_bytes(paths: list[Path]) -> int:
    """In-memory Arrow size of the written rows, one row group at a time. The builder's own
    count depends on how many worker processes wrote the cache, which would make the card
    differ between machines."""
    total = 0
    for path in paths:
        parquet = pq.ParquetFile(path)
        total += sum(parquet.read_row_group(index).nbytes for index in range(parquet.num_row_groups))
    return total


def hub_info(info: datasets.DatasetInfo, folder: Path, num_bytes: dict[str, int]) -> datasets.DatasetInfo:
    """The builder's info as the Hub serves it: no local paths, sizes of the written shards."""
    info = info.copy()
    info.config_name = CONFIG_NAME
    info.download_checksums = None
    for name, split in info.splits.items():
        split.num_bytes = num_bytes[name]
        split.shard_lengths = None
        split.original_shard_lengths = None
    info.download_size = sum(path.stat().st_size for path in sorted(folder.rglob("*.parquet")))
    info.dataset_size = sum(split.num_bytes for split in info.splits.values())
    info.size_in_bytes = info.download_size + info.dataset_size
    return info


def write_infos(info: datasets.DatasetInfo, path: Path) -> None:
    payload = {CONFIG_NAME: {**asdict(info), "features": portable_features(info.features)}}
    path.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def compute_stats(folder: Path) -> dict:
    """Card statistics computed from the written Parquet files, so the card cannot disagree with them.

    Mask areas come from the RLE in `objects` (union per class and image), not from
    decoding the PNG masks: the same pixels, a hundred times cheaper.
    """
    columns = ["image_id", "patient_id", "license", "finding", "width", "height", "objects"]
    per_class = {name: {"instances": 0, "images": 0, "without_segmentation": 0, "areas": []} for name in recipe.CLASSES}
    splits, licences, findings, images_per_patient = {}, Counter(), {}, Counter()
    for split in recipe.SPLITS:
        files = sorted((folder / "data" / CONFIG_NAME).glob(f"{split}-*.parquet"))
        splits[split] = {"images": 0, "patients": set(), "annotations": 0, "files": len(files)}
        findings[split] = Counter()
        # File by file: the objects of a large build need not all be in memory at once.
        for row in (row for path in files for row in pq.read_table(path, columns=columns).to_pylist()):
            splits[split]["images"] += 1
            splits[split]["patients"].add(row["patient_id"])
            splits[split]["annotations"] += len(row["objects"])
            findings[split][row["finding"] or "none given"] += 1
            images_per_patient[row["patient_id"]] += 1
            licences[row["license"] or "none given"] += 1
            by_class: dict[str, list] = {}
            for obj in row["objects"]:
                name = recipe.CLASSES[obj["category"]]
                per_class[name]["instances"] += 1
                per_class[name]["without_segmentation"] += obj["segmentation"] is None
                by_class.setdefault(name, []).append(obj["segmentation"])
            for name, segmentations in by_class.items():
                per_class[name]["images"] += 1
                if all(seg is not None for seg in segmentations):
                    rles = [{"size": seg["size"], "counts": seg["counts"].encode()} for seg in segmentations]
                    area = float(mask_utils.area(mask_utils.merge(rles)))
                    per_class[name]["areas"].append(100.0 * area / (row["width"] * row["height"]))
    for row in splits.values():
        row["patients"] = len(row["patients"])
    for row in per_class.values():
        areas = row.pop("areas")
        row["mean_area_pct"] = statistics.fmean(areas) if areas else None
        row["median_area_pct"] = statistics.median(areas) if areas else None
    all_findings = sorted({f for counter in findings.values() for f in counter}, key=lambda f: (-sum(c[f] for c in findings.values()), f))
    series = [count for count in images_per_patient.values() if count > 1]
    return {
        "images": sum(s["images"] for s in splits.values()),
        "annotations": sum(s["annotations"] for s in splits.values()),
        "patients": len(images_per_patient),
        "patients_with_series": len(series),
        "images_in_series": sum(series),
        "largest_series": max(series, default=1),
        "splits": splits,
        "findings": {finding: {split: findings[split][finding] for split in recipe.SPLITS} for finding in all_findings},
        "classes": per_class,
        "licences": dict(sorted(licences.items(), key=lambda item: (-item[1], item[0]))),
    }


# ---- the preview picture ---------------------------------------------------------------

PREVIEW_PATH = "assets/preview.png"
# The repository's README is the card, so it carries the card's generated files too.
SYNCED_FILES = ("README.md", INFOS_FILENAME, PREVIEW_PATH)
# Only images whose own licence allows showing them on a public card.
PREVIEW_LICENCES = ("CC BY", "CC BY-SA")
PREVIEW_HEIGHT = 320
PREVIEW_ALPHA = 0.45
# One colour per class, in class order (Okabe-Ito and Tableau hues, distinct on grey X-rays).
PALETTE = (
    (0, 114, 178), (86, 180, 233), (230, 159, 0), (240, 228, 66), (213, 94, 0), (204, 121, 167), (0, 158, 115),
    (255, 255, 255), (148, 103, 189), (227, 119, 194), (188, 189, 34), (23, 190, 207), (255, 127, 14), (214, 39, 40),
)


def render_preview(folder: Path) -> list[dict]:
    """Write assets/preview.png: openly licensed images with their masks overlaid, and a legend.
    Returns the shown images (file name, licence, url) for the caption; [] when none may be shown."""
    from PIL import Image, ImageDraw, ImageFont

    columns = ["image_id", "file_name", "license", "url", "image", *recipe.MASK_COLUMNS]
    candidates = []  # (image_id, file, row index): the first three openly licensed images
    for path in sorted((folder / "data" / CONFIG_NAME).glob("*.parquet")):
        table = pq.read_table(path, columns=["image_id", "license"]).to_pylist()
        candidates += [(row["image_id"], path, i) for i, row in enumerate(table) if row["license"] in PREVIEW_LICENCES]
    rows = [pq.read_table(path, columns=columns).slice(index, 1).to_pylist()[0] for _, path, index in sorted(candidates)[:3]]
    if not rows:
        return []
    tiles = []
    for row in rows:
        image = Image.open(io.BytesIO(row["image"]["bytes"]))
        image.draft("RGB", (image.width // 4, image.height // 4))  # JPEG: decode at reduced scale
        image = image.convert("RGB")
        size = (max(1, round(image.width * PREVIEW_HEIGHT / image.height)), PREVIEW_HEIGHT)
        # reducing_gap shrinks by whole factors first: a thumbnail needs no full-size Lanczos pass.
        pixels = np.asarray(image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0), dtype=np.float32)
        for colour, column in zip(PALETTE, recipe.MASK_COLUMNS):
            if row[column] is None:
                continue
            mask = Image.open(io.BytesIO(row[column]["bytes"])).resize(size, Image.Resampling.NEAREST)
            where = np.asarray(mask) > 0
            pixels[where] = (1 - PREVIEW_ALPHA) * pixels[where] + PREVIEW_ALPHA * np.asarray(colour, dtype=np.float32)
        tiles.append(Image.fromarray(pixels.round().astype(np.uint8)))
    font = ImageFont.load_default()
    legend = Image.new("RGB", (190, PREVIEW_HEIGHT), (255, 255, 255))
    draw = ImageDraw.Draw(legend)
    step = PREVIEW_HEIGHT // (len(recipe.CLASSES) + 1)
    for index, (colour, name) in enumerate(zip(PALETTE, recipe.CLASSES)):
        top = 8 + index * step
        draw.rectangle((8, top, 22, top + 12), fill=colour, outline=(0, 0, 0))
        draw.text((30, top), name, fill=(0, 0, 0), font=font)
    canvas = Image.new("RGB", (sum(t.width for t in tiles) + 4 * len(tiles) + legend.width, PREVIEW_HEIGHT), (255, 255, 255))
    x = 0
    for tile in tiles:
        canvas.paste(tile, (x, 0))
        x += tile.width + 4
    canvas.paste(legend, (x, 0))
    target = folder / PREVIEW_PATH
    target.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(target, format="PNG")
    return [{"file_name": row["file_name"], "license": row["license"], "url": row["url"]} for row in rows]


# ---- the card -------------------------------------------------------------------------

BEGIN, END = "<!-- BEGIN GENERATED: {} -->", "<!-- END GENERATED: {} -->"


def card_data(info: datasets.DatasetInfo) -> DatasetCardData:
    """The card's YAML header, derived from the builder."""
    data = DatasetCardData(
        pretty_name="COVID-19 Chest X-ray Segmentations",
        license="other",
        license_name="cc-by-4.0-annotations-per-image-licences",
        language=["en"],
        annotations_creators=["expert-generated"],
        source_datasets=["original"],
        task_categories=["image-segmentation"],
        task_ids=["semantic-segmentation", "instance-segmentation"],
        size_categories=["n<1K"],
        tags=["medical", "chest-x-ray", "covid-19", "radiology", "coco", "segmentation-masks"],
        configs=[
            {
                "config_name": CONFIG_NAME,
                "default": True,
                "data_files": [
                    {"split": split, "path": f"data/{CONFIG_NAME}/{split}-*.parquet"} for split in recipe.SPLITS
                ],
            }
        ],
    )
    DatasetInfosDict({CONFIG_NAME: info}).to_dataset_card_data(data)
    data["dataset_info"]["features"] = portable_yaml_features(data["dataset_info"]["features"])
    return data


def generated_blocks(*, info: datasets.DatasetInfo, stats: dict, report, extras: dict) -> dict[str, str]:
    """Every generated part of the card, from the builder's constants and the built files."""
    def pct(value) -> str:
        return "n/a" if value is None else f"{value:.2f}"

    classes = [
        "| # | class | mask column | instances | images | without segmentation | mean area % | median area % |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for number, name in enumerate(recipe.CLASSES):
        row = stats["classes"][name]
        classes.append(
            f"| {number} | {name} | `{recipe.MASK_COLUMNS[number]}` | {row['instances']} | {row['images']} | "
            f"{row['without_segmentation']} | {pct(row['mean_area_pct'])} | {pct(row['median_area_pct'])} |"
        )
    splits = ["| split | images | patients | annotations | Parquet files |", "|---|---:|---:|---:|---:|"]
    for split, row in stats["splits"].items():
        splits.append(f"| {split} | {row['images']} | {row['patients']} | {row['annotations']} | {row['files']} |")
    splits += ["", "| finding | " + " | ".join(recipe.SPLITS) + " |", "|---|" + "---:|" * len(recipe.SPLITS)]
    for finding, counts in stats["findings"].items():
        splits.append(f"| {finding} | " + " | ".join(str(counts[split]) for split in recipe.SPLITS) + " |")
    licences = ["| image licence (`license` column) | images |", "|---|---:|"]
    licences += [f"| {name} | {count} |" for name, count in stats["licences"].items()]
    renamed = ", ".join(f"`{old}` -> `{new}`" for old, new in report.renamed_categories.items()) or "none"
    modified = ", ".join(f"`{path}`" for path in report.modified_files) or "none"
    annotation_state = (
        "equal to upstream's file" if report.annotation_upstream
        else "**not** upstream's file (a rebuild or a modified copy)"
    )
    provenance = [
        f"- Upstream: [{recipe._HOMEPAGE}]({recipe._HOMEPAGE}) at commit `{recipe.UPSTREAM_COMMIT}`.",
        f"- Manifest check (size and git blob SHA-1 of the images and `{recipe.METADATA_FILE}` against "
        f"`upstream-manifest.tsv`): files that differ: {modified}.",
        f"- Annotation file: `{report.annotation_file}`, SHA-256 `{report.annotation_sha256}`, {annotation_state}.",
        f"- Builder version {recipe.BUILDER_VERSION}, built with `datasets` {datasets.__version__}.",
    ]
    quirks = [
        f"- {report.annotations_without_segmentation} annotations have no segmentation upstream: they are kept in "
        "`objects` with a null `segmentation`, and their class mask is null on that image.",
        f"- Renamed upstream categories: {renamed}.",
        f"- {report.images_without_license} images have no licence in `{recipe.METADATA_FILE}`: their `license` is null.",
        f"- {stats['patients_with_series']} patients have a series of images ({stats['images_in_series']} images, "
        f"up to {stats['largest_series']} for one patient): the splits keep each series together.",
    ]
    if not report.annotation_upstream:
        quirks.append(
            f"- `{report.annotation_file}` is not upstream's own file: upstream's COCO export could not be used, and "
            "this one was rebuilt from upstream's mask crops (`masks/`, `structure.csv`); the data-quality report below "
            "compares it with them."
        )
    validation = extras.get("validation")
    shown = extras.get("preview") or []
    if shown:
        credits = "; ".join(f"`{item['file_name']}` ({item['license']}, {item['url']})" for item in shown)
        preview = (
            f"![Chest X-rays with their masks overlaid, one colour per class]({PREVIEW_PATH})\n\n"
            f"Images shown (the openly licensed ones): {credits}."
        )
    else:
        preview = f"No image has a {' or '.join(PREVIEW_LICENCES)} licence, so none is shown here."
    summary = (
        f"{stats['images']} images of {stats['patients']} patients, {stats['annotations']} annotations in "
        f"{len(recipe.CLASSES)} classes; {info.download_size / 1e6:.1f} MB of Parquet."
    )
    return {
        "summary": summary,
        "preview": preview,
        "classes": "\n".join(classes),
        "splits": "\n".join(splits),
        "licences": "\n".join(licences),
        "provenance": "\n".join(provenance),
        "quirks": "\n".join(quirks),
        "validation": validation.summary() if validation is not None
        else "Not run for this build (`scripts/build.py --validate` or `scripts/validate.py` runs it).",
        "citation": f"```bibtex\n{recipe._CITATION.strip()}\n```",
    }


def render_card(template: Path, *, info: datasets.DatasetInfo, stats: dict, report, extras: Optional[dict] = None) -> str:
    """The template with a fresh YAML header and every generated block filled in."""
    try:
        text = template.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise recipe.BuildError(template, "card template", "file not found") from None
    body = DatasetCard(text).text if text.startswith("---") else text
    for name, content in generated_blocks(info=info, stats=stats, report=report, extras=extras or {}).items():
        begin, end = BEGIN.format(name), END.format(name)
        head, found, rest = body.partition(begin)
        if not found or end not in rest:
            raise recipe.BuildError(template, f"generated block {name!r}", f"template lacks {begin} ... {end}")
        body = f"{head}{begin}\n{content}\n{end}{rest.partition(end)[2]}"
    card = DatasetCard(f"---\n{card_data(info).to_yaml()}\n---\n{body.lstrip()}")
    return str(card)


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


def _folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


if __name__ == "__main__":
    sys.exit(main())
