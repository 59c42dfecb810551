"""What the card tells a careful user, recomputed from the built files: class overlaps and sides
from the mask PNGs, licence terms and counts, the metadata summary and its contradictions, the
task metadata, the citation, and links that point where they say."""

from __future__ import annotations

import io
import re
import statistics
from collections import Counter

import numpy as np
import pytest
import yaml
from huggingface_hub import DatasetCard
from PIL import Image

import covid_chestxray_seg as recipe
from covid_chestxray_seg_dev.hub.metadata import dataset_metadata_errors
from covid_chestxray_seg_tools.card import repo
from covid_chestxray_seg_tools.card.stats import OVERLAP_CLASSES, view_hints
from tests.helpers import REPO, parquet_rows

# The Hub's subtasks of image-segmentation (huggingface.js packages/tasks/src/pipelines.ts, as
# of 2026-12): instance-, semantic- and panoptic-segmentation; none is "multi-label".
HUB_SEGMENTATION_TASK_IDS = {"instance-segmentation", "semantic-segmentation", "panoptic-segmentation"}


def card_text(folder) -> str:
    return (folder / "README.md").read_text()


def section(text: str, heading: str) -> str:
    return text.split(f"\n{heading}\n")[1].split("\n## ")[0]


def decoded(png: dict | None) -> np.ndarray | None:
    if png is None:
        return None
    return np.asarray(Image.open(io.BytesIO(png["bytes"]))) > 0


def overlap_lines_from_masks(folder) -> list[str]:
    """The overlap table's rows, recomputed from the mask PNGs (not the RLE the card uses)."""
    columns = [recipe.mask_column(name) for name in OVERLAP_CLASSES]
    shares = {a: {b: [] for b in OVERLAP_CLASSES} for a in OVERLAP_CLASSES}
    for row in parquet_rows(folder, columns=columns):
        masks = {name: decoded(row[recipe.mask_column(name)]) for name in OVERLAP_CLASSES}
        for a in OVERLAP_CLASSES:
            if masks[a] is None or not masks[a].any():
                continue
            for b in OVERLAP_CLASSES:
                if b != a:
                    shared = 0 if masks[b] is None else (masks[a] & masks[b]).sum()
                    shares[a][b].append(shared / masks[a].sum())
    lines = []
    for a in OVERLAP_CLASSES:
        images = len(shares[a][OVERLAP_CLASSES[0] if a != OVERLAP_CLASSES[0] else OVERLAP_CLASSES[1]])
        cells = []
        for b in OVERLAP_CLASSES:
            values = shares[a][b]
            if b == a:
                cells.append("")
            elif not values:
                cells.append("n/a")
            elif max(values) == 0:
                cells.append("0")
            else:
                cells.append(f"{100 * statistics.fmean(values):.1f} ({100 * max(values):.1f})")
        lines.append(f"| {a} | {images} | " + " | ".join(cells) + " |")
    return lines


def test_the_overlap_table_is_recomputed_from_the_mask_pngs(fixture_build):
    classes = section(card_text(fixture_build), "## Classes")
    for line in overlap_lines_from_masks(fixture_build):
        assert line in classes, line
    assert "independent binary masks, one per class (multi-label)" in classes


@pytest.mark.slow
def test_the_real_overlap_table_is_recomputed_from_the_mask_pngs(real_build):
    classes = section(card_text(real_build), "## Classes")
    lines = overlap_lines_from_masks(real_build)
    for line in lines:
        assert line in classes, line
    # The numbers issue 19 quotes: 29 % of a Left Lung mask is Cardiomediastinum, up to 62 %.
    assert lines[0].startswith("| Left Lung | 99 |  | 0 | 29.4 (61.8) |")


def side_counts_from_masks(folder) -> dict[str, tuple[int, int]]:
    """Per lung class: (annotations on the expected image half, annotations), from each
    annotation's decoded RLE (the card's count uses the run lengths without decoding)."""
    from pycocotools import mask as mask_utils

    counts = {name: [0, 0] for name in recipe.EXPECTED_SIDE}
    for row in parquet_rows(folder, columns=["width", "objects"]):
        for obj in row["objects"]:
            name = recipe.CLASSES[obj["category"]]
            if name not in counts or obj["segmentation"] is None:
                continue
            mask = mask_utils.decode(recipe.rle_for_pycocotools(obj["segmentation"])).astype(bool)
            centroid = np.nonzero(mask)[1].mean() + 0.5
            on_right = centroid > row["width"] / 2
            counts[name][0] += on_right == (recipe.EXPECTED_SIDE[name] == "right")
            counts[name][1] += 1
    return {name: tuple(value) for name, value in counts.items()}


