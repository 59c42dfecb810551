"""Benchmark the build, loading, streaming and size against the loaders people write by hand.

Every measurement runs in a fresh subprocess (so peak RSS is its own) and is reported as
a ratio against a baseline measured in the same run, on the same machine:

  build   scripts/build.py           vs a naive COCO script (pycocotools annToMask per
                                         annotation, PIL's default PNG save, one process)
  load    iterate the built dataset  vs a hand-written upstream loader (structure.csv +
          decoding image + 14 masks      mask crops pasted into full-size arrays)
  stream  first row / full pass from the local Hub server: bytes and time
  size    built folder               vs the upstream files it was built from
  scale   build of the data x N      vs the build of the data (time and peak RSS)

Each task runs as `python -m covid_chestxray_seg_tools.benchmark --worker TASK KWARGS`;
scripts/benchmark.py is the command line.
"""

from __future__ import annotations

import csv
import io
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

import covid_chestxray_seg as recipe
from covid_chestxray_seg_tools import crops, layout, staging

REPEATS = 2
TARGETS = {
    "build_speedup": 3.0,  # naive time / our time, at least
    "load_speedup": 1.0,  # hand-written loader time / ours, at least
    "first_row_fraction": 0.10,  # bytes read for the first streamed row / split bytes, at most
    "size_ratio": 1.10,  # built folder / upstream files, at most
    "scale_time_ratio": 11.0,  # per 10x data, at most
    "scale_rss_ratio": 1.3,  # at most
}

# ---- measured tasks (each runs in its own subprocess) ---------------------------------------


def task_build_ours(data_dir: str, out: str, severity_file: str, allow_modified: bool, validate: bool = False) -> dict:
    """The library's build with the command line's defaults, in this process like the naive
    build (imports done before the clock).

    measure() sets ARROW_DEFAULT_MEMORY_POOL as scripts/build.py does when run as a command:
    this process loaded pyarrow before the build could."""
    import datasets

    from covid_chestxray_seg_tools.build import DEFAULT_NUM_PROC, build

    datasets.disable_progress_bars()
    build(
        data_dir=Path(data_dir),
        out=Path(out),
        severity_file=Path(severity_file),
        verify_upstream=not allow_modified,
        num_proc=DEFAULT_NUM_PROC,
        validate=validate,
    )
    return {}


def task_build_naive(data_dir: str, out: str, severity_file: str) -> dict:
    """What a careful user writes by hand with pycocotools and PIL: same records, one process."""
    import datasets
    from pycocotools.coco import COCO

    root = Path(data_dir)
    coco = COCO(str(root / recipe.ANNOTATION_FILE))
    names = {c["id"]: recipe.UPSTREAM_CLASS_ALIASES.get(c["name"], c["name"]) for c in coco.loadCats(coco.getCatIds())}
    metadata = recipe.read_metadata(root / recipe.METADATA_FILE, needed={i["file_name"] for i in coco.imgs.values()})
    severity = recipe.read_severity(Path(severity_file).read_bytes(), Path(severity_file))
    unscored = dict.fromkeys(column for column, _ in recipe.SEVERITY_COLUMNS.values())

    def png(mask: np.ndarray) -> bytes:
        buffer = io.BytesIO()
        Image.fromarray(mask.astype(np.uint8) * 255).save(buffer, format="PNG")
        return buffer.getvalue()

    def records():
        for image_id in sorted(coco.imgs):
            image = coco.imgs[image_id]
            anns = coco.loadAnns(coco.getAnnIds(imgIds=[image_id]))
            masks = {name: np.zeros((image["height"], image["width"]), dtype=bool) for name in recipe.CLASSES}
            missing = set()
            objects = []
            for ann in sorted(anns, key=lambda a: a["id"]):
                name = names[ann["category_id"]]
                segmentation = None
                if ann["segmentation"]:
                    masks[name] |= coco.annToMask(ann).astype(bool)
                    rle = coco.annToRLE(ann)
                    counts = rle["counts"]  # annToRLE hands back a str when the file already had one
                    segmentation = {
                        "size": list(rle["size"]),
                        "counts": counts.decode() if isinstance(counts, bytes) else counts,
                    }
                else:
                    missing.add(name)
                objects.append(
                    {
                        "id": ann["id"],
                        "category": recipe.CLASSES.index(name),
                        "bbox": ann["bbox"],
                        "area": float(ann["area"]),
                        "iscrowd": bool(ann["iscrowd"]),
                        "segmentation": segmentation,
                    }
                )
            data = (root / recipe.IMAGES_DIR / image["file_name"]).read_bytes()
            drawn = {
                index: masks[name]
                for index, name in enumerate(recipe.CLASSES)
                if name not in missing and masks[name].any()
            }
            yield {
                "image": {"path": image["file_name"], "bytes": data},
                "overlay": {"path": None, "bytes": recipe.overlay_jpeg(data, drawn)},
                "image_id": image_id,
                "file_name": image["file_name"],
                "width": image["width"],
                "height": image["height"],
                **{
                    column: (None if name in missing else {"path": None, "bytes": png(masks[name])})
                    for name, column in zip(recipe.CLASSES, recipe.MASK_COLUMNS)
                },
                "objects": objects,
                **metadata[image["file_name"]],
                **severity.get(image["file_name"], unscored),
                "fold": None,
            }

    with tempfile.TemporaryDirectory() as cache:
        dataset = datasets.Dataset.from_generator(records, features=recipe.features(), cache_dir=cache)
        Path(out).mkdir(parents=True, exist_ok=True)
        dataset.to_parquet(str(Path(out) / "naive.parquet"))
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


