"""Where users are: metadata older `datasets` reads, tensors for training code, Colab-style
streaming, the Hub viewer's limits, and exports back to COCO and to plain files."""

from __future__ import annotations

import json
import re

import datasets
import numpy as np
import pyarrow.parquet as pq
import pytest
from huggingface_hub import DatasetCard
from PIL import Image

import covid_chestxray_seg as recipe
from covid_chestxray_seg_tools.hub_folder import layout, resize, viewer
from covid_chestxray_seg_tools.hub_folder.dialect import portable_features
from tests.helpers import REPO, parquet_rows, require_torch


def _types(node) -> set:
    """Every `_type` in a features dict, at any depth."""
    if isinstance(node, list):
        return set().union(*(_types(value) for value in node)) if node else set()
    if isinstance(node, dict):
        found = {node["_type"]} if isinstance(node.get("_type"), str) else set()
        return found.union(*(_types(value) for value in node.values()))
    return set()


def _yaml_keys(node) -> set:
    if isinstance(node, list):
        return set().union(*(_yaml_keys(value) for value in node)) if node else set()
    if isinstance(node, dict):
        found = {"list+length"} if "list" in node and "length" in node else set()
        return found.union(set(node), *(_yaml_keys(value) for value in node.values()))
    return set()


# --- metadata that datasets 3.x reads (it knows no "List") -------------------------------


def _config_features(config: str) -> datasets.Features:
    return resize.features() if config in layout.SIZE_256_CONFIGS else recipe.features()


def test_every_served_schema_avoids_the_list_type_datasets_3_cannot_read(fixture_build):
    infos = json.loads((fixture_build / "dataset_infos.json").read_text())
    assert "List" not in _types(infos) and "Sequence" in _types(infos["default"]["features"])
    for config in (layout.CONFIG_NAME, layout.SIZE_256_CONFIG):
        paths = layout.shard_paths(fixture_build, config=config)
        assert paths
        for path in paths:
            metadata = json.loads(pq.read_schema(path).metadata[b"huggingface"])
            assert metadata["info"]["features"] == infos[config]["features"], path.name
    for entry in DatasetCard.load(fixture_build / "README.md").data.to_dict()["dataset_info"]:
        keys = _yaml_keys(entry["features"])
        assert "sequence" in keys and "list+length" not in keys, entry["config_name"]


def test_served_schemas_read_back_as_the_builder_features(fixture_build):
    # datasets >= 4 reads the portable dialect as the same features (List, length kept).
    infos = json.loads((fixture_build / "dataset_infos.json").read_text())
    assert set(infos) == set(layout.CONFIG_PARTS)
    for config, info in infos.items():
        assert datasets.Features.from_dict(info["features"]) == _config_features(config), config
        for path in layout.shard_paths(fixture_build, config=config):
            assert datasets.Features.from_arrow_schema(pq.read_schema(path)) == _config_features(config)
    for entry in DatasetCard.load(fixture_build / "README.md").data.to_dict()["dataset_info"]:
        assert datasets.Features._from_yaml_list(entry["features"]) == _config_features(entry["config_name"])


def test_portable_features_maps_each_list_form():
    features = datasets.Features(
        {
            "fixed": datasets.List(datasets.Value("int32"), length=3),
            "free": datasets.List(datasets.Value("string")),
            "rows": [{"x": datasets.Value("float32")}],
        }
    )
    assert portable_features(features) == {
        "fixed": {"_type": "Sequence", "feature": {"_type": "Value", "dtype": "int32"}, "length": 3},
        "free": [{"_type": "Value", "dtype": "string"}],
        "rows": [{"x": {"_type": "Value", "dtype": "float32"}}],
    }


def test_portable_features_refuses_a_fixed_length_list_of_dicts():
    # datasets 3.x would read Sequence({...}) as a dict of lists: different rows, so no silent output.
    features = datasets.Features({"pairs": datasets.List({"a": datasets.Value("int32")}, length=2)})
    with pytest.raises(ValueError, match=r"fixed-length list of .* datasets 3\.x .* drop length=2"):
        portable_features(features)


# --- the builder run from datasets 3.x's module cache ------------------------------------


def test_manifest_is_found_through_base_path_when_the_script_was_copied(monkeypatch, tmp_path):
    # datasets 3.x imports a copy of the script from its modules cache, without the manifest,
    # and passes the script's own folder as base_path.
    monkeypatch.setattr(recipe, "MANIFEST_PATH", tmp_path / "modules-cache" / recipe.MANIFEST_NAME)
    builder = recipe.CovidChestXraySeg(cache_dir=str(tmp_path / "cache"), base_path=str(REPO))
    assert builder._manifest_path() == REPO / recipe.MANIFEST_NAME


