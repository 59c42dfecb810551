"""covid-seg build: the Hub-ready folder, its card and infos, determinism, the CLI."""

from __future__ import annotations

import json
import re
from pathlib import Path

import datasets
import numpy as np
import pyarrow.parquet as pq
from huggingface_hub import DatasetCard

import covid_chestxray_seg as recipe
from covid_chestxray_seg_tools.card.stats import compute_stats
from covid_chestxray_seg_tools.cli import main as covid_seg
from covid_chestxray_seg_tools.hub_folder import layout, parquet, resize, viewer
from tests.helpers import FIXTURE_ARGS, FIXTURE_BUILD_OPTIONS, REPO


def parquet_files(folder: Path, split: str) -> list[Path]:
    return layout.shard_paths(folder, split)


def test_layout_and_shard_names(fixture_build):
    files = sorted(p.relative_to(fixture_build).as_posix() for p in fixture_build.rglob("*") if p.is_file())
    # One image per split in the fixture: one file each, named as the Hub expects.
    assert files == [
        "LICENSE.md",
        "README.md",
        "assets/legend.png",
        "assets/preview.png",
        "checksums.json",
        "data/licensed-256/test-00000-of-00001.parquet",
        "data/licensed-256/train-00000-of-00001.parquet",
        "data/licensed-256/validation-00000-of-00001.parquet",
        "data/licensed/test-00000-of-00001.parquet",
        "data/licensed/train-00000-of-00001.parquet",
        "data/licensed/validation-00000-of-00001.parquet",
        "dataset_infos.json",
    ]
    assert not list(fixture_build.parent.glob(".*partial*"))


def test_train_has_at_least_four_shards_when_rows_allow(tmp_path):
    out = tmp_path / "out"
    assert covid_seg(["build", *FIXTURE_ARGS, "--out", str(out), "--allow-modified", "--quiet", "--shards", "4"]) == 0
    # A split never gets more files than rows (none for a part without rows): empty Parquet
    # files would confuse streaming workers.
    assert [len(parquet_files(out, s)) for s in recipe.SPLITS] == [1, 1, 1]


def test_load_dataset_reads_the_folder_with_the_declared_features(fixture_build):
    loaded = datasets.load_dataset(str(fixture_build))
    assert list(loaded) == ["train", "validation", "test"]
    assert {split: len(ds) for split, ds in loaded.items()} == {"train": 1, "validation": 1, "test": 1}
    for ds in loaded.values():
        assert ds.features == recipe.features()
    row = loaded["test"][0]
    assert row["image"].size == (row["width"], row["height"])
    assert np.asarray(row["mask_left_lung"]).dtype == bool


def test_card_yaml_agrees_with_the_parquet_files(fixture_build):
    card = DatasetCard.load(fixture_build / "README.md")
    data = card.data.to_dict()
    assert data["task_categories"] == ["image-segmentation"]
    assert data["license"] == "other" and "cc-by-4.0" in data["license_name"]
    assert data["license_link"] == "LICENSE.md" and (fixture_build / "LICENSE.md").is_file()
    assert [c["config_name"] for c in data["configs"]] == ["default", "licensed", "size-256", "size-256-licensed"]
    assert data["configs"][0]["default"] is True and not any("default" in c for c in data["configs"][1:])
    # The fixture's three images all have a licence: the license-unknown parts have no file.
    for config in data["configs"]:
        part = "licensed-256" if config["config_name"] in layout.SIZE_256_CONFIGS else "licensed"
        assert {f["split"]: f["path"] for f in config["data_files"]} == {
            split: [f"data/{part}/{split}-*.parquet"] for split in recipe.SPLITS
        }
    infos = {info["config_name"]: info for info in data["dataset_info"]}
    assert set(infos) == {"default", "licensed", "size-256", "size-256-licensed"}
    for config, info in infos.items():
        features = resize.features() if config in layout.SIZE_256_CONFIGS else recipe.features()
        assert datasets.Features._from_yaml_list(info["features"]) == features
        for split in info["splits"]:
            rows = sum(
                pq.ParquetFile(path).metadata.num_rows
                for path in layout.shard_paths(fixture_build, split["name"], config=config)
            )
            assert split["num_examples"] == rows
        assert info["download_size"] == sum(p.stat().st_size for p in layout.shard_paths(fixture_build, config=config))


def test_dataset_infos_json_agrees_with_the_card(fixture_build):
    infos = json.loads((fixture_build / "dataset_infos.json").read_text())
    card = DatasetCard.load(fixture_build / "README.md").data.to_dict()["dataset_info"][0]
    info = datasets.DatasetInfo.from_dict(infos["default"])
    assert info.features == recipe.features()
    assert {name: split.num_examples for name, split in info.splits.items()} == {
        s["name"]: s["num_examples"] for s in card["splits"]
    }
    assert info.download_size == card["download_size"] and info.dataset_size == card["dataset_size"]
    assert info.download_checksums is None  # no local paths published


def test_card_tables_are_computed_from_the_parquet_files(fixture_build):
    text = (fixture_build / "README.md").read_text()
    stats = compute_stats(fixture_build)
    for split, row in stats["splits"].items():
        assert f"| {split} | {row['images']} | {row['patients']} | {row['annotations']} | {row['files']} |" in text
    assert "| 12 | Chest Tube | `mask_chest_tube` | 0 | 0 | 0 |" in text
    assert "| 10 | Monitoring Probes | `mask_monitoring_probes` | 1 | 1 | 1 |" in text
    assert "| CC BY | 2 |" in text and "| CC BY-SA | 1 |" in text
    assert "`Nosogastric Tube` -> `Nasogastric Tube`" in text
    assert "Files that differ: `metadata.csv`, `annotations/covid-severity-scores.csv`." in text
    assert "arXiv 2003.11597" in text and "Do not claim diagnostic performance" in text
    assert not re.search(r"<!-- BEGIN GENERATED: (\w+) -->\n<!-- END GENERATED: \1 -->", text)