def upstream_rows(data_dir: Path):
    """The hand-written upstream loader: image + one full-size array per class from the crops."""
    for file_name, (height, width), masks in crops.image_masks(data_dir):
        image = np.asarray(Image.open(data_dir / recipe.IMAGES_DIR / file_name))
        yield (
            file_name,
            image,
            {name: masks.get(name, np.zeros((height, width), dtype=bool)) for name in recipe.CLASSES},
        )


def task_load_naive(data_dir: str) -> dict:
    start = time.perf_counter()
    rows = sum(1 for _ in upstream_rows(Path(data_dir)))
    return {"rows": rows, "seconds_inner": time.perf_counter() - start}


def task_stream(folder: str) -> dict:
    """Publish to the local test Hub, then stream: bytes and time to the first row and a full pass."""
    from covid_chestxray_seg_tools.testing.hub_server import VALID_TOKEN, HubServer

    # measure() set HF_ENDPOINT to this port before the interpreter imported huggingface_hub.
    server = HubServer(port=int(os.environ["HF_ENDPOINT"].rsplit(":", 1)[1])).start()
    try:
        import datasets

        from covid_chestxray_seg_tools.publish import publish

        publish(folder=Path(folder), repo_id="bench/covid", token=VALID_TOKEN, verify=False, say=lambda _: None)
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


