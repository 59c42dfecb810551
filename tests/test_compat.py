"""Where users are: metadata older `datasets` reads, tensors for training code, Colab-style
streaming, the Hub viewer's limits, and exports back to COCO and to plain files."""

from __future__ import annotations

import json

import datasets
import pyarrow.parquet as pq
import pytest
from huggingface_hub import DatasetCard

import covid_chestxray_seg as recipe
from conftest import REPO
from scripts import build


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


def test_every_served_schema_avoids_the_list_type_datasets_3_cannot_read(fixture_build):
    infos = json.loads((fixture_build / "dataset_infos.json").read_text())["default"]["features"]
    assert "List" not in _types(infos) and "Sequence" in _types(infos)
    for path in sorted(fixture_build.rglob("*.parquet")):
        metadata = json.loads(pq.read_schema(path).metadata[b"huggingface"])
        assert metadata["info"]["features"] == infos, path.name
    yaml_features = DatasetCard.load(fixture_build / "README.md").data.to_dict()["dataset_info"]["features"]
    keys = _yaml_keys(yaml_features)
    assert "sequence" in keys and "list+length" not in keys


def test_served_schemas_read_back_as_the_builder_features(fixture_build):
    # datasets >= 4 reads the portable dialect as the same features (List, length kept).
    infos = json.loads((fixture_build / "dataset_infos.json").read_text())["default"]["features"]
    assert datasets.Features.from_dict(infos) == recipe.features()
    for path in sorted(fixture_build.rglob("*.parquet")):
        assert datasets.Features.from_arrow_schema(pq.read_schema(path)) == recipe.features()
    yaml_features = DatasetCard.load(fixture_build / "README.md").data.to_dict()["dataset_info"]["features"]
    assert datasets.Features._from_yaml_list(yaml_features) == recipe.features()


def test_portable_features_maps_each_list_form():
    features = datasets.Features(
        {
            "fixed": datasets.List(datasets.Value("int32"), length=3),
            "free": datasets.List(datasets.Value("string")),
            "rows": [{"x": datasets.Value("float32")}],
        }
    )
    assert build.portable_features(features) == {
        "fixed": {"_type": "Sequence", "feature": {"_type": "Value", "dtype": "int32"}, "length": 3},
        "free": [{"_type": "Value", "dtype": "string"}],
        "rows": [{"x": {"_type": "Value", "dtype": "float32"}}],
    }


def test_portable_features_refuses_a_fixed_length_list_of_dicts():
    # datasets 3.x would read Sequence({...}) as a dict of lists: different rows, so no silent output.
    features = datasets.Features({"pairs": datasets.List({"a": datasets.Value("int32")}, length=2)})
    with pytest.raises(ValueError, match=r"fixed-length list of .* datasets 3\.x .* drop length=2"):
        build.portable_features(features)


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
    with pytest.raises(recipe.BuildError, match=r"upstream-manifest\.tsv: upstream manifest: not found; keep it beside covid_chestxray_seg\.py"):
        builder._manifest_path()