def test_two_builds_are_byte_identical_whatever_the_process_count(tmp_path, fixture_build):
    other = tmp_path / "again"
    assert covid_seg(["build", *FIXTURE_ARGS, "--out", str(other), *FIXTURE_BUILD_OPTIONS, "--num-proc", "1"]) == 0
    first = {p.relative_to(fixture_build): p.read_bytes() for p in fixture_build.rglob("*") if p.is_file()}
    second = {p.relative_to(other): p.read_bytes() for p in other.rglob("*") if p.is_file()}
    assert first.keys() == second.keys()
    for name in first:
        assert first[name] == second[name], name


def test_row_groups_are_small(fixture_build):
    for path in fixture_build.rglob("*.parquet"):
        metadata = pq.ParquetFile(path).metadata
        for index in range(metadata.num_row_groups):
            group = metadata.row_group(index)
            assert group.num_rows <= parquet.DEFAULT_ROWS_PER_ROW_GROUP
            assert group.total_byte_size < viewer.ROWS_INDEX_MAX_ARROW_BYTES / 100
            # A page index in every column chunk: the viewer reads a few rows, not a whole group.
            assert all(group.column(column).has_offset_index for column in range(group.num_columns))


def test_rebuild_replaces_the_output_folder(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "stale.parquet").write_bytes(b"old")
    assert covid_seg(["build", *FIXTURE_ARGS, "--out", str(out), "--allow-modified", "--quiet"]) == 0
    assert not (out / "stale.parquet").exists()
    assert (out / "README.md").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".out.lock", "out"]


def test_help_lists_options_and_examples(capsys):
    assert covid_seg(["build", "--help"]) == 0
    text = capsys.readouterr().out
    for option in (
        "--data-dir",
        "--out",
        "--annotation-file",
        "--allow-modified",
        "--shards",
        "--num-proc",
        "--sync-repo",
    ):
        assert option in text
    assert "examples:" in text and "covid-seg build --data-dir" in text


def test_bad_option_values_are_refused(capsys):
    assert covid_seg(["build", *FIXTURE_ARGS, "--shards", "0"]) == 2
    assert "argument --shards: must be at least 1, got 0" in capsys.readouterr().err


def test_summary_names_counts_and_flags(tmp_path, capsys):
    assert covid_seg(["build", *FIXTURE_ARGS, "--out", str(tmp_path / "o"), "--allow-modified", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "images 3, patients 3, annotations 20" in out
    assert "1 annotations without segmentation" in out
    assert "Chest Tube 0" in out
    assert "images, metadata and severity files that differ from the manifest 2" in out
    assert "quality flags: 0 images" in out


def test_template_without_a_generated_block_is_refused(tmp_path, capsys):
    template = tmp_path / "README.md"
    template.write_text(
        "# card\n<!-- BEGIN GENERATED: summary -->\n<!-- END GENERATED: summary -->\n"
        "<!-- BEGIN GENERATED: preview -->\n<!-- END GENERATED: preview -->\n"
    )
    code = covid_seg(
        [
            "build",
            *FIXTURE_ARGS,
            "--out",
            str(tmp_path / "o"),
            "--allow-modified",
            "--quiet",
            "--template",
            str(template),
        ]
    )
    assert code == 1
    assert re.search(
        r"README\.md: generated block 'classes': template lacks <!-- BEGIN GENERATED: classes -->",
        capsys.readouterr().err,
    )
    assert not (tmp_path / "o").exists()


def _bash(text: str, heading: str) -> list[str]:
    section = text.split(heading)[1].split("\n## ")[0]
    return re.findall(r"```bash\n(.+?)\n```", section, flags=re.S)


def test_ci_runs_the_readme_commands():
    """The README promises two commands for a fresh machine (set up with the download, test) and
    the same set-up offline; docs/development.md the datasets 3.x and FiftyOne checks. CI runs the
    offline set-up, the tests and the checks, in that order."""
    readme = (REPO / "README.md").read_text()
    online, tests, torch = _bash(readme, "## Two commands")
    (offline,) = _bash(readme, "## Offline copies of both sources")
    (integrations,) = _bash((REPO / "docs" / "development.md").read_text(), "## CI")
    lines = integrations.splitlines()
    installs, checks = lines[0::2], lines[1::2]
    assert tests == ".venv/bin/python -m pytest"
    assert [check.split()[-1] for check in checks] == ["compat/datasets3", "compat/fiftyone", "compat/nnunet"]
    # The offline set-up is the online one with local copies of both sources.
    local = re.sub(r" --(data-dir|severity-file) \S+", "", offline)
    assert local == online and "--data-dir ../shared/data/" in offline and "--severity-file ../shared/data/" in offline
    ci_text = (REPO / ".ci" / "run").read_text()
    ci = ci_text.splitlines()
    ran = [offline, tests, *checks]
    assert all(command in ci for command in ran), [c for c in ran if c not in ci]
    assert [ci.index(command) for command in ran] == sorted(ci.index(command) for command in ran)
    # CI installs each venv as the docs say (in the background, while the main suite runs).
    for install in installs:
        venv, pip = install.split(" && ")
        assert venv in ci_text and pip in ci_text, install
    # The CPU torch line, stated once in the README and once in the card, with the version pinned.
    line = "torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu"
    assert line in torch and line in (REPO / "covid_chestxray_seg_tools" / "card" / "template.md").read_text()
    assert "torch==2.13.0\n" in (REPO / "constraints.txt").read_text() and readme.count(line) == 1
