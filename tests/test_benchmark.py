"""covid-seg benchmark: a smoke run on the fixture (no timing asserted) and its baselines' correctness."""

from __future__ import annotations

import importlib.util
import json
import os
import re

import pytest

from benchmarks import data, tasks
from covid_chestxray_seg_tools import benchmark
from covid_chestxray_seg_tools.cli import main as covid_seg
from covid_chestxray_seg_tools.hub_folder import layout
from tests.helpers import FIXTURE_DIR, FIXTURE_SEVERITY, REPO, require_torch


@pytest.mark.slow
def test_smoke_run_measures_everything_and_the_baselines_agree(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert (
        covid_seg(
            [
                "benchmark",
                "--data-dir",
                str(FIXTURE_DIR),
                "--severity-file",
                str(FIXTURE_SEVERITY),
                "--smoke",
                "--scale",
                "2",
                "--json",
                str(out),
                "--markdown",
                str(tmp_path / "RESULTS.md"),
            ]
        )
        == 0
    )
    results = json.loads(out.read_text())
    # The Markdown file: the date and the machine, then the same table the command prints.
    markdown = (tmp_path / "RESULTS.md").read_text()
    assert markdown.startswith(f"# Benchmark results\n\nMeasured on {results['date']} by `covid-seg benchmark`")
    assert f"on {results['machine']['cpus']} CPUs" in markdown and benchmark.format_table(results) in markdown
    # The naive build and the hand-written loader produce exactly our masks and arrays.
    assert results["build"]["masks_identical"] is True
    assert results["load"]["same_arrays"] is True
    assert results["stream"]["rows"] == 1
    assert results["stream"]["first_row_bytes"] > 0
    assert results["scale"]["copies"] == 2
    # The 256-px epoch (it needs torch) and the decode floor ran over every row of the fixture.
    with_torch = os.environ.get("COVID_SEG_REQUIRE_TORCH") == "1" or importlib.util.find_spec("torch") is not None
    if with_torch:
        assert results["epoch"]["rows"] == 3 and results["epoch"]["size_256_seconds"] > 0
    else:
        assert "epoch" not in results
    assert results["load"]["floor_seconds"] > 0 and results["load"]["floor_ratio"] > 0
    assert 0 < results["size"]["size_256_fraction"] < 1
    assert results["size"]["built_bytes"] + results["size"]["size_256_bytes"] == results["size"]["folder_bytes"]
    # evaluate, on the fixture's one test image and its two development images (cv): the
    # scoring that reads every column gives the same scores.
    assert {split: results["evaluate"][split]["images"] for split in ("test", "cv")} == {"test": 1, "cv": 2}
    assert all(results["evaluate"][split]["same_scores"] is True for split in ("test", "cv"))
    # --report under cv: its page's time against evaluate's, in the same run.
    report = results["evaluate"]["cv"]["report"]
    assert report["report_seconds"] > 0 and report["ratio"] == report["report_seconds"] / report["evaluate_seconds"]
    assert report["page_mb"] > 0 and "report" not in results["evaluate"]["test"]
    assert set(results["targets"]) == {
        "build_speedup",
        "load_speedup",
        "floor_ratio",
        *(["epoch_speedup"] if with_torch else []),
        "first_row_fraction",
        "size_ratio",
        "size_256_fraction",
        "scale_time_ratio",
        "scale_rss_ratio",
        "report_ratio",
    }
    table = capsys.readouterr().out
    assert "| build (s) |" in table and "targets: " in table and "machine: " in table
    if with_torch:
        assert "| one epoch, image + 14 masks as tensors at 256 x 256 (s) |" in table
    else:
        assert "| one epoch at 256 x 256 | not measured: torch is not installed |" in table
    assert "| evaluate `--split cv`, atlas predictions, 2 images (s) |" in table
    assert "| evaluate `--split cv` `--report`: the HTML page (s) |" in table


@pytest.mark.slow
def test_the_decode_floor_and_the_epoch_tasks_read_every_row(fixture_build):
    require_torch()
    assert tasks.task_load_floor(str(fixture_build))["rows"] == 3
    for variant in ("size_256", "default_resize"):
        assert tasks.task_epoch(str(fixture_build), variant)["rows"] == 3
    with pytest.raises(SystemExit, match="unknown variant nope"):
        tasks.task_epoch(str(fixture_build), "nope")


def test_replicate_makes_new_ids_names_and_patients(tmp_path):
    target = tmp_path / "x3"
    data.replicate(FIXTURE_DIR, target, 3)
    coco = json.loads((target / "annotation" / "results.json").read_text())
    original = json.loads((FIXTURE_DIR / "annotation" / "results.json").read_text())
    assert len(coco["images"]) == 3 * len(original["images"]) == 9
    assert len({i["id"] for i in coco["images"]}) == 9
    assert len({a["id"] for a in coco["annotations"]}) == 3 * len(original["annotations"])
    assert sorted(p.name for p in (target / "images").iterdir()) == sorted(i["file_name"] for i in coco["images"])
    rows = (target / "metadata.csv").read_text().splitlines()[1:]
    assert len({row.split(",")[0] for row in rows}) == 9  # patients differ between copies


@pytest.mark.slow
def test_the_naive_build_detects_a_different_mask(tmp_path):
    ours, naive = tmp_path / "ours", tmp_path / "naive"
    tasks.task_build_ours(str(FIXTURE_DIR), str(ours), str(FIXTURE_SEVERITY), True)
    tasks.task_build_naive(str(FIXTURE_DIR), str(naive), str(FIXTURE_SEVERITY))
    assert tasks.same_masks(ours, naive)
    # Damage one mask of ours: the comparison must notice.
    import pyarrow as pa
    import pyarrow.parquet as pq

    import covid_chestxray_seg as recipe

    path = next(p for p in layout.shard_paths(ours, "train") if pq.ParquetFile(p).metadata.num_rows)
    table = pq.read_table(path)
    rows = table.to_pylist()
    mask = recipe.decode_mask(rows[0]["mask_left_lung"])
    mask[0, 0] = not mask[0, 0]
    rows[0]["mask_left_lung"] = {"bytes": recipe.encode_mask_png(mask), "path": None}
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), path)
    assert not tasks.same_masks(ours, naive)


