"""The feature schema in the dialect that both `datasets` 3.x and >= 4 read.

datasets >= 4 writes lists as `{"_type": "List"}` (YAML `list:` with `length:`), which
datasets 3.x cannot read: "Feature type 'List' not found". Both read a plain JSON list
for a list of any length and `Sequence` for a fixed length, so every file the Hub serves
(Parquet schema metadata, dataset_infos.json, card YAML) uses that dialect.
"""

from __future__ import annotations

import json
from typing import Any

import datasets
import pyarrow as pa

__all__ = ["portable_features", "portable_schema", "portable_yaml_features"]


def portable_features(features: datasets.Features) -> dict[str, Any]:
    """`features.to_dict()` in the dialect that datasets 3.x and >= 4 both read."""

    def convert(node: Any) -> Any:
        if isinstance(node, list):
            return [convert(value) for value in node]
        if not isinstance(node, dict):
            return node
        if node.get("_type") == "List":
            feature = convert(node["feature"])
            length = node.get("length", -1)
            if length == -1:
                return [feature]
            if isinstance(feature, (dict, list)) and "_type" not in feature:
                # datasets 3.x turns a Sequence of dicts into a dict of lists: not the same rows.
                raise ValueError(
                    f"a fixed-length list of {feature!r} has no form datasets 3.x reads as a list; drop length={length}"
                )
            return {"_type": "Sequence", "feature": feature, "length": length}
        return {key: convert(value) for key, value in node.items()}

    return convert(features.to_dict())


def portable_schema(features: datasets.Features) -> pa.Schema:
    """The Arrow schema of `features`, its `huggingface` metadata in the portable dialect."""
    schema = features.arrow_schema
    metadata = {
        **(schema.metadata or {}),
        b"huggingface": json.dumps({"info": {"features": portable_features(features)}}).encode(),
    }
    return schema.with_metadata(metadata)


def portable_yaml_features(yaml_features: list[Any]) -> list[Any]:
    """The card's `dataset_info.features` with fixed-length `list:` entries as `sequence:`."""

    def convert(node: Any) -> Any:
        if isinstance(node, list):
            return [convert(value) for value in node]
        if not isinstance(node, dict):
            return node
        node = {key: convert(value) for key, value in node.items()}
        if "list" in node and "length" in node:
            # The type key must stay first: both readers dispatch on the first key.
            node = {("sequence" if key == "list" else key): value for key, value in node.items()}
        return node

    return convert(yaml_features)
