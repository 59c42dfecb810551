"""Set-up for the datasets 3.x checks, run in their own venv (compat/datasets3/requirements.txt):
an isolated Hugging Face home and the local Hub from tests/hub_server.py as the endpoint."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))

from hub_server import HubServer, use_local_hub  # noqa: E402

# Before datasets / huggingface_hub are imported: they read these once.
HUB = HubServer().start()
_HF_HOME = use_local_hub(HUB)

import pytest  # noqa: E402

SHARED_DIR = REPO.parent / "shared" / "data" / "covid-19-chest-xray-segmentations-dataset"
BUILT = REPO / "build"


def pytest_sessionfinish(session, exitstatus):
    HUB.stop()
    shutil.rmtree(_HF_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def built() -> Path:
    """The Parquet folder the main venv built from the full data (the README's set-up command)."""
    if not (BUILT / "dataset_infos.json").is_file() or not SHARED_DIR.is_dir():
        pytest.fail(
            f"needs the full data at {SHARED_DIR} and its build at {BUILT}: run the README's set-up command "
            "(scripts/build.py --data-dir ... --out build) in the main venv first"
        )
    return BUILT


@pytest.fixture
def hub():
    HUB.state.reset()
    yield HUB
    HUB.state.reset()
