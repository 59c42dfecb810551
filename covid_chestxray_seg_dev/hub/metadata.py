"""The dataset card metadata the real Hub refuses on a commit (its `validate-yaml` check, as far
as our cards use it): the test Hub refuses the same, so a card the Hub would reject fails here."""

from __future__ import annotations

import re

__all__ = ["dataset_metadata_errors"]

# The dataset-card rules the Hub documents (hub-docs datasetcard.md and the repository
# licences page), checked when a card is validated; a subset of what the Hub knows, enough
# to catch a card the Hub would refuse.
SIZE_CATEGORIES = {
    "n<1K",
    "1K<n<10K",
    "10K<n<100K",
    "100K<n<1M",
    "1M<n<10M",
    "10M<n<100M",
    "100M<n<1B",
    "1B<n<10B",
    "10B<n<100B",
    "100B<n<1T",
    "n>1T",
}
TASK_CATEGORIES = {
    "image-segmentation",
    "image-classification",
    "object-detection",
    "mask-generation",
    "image-to-image",
    "image-feature-extraction",
    "image-to-text",
    "zero-shot-image-classification",
    "text-classification",
    "token-classification",
    "question-answering",
    "text-generation",
    "visual-question-answering",
    "other",
}
LICENSE_ID = re.compile(r"^[a-z0-9][a-z0-9.+-]*$")
LICENSE_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]*$")
LANGUAGE = re.compile(r"^[a-z]{2,3}(?:-[A-Za-z0-9]{2,8})*$")


def _strings(value) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def dataset_metadata_errors(metadata) -> list[str]:
    """What is wrong with a dataset card's YAML metadata, one message per problem."""
    if metadata is None:
        return []
    if not isinstance(metadata, dict):
        return ["metadata must be a YAML mapping"]
    errors = []
    licenses = metadata.get("license")
    licenses = [licenses] if isinstance(licenses, str) else licenses
    if licenses is not None:
        if not _strings(licenses) or not all(LICENSE_ID.match(item) for item in licenses):
            errors.append(f"license: {metadata.get('license')!r} is not a licence identifier")
        elif "other" in licenses:
            name = metadata.get("license_name")
            if not isinstance(name, str) or not LICENSE_NAME.match(name):
                errors.append(
                    f"license_name: {name!r} must be set with license: other, lowercase letters, digits, '-' and '.'"
                )
    for key in (
        "language",
        "tags",
        "task_ids",
        "annotations_creators",
        "source_datasets",
        "size_categories",
        "task_categories",
    ):
        if key in metadata and not _strings(metadata[key]):
            errors.append(f"{key}: must be a list of strings")
    if _strings(metadata.get("language")):
        errors += [
            f"language: {item!r} is not a language code" for item in metadata["language"] if not LANGUAGE.match(item)
        ]
    if _strings(metadata.get("size_categories")):
        errors += [
            f"size_categories: {item!r} is not one of the Hub's size categories"
            for item in metadata["size_categories"]
            if item not in SIZE_CATEGORIES
        ]
    if _strings(metadata.get("task_categories")):
        errors += [
            f"task_categories: {item!r} is not a Hub task"
            for item in metadata["task_categories"]
            if item not in TASK_CATEGORIES
        ]
    errors += _configs_errors(metadata.get("configs"))
    for info in metadata.get("dataset_info") or []:
        if isinstance(info, dict) and not isinstance(info.get("features", []), list):
            errors.append("dataset_info.features: must be a list")
        for split in (info.get("splits") or []) if isinstance(info, dict) else []:
            if not isinstance(split.get("name"), str) or not isinstance(split.get("num_examples"), int):
                errors.append(f"dataset_info.splits: {split!r} needs a name and an integer num_examples")
    return errors


def _configs_errors(configs) -> list[str]:
    if configs is None:
        return []
    if not isinstance(configs, list) or not all(isinstance(config, dict) for config in configs):
        return ["configs: must be a list of mappings"]
    errors, names = [], [config.get("config_name") for config in configs]
    if any(not isinstance(name, str) for name in names) or len(set(names)) != len(names):
        errors.append(f"configs: config_name must be a string, unique ({names!r})")
    if sum(bool(config.get("default")) for config in configs) > 1:
        errors.append("configs: only one config can be the default")
    for config in configs:
        data_files = config.get("data_files")
        entries = data_files if isinstance(data_files, list) else [data_files]
        for entry in entries:
            paths = entry.get("path") if isinstance(entry, dict) else entry
            if isinstance(entry, dict) and not isinstance(entry.get("split"), str):
                errors.append(f"configs: {config.get('config_name')}: a data_files entry needs a split")
            if not (isinstance(paths, str) or _strings(paths)):
                errors.append(
                    f"configs: {config.get('config_name')}: data_files path must be a string or a list of strings"
                )
    return errors
