"""Scoring without a clone: the card's install line and commands, `--tools-url` in build and
publish, scoring against a repo on the (local) Hub reading only the mask columns, and the
built wheel installed in a fresh venv outside the repository."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

import covid_chestxray_seg as recipe
from covid_chestxray_seg_tools.card import render, repo
from covid_chestxray_seg_tools.cli import main as covid_seg
from covid_chestxray_seg_tools.hub_folder import layout
from tests.helpers import FIXTURE_ARGS, FIXTURE_TOOLS_URL, REPO, shifted, write_truth_folder

REPO_ID = "acme-lab/cxr-seg"
TOOLS_URL = "https://git.example.org/acme/cxr-tools"


def install_line(card: str) -> str:
    """The card's line that installs the command (the others install torch and monai)."""
    (line,) = re.findall(r'^pip install "covid-chestxray-seg @ git\+[^"]+"$', card, flags=re.M)
    return line


def evaluate_lines(card: str) -> list[str]:
    return re.findall(r"^covid-seg evaluate --source .*$", card, flags=re.M)


def test_the_card_says_how_to_install_the_command_and_score_against_the_hub(fixture_build):
    card = (fixture_build / layout.CARD_FILENAME).read_text(encoding="utf-8")
    assert "__TOOLS_URL__" not in card and "__REPO_ID__" not in card
    assert install_line(card) == f'pip install "covid-chestxray-seg @ git+{FIXTURE_TOOLS_URL}"'
    assert f"[`covid-seg`]({FIXTURE_TOOLS_URL})" in card
    lines = evaluate_lines(card)
    assert len(lines) >= 3 and all(
        line.startswith(f"covid-seg evaluate --source {render.DEFAULT_REPO_ID} ") for line in lines
    )
    assert any("--split cv" in line for line in lines) and any("--compare" in line for line in lines)
    protocol = card.split("## Evaluation protocol and baseline")[1].split("\n## ")[0]
    for fact in ("1 % of the image's diagonal", "no pixel\n  spacing", "clDice", "`missing:<mask column>`", "patients"):
        assert fact in protocol, fact


def test_publishing_rewrites_the_tools_url_and_the_sources(fixture_build):
    card = (fixture_build / layout.CARD_FILENAME).read_text(encoding="utf-8")
    published = repo.card_for_repo(card, REPO_ID, tools_url=TOOLS_URL)
    assert install_line(published) == f'pip install "covid-chestxray-seg @ git+{TOOLS_URL}"'
    assert f"[`covid-seg`]({TOOLS_URL})" in published and FIXTURE_TOOLS_URL not in published
    assert all(line.startswith(f"covid-seg evaluate --source {REPO_ID} ") for line in evaluate_lines(published))
    # Without a URL the card keeps the one it was built with; a longer URL that starts with it is not touched.
    kept = repo.card_for_repo(card + f"\nsee {FIXTURE_TOOLS_URL}-docs\n", REPO_ID)
    assert FIXTURE_TOOLS_URL in install_line(kept)
    again = repo.card_for_repo(kept, REPO_ID, tools_url=TOOLS_URL)
    assert f"see {FIXTURE_TOOLS_URL}-docs" in again and TOOLS_URL in install_line(again)
    with pytest.raises(ValueError, match=r"tools_url='not a url': not a repository URL pip installs from"):
        repo.card_for_repo(card, REPO_ID, tools_url="not a url")
    with pytest.raises(ValueError, match=r"tools_url: the card names no tools URL to replace"):
        repo.card_for_repo("# a card of an older build\n", REPO_ID, tools_url=TOOLS_URL)


def test_publish_writes_the_tools_url_given_into_the_card_on_the_hub(hub, token, fixture_build, capsys):
    args = ["publish", "--repo-id", REPO_ID, "--source", str(fixture_build), "--no-verify"]
    assert covid_seg([*args, "--tools-url", "ftp://example.org/x"]) == 1
    assert "error: --tools-url ftp://example.org/x: not a repository URL" in capsys.readouterr().err
    assert covid_seg([*args, "--tools-url", TOOLS_URL]) == 0
    card = hub.state.files(REPO_ID)[layout.CARD_FILENAME].decode("utf-8")
    assert install_line(card) == f'pip install "covid-chestxray-seg @ git+{TOOLS_URL}"'
    assert all(line.startswith(f"covid-seg evaluate --source {REPO_ID} ") for line in evaluate_lines(card))


