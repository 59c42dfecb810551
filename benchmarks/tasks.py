"""The benchmark's measured tasks, each run in a fresh interpreter by the orchestrator
(`covid_chestxray_seg_tools.benchmark.measure`) as

    python -m benchmarks.tasks TASK KWARGS_JSON

from the repository's root. A task prints one `RESULT {json}` line: what it measured, its
wall time and its peak RSS (its own and its worker processes').
"""

from __future__ import annotations

import io
import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

import covid_chestxray_seg as recipe
from benchmarks import baselines, data
from covid_chestxray_seg_tools.errors import CovidSegError
from covid_chestxray_seg_tools.hub_folder import layout


def task_build_ours(data_dir: str, out: str, severity_file: str, allow_modified: bool, validate: bool = False) -> dict:
    """The library's build with the command line's defaults, in this process like the naive
    build (imports done before the clock).

    measure() sets ARROW_DEFAULT_MEMORY_POOL as scripts/build.py does when run as a command:
    this process loaded pyarrow before the build could."""
    import datasets

    from covid_chestxray_seg_tools.build import DEFAULT_NUM_PROC, BuildOptions, UpstreamSource, build

    datasets.disable_progress_bars()
    upstream = UpstreamSource(
        data_dir=Path(data_dir), severity_file=Path(severity_file), verify_upstream=not allow_modified
    )
    build(BuildOptions(out=Path(out), upstream=upstream, num_proc=DEFAULT_NUM_PROC, validate=validate))
    return {}


def task_build_naive(data_dir: str, out: str, severity_file: str) -> dict:
    baselines.naive_build(data_dir, out, severity_file)
    return {}


def _built_splits(folder: str):
    import datasets

    return datasets.load_dataset(folder)


def task_load_ours(folder: str, variant: str) -> dict:
    loaded = _built_splits(folder)  # Arrow cache made before the clock starts, as after a first load
    start = time.perf_counter()
    rows = 0
    for split in loaded.values():
        if variant == "all":
            for row in split:
                np.asarray(row["image"])
                for column in recipe.MASK_COLUMNS:
                    if row[column] is not None:
                        np.asarray(row[column])
                rows += 1
        elif variant == "two_masks":
            for row in split.select_columns(["mask_left_lung", "mask_right_lung"]):
                np.asarray(row["mask_left_lung"]), np.asarray(row["mask_right_lung"])
                rows += 1
        elif variant == "objects_rle":
            from pycocotools import mask as mask_utils

            for row in split.select_columns(["objects"]):
                for obj in row["objects"]:
                    if obj["segmentation"] is not None:
                        seg = obj["segmentation"]
                        mask_utils.decode({"size": seg["size"], "counts": seg["counts"].encode()})
                rows += 1
        elif variant == "numpy_format":
            for _ in split.with_format("numpy", columns=["image", *recipe.MASK_COLUMNS]):
                rows += 1
        elif variant == "batched_transform":

            def to_arrays(batch):
                return {
                    column: [None if v is None else np.asarray(v) for v in batch[column]]
                    for column in ("image", *recipe.MASK_COLUMNS)
                }

            for _ in split.with_transform(to_arrays).iter(batch_size=8):
                rows += 8
        else:
            raise SystemExit(f"unknown variant {variant}")
    return {"rows": rows, "seconds_inner": time.perf_counter() - start}


def task_load_floor(folder: str) -> dict:
    """The decode floor of `load_ours` "all": the same image and mask bytes read from the Parquet
    files with pyarrow and decoded with Pillow into the same arrays, without `datasets`."""
    import pyarrow.parquet as pq

    paths = layout.shard_paths(Path(folder))
    for path in paths:  # the page cache warm, as for the Arrow cache of `load_ours`
        path.read_bytes()
    start = time.perf_counter()
    rows = 0
    for path in paths:
        table = pq.read_table(path, columns=["image", *recipe.MASK_COLUMNS])
        for column in ("image", *recipe.MASK_COLUMNS):
            for cell in table.column(column).to_pylist():
                if cell is not None:
                    with Image.open(io.BytesIO(cell["bytes"])) as image:
                        np.asarray(image)
        rows += table.num_rows
    return {"rows": rows, "seconds_inner": time.perf_counter() - start}


