"""Fixtures: the local Hub (a plugin shared with compat/datasets3), the fixture and real data
built once per session, a writable copy of the fixture.

Nothing here imports the project at module level (the builder imports `datasets`): the
plugin must point `datasets` and `huggingface_hub` at the local Hub before they are first
imported, and pytest loads it only after this module has run.
"""

from __future__ import annotations

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
    README's set-up command moments before), that one, checked intact; otherwise built by the
    installed command in a process of its own: built in this one, it left half a GB that every
    forked DataLoader worker of a later test counted again."""
    from covid_chestxray_seg_tools.source import open_source
    from tests.helpers import REAL_BUILD_OPTIONS, REAL_BUILD_VARIABLE, REPO, SHARED_ARGS, SHARED_DIR

    if not SHARED_DIR.is_dir():
        pytest.skip(f"the full data is not at {SHARED_DIR}")
    if os.environ.get(REAL_BUILD_VARIABLE):
        built = (REPO / os.environ[REAL_BUILD_VARIABLE]).resolve()
        open_source(str(built))  # every data file as the build wrote it, every split whole
        return built

    out = tmp_path_factory.mktemp("real-build") / "out"
    command = [sys.executable, "-m", "covid_chestxray_seg_tools", "build", *SHARED_ARGS, "--out", str(out)]
    options = [*REAL_BUILD_OPTIONS, "--num-proc", "2"]
    built = subprocess.run([*command, *options], capture_output=True, text=True, check=False)
    assert built.returncode == 0, built.stderr
    return out


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
