"""A damaged or incomplete source (a built folder, a Hub repo) is named before anything is read
from it: a shard deleted, truncated, replaced or added, rows that differ from the declared split
sizes; for every subcommand that takes --source; and publishing again repairs a Hub copy."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from covid_chestxray_seg_tools.cli import main as covid_seg
from covid_chestxray_seg_tools.hub_folder import checksums, layout
from covid_chestxray_seg_tools.source import SourceError, open_source
from tests.helpers import tree, write_truth_folder

REPO_ID = "org/covid-chestxray-seg"
TEST_SHARD = "data/licensed/test-00000-of-00001.parquet"
TRAIN_SHARD = "data/licensed/train-00000-of-00001.parquet"


@pytest.fixture
def build_copy(fixture_build, tmp_path) -> Path:
    target = tmp_path / "build"
    shutil.copytree(fixture_build, target)
    return target


@pytest.fixture(scope="module")
def predictions(fixture_build, tmp_path_factory) -> Path:
    """The truth of the fixture's test split as predictions."""
    return write_truth_folder(fixture_build, tmp_path_factory.mktemp("damaged") / "truth", ["test"])


def _subcommands(source: str, tmp_path: Path, predictions: Path) -> dict[str, list[str]]:
    """Every subcommand that reads --source, each writing where it may."""
    return {
        "evaluate": ["evaluate", "--source", source, "--split", "test", "--predictions", str(predictions)],
        "export": ["export", "--source", source, "--format", "folder", "--out", str(tmp_path / "exported")],
        "baseline": ["baseline", "atlas", "--source", source, "--split", "test", "--out", str(tmp_path / "atlas")],
    }


def _refused(capsys, args: list[str], message: str) -> None:
    assert covid_seg(args) == 1, args
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and re.search(message, err), err


def _delete(folder: Path) -> None:
    (folder / TEST_SHARD).unlink()


def _truncate(folder: Path) -> None:
    path = folder / TEST_SHARD
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _replace(folder: Path) -> None:
    # Another valid Parquet file of the build in its place.
    shutil.copyfile(folder / TRAIN_SHARD, folder / TEST_SHARD)


def _flip(folder: Path) -> None:
    path = folder / TEST_SHARD
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def _add(folder: Path) -> None:
    # A second file the config's pattern data/licensed/test-*.parquet reads: its rows twice.
    shutil.copyfile(folder / TEST_SHARD, folder / "data/licensed/test-00001-of-00001.parquet")


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (_delete, r"is missing \(the build's checksums\.json lists it, [\d,]+ bytes\)"),
        (_truncate, r"differs from the build's checksums\.json: [\d,]+ bytes, expected [\d,]+"),
        (_replace, r"differs from the build's checksums\.json: [\d,]+ bytes, expected [\d,]+"),
        (_flip, r"differs from the build's checksums\.json: the same size, other content"),
        (_add, r"is not in the build's checksums\.json \(a file the build did not write, which a config would read\)"),
    ],
)
def test_a_damaged_folder_is_named_by_every_subcommand(build_copy, predictions, tmp_path, capsys, damage, problem):
    damage(build_copy)
    shard = TEST_SHARD if damage is not _add else "data/licensed/test-00001-of-00001.parquet"
    message = (
        rf"^error: {re.escape(str(build_copy))}: split test: {re.escape(shard)} {problem}; "
        r"this build is damaged or incomplete: build it again$"
    )
    for args in _subcommands(str(build_copy), tmp_path, predictions).values():
        _refused(capsys, args, message)
    assert not (tmp_path / "exported").exists() and not (tmp_path / "atlas").exists()
    # The same from Python, and publishing it is refused too.
    with pytest.raises(SourceError, match=re.escape(shard)):
        open_source(str(build_copy))
    _refused(
        capsys,
        ["publish", "--source", str(build_copy), "--repo-id", REPO_ID, "--dry-run"],
        rf"{re.escape(shard)} .*: the build is damaged or incomplete and is not published; build it again",
    )


