"""The card: its YAML header from the builder's features, its generated blocks from the build.

A template holds `<!-- BEGIN GENERATED: name -->` ... `<!-- END GENERATED: name -->`
markers; rendering replaces what stands between them and writes a fresh YAML header,
so tables and metadata always derive from the builder and the built files.
"""

from __future__ import annotations

from pathlib import Path

import datasets
from datasets.info import DatasetInfosDict
from huggingface_hub import DatasetCard, DatasetCardData

import covid_chestxray_seg as recipe
from covid_chestxray_seg_tools import layout
from covid_chestxray_seg_tools.card.preview import PREVIEW_LICENCES
from covid_chestxray_seg_tools.dialect import portable_yaml_features

BEGIN, END = "<!-- BEGIN GENERATED: {} -->", "<!-- END GENERATED: {} -->"


def card_data(info: datasets.DatasetInfo) -> DatasetCardData:
    """The card's YAML header, derived from the builder."""
    data = DatasetCardData(
        pretty_name="COVID-19 Chest X-ray Segmentations",
        license="other",
        license_name="cc-by-4.0-annotations-per-image-licences",
        language=["en"],
        annotations_creators=["expert-generated"],
        source_datasets=["original"],
        task_categories=["image-segmentation"],
        task_ids=["semantic-segmentation", "instance-segmentation"],
        size_categories=["n<1K"],
        tags=["medical", "chest-x-ray", "covid-19", "radiology", "coco", "segmentation-masks"],
        configs=[
            {
                "config_name": layout.CONFIG_NAME,
                "default": True,
                "data_files": layout.data_files(recipe.SPLITS),
            }
        ],
    )
    DatasetInfosDict({layout.CONFIG_NAME: info}).to_dataset_card_data(data)
    data["dataset_info"]["features"] = portable_yaml_features(data["dataset_info"]["features"])
    return data


def generated_blocks(*, info: datasets.DatasetInfo, stats: dict, report, extras: dict) -> dict[str, str]:
    """Every generated part of the card, from the builder's constants and the built files."""
    def pct(value) -> str:
        return "n/a" if value is None else f"{value:.2f}"

    classes = [
        "| # | class | mask column | instances | images | without segmentation | mean area % | median area % |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for number, name in enumerate(recipe.CLASSES):
        row = stats["classes"][name]
        classes.append(
            f"| {number} | {name} | `{recipe.MASK_COLUMNS[number]}` | {row['instances']} | {row['images']} | "
            f"{row['without_segmentation']} | {pct(row['mean_area_pct'])} | {pct(row['median_area_pct'])} |"
        )
    splits = ["| split | images | patients | annotations | Parquet files |", "|---|---:|---:|---:|---:|"]
    for split, row in stats["splits"].items():
        splits.append(f"| {split} | {row['images']} | {row['patients']} | {row['annotations']} | {row['files']} |")
    splits += ["", "| finding | " + " | ".join(recipe.SPLITS) + " |", "|---|" + "---:|" * len(recipe.SPLITS)]
    for finding, counts in stats["findings"].items():
        splits.append(f"| {finding} | " + " | ".join(str(counts[split]) for split in recipe.SPLITS) + " |")
    licences = ["| image licence (`license` column) | images |", "|---|---:|"]
    licences += [f"| {name} | {count} |" for name, count in stats["licences"].items()]
    renamed = ", ".join(f"`{old}` -> `{new}`" for old, new in report.renamed_categories.items()) or "none"
    modified = ", ".join(f"`{path}`" for path in report.modified_files) or "none"
    annotation_state = (
        "equal to upstream's file" if report.annotation_upstream
        else "**not** upstream's file (a rebuild or a modified copy)"
    )
    provenance = [
        f"- Upstream: [{recipe.HOMEPAGE}]({recipe.HOMEPAGE}) at commit `{recipe.UPSTREAM_COMMIT}`.",
        f"- Manifest check (size and git blob SHA-1 of the images and `{recipe.METADATA_FILE}` against "
        f"`upstream-manifest.tsv`): files that differ: {modified}.",
        f"- Annotation file: `{report.annotation_file}`, SHA-256 `{report.annotation_sha256}`, {annotation_state}.",
        f"- Builder version {recipe.BUILDER_VERSION}, built with `datasets` {datasets.__version__}.",
    ]
    quirks = [
        f"- {report.annotations_without_segmentation} annotations have no segmentation upstream: they are kept in "
        "`objects` with a null `segmentation`, and their class mask is null on that image.",
        f"- Renamed upstream categories: {renamed}.",
        f"- {report.images_without_license} images have no licence in `{recipe.METADATA_FILE}`: their `license` is null.",
        f"- {stats['patients_with_series']} patients have a series of images ({stats['images_in_series']} images, "
        f"up to {stats['largest_series']} for one patient): the splits keep each series together.",
    ]
    if not report.annotation_upstream:
        quirks.append(
            f"- `{report.annotation_file}` is not upstream's own file: upstream's COCO export could not be used, and "
            "this one was rebuilt from upstream's mask crops (`masks/`, `structure.csv`); the data-quality report below "
            "compares it with them."
        )
    validation = extras.get("validation")
    shown = extras.get("preview") or []
    if shown:
        credits = "; ".join(f"`{item['file_name']}` ({item['license']}, {item['url']})" for item in shown)
        preview = (
            f"![Chest X-rays with their masks overlaid, one colour per class]({layout.PREVIEW_PATH})\n\n"
            f"Images shown (the openly licensed ones): {credits}."
        )
    else:
        preview = f"No image has a {' or '.join(PREVIEW_LICENCES)} licence, so none is shown here."
    summary = (
        f"{stats['images']} images of {stats['patients']} patients, {stats['annotations']} annotations in "
        f"{len(recipe.CLASSES)} classes; {info.download_size / 1e6:.1f} MB of Parquet."
    )
    return {
        "summary": summary,
        "preview": preview,
        "classes": "\n".join(classes),
        "splits": "\n".join(splits),
        "licences": "\n".join(licences),
        "provenance": "\n".join(provenance),
        "quirks": "\n".join(quirks),
        "validation": validation.summary() if validation is not None
        else "Not run for this build (`scripts/build.py --validate` or `scripts/validate.py` runs it).",
        "citation": f"```bibtex\n{recipe.CITATION.strip()}\n```",
    }


def render_card(template: Path, *, info: datasets.DatasetInfo, stats: dict, report, extras: dict | None = None) -> str:
    """The template with a fresh YAML header and every generated block filled in."""
    try:
        text = template.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise recipe.BuildError(template, "card template", "file not found") from None
    body = DatasetCard(text).text if text.startswith("---") else text
    for name, content in generated_blocks(info=info, stats=stats, report=report, extras=extras or {}).items():
        body = fill_block(body, name, content, template=template)
    card = DatasetCard(f"---\n{card_data(info).to_yaml()}\n---\n{body.lstrip()}")
    return str(card)


def fill_block(body: str, name: str, content: str, *, template: Path) -> str:
    """`body` with the generated block `name` holding `content`."""
    begin, end = BEGIN.format(name), END.format(name)
    head, found, rest = body.partition(begin)
    if not found or end not in rest:
        raise recipe.BuildError(template, f"generated block {name!r}", f"template lacks {begin} ... {end}")
    return f"{head}{begin}\n{content}\n{end}{rest.partition(end)[2]}"