@pytest.mark.slow
def test_a_measured_task_runs_in_its_own_interpreter_from_the_clone():
    measured = benchmark.measure("upstream_bytes", data_dir=str(FIXTURE_DIR))
    files = [*(FIXTURE_DIR / "images").iterdir(), *(FIXTURE_DIR / "masks").iterdir()]
    files += [FIXTURE_DIR / "structure.csv", FIXTURE_DIR / "metadata.csv"]
    assert measured["bytes"] == sum(path.stat().st_size for path in files)
    assert measured["peak_rss_bytes"] > 0 and measured["seconds"] > 0
    assert benchmark.repository() == REPO


def test_a_failed_task_is_one_benchmark_error():
    with pytest.raises(benchmark.BenchmarkError, match=r"benchmark task upstream_bytes failed"):
        benchmark.measure("upstream_bytes", data_dir="/nonexistent/data")


@pytest.mark.parametrize(
    ("option", "problem"),
    [
        ("--data-dir", r"--data-dir \S*missing: no such folder"),
        ("--severity-file", r"--severity-file \S*missing: no such file"),
    ],
)
def test_a_missing_input_is_one_message_before_any_task(tmp_path, capsys, option, problem):
    args = {"--data-dir": str(FIXTURE_DIR), "--severity-file": str(FIXTURE_SEVERITY), option: str(tmp_path / "missing")}
    assert covid_seg(["benchmark", *(word for pair in args.items() for word in pair), "--smoke"]) == 1
    err = capsys.readouterr().err
    assert re.fullmatch(rf"error: {problem}; pass the upstream clone .* \(or the fixture's, with --smoke\)\n", err)


def test_a_task_that_refuses_its_input_is_its_one_message_without_a_traceback(data_copy):
    (data_copy / "annotation" / "results.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(benchmark.BenchmarkError) as raised:
        benchmark.measure(
            "build_ours",
            data_dir=str(data_copy),
            out=str(data_copy.parent / "out"),
            severity_file=str(FIXTURE_SEVERITY),
            allow_modified=True,
        )
    message = str(raised.value)
    assert message.startswith("benchmark task build_ours: ") and "results.json" in message
    assert "Traceback" not in message and len(message.splitlines()) == 1
    assert not (data_copy.parent / "out").exists()
