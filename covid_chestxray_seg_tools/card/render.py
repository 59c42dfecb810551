"""The card: its YAML header from the builder's features, its generated blocks from the build.

A template holds `<!-- BEGIN GENERATED: name -->` ... `<!-- END GENERATED: name -->`
markers; rendering replaces what stands between them and writes a fresh YAML header,
so tables and metadata always derive from the builder and the built files.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
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
from covid_chestxray_seg_tools.card.quality import known_issues_text
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
    "CardGap",
    "CardOptions",
    "card_data",
    "card_gaps",
    "check_tools_url",
    "mark_draft",
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
    """The card's YAML header, derived from the builder and the layout.

    Args:
        infos: the builder's infos, by config.
        folder: the built folder (its data files name the configs' splits).

    Returns:
        The header: licence, tasks, tags, configs and each config's features and sizes.
    """
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


@dataclass(frozen=True)
class _BlockInputs:
    """What the generated blocks are rendered from: the builder's infos, the built files' counts,
    the build's report and its optional parts (`render_card`'s `extras`)."""

    infos: dict[str, datasets.DatasetInfo]
    stats: CardStats
    report: recipe.BuildReport
    extras: dict[str, Any]


# What the card says where the build left an optional part out.
_BASELINE_NOT_COMPUTED = "Not computed for this build (`covid-seg build --baseline` computes it)."
_UNET_NOT_IN_BUILD = (
    "Not in this build (`covid-seg build --baseline` renders it from the results file that "
    "`covid-seg baseline unet --results` writes)."
)
_VALIDATION_NOT_RUN = "Not run for this build (`covid-seg build --validate` or `covid-seg validate` runs it)."


@dataclass(frozen=True)
class CardGap:
    """A hole in a card that a release must not have.

    Attributes:
        what: the hole, in words.
        fill: how a build or a publish fills it, naming settings as `${name}`.
    """

    what: str
    fill: str


# Generated block -> (its text when the build left it out, the gap that text is).
_OPTIONAL_BLOCKS = {
    "baseline": (
        _BASELINE_NOT_COMPUTED,
        CardGap("the atlas baseline tables are not computed", recipe.setting("baseline")),
    ),
    "unet": (
        _UNET_NOT_IN_BUILD,
        CardGap("the U-Net table is not in the build", f"{recipe.setting('baseline')} with a U-Net results file"),
    ),
    "validation": (_VALIDATION_NOT_RUN, CardGap("the data-quality report was not run", recipe.setting("validate"))),
}
# A placeholder where a link or a command needs the real repository.
_PLACEHOLDER = re.compile(r"https?://[^\s\"'()<>`\]]*\bOWNER\b[^\s\"'()<>`\]]*|\bORG/[\w.-]+")
_DRAFT_NOTE = "> **Draft.** This card is incomplete and is no release: {gaps}."


def card_gaps(card: str) -> list[CardGap]:
    """What a rendered card lacks for a release: optional sections the build left out, and
    placeholders (`OWNER`, `ORG/...`) where a link or a command needs the real repository.

    Args:
        card: the card as it is to be published (the repo id and tools URL rewritten).

    Returns:
        The gaps, in card order; empty for a complete card.
    """
    gaps = [
        gap
        for name, (missing, gap) in _OPTIONAL_BLOCKS.items()
        if f"{BEGIN.format(name)}\n{missing}\n{END.format(name)}" in card
    ]
    for placeholder in dict.fromkeys(_PLACEHOLDER.findall(card)):
        fill = recipe.setting("tools_url", "URL") if "OWNER" in placeholder else recipe.setting("repo_id")
        gaps.append(CardGap(f"the card names the placeholder {placeholder}", fill))
    return gaps


def mark_draft(card: str, gaps: Sequence[CardGap]) -> str:
    """The card with a note at the top of its text saying it is a draft, and why."""
    note = _DRAFT_NOTE.format(gaps="; ".join(gap.what for gap in gaps))
    head, separator, body = card.partition("\n---\n") if card.startswith("---") else ("", "", card)
    return f"{head}{separator}{note}\n\n{body.lstrip()}"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _summary_block(stats: CardStats, infos: dict[str, datasets.DatasetInfo]) -> str:
    return (
        f"{stats['images']} images of {stats['patients']} patients, {stats['annotations']} annotations in "
        f"{len(recipe.CLASSES)} classes; {infos[layout.CONFIG_NAME].download_size / 1e6:.1f} MB of Parquet."
    )


def _preview_block(extras: dict[str, Any]) -> str:
    shown = extras.get("preview") or []
    if shown:
        text = (
            f"![Chest X-rays with their masks overlaid: anatomy outlined, opacities filled, devices as lines]"
            f"({layout.PREVIEW_PATH})\n\n"
        )
    else:
        text = f"No image has a {' or '.join(PREVIEW_LICENSES)} licence, so none is shown here.\n\n"
    if extras.get("legend"):
        text += f"![The overlay's legend: a swatch per class, drawn as in the overlay]({extras['legend']})"
    if shown:
        credits = "; ".join(f"`{item['file_name']}` ({item['license']}, {item['url']})" for item in shown)
        text += f"\n\nImages shown (the openly licensed ones): {credits}."
    return text


def _classes_block(stats: CardStats) -> str:
    lines = [
        "| # | class | mask column | instances | images | without segmentation | mean area % | median area % |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for number, name in enumerate(recipe.CLASSES):
        of_class = stats["classes"][name]
        lines.append(
            f"| {number} | {name} | `{recipe.MASK_COLUMNS[number]}` | {of_class['instances']} | {of_class['images']} | "
            f"{of_class['without_segmentation']} | {_pct(of_class['mean_area_pct'])} | "
            f"{_pct(of_class['median_area_pct'])} |"
        )
    return "\n".join(lines)


def _splits_block(stats: CardStats) -> str:
    # The splits' counts, then the findings by split.
    lines = ["| split | images | patients | annotations | Parquet files |", "|---|---:|---:|---:|---:|"]
    for split, of_split in stats["splits"].items():
        lines.append(
            f"| {split} | {of_split['images']} | {of_split['patients']} | {of_split['annotations']} "
            f"| {of_split['files']} |"
        )
    lines += ["", "| finding | " + " | ".join(recipe.SPLITS) + " |", "|---|" + "---:|" * len(recipe.SPLITS)]
    for finding, counts in stats["findings"].items():
        lines.append(f"| {finding} | " + " | ".join(str(counts[split]) for split in recipe.SPLITS) + " |")
    return "\n".join(lines)


def _configs_block(infos: dict[str, datasets.DatasetInfo], stats: CardStats) -> str:
    lines = [
        "| config | " + " | ".join(recipe.SPLITS) + " | all | what it holds |",
        "|---|" + "---:|" * (len(recipe.SPLITS) + 1) + "---|",
    ]
    for config, info in infos.items():
        rows = [info.splits[split].num_examples for split in recipe.SPLITS]
        lines.append(f"| `{config}` | " + " | ".join(map(str, rows)) + f" | {sum(rows)} | {info.description} |")
    return "\n".join(lines) + "\n\n" + licensed_config_text(stats)


def _folds_block(stats: CardStats) -> str:
    # The findings' columns in the order of the splits table (the commonest first).
    findings = stats["findings"]
    lines = [
        "| fold | images | patients | " + " | ".join(findings) + " |",
        "|---|---:|---:|" + "---:|" * len(findings),
    ]
    for fold, of_fold in stats["folds"].items():
        lines.append(
            f"| {fold} | {of_fold['images']} | {of_fold['patients']} | "
            + " | ".join(str(of_fold["findings"][finding]) for finding in findings)
            + " |"
        )
    return "\n".join(lines)


def _severity_block(stats: CardStats, severity: dict[str, Any] | None) -> str:
    text = f"{stats['images_with_severity']} of {stats['images']} images have ieee8023's expert scores."
    # Under 3 scored images with both lungs there is no rho (severity.severity_correlation).
    if not severity or severity["correlation"]["rho"] is None:
        return text
    correlation = severity["correlation"]
    text += (
        f" Over the {correlation['n']} scored images that have both lung masks, the share of the lung fields "
        f"covered by ground-glass opacity or consolidation ranks with `severity_geographic_extent` at Spearman's "
        f"rho = {correlation['rho']:.2f} (p = {correlation['p']:.1g})."
    )
    if severity.get("plot"):
        text += f"\n\n![Lesion share of the lung fields against the geographic extent score]({severity['plot']})"
    return text


def _provenance_block(report: recipe.BuildReport) -> str:
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
    return "\n".join(
        [
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
    )


def _benchmark_block() -> str:
    """The benchmark's definition (`evaluate.protocol.BENCHMARK`) and each class's tier."""
    # Imported here: the evaluate package loads scipy and scikit-image, which publishing a
    # card (card.repo, card_gaps) does not need; a build has loaded them already.
    from covid_chestxray_seg_tools.evaluate import protocol

    rows = [
        "| class | development images with a mask | tier |",
        "|---|---:|---|",
        *(
            f"| {name} | {recipe.DEVELOPMENT_MASK_IMAGES[name]} | {recipe.CLASS_TIERS[name]} |"
            for name in recipe.CLASSES
        ),
    ]
    return protocol.BENCHMARK + "\n\n" + "\n".join(rows)


def _protocol_block() -> str:
    """The protocol's rules (`evaluate.protocol.RULES`), one bullet each."""
    from covid_chestxray_seg_tools.evaluate import protocol

    return "\n".join(f"- {text}" for text in protocol.RULES.values())