def task_epoch(folder: str, variant: str) -> dict:
    """One epoch over every row: the image and the 14 masks as torch tensors at 256 x 256.

    "size_256" reads config size-256 (stored at 256 px); "default_resize" reads `default` and
    resizes as training code did before that config existed (torch: antialiased bilinear for the
    image, nearest for the masks). A null mask is zeros in both."""
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        return {"skipped": "torch is not installed"}
    import datasets

    config = layout.SIZE_256_CONFIG if variant == "size_256" else layout.CONFIG_NAME
    splits = datasets.load_dataset(folder, config)  # Arrow cache made before the clock starts
    columns = ["image", *recipe.MASK_COLUMNS]
    start = time.perf_counter()
    rows = 0
    for split in splits.values():
        for row in split.select_columns(columns):
            if variant == "size_256":
                image = torch.from_numpy(np.asarray(row["image"], dtype=np.float32) / 255)[None]
                masks = torch.from_numpy(
                    np.stack(
                        [
                            np.zeros((256, 256), bool) if row[column] is None else np.asarray(row[column])
                            for column in recipe.MASK_COLUMNS
                        ]
                    )
                )
            elif variant == "default_resize":
                grey = torch.from_numpy(np.asarray(row["image"].convert("L"), dtype=np.float32) / 255)
                image = F.interpolate(grey[None, None], size=(256, 256), mode="bilinear", antialias=True)[0]
                height, width = grey.shape
                full = torch.from_numpy(
                    np.stack(
                        [
                            np.zeros((height, width), bool) if row[column] is None else np.asarray(row[column])
                            for column in recipe.MASK_COLUMNS
                        ]
                    )
                )
                masks = F.interpolate(full[None].float(), size=(256, 256), mode="nearest")[0].bool()
            else:
                raise SystemExit(f"unknown variant {variant}")
            assert tuple(image.shape) == (1, 256, 256) and tuple(masks.shape) == (len(recipe.MASK_COLUMNS), 256, 256)
            rows += 1
    return {"rows": rows, "seconds_inner": time.perf_counter() - start}


def task_load_naive(data_dir: str) -> dict:
    start = time.perf_counter()
    rows = sum(1 for _ in baselines.upstream_rows(Path(data_dir)))
    return {"rows": rows, "seconds_inner": time.perf_counter() - start}


def task_stream(folder: str) -> dict:
    """Publish to the local test Hub, then stream: bytes and time to the first row and a full pass."""
    from covid_chestxray_seg_dev.hub.server import HubServer
    from covid_chestxray_seg_dev.hub.state import VALID_TOKEN

    os.environ["HF_TOKEN"] = VALID_TOKEN

    # measure() set HF_ENDPOINT to this port before the interpreter imported huggingface_hub.
    server = HubServer(port=int(os.environ["HF_ENDPOINT"].rsplit(":", 1)[1])).start()
    try:
        import datasets

        from covid_chestxray_seg_tools.publish import PublishRequest, publish

        # A measurement, not a release: the fixture's card may have gaps.
        request = PublishRequest(repo_id="bench/covid", token=VALID_TOKEN, verify=False, allow_incomplete=True)
        publish(folder=Path(folder), request=request, say=lambda _: None)
        split_bytes = sum(p.stat().st_size for p in layout.shard_paths(Path(folder), "train"))

        def sent() -> int:
            # Parquet bytes only: the card and dataset_infos.json are read once per load, not per row.
            return sum(r.sent for r in server.state.log if "/resolve/" in r.path and r.path.endswith(".parquet"))

        before = sent()
        start = time.perf_counter()
        stream = datasets.load_dataset("bench/covid", split="train", streaming=True)
        first = next(iter(stream))
        first_seconds = time.perf_counter() - start
        first_bytes = sent() - before
        assert first["image_id"] is not None
        before = sent()
        start = time.perf_counter()
        rows = sum(1 for _ in datasets.load_dataset("bench/covid", split="train", streaming=True))
        return {
            "first_row_seconds": first_seconds,
            "first_row_bytes": first_bytes,
            "split_bytes": split_bytes,
            "full_pass_seconds": time.perf_counter() - start,
            "full_pass_bytes": sent() - before,
            "rows": rows,
        }
    finally:
        server.stop()


def task_atlas_predictions(folder: str, out: str, split: str) -> dict:
    """The atlas's predictions of `split` (or cv), what the evaluate tasks score."""
    from covid_chestxray_seg_tools.baselines.atlas import atlas_predictions

    _, counts = atlas_predictions(source=folder, out=Path(out), split=split)
    return {"counts": counts}


def task_evaluate_ours(folder: str, predictions: str, split: str) -> dict:
    """`covid-seg evaluate` as the command runs it: the truth's mask columns only, streamed."""
    from covid_chestxray_seg_tools import evaluate

    start = time.perf_counter()
    result = evaluate.evaluate(evaluate.EvaluateRequest(source=folder, split=split, predictions=Path(predictions)))
    return {"seconds_inner": time.perf_counter() - start, "classes": result["classes"], "counts": result["counts"]}


def task_evaluate_report(folder: str, predictions: str, split: str, report: str) -> dict:
    """`covid-seg evaluate --report` as the command runs it: the source opened and checked
    once, scored, then the HTML page written; each part timed."""
    from covid_chestxray_seg_tools import evaluate
    from covid_chestxray_seg_tools.source import open_source

    start = time.perf_counter()
    request = evaluate.EvaluateRequest(source=open_source(folder), split=split, predictions=Path(predictions))
    result = evaluate.evaluate(request)
    scored = time.perf_counter()
    size = evaluate.write_report(result, request=request, options=evaluate.ReportOptions(path=Path(report)))
    return {
        "evaluate_seconds": scored - start,
        "report_seconds": time.perf_counter() - scored,
        "report_bytes": size,
        "images": result["counts"]["images"],
    }


