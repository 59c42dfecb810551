"""Shared test set-up: an isolated Hugging Face home, the fixture and real data, builds reused per session."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from hub_server import VALID_TOKEN, HubServer, use_local_hub  # noqa: E402

# Before datasets / huggingface_hub are imported: a private cache, and the local Hub on
# 127.0.0.1 as the endpoint, so no test can reach the real Hub.
HUB = HubServer().start()
_HF_HOME = use_local_hub(HUB)

import csv  # noqa: E402

from typing import Optional  # noqa: E402

import numpy as np  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

import covid_chestxray_seg as recipe  # noqa: E402
from scripts import build  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
FIXTURE_DIR = REPO / "tests" / "fixtures" / "data"
# dataset-viewer's PARQUET_AND_INFO_MAX_ROW_GROUP_BYTE_SIZE_FOR_COPY: larger row groups are
# not served as they are.
VIEWER_ROW_GROUP_BYTES = 100_000_000
SHARED_DIR = REPO.parent / "shared" / "data" / "covid-19-chest-xray-segmentations-dataset"


def pytest_sessionfinish(session, exitstatus):
    HUB.stop()
    shutil.rmtree(_HF_HOME, ignore_errors=True)


@pytest.fixture
def hub():
    """The local Hub, emptied for each test."""
    HUB.state.reset()
    yield HUB
    HUB.state.reset()


@pytest.fixture
def token(monkeypatch) -> str:
    monkeypatch.setenv("HF_TOKEN", VALID_TOKEN)
    return VALID_TOKEN


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


def mask_to_runs(mask: np.ndarray) -> list[int]:
    """COCO's uncompressed RLE of a mask: run lengths in column-major order, starting with zeros."""
    flat = mask.ravel(order="F").astype(np.int8)
    changes = np.flatnonzero(np.diff(flat)) + 1
    runs = np.diff(np.concatenate([[0], changes, [flat.size]])).tolist()
    return runs if flat[0] == 0 else [0] + runs


def parquet_rows(folder: Path, split: Optional[str] = None, columns: Optional[list] = None) -> list[dict]:
    """The raw rows of a built folder (image and mask bytes undecoded), one split or all."""
    pattern = f"{split}-*.parquet" if split else "*.parquet"
    return [row for path in sorted((folder / "data" / "default").glob(pattern)) for row in pq.read_table(path, columns=columns).to_pylist()]


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
    assert build.main(["--data-dir", str(SHARED_DIR), "--out", str(out), "--quiet", "--num-proc", "2", "--validate"]) == 0
    return out


@pytest.fixture
def data_copy(tmp_path) -> Path:
    """A writable copy of the fixture, for tests that damage it."""
    target = tmp_path / "data"
    shutil.copytree(FIXTURE_DIR, target)
    return target


def require_torch():
    """torch, or a skip where it is not installed. CI installs it and sets
    COVID_SEG_REQUIRE_TORCH=1, so there a missing torch fails instead of skipping."""
    if os.environ.get("COVID_SEG_REQUIRE_TORCH") == "1":
        import torch

        return torch
    return pytest.importorskip("torch", reason="torch is not installed (CI installs torch==2.13.0)")
