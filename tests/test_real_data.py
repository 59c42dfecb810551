"""The full upstream data (in CI at ../shared/data): exact masks, splits, manifest, and no drift
between the committed README.md / dataset_infos.json and a fresh build."""

from __future__ import annotations

import json

import datasets
import numpy as np
import pyarrow.parquet as pq
import pytest

import covid_chestxray_seg as recipe
from tests.helpers import REPO, SHARED_DIR, crop_masks, structure_rows
from covid_chestxray_seg_tools import layout
from scripts import build


@pytest.fixture(scope="module")
def real_rows(real_build) -> list[dict]:
    loaded = datasets.load_dataset(str(real_build))
    return [row for split in loaded.values() for row in split]


def test_every_mask_equals_the_upstream_crops(real_rows):
    crops = crop_masks(SHARED_DIR)
    with_mask = sum(1 for row in structure_rows(SHARED_DIR) if row["Mask"])
    assert with_mask == 588  # the data README's "589" counts one probe too few as mask-less
    compared = 0
    for row in real_rows:
        for name, column in zip(recipe.CLASSES, recipe.MASK_COLUMNS):
            stored = recipe.decode_mask(row[column])
            key = (row["file_name"], name)
            if stored is None:
                assert key not in crops, key  # null only where upstream has no crop
                continue
            assert np.array_equal(stored, crops.get(key, np.zeros_like(stored))), key
            compared += key in crops
    assert compared == len(crops)
    # ... and every crop belongs to an annotation with an RLE, which sits inside its crop box.
    rles = sum(1 for row in real_rows for obj in row["objects"] if obj["segmentation"] is not None)
    assert rles == with_mask


def test_counts_match_the_upstream_files(real_rows):
    assert len(real_rows) == 100
    assert sum(len(row["objects"]) for row in real_rows) == 602
    assert sum(1 for row in real_rows for o in row["objects"] if o["segmentation"] is None) == 14
    assert len({row["patient_id"] for row in real_rows}) == 73
    assert sum(row["license"] is None for row in real_rows) == 56


def test_splits_are_patient_disjoint_and_near_70_15_15(real_build):
    loaded = datasets.load_dataset(str(real_build))
    patients = {split: set(ds["patient_id"]) for split, ds in loaded.items()}
    splits = list(patients)
    for i, a in enumerate(splits):
        for b in splits[i + 1 :]:
            assert not patients[a] & patients[b], (a, b)
    sizes = {split: len(ds) for split, ds in loaded.items()}
    for split, fraction in recipe.SPLITS.items():
        assert abs(sizes[split] - 100 * fraction) <= 3, sizes


def test_train_is_sharded_for_four_streaming_workers(real_build):
    train = sorted((real_build / "data" / "default").glob("train-*.parquet"))
    assert len(train) >= 4
    assert [p.name for p in train] == [f"train-{i:05d}-of-{len(train):05d}.parquet" for i in range(len(train))]
    stream = datasets.load_dataset(str(real_build), split="train", streaming=True)
    assert stream.num_shards >= 4
    for path in real_build.rglob("*.parquet"):
        metadata = pq.ParquetFile(path).metadata
        assert all(metadata.row_group(i).total_byte_size < 100 * 1024 * 1024 for i in range(metadata.num_row_groups))


def test_real_data_matches_the_upstream_manifest(real_build):
    card = (real_build / "README.md").read_text()
    assert "against `upstream-manifest.tsv`): files that differ: none." in card
    assert "SHA-256 `" in card


def test_committed_card_and_infos_match_a_fresh_build(real_build):
    """Regenerate with: python scripts/build.py --data-dir ../shared/data/covid-19-chest-xray-segmentations-dataset --sync-repo"""
    assert (REPO / "README.md").read_text() == (real_build / "README.md").read_text()
    assert json.loads((REPO / "dataset_infos.json").read_text()) == json.loads((real_build / "dataset_infos.json").read_text())
    assert (REPO / layout.PREVIEW_PATH).read_bytes() == (real_build / layout.PREVIEW_PATH).read_bytes()


def test_full_builds_are_byte_identical(real_build, tmp_path):
    again = tmp_path / "again"
    assert build.main(["--data-dir", str(SHARED_DIR), "--out", str(again), "--quiet", "--num-proc", "1", "--validate"]) == 0
    files = sorted(p.relative_to(real_build) for p in real_build.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    for name in files:
        assert (real_build / name).read_bytes() == (again / name).read_bytes(), name
