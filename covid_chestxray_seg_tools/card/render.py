"""The card: its YAML header from the builder's features, its generated blocks from the build.

A template holds `<!-- BEGIN GENERATED: name -->` ... `<!-- END GENERATED: name -->`
markers; rendering replaces what stands between them and writes a fresh YAML header,
so tables and metadata always derive from the builder and the built files.
"""

from __future__ import annotations

import re
from pathlib import Path

import datasets
from datasets.info import DatasetInfosDict
from huggingface_hub import DatasetCard, DatasetCardData

import covid_chestxray_seg as recipe
from covid_chestxray_seg_tools import layout
from covid_chestxray_seg_tools.card.licence import licence_table
from covid_chestxray_seg_tools.card.preview import PREVIEW_LICENCES
from covid_chestxray_seg_tools.dialect import portable_yaml_features
from covid_chestxray_seg_tools.errors import CovidSegError


class CardError(CovidSegError, ValueError):
    """A card template that cannot be rendered."""


BEGIN, END = "<!-- BEGIN GENERATED: {} -->", "<!-- END GENERATED: {} -->"
# Where the template's code names the dataset: the repo id it is built (or published) for.
REPO_ID_TOKEN = "__REPO_ID__"
DEFAULT_REPO_ID = "ORG/covid-chestxray-seg"
LICENSE_NAME = "cc-by-4.0-annotations-per-image-licences"
TEMPLATE = Path(__file__).with_name("template.md")


def card_data(infos: dict[str, datasets.DatasetInfo], folder: Path) -> DatasetCardData:
    """The card's YAML header, derived from the builder and the layout."""
    data = DatasetCardData(
        pretty_name="COVID-19 Chest X-ray Segmentations",
        license="other",
        license_name=LICENSE_NAME,
        license_link=layout.LICENSE_FILENAME,
        language=["en"],
        annotations_creators=["expert-generated"],
        source_datasets=["original"],
        task_categories=["image-segmentation"],
        task_ids=["semantic-segmentation", "instance-segmentation"],
        size_categories=["n<1K"],
        tags=["medical", "chest-x-ray", "covid-19", "radiology", "coco", "segmentation-masks"],
        configs=[
            {
                "config_name": config,
                **({"default": True} if config == layout.CONFIG_NAME else {}),
                "data_files": layout.data_files(folder, recipe.SPLITS, config=config),
            }
            for config in layout.CONFIG_PARTS
        ],
    )
    DatasetInfosDict(infos).to_dataset_card_data(data)
    entries = data["dataset_info"] if isinstance(data["dataset_info"], list) else [data["dataset_info"]]
    for entry in entries:
        entry["features"] = portable_yaml_features(entry["features"])
    return data


