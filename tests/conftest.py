"""Fixtures: the local Hub (a plugin shared with compat/datasets3), the fixture and real data
built once per session, a writable copy of the fixture.

Nothing here imports the project at module level (the builder imports `datasets`): the
plugin must point `datasets` and `huggingface_hub` at the local Hub before they are first
imported, and pytest loads it only after this module has run.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest_plugins = ("covid_chestxray_seg_dev.hub.plugin",)


# Fixtures that make a test slow wherever it uses them: the full data, built once per session.
SLOW_FIXTURES = ("real_build", "shared_data")


def pytest_collection_modifyitems(config, items):
    """`pytest -m "not slow"` is the loop to run while working: a test on the full data is slow
    whether or not it says so."""
    for item in items:
        if any(name in getattr(item, "fixturenames", ()) for name in SLOW_FIXTURES):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def fixture_build(tmp_path_factory) -> Path:
    """The Hub-ready folder built from the small real fixture (metadata.csv is cut down, so not
    upstream), complete as a release is: checked against upstream's crops, the baselines in its
    card, the tools' repository named (publish refuses a card with holes)."""
    from covid_chestxray_seg_tools.cli import main as covid_seg
    from tests.helpers import FIXTURE_ARGS, FIXTURE_BUILD_OPTIONS

    out = tmp_path_factory.mktemp("fixture-build") / "out"
    assert covid_seg(["build", *FIXTURE_ARGS, "--out", str(out), *FIXTURE_BUILD_OPTIONS, "--num-proc", "2"]) == 0
    return out


@pytest.fixture(scope="session")
def fixture_truth(fixture_build, tmp_path_factory) -> Path:
    """The folder export of the fixture's test split (one image, 83): the truth as predictions."""
    from covid_chestxray_seg_tools.cli import main as covid_seg

    out = tmp_path_factory.mktemp("evaluate-fixture") / "truth"
    assert (
        covid_seg(
            ["export", "--source", str(fixture_build), "--format", "folder", "--out", str(out), "--split", "test"]
        )
        == 0
    )
    return out


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The full upstream data (present in CI), read-only."""
    from tests.helpers import SHARED_DIR

    if not SHARED_DIR.is_dir():
        pytest.skip(f"the full data is not at {SHARED_DIR}")
    return SHARED_DIR


@pytest.fixture(scope="session")
def real_build(tmp_path_factory) -> Path:
    """The Hub-ready folder built from the full upstream data (present in CI), read-only.

    Where COVID_SEG_REAL_BUILD names a build of it with the same options (CI's, made by the
    README's set-up command moments before), that one, checked intact; otherwise built once per
    session for every xdist worker by the installed command in a process of its own: built in
    this one, it left half a GB that every forked DataLoader worker of a later test counted again."""
    from covid_chestxray_seg_tools.source import open_source
    from tests.helpers import REAL_BUILD_OPTIONS, REAL_BUILD_VARIABLE, REPO, SHARED_ARGS, SHARED_DIR, once_per_session

    if not SHARED_DIR.is_dir():
        pytest.skip(f"the full data is not at {SHARED_DIR}")
    if os.environ.get(REAL_BUILD_VARIABLE):
        built = (REPO / os.environ[REAL_BUILD_VARIABLE]).resolve()
        open_source(str(built))  # every data file as the build wrote it, every split whole
        return built

    def make(out: Path) -> None:
        command = [sys.executable, "-m", "covid_chestxray_seg_tools", "build", *SHARED_ARGS, "--out", str(out)]
        options = [*REAL_BUILD_OPTIONS, "--num-proc", "2"]
        built = subprocess.run([*command, *options], capture_output=True, text=True, check=False)
        assert built.returncode == 0, built.stderr

    return once_per_session(tmp_path_factory, "real-build", make)


@pytest.fixture(scope="session")
def real_atlas_cv(real_build, tmp_path_factory) -> Path:
    """The atlas's out-of-fold predictions of the real build (`predictions/`), scored by
    `covid-seg evaluate --split cv` with its report (`report.html`, `scores.json`):
    the primary measure's reference, read by several test files, computed once per session."""
    from covid_chestxray_seg_tools.cli import main as covid_seg
    from tests.helpers import once_per_session

    def make(folder: Path) -> None:
        predictions = folder / "predictions"
        atlas = ["baseline", "atlas", "--source", str(real_build), "--split", "cv", "--out", str(predictions)]
        assert covid_seg([*atlas, "--quiet"]) == 0
        scored = ["evaluate", "--source", str(real_build), "--split", "cv", "--predictions", str(predictions)]
        report = ["--report", str(folder / "report.html"), "--json", str(folder / "scores.json"), "--quiet"]
        assert covid_seg([*scored, *report]) == 0

    return once_per_session(tmp_path_factory, "real-atlas-cv", make)


@pytest.fixture(scope="session")
def real_truth_cv(real_build, tmp_path_factory) -> Path:
    """The real build's ground truth of train + validation as predictions (`truth/`), scored by
    `covid-seg evaluate --split cv` (`output.txt`, `report.html`, `scores.json`): every score 1,
    read by several test files, computed once per session."""
    from covid_chestxray_seg_tools.cli import main as covid_seg
    from tests.helpers import once_per_session, write_truth_folder

    def make(folder: Path) -> None:
        truth = write_truth_folder(real_build, folder / "truth", ["train", "validation"])
        scored = ["evaluate", "--source", str(real_build), "--split", "cv", "--predictions", str(truth)]
        report = ["--report", str(folder / "report.html"), "--json", str(folder / "scores.json")]
        with io.StringIO() as output:
            with contextlib.redirect_stdout(output):
                assert covid_seg([*scored, *report]) == 0
            (folder / "output.txt").write_text(output.getvalue(), encoding="utf-8")

    return once_per_session(tmp_path_factory, "real-truth-cv", make)


@pytest.fixture(scope="session")
def real_atlas_scores(real_build, tmp_path_factory) -> dict:
    """`score_atlas` of the real build on the test split and under cross-validation, in memory
    (as the build computes the card's tables), JSON as `covid-seg evaluate --json` writes it."""
    from covid_chestxray_seg_tools.baselines.atlas import score_atlas
    from tests.helpers import once_per_session

    def make(folder: Path) -> None:
        folder.mkdir()
        scores = {split: score_atlas(real_build, split=split) for split in ("test", "cv")}
        (folder / "scores.json").write_text(json.dumps(scores))

    return json.loads((once_per_session(tmp_path_factory, "real-atlas-scores", make) / "scores.json").read_text())


@pytest.fixture
def data_copy(tmp_path) -> Path:
    """A writable copy of the fixture, for tests that damage it."""
    from tests.helpers import FIXTURE_DIR

    target = tmp_path / "data"
    shutil.copytree(FIXTURE_DIR, target)
    return target


@pytest.fixture(scope="module")
def big_data(tmp_path_factory) -> Path:
    """The fixture four times over (12 images, new ids and patients): every split has several
    records, so the build runs them in a pool of worker processes (--num-proc 2)."""
    from benchmarks import data
    from tests.helpers import FIXTURE_DIR

    target = tmp_path_factory.mktemp("fixture-x4") / "data"
    data.replicate(FIXTURE_DIR, target, 4)
    return target
