"""Shared test set-up: an isolated Hugging Face home, the fixture and real data, builds reused per session."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

# Before datasets / huggingface_hub are imported: never touch the user's cache or the network.
_HF_HOME = tempfile.mkdtemp(prefix="covid-chestxray-seg-tests-hf-")
os.environ["HF_HOME"] = _HF_HOME
os.environ["HF_DATASETS_CACHE"] = str(Path(_HF_HOME) / "datasets")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"

import csv  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

import covid_chestxray_seg as recipe  # noqa: E402
from scripts import build  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
FIXTURE_DIR = REPO / "tests" / "fixtures" / "data"
SHARED_DIR = REPO.parent / "shared" / "data" / "covid-19-chest-xray-segmentations-dataset"


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_HF_HOME, ignore_errors=True)


def crop_masks(data_dir: Path) -> dict[tuple[str, str], np.ndarray]:
    """Upstream's own masks, independent of the COCO file: each crop from masks/ placed at
    (Left, Top) of a full-size canvas, non-black pixels set; merged per (image, class)."""
    masks: dict[tuple[str, str], np.ndarray] = {}
    with open(data_dir / "structure.csv", newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if not row["Mask"]:
                continue
            width, height = (int(v) for v in row["Resolution"].split("x"))
            name = recipe.UPSTREAM_CLASS_ALIASES.get(row["Template Name"], row["Template Name"])
            key = (row["Filename"], name)
            canvas = masks.setdefault(key, np.zeros((height, width), dtype=bool))
            crop = np.asarray(Image.open(data_dir / row["Mask"]).convert("RGBA"))[..., :3].any(axis=2)
            top, left = int(row["Top"]), int(row["Left"])
            assert crop.shape == (int(row["Height"]), int(row["Width"])), row["Mask"]
            canvas[top : top + crop.shape[0], left : left + crop.shape[1]] |= crop
    return masks


def structure_rows(data_dir: Path) -> list[dict]:
    with open(data_dir / "structure.csv", newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="session")
def fixture_build(tmp_path_factory) -> Path:
    """The Hub-ready folder built from the small real fixture (metadata.csv is cut down, so not upstream)."""
    out = tmp_path_factory.mktemp("fixture-build") / "out"
    assert build.main(["--data-dir", str(FIXTURE_DIR), "--out", str(out), "--allow-modified", "--quiet", "--num-proc", "2"]) == 0
    return out


@pytest.fixture(scope="session")
def real_build(tmp_path_factory) -> Path:
    """The Hub-ready folder built from the full upstream data (present in CI)."""
    if not SHARED_DIR.is_dir():
        pytest.skip(f"the full data is not at {SHARED_DIR}")
    out = tmp_path_factory.mktemp("real-build") / "out"
    assert build.main(["--data-dir", str(SHARED_DIR), "--out", str(out), "--quiet", "--num-proc", "2"]) == 0
    return out


@pytest.fixture
def data_copy(tmp_path) -> Path:
    """A writable copy of the fixture, for tests that damage it."""
    target = tmp_path / "data"
    shutil.copytree(FIXTURE_DIR, target)
    return target
