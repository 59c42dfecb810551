"""The card: its YAML header from the builder's features, its generated blocks from the build.

A template holds `<!-- BEGIN GENERATED: name -->` ... `<!-- END GENERATED: name -->`
markers; rendering replaces what stands between them and writes a fresh YAML header,
so tables and metadata always derive from the builder and the built files.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
from datasets.info import DatasetInfosDict
from huggingface_hub import DatasetCard, DatasetCardData

import covid_chestxray_seg as recipe
from covid_chestxray_seg_tools.card.citation import citation_text
from covid_chestxray_seg_tools.card.legend import legend_table
from covid_chestxray_seg_tools.card.license import license_table, licensed_config_text
from covid_chestxray_seg_tools.card.metadata_summary import metadata_table
from covid_chestxray_seg_tools.card.preview import PREVIEW_LICENSES
from covid_chestxray_seg_tools.card.quality import flagged_images_text, view_conflicts_text
from covid_chestxray_seg_tools.card.semantics import overlap_table, sides_text
from covid_chestxray_seg_tools.card.stats import CardStats
from covid_chestxray_seg_tools.errors import CovidSegError
from covid_chestxray_seg_tools.hub_folder import layout
from covid_chestxray_seg_tools.hub_folder.dialect import portable_yaml_features

__all__ = [
    "DEFAULT_REPO_ID",
    "DEFAULT_TOOLS_URL",
    "LICENSE_NAME",
    "TEMPLATE",
    "CardError",
    "CardOptions",
    "card_data",
    "card_for_repo",
    "check_tools_url",
    "render_card",
]


class CardError(CovidSegError, ValueError):
    """A card template that cannot be rendered."""


BEGIN, END = "<!-- BEGIN GENERATED: {} -->", "<!-- END GENERATED: {} -->"
# Where the template's code names the dataset: the repo id it is built (or published) for.
_REPO_ID_TOKEN = "__REPO_ID__"
DEFAULT_REPO_ID = "ORG/covid-chestxray-seg"
# Where the template names the repository of these tools (people install `covid-seg` from it).
# The default is a placeholder like DEFAULT_REPO_ID's ORG; its owner (OWNER, on GitHub) need not
# be the Hub organisation, and a card published to another repo id names ORG nowhere.
_TOOLS_URL_TOKEN = "__TOOLS_URL__"
DEFAULT_TOOLS_URL = "https://github.com/OWNER/covid-chestxray-seg"
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
        # The Hub's image-segmentation subtasks are instance, semantic and panoptic (huggingface.js
        # tasks/src/pipelines.ts, as of 2026-12); none means "independent overlapping masks", and
        # semantic-segmentation reads as one label per pixel, which these masks are not. The
        # per-annotation RLE in `objects` is instance segmentation; the tag says the rest.
        task_ids=["instance-segmentation"],
        size_categories=["n<1K"],
        tags=[
            "medical",
            "chest-x-ray",
            "covid-19",
            "radiology",
            "coco",
            "segmentation-masks",
            "multi-label-segmentation",
        ],
        configs=[
            {
                "config_name": config,
                **({"default": True} if config == layout.CONFIG_NAME else {}),
                "data_files": layout.data_files(folder, list(recipe.SPLITS), config=config),
            }
            for config in layout.CONFIG_PARTS
        ],
    )
    DatasetInfosDict(infos).to_dataset_card_data(data)
    entries = data["dataset_info"] if isinstance(data["dataset_info"], list) else [data["dataset_info"]]
    for entry in entries:
        entry["features"] = portable_yaml_features(entry["features"])
    return data


def _generated_blocks(
    *, infos: dict[str, datasets.DatasetInfo], stats: CardStats, report: recipe.BuildReport, extras: dict[str, Any]
) -> dict[str, str]:
    """Every generated part of the card, from the builder's constants and the built files."""

    def pct(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.2f}"

    classes = [
        "| # | class | mask column | instances | images | without segmentation | mean area % | median area % |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for number, name in enumerate(recipe.CLASSES):
        of_class = stats["classes"][name]
        classes.append(
            f"| {number} | {name} | `{recipe.MASK_COLUMNS[number]}` | {of_class['instances']} | {of_class['images']} | "
            f"{of_class['without_segmentation']} | {pct(of_class['mean_area_pct'])} | "
            f"{pct(of_class['median_area_pct'])} |"
        )
    splits = ["| split | images | patients | annotations | Parquet files |", "|---|---:|---:|---:|---:|"]
    for split, of_split in stats["splits"].items():
        splits.append(
            f"| {split} | {of_split['images']} | {of_split['patients']} | {of_split['annotations']} "
            f"| {of_split['files']} |"
        )
    splits += ["", "| finding | " + " | ".join(recipe.SPLITS) + " |", "|---|" + "---:|" * len(recipe.SPLITS)]
    for finding, counts in stats["findings"].items():
        splits.append(f"| {finding} | " + " | ".join(str(counts[split]) for split in recipe.SPLITS) + " |")
    renamed = ", ".join(f"`{old}` -> `{new}`" for old, new in report.renamed_categories.items()) or "none"
    modified = ", ".join(f"`{path}`" for path in report.modified_files) or "none"
    if report.annotation_upstream:
        annotation_state = "equal to upstream's file (its git blob SHA-1 is the one upstream's commit lists)"
    else:
        annotation_state = (
            "**not** upstream's own file: upstream's COCO export could not be copied, and this one was rebuilt "
            "from upstream's mask crops (`masks/`, `structure.csv`). It is outside the manifest check; the "
            "data-quality report below compares every segmentation in it with upstream's crops instead"
        )
    changes = recipe.BUILDER_CHANGES.get(recipe.BUILDER_VERSION)
    provenance = [
        f"- Upstream: [{recipe.HOMEPAGE}]({recipe.HOMEPAGE}) at commit `{recipe.UPSTREAM_COMMIT}`.",
        f"- Manifest check: the images, `{recipe.METADATA_FILE}` and the severity file are compared by size and "
        "git blob SHA-1 with the files of the pinned commits, and a difference stops the build (unless told to "
        f"accept it, and then it is listed here). Files that differ: {modified}.",
        f"- Annotation file: `{report.annotation_file}`, SHA-256 `{report.annotation_sha256}`, {annotation_state}.",
        f"- Severity scores: [{recipe.SEVERITY_HOMEPAGE}]({recipe.SEVERITY_HOMEPAGE}) `{recipe.SEVERITY_PATH}` "
        f"at commit `{recipe.SEVERITY_COMMIT}`, checked by size and git blob SHA-1.",
        f"- Builder version {recipe.BUILDER_VERSION}, built with `datasets` {datasets.__version__}."
        + (f" Changes in {recipe.BUILDER_VERSION}: {changes}." if changes else ""),
    ]
    quirks = [
        flagged_images_text(stats["quality_flags"]),
        view_conflicts_text(stats["view_conflicts"], images=stats["images"]),
        f"- {report.annotations_without_segmentation} annotations have no segmentation upstream: they are kept in "
        "`objects` with a null `segmentation`, and their class mask is null on that image.",
        f"- Renamed upstream categories: {renamed}.",
        f"- {report.images_without_license} images have no licence in `{recipe.METADATA_FILE}`: "
        "their `license` is null.",
        f"- {stats['patients_with_series']} patients have a series of images ({stats['images_in_series']} images, "
        f"up to {stats['largest_series']} for one patient): the splits keep each series together.",
    ]
    configs = [
        "| config | " + " | ".join(recipe.SPLITS) + " | all | what it holds |",
        "|---|" + "---:|" * (len(recipe.SPLITS) + 1) + "---|",
    ]
    for config, info in infos.items():
        rows = [info.splits[split].num_examples for split in recipe.SPLITS]
        configs.append(f"| `{config}` | " + " | ".join(map(str, rows)) + f" | {sum(rows)} | {info.description} |")
    folds = [
        "| fold | images | patients | " + " | ".join(stats["findings"]) + " |",
        "|---|---:|---:|" + "---:|" * len(stats["findings"]),
    ]
    for fold, of_fold in stats["folds"].items():
        folds.append(
            f"| {fold} | {of_fold['images']} | {of_fold['patients']} | "
            + " | ".join(str(of_fold["findings"][f]) for f in stats["findings"])
            + " |"
        )
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
    validation = extras.get("validation")
    shown = extras.get("preview") or []
    if shown:
        credits = "; ".join(f"`{item['file_name']}` ({item['license']}, {item['url']})" for item in shown)
        preview = (
            f"![Chest X-rays with their masks overlaid: anatomy outlined, opacities filled, devices as lines]"
            f"({layout.PREVIEW_PATH})\n\n"
        )
    else:
        preview = f"No image has a {' or '.join(PREVIEW_LICENSES)} licence, so none is shown here.\n\n"
    if extras.get("legend"):
        preview += f"![The overlay's legend: a swatch per class, drawn as in the overlay]({extras['legend']})"
    if shown:
        preview += f"\n\nImages shown (the openly licensed ones): {credits}."
    summary = (
        f"{stats['images']} images of {stats['patients']} patients, {stats['annotations']} annotations in "
        f"{len(recipe.CLASSES)} classes; {infos[layout.CONFIG_NAME].download_size / 1e6:.1f} MB of Parquet."
    )
    return {
        "summary": summary,
        "preview": preview,
        "classes": "\n".join(classes),
        "splits": "\n".join(splits),
        "licenses": license_table(stats),
        "configs": "\n".join(configs) + "\n\n" + licensed_config_text(stats),
        "metadata": metadata_table(stats["metadata"], images=stats["images"]),
        "overlap": overlap_table(stats["overlap"]),
        "sides": sides_text(stats["sides"]),
        "folds": "\n".join(folds),
        "legend": legend_table(),
        "severity": severity_text,
        "baseline": extras.get("baseline") or "Not computed for this build (`covid-seg build --baseline` computes it).",
        "unet": extras.get("unet")
        or "Not in this build (`covid-seg build --baseline` renders it from the results file that "
        "`covid-seg baseline unet --results` writes).",
        "provenance": "\n".join(provenance),
        "quirks": "\n".join(quirks),
        "validation": validation.summary()
        if validation is not None
        else "Not run for this build (`covid-seg build --validate` or `covid-seg validate` runs it).",
        "citation": citation_text(_REPO_ID_TOKEN),
    }


@dataclass(frozen=True)
class CardOptions:
    """What a build's card is rendered from, beside the build itself.

    Attributes:
        template: the card template (generated blocks between markers).
        repo_id: the Hub repo the card's code loads (publishing rewrites it).
        tools_url: the repository of these tools the card tells people to install `covid-seg` from.
    """

    template: Path = TEMPLATE
    repo_id: str = DEFAULT_REPO_ID
    tools_url: str = DEFAULT_TOOLS_URL


def render_card(
    *,
    folder: Path,
    infos: dict[str, datasets.DatasetInfo],
    stats: CardStats,
    report: recipe.BuildReport,
    extras: dict[str, Any] | None = None,
    options: CardOptions | None = None,
) -> str:
    """The template with a fresh YAML header, every generated block filled in, the repo id
    wherever the code names the dataset and the tools' URL wherever it names these tools.

    Raises:
        CardError: the template is missing or lacks a block, the tools' URL is not one pip installs from.
    """
    options = options or CardOptions()
    template, repo_id, tools_url = options.template, options.repo_id, options.tools_url
    check_tools_url(tools_url)
    try:
        text = template.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CardError(f"{template}: card template: file not found") from None
    body = DatasetCard(text).text if text.startswith("---") else text
    for name, content in _generated_blocks(infos=infos, stats=stats, report=report, extras=extras or {}).items():
        body = _fill_block(body, name, content, template=template)
    body = body.replace(_REPO_ID_TOKEN, repo_id).replace(_TOOLS_URL_TOKEN, tools_url)
    card = DatasetCard(f"---\n{card_data(infos, folder).to_yaml()}\n---\n{body.lstrip()}")
    return str(card)


_LOAD_CALL = re.compile(r"""(load_dataset\(\s*)(["'])([^"']+)\2""")
# `covid-seg ... --source ORG/NAME` in the card's commands (a repo id, never a local folder there).
_SOURCE_OPTION = re.compile(r"(--source\s+)[A-Za-z0-9][\w.-]*/[\w.-]+")
# The install line names the tools' URL; its other mentions are found from there.
_INSTALL_LINE = re.compile(r"""covid-chestxray-seg @ git\+([^\s"']+)""")
_TOOLS_URL = re.compile(r"(https?|ssh|git|file)://[^\s\"'<>()\[\]`]+")


def check_tools_url(url: str) -> str:
    """`url`, checked to be a URL pip can install from with `git+` (http(s), ssh, git or file).

    Raises:
        CardError: it is not.
    """
    if not _TOOLS_URL.fullmatch(url):
        raise CardError(
            "not a repository URL pip installs from with git+ (https://, ssh://, git:// or file://, without spaces "
            "or quotes)",
            setting="tools_url",
            value=url,
        )
    return url


def card_for_repo(card: str, repo_id: str, *, tools_url: str | None = None) -> str:
    """The card with every `load_dataset("...")`, `--source` and link to the dataset's Hub page
    (the citation's) naming `repo_id` (a card built for one repo, or none, is published to
    another), and, when given, `tools_url` wherever the card names the tools' repository. Links
    to other repos (the FiftyOne companion's) stay as they are.

    Raises:
        CardError: `tools_url` is not a URL pip installs from, or the card names no tools URL
            to replace (a build of an older version).
    """
    built_for = _LOAD_CALL.search(card)
    card = _LOAD_CALL.sub(lambda match: f"{match.group(1)}{match.group(2)}{repo_id}{match.group(2)}", card)
    card = _SOURCE_OPTION.sub(lambda match: f"{match.group(1)}{repo_id}", card)
    if built_for is not None:
        # The repo id the card was built for, whole: "ORG/NAME-fiftyone" is another repo.
        page = re.compile(rf"(https://huggingface\.co/datasets/){re.escape(built_for.group(3))}(?![\w.-])")
        card = page.sub(lambda match: f"{match.group(1)}{repo_id}", card)
    if tools_url is None:
        return card
    check_tools_url(tools_url)
    found = _INSTALL_LINE.search(card)
    if found is None:
        raise CardError(
            'the card names no tools URL to replace (no `pip install "covid-chestxray-seg @ git+URL"`)',
            setting="tools_url",
            fix=f"build it again with {recipe.setting('tools_url', 'URL')}",
        )
    # The old URL where it stands alone: not where it is the start of a longer URL.
    mentions = re.compile(re.escape(found.group(1)) + r"(?![\w./-])")
    return mentions.sub(lambda _: tools_url, card)


def _fill_block(body: str, name: str, content: str, *, template: Path) -> str:
    """`body` with the generated block `name` holding `content`."""
    begin, end = BEGIN.format(name), END.format(name)
    head, found, rest = body.partition(begin)
    if not found or end not in rest:
        raise CardError(f"{template}: generated block {name!r}: template lacks {begin} ... {end}")
    return f"{head}{begin}\n{content}\n{end}{rest.partition(end)[2]}"