def test_rows_that_differ_from_the_declared_split_sizes_are_named(build_copy, predictions, tmp_path, capsys):
    """A manifest written again after a shard went (what a careless copy script might do): the
    files agree with it, the rows do not agree with dataset_infos.json."""
    _delete(build_copy)
    checksums.write(build_copy)
    message = (
        rf"{re.escape(str(build_copy))}: split test \(config default\): 0 rows, but its dataset_infos\.json "
        r"declares 1; this build is damaged or incomplete: build it again"
    )
    for args in _subcommands(str(build_copy), tmp_path, predictions).values():
        _refused(capsys, args, message)


def test_a_folder_without_its_manifest_or_infos_is_named(build_copy, predictions, tmp_path, capsys):
    (build_copy / layout.CHECKSUMS_FILENAME).unlink()
    args = _subcommands(str(build_copy), tmp_path, predictions)["evaluate"]
    _refused(capsys, args, r"no checksums\.json: not a complete build of this version; this build is damaged")
    (build_copy / layout.INFOS_FILENAME).unlink()
    _refused(capsys, args, r"no dataset_infos\.json: not a covid-chestxray-seg build")
    _refused(capsys, [*args, "--revision", "v1"], r"--revision v1: .* is a folder; a revision names a commit")


def test_a_damaged_hub_copy_is_named_and_publishing_again_repairs_it(
    hub, token, fixture_build, predictions, tmp_path, capsys
):
    assert covid_seg(["publish", "--source", str(fixture_build), "--repo-id", REPO_ID, "--quiet"]) == 0
    capsys.readouterr()
    published = hub.state.commits(REPO_ID)[-1].oid
    scores = tmp_path / "scores.json"
    evaluate = _subcommands(REPO_ID, tmp_path, predictions)["evaluate"]
    assert covid_seg([*evaluate, "--json", str(scores)]) == 0
    intact = json.loads(scores.read_text())
    capsys.readouterr()

    # Someone uploads half of the test shard: named from the Hub's tree, nothing downloaded.
    half = hub.state.files(REPO_ID)[TEST_SHARD]
    damaged = hub.state.commit_directly(REPO_ID, {TEST_SHARD: half[: len(half) // 2]})
    where = rf"{re.escape(REPO_ID)}@main \(commit {damaged[:12]}\)"
    fix = r"this copy is damaged or incomplete: publish the build again, or read an intact revision \(--revision\)"
    downloads = len(hub.state.requests("GET", re.escape(TEST_SHARD)))
    for args in _subcommands(REPO_ID, tmp_path, predictions).values():
        _refused(
            capsys,
            args,
            rf"^error: {where}: split test: {re.escape(TEST_SHARD)} differs from the build's "
            rf"checksums\.json: [\d,]+ bytes, expected [\d,]+; {fix}$",
        )
    assert len(hub.state.requests("GET", re.escape(TEST_SHARD))) == downloads
    # The intact commit still scores, by --revision.
    assert covid_seg([*evaluate, "--revision", published, "--json", str(scores)]) == 0
    assert json.loads(scores.read_text()) == intact
    capsys.readouterr()

    # The shard deleted: named, instead of a smaller test split scored as if it were whole.
    deleted = hub.state.commit_directly(REPO_ID, {}, delete=(TEST_SHARD,))
    _refused(
        capsys,
        evaluate,
        rf"{re.escape(REPO_ID)}@main \(commit {deleted[:12]}\): split test: {re.escape(TEST_SHARD)} is missing",
    )
    _refused(capsys, [*evaluate, "--revision", "nope"], rf"--revision nope: {re.escape(REPO_ID)} has no such branch")

    # Publishing the build again repairs the copy: every file byte-equal, the same scores.
    assert covid_seg(["publish", "--source", str(fixture_build), "--repo-id", REPO_ID, "--quiet"]) == 0
    remote = hub.state.files(REPO_ID)
    # The card names the repo (publish rewrites it); .gitattributes is the Hub's own.
    assert {name: remote[name] for name in tree(fixture_build) if name != layout.CARD_FILENAME} == {
        name: data for name, data in tree(fixture_build).items() if name != layout.CARD_FILENAME
    }
    assert set(remote) == {*tree(fixture_build), ".gitattributes"}
    capsys.readouterr()
    assert covid_seg([*evaluate, "--json", str(scores)]) == 0
    assert json.loads(scores.read_text()) == intact