@pytest.mark.slow
def test_build_writes_the_tools_url_into_the_card_and_refuses_a_bad_one(tmp_path, capsys):
    out = tmp_path / "out"
    args = ["build", *FIXTURE_ARGS, "--allow-modified", "--quiet", "--num-proc", "1", "--out", str(out)]
    assert covid_seg([*args, "--tools-url", "git@example.org:acme/x.git"]) == 1
    assert "error: --tools-url git@example.org:acme/x.git: not a repository URL" in capsys.readouterr().err
    assert not out.exists()
    assert covid_seg([*args, "--tools-url", TOOLS_URL, "--repo-id", REPO_ID]) == 0
    card = (out / layout.CARD_FILENAME).read_text(encoding="utf-8")
    assert install_line(card) == f'pip install "covid-chestxray-seg @ git+{TOOLS_URL}"'
    assert all(line.startswith(f"covid-seg evaluate --source {REPO_ID} ") for line in evaluate_lines(card))


def _parquet_bytes_sent(hub) -> int:
    return sum(r.sent for r in hub.state.log if "/resolve/" in r.path and r.path.endswith(".parquet"))


@pytest.mark.slow  # streaming imports torch where it is installed: seconds
def test_scoring_against_the_hub_reads_only_the_mask_columns(hub, token, fixture_build, tmp_path):
    assert covid_seg(["publish", "--repo-id", REPO_ID, "--source", str(fixture_build), "--no-verify"]) == 0
    truth = write_truth_folder(fixture_build, tmp_path / "truth", ["test"])
    report = tmp_path / "scores.json"
    before = _parquet_bytes_sent(hub)
    args = ["evaluate", "--source", REPO_ID, "--split", "test", "--predictions", str(truth), "--json", str(report)]
    assert covid_seg(args) == 0
    result = json.loads(report.read_text())
    assert result["counts"]["images"] == 1 and result["classes"]["Left Lung"]["dice"]["mean"] == 1.0
    # Fewer bytes than the image column alone holds: the images were not fetched (the footer and
    # the mask columns were, in two range requests per file).
    shards = layout.shard_paths(fixture_build, "test")
    images = sum(
        metadata.row_group(group).column(index).total_compressed_size
        for metadata in (pq.ParquetFile(path).metadata for path in shards)
        for group in range(metadata.num_row_groups)
        for index in range(metadata.num_columns)
        if metadata.row_group(group).column(index).path_in_schema.startswith("image.")
    )
    stored = sum(path.stat().st_size for path in shards)
    sent = _parquet_bytes_sent(hub) - before
    assert 0 < sent < images < stored and sent < 0.4 * stored, (sent, images, stored)


def _run(command: list, **options) -> subprocess.CompletedProcess:
    completed = subprocess.run(command, capture_output=True, text=True, check=False, **options)
    assert completed.returncode == 0, (
        f"{shlex.join(map(str, command))}\n{completed.stdout[-3000:]}\n{completed.stderr[-3000:]}"
    )
    return completed