TASKS = {
    "build_ours": task_build_ours,
    "build_naive": task_build_naive,
    "load_ours": task_load_ours,
    "load_naive": task_load_naive,
    "stream": task_stream,
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


def measure(task: str, **kwargs) -> dict:
    """Run one task in a fresh interpreter; its wall time (in-process) and peak RSS."""
    env = dict(os.environ)
    with tempfile.TemporaryDirectory(prefix="benchmark-hf-") as home:
        if task == "build_ours":
            env.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
        if task == "stream":
            # The local test Hub, never the real one; huggingface_hub reads these at import.
            env.update({"HF_ENDPOINT": f"http://127.0.0.1:{_free_port()}", "HF_HUB_DISABLE_XET": "1", "HF_HOME": home})
            env.update({"HF_TOKEN": _test_token()})
        completed = subprocess.run(
            [sys.executable, "-m", __name__, "--worker", task, json.dumps(kwargs)],
            capture_output=True,
            text=True,
            env=env,
        )
    lines = [line for line in completed.stdout.splitlines() if line.startswith("RESULT ")]
    if completed.returncode != 0 or not lines:
        raise SystemExit(f"benchmark task {task} failed:\n{completed.stdout[-2000:]}\n{completed.stderr[-4000:]}")
    return json.loads(lines[-1][len("RESULT ") :])


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _test_token() -> str:
    from covid_chestxray_seg_tools.testing.hub_server import VALID_TOKEN

    return VALID_TOKEN


# ---- comparisons ------------------------------------------------------------------------------


def raw_rows(folder: Path, columns: list[str]) -> dict[int, dict]:
    """image_id -> the stored (still encoded) columns, from every Parquet file under folder
    (ours in the Hub layout, the naive build's single file)."""
    import pyarrow.parquet as pq

    return {
        row["image_id"]: row
        for path in sorted(folder.rglob("*.parquet"))
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
    for file_name, image, masks in upstream_rows(data_dir):
        row = rows[file_name]
        if not np.array_equal(np.asarray(Image.open(io.BytesIO(row["image"]["bytes"]))), image):
            return False
        for name, column in zip(recipe.CLASSES, recipe.MASK_COLUMNS):
            ours = recipe.decode_mask(row[column])
            if (ours is None) != (masks[name] is None) or (ours is not None and not np.array_equal(ours, masks[name])):
                return False
    return True


def upstream_bytes(data_dir: Path) -> int:
    files = list((data_dir / "images").iterdir()) + list((data_dir / "masks").iterdir())
    files += [data_dir / "structure.csv", data_dir / "metadata.csv"]
    return sum(path.stat().st_size for path in files if path.is_file())


def replicate(data_dir: Path, target: Path, copies: int) -> None:
    """The data `copies` times over, each copy with new image ids, file names and patients."""
    coco = json.loads((data_dir / recipe.ANNOTATION_FILE).read_text(encoding="utf-8"))
    (target / "images").mkdir(parents=True)
    (target / "annotation").mkdir()
    with open(data_dir / recipe.METADATA_FILE, newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        meta_rows = list(reader)
    name_at, patient_at = header.index("filename"), header.index("patientid")
    by_name = {row[name_at]: row for row in meta_rows}
    images, annotations, out_rows = [], [], []
    step_image = max(i["id"] for i in coco["images"]) + 1
    step_ann = max(a["id"] for a in coco["annotations"]) + 1
    for copy in range(copies):
        for image in coco["images"]:
            name = f"copy{copy}-{image['file_name']}"
            _link_or_copy(data_dir / "images" / image["file_name"], target / "images" / name)
            images.append({**image, "id": image["id"] + copy * step_image, "file_name": name})
            row = list(by_name[image["file_name"]])
            row[name_at] = name
            row[patient_at] = str(int(row[patient_at]) + copy * 100000)
            out_rows.append(row)
        annotations += [
            {**a, "id": a["id"] + copy * step_ann, "image_id": a["image_id"] + copy * step_image}
            for a in coco["annotations"]
        ]
    (target / recipe.ANNOTATION_FILE).write_text(json.dumps({**coco, "images": images, "annotations": annotations}))
    with open(target / recipe.METADATA_FILE, "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([header, *out_rows])


def _link_or_copy(source: Path, target: Path) -> None:
    # Hard links keep 10 copies of 61 MB cheap; another file system needs real copies.
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


# ---- report -----------------------------------------------------------------------------------


def run(*, data_dir: Path, severity_file: Path, smoke: bool, scale: int, work: Path) -> dict:
    allow_modified = smoke  # the fixture's metadata.csv is cut down
    ours_out, naive_out = work / "ours", work / "naive"
    results: dict = {"machine": machine(), "data_dir": str(data_dir)}

    # This machine's timings vary by +-20 % from run to run: each build runs REPEATS times,
    # ours and the baseline interleaved, and the fastest run of each counts.
    runs = []
    for _ in range(REPEATS):
        runs.append(
            (
                measure(
                    "build_ours",
                    data_dir=str(data_dir),
                    out=str(ours_out),
                    severity_file=str(severity_file),
                    allow_modified=allow_modified,
                ),
                measure("build_naive", data_dir=str(data_dir), out=str(naive_out), severity_file=str(severity_file)),
            )
        )
    ours = min((pair[0] for pair in runs), key=lambda r: r["seconds"])
    naive = min((pair[1] for pair in runs), key=lambda r: r["seconds"])
    validated = measure(
        "build_ours",
        data_dir=str(data_dir),
        out=str(work / "ours-validated"),
        severity_file=str(severity_file),
        allow_modified=allow_modified,
        validate=True,
    )
    results["build"] = {
        "ours_seconds": ours["seconds"],
        "naive_seconds": naive["seconds"],
        "validated_seconds": validated["seconds"],
        "speedup": naive["seconds"] / ours["seconds"],
        "ours_peak_rss_mb": ours["peak_rss_bytes"] / 2**20,
        "naive_peak_rss_mb": naive["peak_rss_bytes"] / 2**20,
        "masks_identical": same_masks(ours_out, naive_out),
    }

    load = {"naive_seconds": measure("load_naive", data_dir=str(data_dir))["seconds_inner"]}
    for variant in ("all", "two_masks", "objects_rle", "numpy_format", "batched_transform"):
        load[f"ours_{variant}_seconds"] = measure("load_ours", folder=str(ours_out), variant=variant)["seconds_inner"]
    load["speedup"] = load["naive_seconds"] / load["ours_all_seconds"]
    load["same_arrays"] = same_arrays_as_upstream_loader(ours_out, data_dir)
    results["load"] = load

    stream = measure("stream", folder=str(ours_out))
    stream["first_row_fraction"] = stream["first_row_bytes"] / stream["split_bytes"]
    results["stream"] = stream

    built, upstream = staging.folder_bytes(ours_out), upstream_bytes(data_dir)
    results["size"] = {"built_bytes": built, "upstream_bytes": upstream, "ratio": built / upstream}

    if scale > 1:
        big = work / f"data-x{scale}"
        replicate(data_dir, big, scale)
        scaled = measure(
            "build_ours",
            data_dir=str(big),
            out=str(work / "ours-big"),
            severity_file=str(severity_file),
            allow_modified=True,
        )
        results["scale"] = {
            "copies": scale,
            "seconds": scaled["seconds"],
            "time_ratio": scaled["seconds"] / ours["seconds"],
            "rss_ratio": scaled["peak_rss_bytes"] / ours["peak_rss_bytes"],
        }
    results["targets"] = verdicts(results)
    return results


def verdicts(results: dict) -> dict:
    checks = {
        "build_speedup": (results["build"]["speedup"], ">="),
        "load_speedup": (results["load"]["speedup"], ">="),
        "first_row_fraction": (results["stream"]["first_row_fraction"], "<="),
        "size_ratio": (results["size"]["ratio"], "<="),
    }
    if "scale" in results:
        checks["scale_time_ratio"] = (results["scale"]["time_ratio"] * 10 / results["scale"]["copies"], "<=")
        checks["scale_rss_ratio"] = (results["scale"]["rss_ratio"], "<=")
    return {
        name: {
            "value": value,
            "target": f"{op} {TARGETS[name]}",
            "met": value >= TARGETS[name] if op == ">=" else value <= TARGETS[name],
        }
        for name, (value, op) in checks.items()
    }


def machine() -> dict:
    import datasets

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "datasets": datasets.__version__,
    }


def format_table(results: dict) -> str:
    b, ld, s, z = results["build"], results["load"], results["stream"], results["size"]
    lines = [
        "| measure | ours | baseline | ratio | target |",
        "|---|---:|---:|---:|---|",
        f"| build (s) | {b['ours_seconds']:.1f} | {b['naive_seconds']:.1f} (naive COCO script) "
        f"| {b['speedup']:.1f}x faster | >= 3x; masks identical: {b['masks_identical']} |",
        f"| build with `--validate`, every mask compared with upstream's crops (s) | {b['validated_seconds']:.1f} "
        f"| {b['naive_seconds']:.1f} | {b['naive_seconds'] / b['validated_seconds']:.1f}x faster "
        "| (does more than the baseline) |",
        f"| build peak RSS (MB) | {b['ours_peak_rss_mb']:.0f} | {b['naive_peak_rss_mb']:.0f} | | |",
        f"| load all rows, image + 14 masks as arrays (s) | {ld['ours_all_seconds']:.1f} "
        f"| {ld['naive_seconds']:.1f} (structure.csv + crops) | {ld['speedup']:.2f}x faster "
        f"| >= 1.0; same arrays: {ld['same_arrays']} |",
        f"| load 2 mask columns (s) | {ld['ours_two_masks_seconds']:.2f} | | | |",
        f"| load `objects` RLE, decode every instance (s) | {ld['ours_objects_rle_seconds']:.2f} | | | |",
        f'| load `with_format("numpy")` (s) | {ld["ours_numpy_format_seconds"]:.2f} | | | |',
        f"| load batched `with_transform` (s) | {ld['ours_batched_transform_seconds']:.2f} | | | |",
        f"| stream: first row | {s['first_row_seconds']:.2f} s, {s['first_row_bytes'] / 1e6:.1f} MB "
        f"| train split {s['split_bytes'] / 1e6:.1f} MB | {s['first_row_fraction']:.1%} of the split | <= 10% |",
        f"| stream: full pass of train | {s['full_pass_seconds']:.1f} s, {s['full_pass_bytes'] / 1e6:.1f} MB | | | |",
        f"| size (MB) | {z['built_bytes'] / 1e6:.1f} | {z['upstream_bytes'] / 1e6:.1f} (images + crops + CSVs) "
        f"| {z['ratio']:.2f}x | <= 1.10x |",
    ]
    if "scale" in results:
        c = results["scale"]
        lines.append(
            f"| scale: data x{c['copies']} | {c['seconds']:.1f} s | {b['ours_seconds']:.1f} s "
            f"| time {c['time_ratio']:.1f}x, peak RSS {c['rss_ratio']:.2f}x | <= 11x, <= 1.3x |"
        )
    missed = [name for name, verdict in results["targets"].items() if not verdict["met"]]
    lines.append("")
    lines.append(
        "targets: "
        + (
            "all met"
            if not missed
            else "MISSED: "
            + ", ".join(
                f"{name} = {results['targets'][name]['value']:.3g} (target {results['targets'][name]['target']})"
                for name in missed
            )
        )
    )
    m = results["machine"]
    lines.append(
        f"machine: {m['cpus']} CPUs, {m['memory_gb']} GB, Python {m['python']}, datasets {m['datasets']}, "
        f"{m['platform']}"
    )
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    """The worker entry point: `--worker TASK KWARGS_JSON`."""
    if argv[:1] != ["--worker"] or len(argv) != 3:
        raise SystemExit("usage: python -m covid_chestxray_seg_tools.benchmark --worker TASK KWARGS_JSON")
    _worker(argv[1], argv[2])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
