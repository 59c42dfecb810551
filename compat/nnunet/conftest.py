"""Set-up for the nnU-Net checks, run in their own venv (compat/nnunet/requirements.txt): the
fixture built here, the build the main venv made, and nnU-Net's three folders in a temporary
place for each export."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

# The plugin points datasets and huggingface_hub at the local Hub before they are imported:
# nothing here may reach the network.
pytest_plugins = ("covid_chestxray_seg_dev.hub.plugin",)

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="session")
def fixture_build(tmp_path_factory) -> Path:
    """The Hub-ready folder built from the small real fixture (3 images)."""
    from covid_chestxray_seg_tools.cli import main as covid_seg
    from tests.helpers import FIXTURE_ARGS

    out = tmp_path_factory.mktemp("fixture-build") / "out"
    assert covid_seg(["build", *FIXTURE_ARGS, "--out", str(out), "--allow-modified", "--quiet", "--num-proc", "1"]) == 0
    return out


@pytest.fixture(scope="session")
def real_build() -> Path:
    """The Parquet folder the main venv built from the full data (the README's set-up command)."""
    from tests.helpers import main_venv_build

    return main_venv_build()


class NnUNet:
    """nnU-Net's raw, preprocessed and results folders, and its commands run with them."""

    def __init__(self, root: Path):
        self.raw, self.preprocessed, self.results = root / "raw", root / "preprocessed", root / "results"
        self.env = {
            **os.environ,
            "nnUNet_raw": str(self.raw),
            "nnUNet_preprocessed": str(self.preprocessed),
            "nnUNet_results": str(self.results),
            # nnU-Net's default is 8 worker processes for verification and export: 2 cores here.
            "nnUNet_def_n_proc": "1",
        }

    def run(self, *command: str) -> subprocess.CompletedProcess:
        """An nnU-Net command (or this venv's python) with these folders, its output captured."""
        program = Path(sys.executable).parent / command[0] if not command[0].endswith(".py") else None
        words = [str(program), *command[1:]] if program else [sys.executable, str(HERE / command[0]), *command[1:]]
        return subprocess.run(words, env=self.env, capture_output=True, text=True, check=False)


@pytest.fixture(scope="session")
def nnunet_folders(tmp_path_factory):
    """A new set of nnU-Net folders per call."""

    def make(name: str) -> NnUNet:
        return NnUNet(tmp_path_factory.mktemp(name))

    return make
