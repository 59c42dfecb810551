"""Benchmark the build, loading, streaming and size against the loaders people write by hand.

Every measurement runs in a fresh subprocess (so peak RSS is its own) and is reported as
a ratio against a baseline measured in the same run, on the same machine:

  build   `covid-seg build`            vs a naive COCO script (pycocotools annToMask per
                                          annotation, PIL's default PNG save, one process)
  load    iterate the built dataset    vs a hand-written upstream loader (structure.csv +
          decoding image + 14 masks       mask crops pasted into full-size arrays), and vs the
                                          decode floor (the same bytes, pyarrow + Pillow)
  epoch   size-256 as 256-px tensors   vs default + the resize training code did before
  stream  first row / full pass from the local test Hub: bytes and time
  size    built folder                 vs the upstream files it was built from
  scale   build of the data x N        vs the build of the data (time and peak RSS)
  evaluate `covid-seg evaluate` of the  vs the same scoring reading the truth as a script
          atlas's predictions, test and    iterating `load_dataset` rows does (every column,
          cv                               the X-rays too)
  report  `evaluate --report` under cv  vs evaluate's own time in the same run: what the page
                                          adds

This module is the orchestrator. The tasks it measures, the baselines and the local Hub are
development code that lives in the repository (`benchmarks/`, `covid_chestxray_seg_dev/`), not in the
installed package: each task runs as `python -m benchmarks.tasks TASK KWARGS` from the
repository's root, so the benchmark needs a clone.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import covid_chestxray_seg as recipe
from covid_chestxray_seg_tools import staging
from covid_chestxray_seg_tools.errors import CovidSegError
from covid_chestxray_seg_tools.hub_folder import layout

__all__ = [
    "TARGETS",
    "BenchmarkError",
    "format_markdown",
    "format_table",
    "machine",
    "measure",
    "repository",
    "run",
]

_REPEATS = 2
_EVALUATE_TASKS = ("evaluate_ours", "evaluate_all_columns", "evaluate_report")
# What `evaluate` is timed on: the test split, and the cross-validation (train + validation).
_EVALUATE_SPLITS = ("test", "cv")
# Where the HTML report is timed: the cross-validation, the primary measure and the largest page.
_REPORT_SPLIT = "cv"
TARGETS = {
    "build_speedup": 3.0,  # naive time / our time, at least
    "load_speedup": 1.0,  # hand-written loader time / ours, at least
    "floor_ratio": 1.3,  # ours / decoding the same bytes without datasets, at most
    "epoch_speedup": 20.0,  # default + resize per epoch / size-256, at least
    "first_row_fraction": 0.10,  # bytes read for the first streamed row / split bytes, at most
    "size_ratio": 1.10,  # built folder / upstream files, at most
    "size_256_fraction": 0.15,  # size-256's Parquet / default's, at most
    "scale_time_ratio": 11.0,  # per 10x data, at most
    "scale_rss_ratio": 1.3,  # at most
    "report_ratio": 0.5,  # evaluate --report's page time / evaluate's time under cv, at most
}


# The local Hub the streaming tasks read from: development code, not in the wheel.
_DEV_HUB = Path("covid_chestxray_seg_dev", "hub", "server.py")


class BenchmarkError(CovidSegError):
    """The benchmark cannot run here (no clone), or a measured task failed."""


def repository() -> Path:
    """The clone this package runs from (its `benchmarks/` and `covid_chestxray_seg_dev/` hold the tasks)."""
    root = Path(recipe.__file__).resolve().parent
    if not (root / "benchmarks" / "tasks.py").is_file() or not (root / _DEV_HUB).is_file():
        raise BenchmarkError(
            f"the benchmark runs from a clone of the repository (it needs benchmarks/ and {_DEV_HUB}); {root} has "
            "none: git clone the repository and `pip install -e .` it"
        )
    return root


def measure(task: str, **kwargs: Any) -> dict:
    """Run one task in a fresh interpreter; its wall time (in-process) and peak RSS."""
    env = dict(os.environ)
    with tempfile.TemporaryDirectory(prefix="benchmark-hf-") as home:
        if task == "build_ours":
            env.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
        if task == "stream":
            # The local test Hub, never the real one; huggingface_hub reads these at import.
            env.update({"HF_ENDPOINT": f"http://127.0.0.1:{_free_port()}", "HF_HUB_DISABLE_XET": "1", "HF_HOME": home})
        if task in _EVALUATE_TASKS:
            # A cache of its own: a previous run's Arrow cache would spare the baseline its reading.
            env.update({"HF_HOME": home, "HF_DATASETS_CACHE": os.path.join(home, "datasets")})
        completed = subprocess.run(
            [sys.executable, "-m", "benchmarks.tasks", task, json.dumps(kwargs)],
            capture_output=True,
            text=True,
            env=env,
            cwd=repository(),
            check=False,
        )
    lines = [line for line in completed.stdout.splitlines() if line.startswith("RESULT ")]
    refused = [line[len("ERROR ") :] for line in completed.stdout.splitlines() if line.startswith("ERROR ")]
    if refused:  # the task's input, not a bug: its one message, no traceback
        raise BenchmarkError(refused[-1], file=f"benchmark task {task}")
    if completed.returncode != 0 or not lines:
        raise BenchmarkError(f"benchmark task {task} failed:\n{completed.stdout[-2000:]}\n{completed.stderr[-4000:]}")
    return json.loads(lines[-1][len("RESULT ") :])


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---- report -----------------------------------------------------------------------------------


def run(*, data_dir: Path, severity_file: Path, smoke: bool, scale: int, work: Path) -> dict:
    """Measure every task (module docstring) and return the results `format_table` prints.

    Raises:
        BenchmarkError: no clone, an input that is not there, or a task that failed.
    """
    repository()
    inputs = (("data_dir", data_dir, Path.is_dir, "folder"), ("severity_file", severity_file, Path.is_file, "file"))
    for setting, path, is_there, kind in inputs:
        if not is_there(path):
            raise BenchmarkError(
                f"no such {kind}",
                setting=setting,
                value=str(path),
                fix="pass the upstream clone and ieee8023's severity file (or the fixture's, with ${smoke})",
            )
    allow_modified = smoke  # the fixture's metadata.csv is cut down
    # A smoke run asserts no time: once is enough to check that every task runs and agrees.
    repeats = 1 if smoke else _REPEATS
    ours_out, naive_out = work / "ours", work / "naive"
    results: dict = {
        "date": datetime.datetime.now(datetime.timezone.utc).date().isoformat(),
        "machine": machine(),
        "data_dir": str(data_dir),
    }

    # This machine's timings vary by +-20 % from run to run: each build runs REPEATS times,
    # ours and the baseline interleaved, and the fastest run of each counts.
    runs = []
    for _ in range(repeats):
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
        "masks_identical": measure("compare_masks", ours=str(ours_out), naive=str(naive_out))["same"],
    }

    load = {"naive_seconds": measure("load_naive", data_dir=str(data_dir))["seconds_inner"]}
    for variant in ("all", "two_masks", "objects_rle", "numpy_format", "batched_transform"):
        load[f"ours_{variant}_seconds"] = measure("load_ours", folder=str(ours_out), variant=variant)["seconds_inner"]
    load["speedup"] = load["naive_seconds"] / load["ours_all_seconds"]
    # The floor and ours alternate, fastest of each: this machine's timings swing from run to run.
    floors, alls = [], [load["ours_all_seconds"]]
    for _ in range(repeats):
        floors.append(measure("load_floor", folder=str(ours_out))["seconds_inner"])
        alls.append(measure("load_ours", folder=str(ours_out), variant="all")["seconds_inner"])
    load["ours_all_seconds"], load["floor_seconds"] = min(alls), min(floors)
    load["speedup"] = load["naive_seconds"] / load["ours_all_seconds"]
    load["floor_ratio"] = load["ours_all_seconds"] / load["floor_seconds"]
    load["same_arrays"] = measure("compare_upstream", folder=str(ours_out), data_dir=str(data_dir))["same"]
    results["load"] = load

    epochs = {
        variant: measure("epoch", folder=str(ours_out), variant=variant) for variant in ("size_256", "default_resize")
    }
    if not any("skipped" in result for result in epochs.values()):
        results["epoch"] = {
            "size_256_seconds": epochs["size_256"]["seconds_inner"],
            "default_resize_seconds": epochs["default_resize"]["seconds_inner"],
            "rows": epochs["size_256"]["rows"],
        }
        results["epoch"]["speedup"] = results["epoch"]["default_resize_seconds"] / results["epoch"]["size_256_seconds"]

    stream = measure("stream", folder=str(ours_out))
    stream["first_row_fraction"] = stream["first_row_bytes"] / stream["split_bytes"]
    results["stream"] = stream

    # The folder against upstream's files without the 256-px copy, which has its own budget.
    default_bytes = sum(path.stat().st_size for path in layout.shard_paths(ours_out))
    small_bytes = sum(path.stat().st_size for path in layout.shard_paths(ours_out, config=layout.SIZE_256_CONFIG))
    folder, upstream = staging.folder_bytes(ours_out), measure("upstream_bytes", data_dir=str(data_dir))["bytes"]
    built = folder - small_bytes
    results["size"] = {
        "folder_bytes": folder,
        "built_bytes": built,
        "upstream_bytes": upstream,
        "ratio": built / upstream,
        "default_bytes": default_bytes,
        "size_256_bytes": small_bytes,
        "size_256_fraction": small_bytes / default_bytes,
    }

    if scale > 1:
        big = work / f"data-x{scale}"
        measure("replicate", data_dir=str(data_dir), target=str(big), copies=scale)
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
    results["evaluate"] = {
        split: _measure_evaluate(folder=ours_out, split=split, work=work, repeats=repeats) for split in _EVALUATE_SPLITS
    }
    results["targets"] = _verdicts(results)
    return results


def _measure_evaluate(*, folder: Path, split: str, work: Path, repeats: int) -> dict:
    """`covid-seg evaluate` of the atlas's predictions of `split` (or cv), against the same
    scoring with the truth read whole; both must give the same scores."""
    predictions = work / f"atlas-{split}"
    measure("atlas_predictions", folder=str(folder), out=str(predictions), split=split)
    options = {"folder": str(folder), "predictions": str(predictions), "split": split}
    # Interleaved and repeated like the builds; the fastest run of each counts.
    runs = [(measure("evaluate_ours", **options), measure("evaluate_all_columns", **options)) for _ in range(repeats)]
    ours = min((pair[0] for pair in runs), key=lambda run: run["seconds_inner"])
    whole = min((pair[1] for pair in runs), key=lambda run: run["seconds_inner"])
    measured = {
        "images": ours["counts"]["images"],
        "ours_seconds": ours["seconds_inner"],
        "all_columns_seconds": whole["seconds_inner"],
        "speedup": whole["seconds_inner"] / ours["seconds_inner"],
        "ours_peak_rss_mb": ours["peak_rss_bytes"] / 2**20,
        "all_columns_peak_rss_mb": whole["peak_rss_bytes"] / 2**20,
        "same_scores": ours["classes"] == whole["classes"],
    }
    if split == _REPORT_SPLIT:
        measured["report"] = _measure_report(options, page=work / f"atlas-{split}.html", repeats=repeats)
    return measured


def _measure_report(options: dict, *, page: Path, repeats: int) -> dict:
    """What `--report` adds to `evaluate`: the page's time against the scoring's in the same
    process (as the command runs them), the fastest of each over the repeats."""
    runs = [measure("evaluate_report", **options, report=str(page)) for _ in range(repeats)]
    evaluate_seconds = min(run["evaluate_seconds"] for run in runs)
    report_seconds = min(run["report_seconds"] for run in runs)
    return {
        "evaluate_seconds": evaluate_seconds,
        "report_seconds": report_seconds,
        "ratio": report_seconds / evaluate_seconds,
        "page_mb": runs[-1]["report_bytes"] / 1e6,
    }


def _verdicts(results: dict) -> dict:
    checks = {
        "build_speedup": (results["build"]["speedup"], ">="),
        "load_speedup": (results["load"]["speedup"], ">="),
        "floor_ratio": (results["load"]["floor_ratio"], "<="),
        "size_256_fraction": (results["size"]["size_256_fraction"], "<="),
        "first_row_fraction": (results["stream"]["first_row_fraction"], "<="),
        "size_ratio": (results["size"]["ratio"], "<="),
    }
    if "epoch" in results:
        checks["epoch_speedup"] = (results["epoch"]["speedup"], ">=")
    report = results.get("evaluate", {}).get(_REPORT_SPLIT, {}).get("report")
    if report is not None:
        checks["report_ratio"] = (report["ratio"], "<=")
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


def format_markdown(results: dict) -> str:
    """The benchmark as benchmarks/RESULTS.md holds it: when and on what it ran, then the table.

    Args:
        results: what `run` returned (`covid-seg benchmark --json`).

    Returns:
        Markdown.
    """
    m = results["machine"]
    return (
        "# Benchmark results\n\n"
        f"Measured on {results.get('date', 'an unrecorded date')} by `covid-seg benchmark` on the data in "
        f"`{Path(results['data_dir']).name}`, on {m['cpus']} CPUs and {m['memory_gb']} GB ({m['platform']}, "
        f"Python {m['python']}, datasets {m['datasets']}). Every row compares against a baseline measured in the "
        "same run on the same machine; what each compares, and where the time goes: "
        "[docs/performance.md](../docs/performance.md). Written by `covid-seg benchmark --markdown "
        "benchmarks/RESULTS.md`, not by hand.\n\n" + format_table(results) + "\n"
    )


def format_table(results: dict) -> str:
    b, ld, s, z = results["build"], results["load"], results["stream"], results["size"]
    e = results.get("epoch")
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
        f"| load all rows, image + 14 masks, against decoding the same bytes without `datasets` (s) "
        f"| {ld['ours_all_seconds']:.1f} | {ld['floor_seconds']:.1f} (pyarrow + Pillow) "
        f"| {ld['floor_ratio']:.2f}x the floor | <= 1.3x |",
        f"| load 2 mask columns (s) | {ld['ours_two_masks_seconds']:.2f} | | | |",
        f"| load `objects` RLE, decode every instance (s) | {ld['ours_objects_rle_seconds']:.2f} | | | |",
        f'| load `with_format("numpy")` (s) | {ld["ours_numpy_format_seconds"]:.2f} | | | |',
        f"| load batched `with_transform` (s) | {ld['ours_batched_transform_seconds']:.2f} | | | |",
        *(
            [
                f"| one epoch, image + 14 masks as tensors at 256 x 256 (s) | {e['size_256_seconds']:.2f} "
                f"(`size-256`) | {e['default_resize_seconds']:.1f} (`default` + torch resize) "
                f"| {e['speedup']:.0f}x faster | >= 20x |"
            ]
            if e
            else ["| one epoch at 256 x 256 | not measured: torch is not installed | | | |"]
        ),
        f"| stream: first row | {s['first_row_seconds']:.2f} s, {s['first_row_bytes'] / 1e6:.1f} MB "
        f"| train split {s['split_bytes'] / 1e6:.1f} MB | {s['first_row_fraction']:.1%} of the split | <= 10% |",
        f"| stream: full pass of train | {s['full_pass_seconds']:.1f} s, {s['full_pass_bytes'] / 1e6:.1f} MB | | | |",
        f"| size without `size-256` (MB) | {z['built_bytes'] / 1e6:.1f} "
        f"| {z['upstream_bytes'] / 1e6:.1f} (images + crops + CSVs) "
        f"| {z['ratio']:.2f}x | <= 1.10x |",
    ]
    lines.append(
        f"| size of `size-256` (MB) | {z['size_256_bytes'] / 1e6:.1f} | {z['default_bytes'] / 1e6:.1f} (`default`) "
        f"| {z['size_256_fraction']:.1%} | <= 15% |"
    )
    for split, e in results.get("evaluate", {}).items():
        lines.append(
            f"| evaluate `--split {split}`, atlas predictions, {e['images']} images (s) | {e['ours_seconds']:.1f} "
            f"| {e['all_columns_seconds']:.1f} (every column read) | {e['speedup']:.1f}x faster "
            f"| same scores: {e['same_scores']}; peak RSS {e['ours_peak_rss_mb']:.0f} vs "
            f"{e['all_columns_peak_rss_mb']:.0f} MB |"
        )
        if "report" in e:
            r = e["report"]
            lines.append(
                f"| evaluate `--split {split}` `--report`: the HTML page (s) | {r['report_seconds']:.1f} "
                f"| {r['evaluate_seconds']:.1f} (evaluate, same run) | {r['ratio']:.2f}x evaluate's time "
                f"| <= 0.5x; page {r['page_mb']:.1f} MB |"
            )
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