def generated_blocks(*, infos: dict[str, datasets.DatasetInfo], stats: dict, report, extras: dict) -> dict[str, str]:
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
    renamed = ", ".join(f"`{old}` -> `{new}`" for old, new in report.renamed_categories.items()) or "none"
    modified = ", ".join(f"`{path}`" for path in report.modified_files) or "none"
    annotation_state = (
        "equal to upstream's file"
        if report.annotation_upstream
        else "**not** upstream's file (a rebuild or a modified copy)"
    )
    provenance = [
        f"- Upstream: [{recipe.HOMEPAGE}]({recipe.HOMEPAGE}) at commit `{recipe.UPSTREAM_COMMIT}`.",
        f"- Manifest check (size and git blob SHA-1 of the images and `{recipe.METADATA_FILE}` "
        f"and the severity file against their pinned manifests): files that differ: {modified}.",
        f"- Annotation file: `{report.annotation_file}`, SHA-256 `{report.annotation_sha256}`, {annotation_state}.",
        f"- Severity scores: [{recipe.SEVERITY_HOMEPAGE}]({recipe.SEVERITY_HOMEPAGE}) `{recipe.SEVERITY_PATH}` "
        f"at commit `{recipe.SEVERITY_COMMIT}`, checked by size and git blob SHA-1.",
        f"- Builder version {recipe.BUILDER_VERSION}, built with `datasets` {datasets.__version__}.",
    ]
    quirks = [
        f"- {report.annotations_without_segmentation} annotations have no segmentation upstream: they are kept in "
        "`objects` with a null `segmentation`, and their class mask is null on that image.",
        f"- Renamed upstream categories: {renamed}.",
        f"- {report.images_without_license} images have no licence in `{recipe.METADATA_FILE}`: "
        "their `license` is null.",
        f"- {stats['patients_with_series']} patients have a series of images ({stats['images_in_series']} images, "
        f"up to {stats['largest_series']} for one patient): the splits keep each series together.",
    ]
    if not report.annotation_upstream:
        quirks.append(
            f"- `{report.annotation_file}` is not upstream's own file: upstream's COCO export could not be used, "
            "and this one was rebuilt from upstream's mask crops (`masks/`, `structure.csv`); "
            "the data-quality report below compares it with them."
        )
    configs = [
        "| config | " + " | ".join(recipe.SPLITS) + " | all | what it holds |",
        "|---|" + "---:|" * (len(recipe.SPLITS) + 1) + "---|",
    ]
    for config, info in infos.items():
        counts = [info.splits[split].num_examples for split in recipe.SPLITS]
        configs.append(f"| `{config}` | " + " | ".join(map(str, counts)) + f" | {sum(counts)} | {info.description} |")
    folds = [
        "| fold | images | patients | " + " | ".join(stats["findings"]) + " |",
        "|---|---:|---:|" + "---:|" * len(stats["findings"]),
    ]
    for fold, row in stats["folds"].items():
        folds.append(
            f"| {fold} | {row['images']} | {row['patients']} | "
            + " | ".join(str(row["findings"][f]) for f in stats["findings"])
            + " |"
        )
    legend = ["| class | colour |", "|---|---|"]
    legend += [
        f"| {name} | `#{red:02x}{green:02x}{blue:02x}` |"
        for name, (red, green, blue) in zip(recipe.CLASSES, recipe.CLASS_COLOURS)
    ]
    severity = extras.get("severity")
    if severity and severity["correlation"]["rho"] is not None:
        correlation = severity["correlation"]
        severity_text = (
            f"{stats['images_with_severity']} of {stats['images']} images have ieee8023's expert scores. Over the "
            f"{correlation['n']} scored images that have both lung masks, the share of the lung fields covered by "
            f"ground-glass opacity or consolidation ranks with `severity_geographic_extent` at Spearman's "
            f"rho = {correlation['rho']:.2f} (p = {correlation['p']:.1g})."
        )
        if severity.get("plot"):
            severity_text += (
                f"\n\n![Lesion share of the lung fields against the geographic extent score]({severity['plot']})"
            )
    else:
        severity_text = f"{stats['images_with_severity']} of {stats['images']} images have ieee8023's expert scores."
    viewer = extras.get("viewer") or {}
    viewer_text = (
        (
            "The viewer's first page (its 200 KB preview of each split) shows "
            + ", ".join(
                f"{count} of {stats['splits'][split]['images']} {split} rows" for split, count in viewer.items()
            )
            + ": the `objects` column (every annotation's exact RLE) takes most of each row's bytes. "
            "Every row is still there: page on, or use the search and filters."
        )
        if viewer
        else ""
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
        f"{len(recipe.CLASSES)} classes; {infos[layout.CONFIG_NAME].download_size / 1e6:.1f} MB of Parquet."
    )
    return {
        "summary": summary,
        "preview": preview,
        "classes": "\n".join(classes),
        "splits": "\n".join(splits),
        "licences": licence_table(stats),
        "configs": "\n".join(configs),
        "folds": "\n".join(folds),
        "legend": "\n".join(legend),
        "severity": severity_text,
        "viewer": viewer_text,
        "baseline": extras.get("baseline") or "Not computed for this build (`covid-seg build --baseline` computes it).",
        "unet": extras.get("unet")
        or "Not in this build (`covid-seg build --baseline` renders it from the results file that "
        "`covid-seg baseline unet --results` writes).",
        "provenance": "\n".join(provenance),
        "quirks": "\n".join(quirks),
        "validation": validation.summary()
        if validation is not None
        else "Not run for this build (`covid-seg build --validate` or `covid-seg validate` runs it).",
        "citation": f"```bibtex\n{recipe.CITATION.strip()}\n```",
    }


def render_card(
    template: Path,
    *,
    folder: Path,
    infos: dict[str, datasets.DatasetInfo],
    stats: dict,
    report,
    extras: dict | None = None,
    repo_id: str = DEFAULT_REPO_ID,
) -> str:
    """The template with a fresh YAML header, every generated block filled in and `repo_id`
    wherever the code names the dataset."""
    try:
        text = template.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CardError(f"{template}: card template: file not found") from None
    body = DatasetCard(text).text if text.startswith("---") else text
    for name, content in generated_blocks(infos=infos, stats=stats, report=report, extras=extras or {}).items():
        body = fill_block(body, name, content, template=template)
    body = body.replace(REPO_ID_TOKEN, repo_id)
    card = DatasetCard(f"---\n{card_data(infos, folder).to_yaml()}\n---\n{body.lstrip()}")
    return str(card)


_LOAD_CALL = re.compile(r"""(load_dataset\(\s*)(["'])([^"']+)\2""")


def card_for_repo(card: str, repo_id: str) -> str:
    """The card with every `load_dataset("...")` naming `repo_id`: a card built for one repo
    (or none) is published to another."""
    return _LOAD_CALL.sub(lambda match: f"{match.group(1)}{match.group(2)}{repo_id}{match.group(2)}", card)


def fill_block(body: str, name: str, content: str, *, template: Path) -> str:
    """`body` with the generated block `name` holding `content`."""
    begin, end = BEGIN.format(name), END.format(name)
    head, found, rest = body.partition(begin)
    if not found or end not in rest:
        raise CardError(f"{template}: generated block {name!r}: template lacks {begin} ... {end}")
    return f"{head}{begin}\n{content}\n{end}{rest.partition(end)[2]}"