@pytest.mark.slow
def test_the_side_convention_is_backed_by_every_lung_centroid(real_build):
    counts = side_counts_from_masks(real_build)
    assert counts == {"Left Lung": (99, 99), "Right Lung": (100, 100)}
    classes = section(card_text(real_build), "## Classes")
    assert "\"Left Lung\" is the patient's left lung, which a PA or AP film shows on the **image's right**" in classes
    assert "99 of 99 Left Lung annotations have their centroid in the image's right half" in classes
    assert "100 of 100 Right Lung annotations have their centroid in the image's left half" in classes


def test_the_fixture_side_counts_equal_the_decoded_masks(fixture_build):
    classes = section(card_text(fixture_build), "## Classes")
    for name, (expected, total) in side_counts_from_masks(fixture_build).items():
        half = recipe.EXPECTED_SIDE[name]
        assert f"{expected} of {total} {name} annotations have their centroid in the image's {half} half" in classes


def test_every_license_in_the_data_has_its_terms_and_the_table_says_them(fixture_build):
    text = card_text(fixture_build)
    licenses = Counter(row["license"] for row in parquet_rows(fixture_build, columns=["license"]))
    assert licenses == {"CC BY": 2, "CC BY-SA": 1}
    assert "| CC BY | 2 | yes | yes |" in text
    assert "| CC BY-SA | 1 | yes | yes, under the same licence |" in text
    assert "`licensed` (2 CC BY, 1 CC BY-SA) allows commercial use of every image it holds." in text
    assert "| CC BY | 2 | yes | yes |" in (fixture_build / "LICENSE.md").read_text()


@pytest.mark.slow
def test_the_real_license_table_counts_and_terms(real_build):
    rows = parquet_rows(real_build, columns=["license"])
    counts = Counter(row["license"] or "none given" for row in rows)
    assert counts == {"CC BY-NC-SA": 41, "none given": 56, "CC BY": 2, "CC BY-SA": 1}
    text = card_text(real_build)
    for table in (section(text, "## Licences"), (real_build / "LICENSE.md").read_text()):
        assert "| CC BY-NC-SA | 41 | **no** | yes, under the same licence |" in table
        assert "| CC BY | 2 | yes | yes |" in table
        assert "| CC BY-SA | 1 | yes | yes, under the same licence |" in table
        assert "| none given | 56 | unknown: no licence is granted; ask the source |" in table
    configs = section(text, "## Configs")
    assert (
        "`licensed` is **mostly non-commercial**: 41 of its 44 images carry a licence that forbids commercial use "
        "(41 CC BY-NC-SA, 2 CC BY, 1 CC BY-SA)." in configs
    )


def test_license_terms_follow_the_creative_commons_names():
    for name, terms in recipe.IMAGE_LICENSE_TERMS.items():
        assert terms.commercial == ("NC" not in name)
        assert terms.derivatives == ("ND" not in name)
        assert terms.share_alike == ("SA" in name)


def metadata_lines(folder) -> list[str]:
    rows = parquet_rows(folder, columns=["sex", "age", "view", "modality"])

    def counts(column: str) -> str:
        counter = Counter(row[column] for row in rows if row[column] is not None)
        return ", ".join(f"{value} {count}" for value, count in sorted(counter.items(), key=lambda i: (-i[1], i[0])))

    ages = [row["age"] for row in rows if row["age"] is not None]
    age = f"median {statistics.median(ages):g}, range {min(ages)}-{max(ages)} ({len(ages)} images)" if ages else None
    missing = {column: sum(row[column] is None for row in rows) for column in ("sex", "age", "view", "modality")}
    return [
        f"| column (of {len(rows)} images) | values | missing (null) |",
        f"| `sex` | {counts('sex') or 'none given'} | {missing['sex']} |",
        f"| `age` (years) | {age or 'none given (0 images)'} | {missing['age']} |",
        f"| `view` | {counts('view')} | {missing['view']} |",
        f"| `modality` | {counts('modality')} | {missing['modality']} |",
    ]


def test_the_metadata_summary_equals_the_rows(fixture_build):
    text = card_text(fixture_build)
    for line in metadata_lines(fixture_build):
        assert line in text, line


@pytest.mark.slow
def test_the_real_metadata_summary_and_view_contradictions(real_build):
    text = card_text(real_build)
    lines = metadata_lines(real_build)
    for line in lines:
        assert line in text, line
    assert "| `sex` | M 55, F 36 | 9 |" in lines and "| `view` | PA 93, AP 7 | 0 |" in lines
    assert lines[2].endswith("| 17 |")
    rows = parquet_rows(real_build, columns=["file_name", "view", "clinical_notes", "other_notes"])
    contradicting = sorted(row["file_name"] for row in rows if row["view"] == "PA" and view_hints(row))
    assert contradicting == ["acute-respiratory-distress-syndrome-ards-1.jpg", "covid-19-pneumonia-12.jpg"]
    known = section(text, "## Known issues")
    assert "`view` says PA, but the notes say otherwise, on 2 of 100 images:" in known
    assert '`acute-respiratory-distress-syndrome-ards-1.jpg` (test: "supine")' in known
    assert '`covid-19-pneumonia-12.jpg` (train: "AP")' in known