def task_evaluate_all_columns(folder: str, predictions: str, split: str) -> dict:
    """The same scoring with the truth read as a script that iterates the dataset reads it:
    `load_dataset`, every column of every row decoded (the X-rays too)."""
    import datasets

    from covid_chestxray_seg_tools import evaluate

    datasets.disable_progress_bars()
    start = time.perf_counter()
    selection = evaluate.Selection.parse(split=split, fold=None)
    loaded = datasets.load_dataset(folder)
    rows = [dict(row, split=name) for name in selection.splits for row in loaded[name]]
    targets = evaluate.Targets(
        images={
            name: {row["image_id"]: (row["width"], row["height"]) for row in rows if row["split"] == name}
            for name in selection.splits
        },
        known={name: frozenset(row["image_id"] for row in rows if row["split"] == name) for name in selection.splits},
    )
    predicted = evaluate.load_predictions(path=Path(predictions), targets=targets)
    result = evaluate.score(
        truth=rows, predictions=predicted, split=selection.split, predicted=predicted.predicted_columns
    )
    return {"seconds_inner": time.perf_counter() - start, "classes": result["classes"], "counts": result["counts"]}


def raw_rows(folder: Path, columns: list[str]) -> dict[int, dict]:
    """image_id -> the stored (still encoded) columns: ours from config default's files, the
    naive build from its single file."""
    import pyarrow.parquet as pq

    paths = layout.shard_paths(folder) or sorted(folder.rglob("*.parquet"))  # the naive build: one file
    return {
        row["image_id"]: row
        for path in paths
        for row in pq.read_table(path, columns=["image_id", *columns]).to_pylist()
    }


def same_masks(ours: Path, naive: Path) -> bool:
    # Decoded one at a time: all masks of a build decoded at once take gigabytes.
    a, b = raw_rows(ours, list(recipe.MASK_COLUMNS)), raw_rows(naive, list(recipe.MASK_COLUMNS))
    if a.keys() != b.keys():
        return False
    for image_id in a:
        for column in recipe.MASK_COLUMNS:
            x, y = recipe.decode_mask(a[image_id][column]), recipe.decode_mask(b[image_id][column])
            if (x is None) != (y is None) or (x is not None and not np.array_equal(x, y)):
                return False
    return True


def same_arrays_as_upstream_loader(folder: Path, data_dir: Path) -> bool:
    rows = {row["file_name"]: row for row in raw_rows(folder, ["file_name", "image", *recipe.MASK_COLUMNS]).values()}
    for file_name, image, masks in baselines.upstream_rows(data_dir):
        row = rows[file_name]
        if not np.array_equal(np.asarray(Image.open(io.BytesIO(row["image"]["bytes"]))), image):
            return False
        for name, column in zip(recipe.CLASSES, recipe.MASK_COLUMNS):
            ours = recipe.decode_mask(row[column])
            if (ours is None) != (masks[name] is None) or (ours is not None and not np.array_equal(ours, masks[name])):
                return False
    return True


def task_compare_masks(ours: str, naive: str) -> dict:
    return {"same": same_masks(Path(ours), Path(naive))}


def task_compare_upstream(folder: str, data_dir: str) -> dict:
    return {"same": same_arrays_as_upstream_loader(Path(folder), Path(data_dir))}


def task_upstream_bytes(data_dir: str) -> dict:
    return {"bytes": data.upstream_bytes(Path(data_dir))}


def task_replicate(data_dir: str, target: str, copies: int) -> dict:
    data.replicate(Path(data_dir), Path(target), copies)
    return {}


TASKS = {
    "build_ours": task_build_ours,
    "build_naive": task_build_naive,
    "load_ours": task_load_ours,
    "load_naive": task_load_naive,
    "load_floor": task_load_floor,
    "epoch": task_epoch,
    "stream": task_stream,
    "compare_masks": task_compare_masks,
    "compare_upstream": task_compare_upstream,
    "upstream_bytes": task_upstream_bytes,
    "replicate": task_replicate,
    "atlas_predictions": task_atlas_predictions,
    "evaluate_ours": task_evaluate_ours,
    "evaluate_all_columns": task_evaluate_all_columns,
    "evaluate_report": task_evaluate_report,
}


def _worker(task: str, kwargs_json: str) -> None:
    start = time.perf_counter()
    result = TASKS[task](**json.loads(kwargs_json))
    result["seconds"] = time.perf_counter() - start
    # VmHWM, not ru_maxrss: Linux carries a parent's RSS at fork into the child's ru_maxrss
    # across exec, so a large benchmark process would inflate every measurement.
    own = _vm_hwm_kib()
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # the build's worker processes
    result["peak_rss_bytes"] = max(own, children) * 1024
    result["own_peak_rss_bytes"], result["workers_peak_rss_bytes"] = own * 1024, children * 1024
    print("RESULT " + json.dumps(result))


def _vm_hwm_kib() -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in TASKS:
        raise SystemExit(f"usage: python -m benchmarks.tasks {{{','.join(TASKS)}}} KWARGS_JSON")
    try:
        _worker(argv[0], argv[1])
    except (CovidSegError, recipe.BuildError) as error:
        # Refused input, not a bug: one line the orchestrator passes on (measure()).
        print(f"ERROR {error}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