def _validation_block(validation: Any) -> str:
    # `validation` is the report of `validate.validate` when the build ran it (its `summary()` is the block).
    return validation.summary() if validation is not None else _VALIDATION_NOT_RUN


# Every generated block of the template, by its name (`<!-- BEGIN GENERATED: name -->`), and
# what it is rendered from.
_BLOCKS: dict[str, Callable[[_BlockInputs], str]] = {
    "summary": lambda given: _summary_block(given.stats, given.infos),
    "preview": lambda given: _preview_block(given.extras),
    "classes": lambda given: _classes_block(given.stats),
    "splits": lambda given: _splits_block(given.stats),
    "licenses": lambda given: license_table(given.stats),
    "configs": lambda given: _configs_block(given.infos, given.stats),
    "metadata": lambda given: metadata_table(given.stats["metadata"], images=given.stats["images"]),
    "overlap": lambda given: overlap_table(given.stats["overlap"]),
    "sides": lambda given: sides_text(given.stats["sides"]),
    "folds": lambda given: _folds_block(given.stats),
    "legend": lambda given: legend_table(),
    "severity": lambda given: _severity_block(given.stats, given.extras.get("severity")),
    "baseline": lambda given: given.extras.get("baseline") or _BASELINE_NOT_COMPUTED,
    "unet": lambda given: given.extras.get("unet") or _UNET_NOT_IN_BUILD,
    # A GPU run: shown where one was scored, nothing otherwise (no machine of ours has a GPU).
    "nnunet": lambda given: given.extras.get("nnunet") or "",
    "provenance": lambda given: _provenance_block(given.report),
    "quirks": lambda given: known_issues_text(given.stats, given.report),
    "validation": lambda given: _validation_block(given.extras.get("validation")),
    "citation": lambda given: citation_text(_REPO_ID_TOKEN),
    "benchmark": lambda given: _benchmark_block(),
    "protocol": lambda given: _protocol_block(),
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

    Args:
        folder: the built folder.
        infos: the builder's infos, by config.
        stats: the built files' counts (`card.stats.compute_stats`).
        report: what the build read and the upstream quirks it handled.
        extras: the build's optional parts, by name: "preview" (the shown images), "legend" and
            "severity" (pictures and the correlation), "baseline" and "unet" (tables),
            "validation" (a report with `summary()`); a block whose part is missing says so.
        options: the template, the repo id and the tools' URL.

    Returns:
        The card, YAML header included.

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
    given = _BlockInputs(infos=infos, stats=stats, report=report, extras=extras or {})
    blocks = {name: render_block(given) for name, render_block in _BLOCKS.items()}
    for name, content in blocks.items():
        body = _fill_block(body, name, content, template=template)
    body = body.replace(_REPO_ID_TOKEN, repo_id).replace(_TOOLS_URL_TOKEN, tools_url)
    card = DatasetCard(f"---\n{card_data(infos, folder).to_yaml()}\n---\n{body.lstrip()}")
    return str(card)


_TOOLS_URL = re.compile(r"(https?|ssh|git|file)://[^\s\"'<>()\[\]`]+")


def check_tools_url(url: str) -> str:
    """`url`, checked to be a URL pip can install from with `git+` (http(s), ssh, git or file).

    Args:
        url: the tools' repository URL.

    Returns:
        `url`, unchanged.

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


def _fill_block(body: str, name: str, content: str, *, template: Path) -> str:
    """`body` with the generated block `name` holding `content`."""
    begin, end = BEGIN.format(name), END.format(name)
    head, found, rest = body.partition(begin)
    if not found or end not in rest:
        raise CardError(f"{template}: generated block {name!r}: template lacks {begin} ... {end}")
    return f"{head}{begin}\n{content}\n{end}{rest.partition(end)[2]}"