def test_missing_manifest_is_one_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(recipe, "MANIFEST_PATH", tmp_path / recipe.MANIFEST_NAME)
    builder = recipe.CovidChestXraySeg(cache_dir=str(tmp_path / "cache"), base_path=str(tmp_path / "elsewhere"))
    with pytest.raises(
        recipe.BuildError,
        match=r"upstream-manifest\.tsv: upstream manifest: not found; keep it beside covid_chestxray_seg\.py",
    ):
        builder._manifest_path()


# --- arrays and tensors ------------------------------------------------------------------


def test_numpy_format_gives_arrays_and_stack_masks_stacks_them(fixture_build):
    split = datasets.load_dataset(str(fixture_build), split="train")
    row, decoded = split.with_format("numpy")[0], split[0]
    height, width = int(row["height"]), int(row["width"])
    assert isinstance(row["image"], np.ndarray) and row["image"].dtype == np.uint8
    assert row["image"].shape[:2] == (height, width) and row["image"].ndim in (2, 3)
    assert row["mask_left_lung"].dtype == bool and row["mask_left_lung"].shape == (height, width)
    stacked = recipe.stack_masks(row, classes=["Right Lung", "Left Lung"])
    assert isinstance(stacked, np.ndarray) and stacked.shape == (2, height, width)
    assert np.array_equal(stacked[1], np.asarray(decoded["mask_left_lung"]))
    assert np.array_equal(recipe.stack_masks(row), recipe.stack_masks(decoded))


def test_torch_format_gives_tensors_and_stack_masks_keeps_them_tensors(fixture_build):
    torch = require_torch()
    split = datasets.load_dataset(str(fixture_build), split="train")
    row, decoded = split.with_format("torch")[0], split[0]
    height, width = int(row["height"]), int(row["width"])
    channels = len(decoded["image"].getbands())
    assert row["image"].dtype == torch.uint8 and tuple(row["image"].shape) == (channels, height, width)
    assert row["mask_left_lung"].dtype == torch.bool and tuple(row["mask_left_lung"].shape) == (1, height, width)
    stacked = recipe.stack_masks(row)
    assert isinstance(stacked, torch.Tensor) and stacked.dtype == torch.bool
    assert tuple(stacked.shape) == (len(recipe.CLASSES), height, width)
    assert np.array_equal(stacked.numpy(), recipe.stack_masks(decoded))


# --- Colab-style streaming ---------------------------------------------------------------


REPO_ID = "tester/covid-chestxray-seg"


@pytest.fixture
def published_real(hub, real_build) -> str:
    """The full build in the local Hub, file for file as publish.py commits it."""
    hub.state.create_repo(REPO_ID)
    hub.state.commit_folder(REPO_ID, real_build)
    return REPO_ID


def _train_ids(folder) -> list[int]:
    return [row["image_id"] for row in parquet_rows(folder, "train", ["image_id"])]


def _decoded_shapes(batch: list[dict]) -> list[tuple[int, tuple[int, ...], tuple[int, ...], tuple[int, int]]]:
    """The DataLoader's collate_fn, run in its worker: the decoded rows stay there; their id, image
    shape, stacked-mask shape and stored size come back."""
    return [
        (
            int(row["image_id"]),
            row["image"].shape[:2],
            recipe.stack_masks(row).shape,
            (int(row["height"]), int(row["width"])),
        )
        for row in batch
    ]


def test_colab_streaming_through_two_workers_sees_each_row_once_per_epoch(published_real, real_build):
    torch = require_torch()
    from torch.utils.data import DataLoader

    expected = sorted(_train_ids(real_build))
    # size-256, the config a Colab notebook trains on: the same rows and shards' logic as default,
    # at a fraction of its decoding (default's rows stream in test_first_rows_of_each_split_...).
    stream = datasets.load_dataset(published_real, layout.SIZE_256_CONFIG, split="train", streaming=True)
    assert stream.num_shards >= 2
    stream = stream.shuffle(seed=0, buffer_size=16).with_format("numpy")
    orders = []
    for epoch in range(2):
        stream.set_epoch(epoch)
        # Workers from a fresh server process (Python 3.14's default start method on Linux): forked
        # from this test process, each started as a copy of its GB and decoded the largest rows
        # (14 full-size masks) on top, the suite's peak. Forked workers are covered by the next test.
        loader = DataLoader(
            stream,
            batch_size=4,
            num_workers=2,
            prefetch_factor=1,
            collate_fn=_decoded_shapes,
            multiprocessing_context="forkserver",
        )
        rows = [row for batch in loader for row in batch]
        ids = [image_id for image_id, *_ in rows]
        assert sorted(ids) == expected, f"epoch {epoch}: a row missing or seen twice"
        orders.append(ids)
        for image_id, image_shape, masks_shape, _ in rows:
            assert image_shape == (256, 256) and masks_shape == (len(recipe.CLASSES), 256, 256), image_id
    assert orders[0] != orders[1], "set_epoch must reshuffle"
    assert torch.utils.data.get_worker_info() is None  # the loop above ran in worker processes, not here