@pytest.mark.slow
def test_the_installed_wheel_scores_against_the_hub_outside_the_repository(hub, token, fixture_build, tmp_path):
    # The tools' repository, as a git URL: this working tree's files (tracked and new, not ignored).
    listed = _run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=REPO).stdout
    tools = tmp_path / "tools"
    for name in filter(None, listed.split("\0")):
        if (REPO / name).is_file():
            (tools / name).parent.mkdir(parents=True, exist_ok=True)
            (tools / name).write_bytes((REPO / name).read_bytes())
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.org", "-c", "init.defaultBranch=main"]
    _run([*git, "init", "-q"], cwd=tools)
    _run([*git, "add", "-A"], cwd=tools)
    _run([*git, "commit", "-q", "-m", "tools"], cwd=tools)
    # With a host: pip < 24's requirement parser refuses git+file:/// (no host), git accepts localhost.
    tools_url = f"file://localhost{tools.as_posix()}"

    # Published with that URL, the card's install line is what pip builds the wheel from.
    assert (
        covid_seg(
            ["publish", "--repo-id", REPO_ID, "--source", str(fixture_build), "--no-verify", "--tools-url", tools_url]
        )
        == 0
    )
    card = hub.state.files(REPO_ID)[layout.CARD_FILENAME].decode("utf-8")
    requirement = shlex.split(install_line(card))[2]
    assert requirement == f"covid-chestxray-seg @ git+{tools_url}"
    wheels = tmp_path / "wheels"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), requirement], cwd=tmp_path)
    (wheel,) = wheels.glob("covid_chestxray_seg-*.whl")
    assert wheel.name.startswith(f"covid_chestxray_seg-{recipe.BUILDER_VERSION}-")
    names = zipfile.ZipFile(wheel).namelist()
    assert not [
        name
        for name in names
        if name.split("/")[0] in {"tests", "benchmarks", "scripts", "compat", "covid_chestxray_seg_dev"}
    ]
    for needed in (
        "covid_chestxray_seg.py",
        "covid_chestxray_seg_tools/card/template.md",
        "covid_chestxray_seg_tools/upstream-manifest.tsv",
        "covid_chestxray_seg_tools/evaluate/metrics.py",
        "covid_chestxray_seg_tools/cli/evaluate.py",
    ):
        assert needed in names, needed
    manifest = zipfile.ZipFile(wheel).read("covid_chestxray_seg_tools/upstream-manifest.tsv")
    assert manifest == (REPO / "upstream-manifest.tsv").read_bytes()
    entry_points = next(name for name in names if name.endswith(".dist-info/entry_points.txt"))
    assert "covid-seg = covid_chestxray_seg_tools.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()

    # A fresh venv outside the repository; dependencies from the package index.
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)])
    # --no-compile: byte-compiling every dependency costs time the test does not need (imports compile theirs).
    pip = [str(venv / "bin" / "pip"), "install", "-q", "--no-compile"]
    _run([*pip, "-c", str(REPO / "constraints.txt"), str(wheel)], cwd=tmp_path)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "HF_TOKEN")}
    env.update({"HF_HOME": str(tmp_path / "hf-home"), "HF_DATASETS_CACHE": str(tmp_path / "hf-home" / "datasets")})
    command = str(venv / "bin" / "covid-seg")
    found = _run(
        [str(venv / "bin" / "python"), "-c", "import covid_chestxray_seg_tools as t; print(t.__file__)"],
        cwd=outside,
        env=env,
    ).stdout
    assert Path(found.strip()).is_relative_to(venv)
    assert _run([command, "--version"], cwd=outside, env=env).stdout.startswith(f"covid-seg {recipe.BUILDER_VERSION}")

    # Predictions: the truth, with the left lung moved by (6, 8) px.
    moved = {}

    def move(image_id, column, mask):
        if column != "mask_left_lung":
            return mask
        moved[image_id] = (mask, shifted(mask, 6, 8))
        return moved[image_id][1]

    predictions = write_truth_folder(fixture_build, outside / "preds", ["test"], change=move)
    ((truth, prediction),) = moved.values()
    expected_dice = 2 * np.count_nonzero(truth & prediction) / (np.count_nonzero(truth) + np.count_nonzero(prediction))

    # The card's own command, with the predictions' folder.
    (line,) = [
        line for line in evaluate_lines(card) if "--split test --predictions PREDS" in line and "--compare" not in line
    ]
    arguments = shlex.split(line.split("#")[0])[1:]
    arguments[arguments.index("PREDS")] = str(predictions)
    scored = _run([command, *arguments, "--json", "scores.json", "--quiet"], cwd=outside, env=env)
    result = json.loads((outside / "scores.json").read_text())
    assert result["classes"]["Left Lung"]["dice"]["mean"] == pytest.approx(expected_dice) and 0.5 < expected_dice < 1
    assert all(entry["dice"]["mean"] in (1.0, None) for name, entry in result["classes"].items() if name != "Left Lung")
    assert "| Left Lung | 1 |" in scored.stdout
