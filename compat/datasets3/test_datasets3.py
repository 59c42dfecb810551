"""datasets 3.6, as in notebooks pinned to `datasets<4`: the loading script runs with
trust_remote_code and gives the rows of the Parquet build made with datasets 5; the
published Parquet repo loads, normally and streaming. Run in the venv of
compat/datasets3/requirements.txt after the main tests (see .ci/run)."""

from __future__ import annotations

import io

import datasets
import numpy as np
import pytest
from PIL import Image

from tests.helpers import REPO, SHARED_DIR, SHARED_SEVERITY, parquet_rows

SPLITS = ["train", "validation", "test"]
REPO_ID = "tester/covid-chestxray-seg"


def test_this_venv_is_datasets_3():
    assert datasets.__version__.startswith("3.")


def undecoded(dataset):
    """Image columns as stored bytes: image bytes compare exactly, masks are decoded below."""
    for name, feature in dataset.features.items():
        if isinstance(feature, datasets.Image):
            dataset = dataset.cast_column(name, datasets.Image(decode=False))
    return dataset


def pixels(value) -> np.ndarray | None:
    return None if value is None else np.asarray(Image.open(io.BytesIO(value["bytes"])))


def assert_same_rows(got: list[dict], want: list[dict]) -> None:
    # The script yields a split by image id; the Parquet build stores it licensed part first.
    got, want = (sorted(rows, key=lambda row: row["image_id"]) for rows in (got, want))
    assert [row["image_id"] for row in got] == [row["image_id"] for row in want]
    for row, expected in zip(got, want):
        assert set(row) == set(expected)
        for key, value in expected.items():
            where = f"image {expected['image_id']}, {key}"
            if key.startswith("mask_"):
                mask, expected_mask = pixels(row[key]), pixels(value)
                assert (mask is None) == (expected_mask is None), where
                if mask is not None:
                    assert mask.dtype == bool and np.array_equal(mask, expected_mask), where
            else:
                assert row[key] == value, where


@pytest.fixture(scope="module")
def script_dataset(tmp_path_factory):
    return datasets.load_dataset(
        str(REPO / "covid_chestxray_seg.py"),
        data_dir=str(SHARED_DIR),
        severity_file=str(SHARED_SEVERITY),
        trust_remote_code=True,
        cache_dir=str(tmp_path_factory.mktemp("datasets3-cache")),
    )


def test_loading_script_gives_the_rows_and_masks_of_the_datasets_5_build(script_dataset, built):
    assert list(script_dataset) == SPLITS
    for split in SPLITS:
        assert_same_rows(undecoded(script_dataset[split]).to_list(), parquet_rows(built, split))


def test_loading_script_rows_decode_to_images_and_masks(script_dataset):
    row = script_dataset["train"][0]
    assert row["image"].size == (row["width"], row["height"])
    assert row["mask_left_lung"].mode == "1" and row["mask_left_lung"].size == row["image"].size
    assert script_dataset["train"].features["objects"][0]["bbox"].length == 4


@pytest.fixture
def published(hub, built):
    """The built folder as publish.py commits it: every file, nothing else."""
    hub.state.create_repo(REPO_ID)
    hub.state.commit_folder(REPO_ID, built)
    return REPO_ID


def test_published_parquet_repo_loads_with_the_script_features(published, built, script_dataset, tmp_path):
    loaded = datasets.load_dataset(published, cache_dir=str(tmp_path))
    assert list(loaded) == SPLITS
    for split in SPLITS:
        # The card YAML and Parquet metadata read as the same 3.x features the script declares.
        assert loaded[split].features == script_dataset[split].features
        assert_same_rows(undecoded(loaded[split]).to_list(), parquet_rows(built, split))


def test_published_parquet_repo_streams(published, built):
    for split in SPLITS:
        stream = datasets.load_dataset(published, split=split, streaming=True)
        assert_same_rows(list(undecoded(stream)), parquet_rows(built, split))