def test_view_hints_find_ap_supine_portable_and_mobile_as_words():
    assert view_hints({"clinical_notes": "AP chest radiograph, supine", "other_notes": "Portable film"}) == [
        "AP",
        "supine",
        "Portable",
    ]
    assert view_hints({"clinical_notes": "mobile unit; MAP 65; apical cap", "other_notes": None}) == ["mobile"]
    assert view_hints({"clinical_notes": None, "other_notes": None}) == []


def test_the_task_metadata_says_multi_label_within_the_hubs_task_ids(fixture_build):
    metadata = DatasetCard(card_text(fixture_build)).data.to_dict()
    assert dataset_metadata_errors(metadata) == []
    assert metadata["task_categories"] == ["image-segmentation"]
    assert set(metadata["task_ids"]) <= HUB_SEGMENTATION_TASK_IDS
    assert "semantic-segmentation" not in metadata["task_ids"]  # read as one label per pixel
    assert "multi-label-segmentation" in metadata["tags"]


def heading_anchors(text: str) -> set[str]:
    """GitHub-style anchors of a Markdown text's headings (the Hub renders them the same way)."""
    anchors = set()
    in_code = False
    for line in text.splitlines():
        if line.startswith("```"):
            in_code = not in_code
        match = re.match(r"^(#{1,6}) (.+)$", line)
        if match and not in_code:
            anchors.add(re.sub(r"[^\w\- ]", "", match.group(2).strip().lower()).replace(" ", "-"))
    return anchors


def test_every_link_points_where_it_says(fixture_build):
    text = DatasetCard(card_text(fixture_build)).text
    anchors = heading_anchors(text)
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    assert links
    for target in links:
        if target.startswith("#"):
            assert target[1:] in anchors, target
        elif not target.startswith(("http://", "https://")):
            assert (fixture_build / target).is_file(), target
    # Every "below" and "above" points the way its target lies.
    assert text.index("### Data-quality report") > text.index("the data-quality report below")


def test_viewer_internals_stay_out_of_the_card(fixture_build):
    text = card_text(fixture_build)
    assert "200 KB" not in text and "first page" not in text
    maintainers = (REPO / "docs" / "build.md").read_text()
    assert "200 KB" in maintainers


def test_the_card_cites_the_packaging_the_upstream_and_ieee8023s_papers(fixture_build):
    citation = section(card_text(fixture_build), "## Citation")
    for needle in (
        "@misc{covid_chestxray_seg,",
        f"version {recipe.BUILDER_VERSION}",
        "https://huggingface.co/datasets/ORG/covid-chestxray-seg",
        "@misc{generalblockchain2020segmentations,",
        "arXiv 2003.11597",
        "arXiv 2006.11988",
        "arXiv 2005.11856",
        *recipe.UPSTREAM_ANNOTATORS,
    ):
        assert needle in citation, needle
    assert citation.count("```bibtex") == 1 and citation.count("\n@") == 5


def test_citation_cff_agrees_with_the_builder_and_the_card(fixture_build):
    cff = yaml.safe_load((REPO / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0" and cff["version"] == recipe.BUILDER_VERSION
    assert cff["title"].startswith("COVID-19 Chest X-ray Segmentations")
    references = {ref["title"]: ref for ref in cff["references"]}
    upstream = references["COVID-19 Chest X-ray Segmentations Dataset"]
    assert upstream["url"] == recipe.HOMEPAGE and upstream["commit"] == recipe.UPSTREAM_COMMIT
    assert all(name in upstream["notes"] for name in recipe.UPSTREAM_ANNOTATORS)
    arxiv = sorted(ref["identifiers"][0]["value"] for ref in cff["references"] if "identifiers" in ref)
    assert arxiv == ["arXiv:2003.11597", "arXiv:2005.11856", "arXiv:2006.11988"]
    citation = section(card_text(fixture_build), "## Citation")
    for ref in cff["references"]:
        assert ref["title"] in citation, ref["title"]


def test_a_card_published_to_another_repo_names_it_in_the_citation_too(fixture_build):
    card = repo.card_for_repo(card_text(fixture_build), "acme/cxr")
    assert "https://huggingface.co/datasets/acme/cxr}" in card
    assert not re.search(r"huggingface\.co/datasets/ORG/covid-chestxray-seg(?![\w.-])", card)
    # Another repo's link (the FiftyOne companion's) is not this dataset's page: publish names it apart.
    assert "https://huggingface.co/datasets/ORG/covid-chestxray-seg-fiftyone)" in card


def test_the_provenance_says_what_the_manifest_check_covers(fixture_build):
    provenance = section(card_text(fixture_build), "## How the data was made and checked")
    assert "It is outside the manifest check" in provenance
    assert "refuses files that differ" not in provenance
    assert f"Changes in {recipe.BUILDER_VERSION}: {recipe.BUILDER_CHANGES[recipe.BUILDER_VERSION]}." in provenance