def test_colab_take_gives_n_rows_in_all_across_workers(published_real, real_build):
    require_torch()
    from torch.utils.data import DataLoader

    stream = datasets.load_dataset(published_real, split="train", streaming=True)
    taken = stream.shuffle(seed=1, buffer_size=16).take(20).with_format("numpy").select_columns(["image_id"])
    ids = [
        int(row["image_id"])
        for batch in DataLoader(taken, batch_size=4, num_workers=2, collate_fn=list)
        for row in batch
    ]
    assert len(ids) == len(set(ids)) == 20 and set(ids) <= set(_train_ids(real_build))


# --- the Hub's dataset viewer ------------------------------------------------------------

# dataset-viewer's FIRST_ROWS_MAX_NUMBER.
VIEWER_FIRST_ROWS = 100


def test_every_data_file_has_a_page_index_and_row_groups_far_under_the_scan_limit(real_build):
    largest = 0
    for path in layout.shard_paths(real_build):
        metadata = pq.ParquetFile(path).metadata
        for index in range(metadata.num_row_groups):
            group = metadata.row_group(index)
            largest = max(largest, group.total_byte_size)
            assert all(group.column(column).has_offset_index for column in range(group.num_columns)), path.name
    assert 0 < largest < viewer.ROWS_INDEX_MAX_ARROW_BYTES / 10


def test_the_viewers_first_page_shows_what_the_card_says(real_build):
    image_columns = [name for name, feature in recipe.features().items() if isinstance(feature, datasets.Image)]
    shown = {
        split: viewer.first_rows_shown(layout.iter_rows(real_build, split), image_columns) for split in recipe.SPLITS
    }
    # The objects column (exact RLE of every annotation) fills the 200 KB budget first.
    assert shown == {"train": 12, "validation": 15, "test": 14}
    # Viewer internals are for maintainers: the README states them, the card does not.
    assert "first page" not in (real_build / "README.md").read_text()
    docs = " ".join((REPO / "docs" / "build.md").read_text().split())
    assert "viewer's first page shows: train 12 of 69 rows" in docs


def test_the_first_rows_rule_keeps_ten_rows_and_stops_at_the_budget():
    big = {"objects": "x" * 30_000}
    assert viewer.first_rows_shown([big] * 50, []) == 10  # 10 kept whatever their size
    small = {"image": object(), "n": 1}
    # An image cell counts as its URL, not its bytes: 100 small rows fit the budget.
    assert viewer.first_rows_shown([small] * 150, ["image"]) == 100
    rows = [{"objects": "x" * 9_000}] * 40
    assert viewer.first_rows_shown(rows, []) == viewer.FIRST_ROWS_MAX_BYTES // viewer.row_bytes(rows[0], [])


def test_first_rows_of_each_split_stream_from_the_hub_as_pictures(published_real):
    for split in ("train", "validation", "test"):
        stream = datasets.load_dataset(published_real, split=split, streaming=True)
        image_columns = [name for name, feature in stream.features.items() if isinstance(feature, datasets.Image)]
        assert image_columns == ["image", "overlay", *recipe.MASK_COLUMNS]
        # Row by row: 69 decoded rows held at once (16 pictures each) took 2 GB.
        count = 0
        for row in stream.take(VIEWER_FIRST_ROWS):
            assert isinstance(row["image"], Image.Image) and row["image"].size == (row["width"], row["height"])
            shown = [row[column] for column in recipe.MASK_COLUMNS if row[column] is not None]
            assert shown and all(mask.mode == "1" and mask.size == row["image"].size for mask in shown)
            count += 1
        assert count == min(VIEWER_FIRST_ROWS, {"train": 69, "validation": 15, "test": 16}[split])


def test_card_yaml_passes_the_hubs_metadata_validation(hub, real_build):
    DatasetCard.load(real_build / "README.md").validate(repo_type="dataset")
    assert hub.state.requests("POST", r"^/api/validate-yaml$")


def test_the_local_hub_refuses_a_card_the_real_one_would(hub, real_build):
    text = (real_build / "README.md").read_text(encoding="utf-8")
    broken = DatasetCard(re.sub(r"(?m)^license_name: .*\n", "", text, count=1))
    with pytest.raises(ValueError, match=r"license_name: None must be set with license: other"):
        broken.validate(repo_type="dataset")
    wrong_size = DatasetCard(text.replace("- n<1K", "- tiny", 1))
    with pytest.raises(ValueError, match=r"size_categories: 'tiny' is not one of the Hub's size categories"):
        wrong_size.validate(repo_type="dataset")
