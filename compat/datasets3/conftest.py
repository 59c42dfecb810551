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
    from tests.helpers import main_venv_build

    return main_venv_build()
