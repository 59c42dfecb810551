"""Helpers shared by the test modules: paths of the fixture and the real data, readers of
built folders and of upstream's crops, the torch switch."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from covid_chestxray_seg_tools import crops, layout

REPO = Path(__file__).resolve().parent.parent
FIXTURE_DIR = REPO / "tests" / "fixtures" / "data"
SHARED_DIR = REPO.parent / "shared" / "data" / "covid-19-chest-xray-segmentations-dataset"
# dataset-viewer's PARQUET_AND_INFO_MAX_ROW_GROUP_BYTE_SIZE_FOR_COPY: larger row groups are
# not served as they are.
VIEWER_ROW_GROUP_BYTES = 100_000_000


def crop_masks(data_dir: Path) -> dict[tuple[str, str], np.ndarray]:
    """Upstream's own masks, independent of the COCO file: (image, class) -> the class's crops
    placed at (Left, Top) of a full-size canvas, for every class that has crops."""
    return {
        (file_name, name): mask
        for file_name, _, masks in crops.image_masks(data_dir)
        for name, mask in masks.items()
        if mask is not None
    }


def structure_rows(data_dir: Path) -> list[dict]:
    return crops.structure_rows(data_dir)


def mask_to_runs(mask: np.ndarray) -> list[int]:
    """COCO's uncompressed RLE of a mask: run lengths in column-major order, starting with zeros."""
    flat = mask.ravel(order="F").astype(np.int8)
    changes = np.flatnonzero(np.diff(flat)) + 1
    runs = np.diff(np.concatenate([[0], changes, [flat.size]])).tolist()
    return runs if flat[0] == 0 else [0] + runs


def parquet_rows(folder: Path, split: str | None = None, columns: list | None = None) -> list[dict]:
    """The raw rows of a built folder (image and mask bytes undecoded), one split or all."""
    return layout.read_rows(folder, split, columns=columns)


def require_torch():
    """torch, or a skip where it is not installed. CI installs it and sets
    COVID_SEG_REQUIRE_TORCH=1, so there a missing torch fails instead of skipping."""
    if os.environ.get("COVID_SEG_REQUIRE_TORCH") == "1":
        import torch

        return torch
    return pytest.importorskip("torch", reason="torch is not installed (CI installs torch==2.13.0)")
