"""Set-up for the datasets 3.x checks, run in their own venv (compat/datasets3/requirements.txt):
an isolated Hugging Face home and the local Hub from tests/hub_server.py as the endpoint."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))

from hub_server import HubServer  # noqa: E402

# Before datasets / huggingface_hub are imported: they read these once.
_HF_HOME = tempfile.mkdtemp(prefix="covid-chestxray-seg-datasets3-hf-")
HUB = HubServer().start()
os.environ.update(
    {
        "HF_HOME": _HF_HOME,
        "HF_DATASETS_CACHE": str(Path(_HF_HOME) / "datasets"),
        "HF_ENDPOINT": HUB.url,
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_IMPLICIT_TOKEN": "1",
    }
)
for _name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
    os.environ.pop(_name, None)

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
