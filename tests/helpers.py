"""Helpers shared by the test modules: paths of the fixture and the real data, readers of
built folders and of upstream's crops, the torch switch."""

from __future__ import annotations

import os
import shutil
import struct
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
from filelock import FileLock

import covid_chestxray_seg as recipe
from covid_chestxray_seg_tools.hub_folder import layout
from covid_chestxray_seg_tools.validate import crops

REPO = Path(__file__).resolve().parent.parent
FIXTURE_DIR = REPO / "tests" / "fixtures" / "data"
SHARED_DIR = REPO.parent / "shared" / "data" / "covid-19-chest-xray-segmentations-dataset"
# ieee8023's severity scores: the real file beside the real data, and a cut of it for the
# fixture (its comment lines, three real rows, and scores for two fixture images, one of
# them 0.0: none of the three fixture images is scored upstream).
SHARED_SEVERITY = (
    REPO.parent / "shared" / "data" / "ieee8023-covid-chestxray-dataset" / "annotations" / "covid-severity-scores.csv"
)
FIXTURE_SEVERITY = REPO / "tests" / "fixtures" / "severity" / "covid-severity-scores.csv"
# The tools' repository the fixture's card names (a release names the real one).
FIXTURE_TOOLS_URL = "https://github.com/example-lab/covid-chestxray-seg"
# The options the session's fixture build is built with (tests/conftest.py: fixture_build).
FIXTURE_BUILD_OPTIONS = ("--allow-modified", "--quiet", "--validate", "--baseline", "--tools-url", FIXTURE_TOOLS_URL)
# The options of the session's build of the full data (tests/conftest.py: real_build): those of
# the README's set-up command, so that CI's build serves (COVID_SEG_REAL_BUILD). Its card keeps
# the placeholder tools URL: the tests that publish it give --tools-url, as a release does.
REAL_BUILD_OPTIONS = ("--quiet", "--validate", "--baseline")
# Where a build of the full data with those options already is (CI sets it to its build/).
REAL_BUILD_VARIABLE = "COVID_SEG_REAL_BUILD"
# `covid-seg build`'s source options for each.
FIXTURE_ARGS = ("--data-dir", str(FIXTURE_DIR), "--severity-file", str(FIXTURE_SEVERITY))
SHARED_ARGS = ("--data-dir", str(SHARED_DIR), "--severity-file", str(SHARED_SEVERITY))


def crop_masks(data_dir: Path) -> dict[tuple[str, str], np.ndarray]:
    """Upstream's own masks, independent of the COCO file: (image, class) -> the class's crops
    placed at (Left, Top) of a full-size canvas, for every class that has crops."""
    return {
        (file_name, name): mask
        for file_name, _, masks in crops.image_masks(data_dir)
        for name, mask in masks.items()
        if mask is not None
    }


def mask_to_runs(mask: np.ndarray) -> list[int]:
    """COCO's uncompressed RLE of a mask: run lengths in column-major order, starting with zeros."""
    flat = mask.ravel(order="F").astype(np.int8)
    changes = np.flatnonzero(np.diff(flat)) + 1
    runs = np.diff(np.concatenate([[0], changes, [flat.size]])).tolist()
    return runs if flat[0] == 0 else [0, *runs]


def parquet_rows(
    folder: Path, split: str | None = None, columns: list | None = None, *, config: str = layout.CONFIG_NAME
) -> list[dict]:
    """The raw rows of a built folder's config (image and mask bytes undecoded), one split or all."""
    return layout.read_rows(folder, split, columns=columns, config=config)


def write_truth_folder(
    build: Path,
    out: Path,
    splits: Sequence[str],
    *,
    change: Callable[[int, str, np.ndarray], np.ndarray] | None = None,
) -> Path:
    """The ground truth of a built folder as predictions in the folder layout `covid-seg evaluate`
    reads: OUT/<split>/<image_id>/<mask column>.png, the stored PNG of every mask that is not
    null. `change(image_id, column, mask)` gives the mask to write instead (decoded, re-encoded)."""
    for split in splits:
        for row in layout.iter_rows(build, split, columns=["image_id", *recipe.MASK_COLUMNS]):
            folder = out / split / str(row["image_id"])
            folder.mkdir(parents=True)
            for column in recipe.MASK_COLUMNS:
                if row[column] is None:
                    continue
                data = row[column]["bytes"]
                if change is not None:
                    data = recipe.encode_mask_png(change(row["image_id"], column, recipe.decode_mask(data)))
                (folder / f"{column}.png").write_bytes(data)
    return out


