"""Set-up for the datasets 3.x checks, run in their own venv (compat/datasets3/requirements.txt):
the same local-Hub plugin as the main suite, and the build the main venv made."""

from __future__ import annotations

from pathlib import Path

import pytest

# The plugin points datasets at the local Hub before it is imported: nothing of the project
# (the builder imports datasets) is imported here at module level.
pytest_plugins = ("covid_chestxray_seg_dev.hub.plugin",)


@pytest.fixture(scope="session")
def built() -> Path:
    """The Parquet folder the main venv built from the full data (the README's set-up command)."""
    from tests.helpers import REPO, SHARED_DIR

    built_folder = REPO / "build"
    if not (built_folder / "dataset_infos.json").is_file() or not SHARED_DIR.is_dir():
        pytest.fail(
            f"needs the full data at {SHARED_DIR} and its build at {built_folder}: run the README's set-up command "
            "(scripts/build.py --data-dir ... --out build) in the main venv first"
        )
    return built_folder