def once_per_session(tmp_path_factory: pytest.TempPathFactory, name: str, make: Callable[[Path], None]) -> Path:
    """The folder `make(folder)` fills, made once per test session and shared by every xdist
    worker (pytest-xdist's pattern: the workers' common base temp folder and a file lock), so a
    slow real-data computation several test files read runs once. A `make` that fails leaves
    nothing the next worker would take for done."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent
    folder, done = root / f"once-{name}", root / f"once-{name}.done"
    with FileLock(f"{folder}.lock"):
        if not done.is_file():
            shutil.rmtree(folder, ignore_errors=True)
            make(folder)
            done.touch()
    return folder


def main_venv_build() -> Path:
    """The folder the main venv built from the full data by the README's set-up command, which
    compat/'s venvs test against (they cannot build it: their `datasets` or FiftyOne differ).

    Raises:
        pytest.fail.Exception: the full data or that build is missing.
    """
    built = REPO / "build"
    if not (built / "dataset_infos.json").is_file() or not SHARED_DIR.is_dir():
        pytest.fail(
            f"needs the full data at {SHARED_DIR} and its build at {built}: run the README's set-up command "
            "(covid-seg build --data-dir ... --out build) in the main venv first"
        )
    return built


def bomb_png(width: int, height: int) -> bytes:
    """A valid 1-bit PNG of width x height, all zero: a few kB on disk, width x height bytes once
    Pillow decodes it (a decompression bomb for large sizes). Written row by row, never held whole."""
    row = bytes(1 + (width + 7) // 8)  # filter byte 0, then the packed zero bits
    packer = zlib.compressobj(9)
    data = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", data) + _chunk(b"IEND", b"")


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def shifted(mask: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """`mask` moved down by dy and right by dx; what leaves the image is lost, the rest is empty."""
    out = np.zeros_like(mask)
    height, width = mask.shape
    out[max(dy, 0) : height + min(dy, 0), max(dx, 0) : width + min(dx, 0)] = mask[
        max(-dy, 0) : height - max(dy, 0), max(-dx, 0) : width - max(dx, 0)
    ]
    return out


def require_torch():
    """torch, or a skip where it is not installed. CI installs it and sets
    COVID_SEG_REQUIRE_TORCH=1, so there a missing torch fails instead of skipping."""
    if os.environ.get("COVID_SEG_REQUIRE_TORCH") == "1":
        import torch

        return torch
    return pytest.importorskip("torch", reason="torch is not installed (CI installs torch==2.13.0)")


def require_monai():
    """monai, or a skip where it is not installed; like `require_torch`, a missing monai fails
    where COVID_SEG_REQUIRE_TORCH=1 (CI installs it right after torch)."""
    if os.environ.get("COVID_SEG_REQUIRE_TORCH") == "1":
        import monai

        return monai
    return pytest.importorskip("monai", reason="monai is not installed (CI installs it after torch)")


def tree(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` by relative path, with its bytes."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def big_args(data: Path) -> list[str]:
    """`covid-seg build` options for a multiplied fixture (`big_data`), built by 2 worker processes."""
    args = list(FIXTURE_ARGS)
    args[args.index("--data-dir") + 1] = str(data)
    return [*args, "--allow-modified", "--quiet", "--num-proc", "2"]


# --- ground-truth rows made by hand (for scoring without a build) -----------------------------

SIZE = (20, 24)  # (height, width) of the hand-made images


# --- rows built by hand ----------------------------------------------------------------------


def cell(mask: np.ndarray | None) -> dict | None:
    return None if mask is None else {"bytes": recipe.encode_mask_png(mask), "path": None}


def square(top: int = 5, left: int = 6, side: int = 10) -> np.ndarray:
    mask = np.zeros(SIZE, dtype=bool)
    mask[top : top + side, left : left + side] = True
    return mask


def hand_row(image_id: int, *, patient, fold=None, split="train", masks=None, flags=None) -> dict:
    """A ground-truth row: every class empty but those in `masks` (column -> mask, None = null)."""
    masks = masks or {}
    row = {
        "image_id": image_id,
        "patient_id": patient,
        "width": SIZE[1],
        "height": SIZE[0],
        "fold": fold,
        "split": split,
        **{column: cell(masks.get(column, np.zeros(SIZE, dtype=bool))) for column in recipe.MASK_COLUMNS},
    }
    if flags is not None:
        row["quality_flags"] = flags
    return row


def cut(mask: np.ndarray, rows: int) -> np.ndarray:
    """`mask` without the last `rows` rows of its foreground."""
    out = mask.copy()
    if rows:
        out[np.flatnonzero(mask.any(axis=1))[-rows:]] = False
    return out


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))


def predictor(masks: dict[int, dict[str, np.ndarray]]):
    return lambda image_id, width, height: masks.get(image_id, {})
