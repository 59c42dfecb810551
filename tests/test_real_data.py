"""The full upstream data (in CI at ../shared/data): exact masks, splits, manifest, and no drift
between the committed README.md / dataset_infos.json and a fresh build."""

from __future__ import annotations

import json
import re
from pathlib import Path

import datasets
import numpy as np
import pytest

import covid_chestxray_seg as recipe
from covid_chestxray_seg_tools.card.legend import LEGEND_PATH
from covid_chestxray_seg_tools.cli import main as covid_seg
from covid_chestxray_seg_tools.evaluate import format_results
from covid_chestxray_seg_tools.hub_folder import layout
from covid_chestxray_seg_tools.validate.crops import image_masks, structure_rows
from tests.helpers import REAL_BUILD_OPTIONS, REPO, SHARED_ARGS, SHARED_DIR, parquet_rows


@pytest.fixture(scope="module")
def real_rows(real_build) -> list[dict]:
    """Every row of the full build as stored: pictures as undecoded bytes, 60 MB in all (decoded
    images, 2 GB)."""
    return parquet_rows(real_build)


def test_every_mask_equals_the_upstream_crops(real_rows):
    with_mask = sum(1 for row in structure_rows(SHARED_DIR) if row["Mask"])
    assert with_mask == 588  # the data README's "589" counts one probe too few as mask-less
    by_name = {row["file_name"]: row for row in real_rows}
    compared = cropped = 0
    # Image by image: all of upstream's masks at full size at once take gigabytes.
    for file_name, _, masks in image_masks(SHARED_DIR):
        row = by_name[file_name]
        for name, column in zip(recipe.CLASSES, recipe.MASK_COLUMNS):
            stored = recipe.decode_mask(row[column])
            crop = masks.get(name)
            if stored is None:
                assert crop is None, (file_name, name)  # null only where upstream has no crop
                continue
            assert np.array_equal(stored, np.zeros_like(stored) if crop is None else crop), (file_name, name)
            compared += crop is not None
        cropped += sum(mask is not None for mask in masks.values())
    assert compared == cropped and len(by_name) == 100
    # ... and every crop belongs to an annotation with an RLE, which sits inside its crop box.
    rles = sum(1 for row in real_rows for obj in row["objects"] if obj["segmentation"] is not None)
    assert rles == with_mask


def test_counts_match_the_upstream_files(real_rows):
    assert len(real_rows) == 100
    assert sum(len(row["objects"]) for row in real_rows) == 602
    assert sum(1 for row in real_rows for o in row["objects"] if o["segmentation"] is None) == 14
    assert len({row["patient_id"] for row in real_rows}) == 73
    assert sum(row["license"] is None for row in real_rows) == 56


def test_splits_are_patient_disjoint_and_near_70_15_15(real_build):
    loaded = datasets.load_dataset(str(real_build))
    patients = {split: set(ds["patient_id"]) for split, ds in loaded.items()}
    splits = list(patients)
    for i, a in enumerate(splits):
        for b in splits[i + 1 :]:
            assert not patients[a] & patients[b], (a, b)
    sizes = {split: len(ds) for split, ds in loaded.items()}
    for split, fraction in recipe.SPLITS.items():
        assert abs(sizes[split] - 100 * fraction) <= 3, sizes


def test_train_is_sharded_for_four_streaming_workers(real_build):
    train = layout.shard_paths(real_build, "train")
    assert len(train) >= 4
    for part in (layout.LICENSED_PART, layout.UNKNOWN_LICENSE_PART):
        names = [p.name for p in train if p.parent.name == part]
        assert names == [f"train-{i:05d}-of-{len(names):05d}.parquet" for i in range(len(names))]
    stream = datasets.load_dataset(str(real_build), split="train", streaming=True)
    assert stream.num_shards >= 4


def test_real_data_matches_the_upstream_manifest(real_build):
    card = (real_build / "README.md").read_text()
    assert "and a difference stops the build (unless told to accept it, and then it is listed here). Files that " in (
        card
    )
    assert "Files that differ: none." in card
    assert "SHA-256 `" in card


def test_committed_card_and_infos_match_a_fresh_build(real_build):
    """Regenerate with the README's build command plus --sync-repo."""
    assert json.loads((REPO / "dataset_infos.json").read_text()) == json.loads(
        (real_build / "dataset_infos.json").read_text()
    )
    assert (REPO / layout.PREVIEW_PATH).read_bytes() == (real_build / layout.PREVIEW_PATH).read_bytes()
    assert (REPO / LEGEND_PATH).read_bytes() == (real_build / LEGEND_PATH).read_bytes()


# The card's blocks that `--baseline` fills (the atlas's tables, and the U-Net's beside them).
BASELINE_BLOCKS = ("baseline", "unet")


def test_full_builds_are_byte_identical(real_build, tmp_path):
    # In one process instead of several, and without --baseline: the atlas's tables come from the
    # same bytes, and the next test checks them against the atlas scored again.
    assert "--baseline" in REAL_BUILD_OPTIONS
    options = [option for option in REAL_BUILD_OPTIONS if option != "--baseline"]
    again = tmp_path / "again"
    assert covid_seg(["build", *SHARED_ARGS, "--out", str(again), *options, "--num-proc", "1"]) == 0
    files = sorted(p.relative_to(real_build) for p in real_build.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    for name in files:
        if name != Path(layout.CARD_FILENAME):
            assert (real_build / name).read_bytes() == (again / name).read_bytes(), name
    # The card: the same text but the baseline blocks, which one build filled and the other did not.
    ours, theirs = (folder.joinpath(layout.CARD_FILENAME).read_text(encoding="utf-8") for folder in (real_build, again))
    block = re.compile(r"(<!-- BEGIN GENERATED: (\S+) -->\n)(.*?)(<!-- END GENERATED: \2 -->)", re.S)
    changed = {match[2] for match in block.finditer(ours) if match[3] != block_text(theirs, match[2])}
    assert changed == set(BASELINE_BLOCKS)
    assert block.sub(r"\1\4", ours) == block.sub(r"\1\4", theirs)


def block_text(card: str, name: str) -> str:
    """A generated block's text in a card."""
    return card.split(f"<!-- BEGIN GENERATED: {name} -->\n", 1)[1].split(f"<!-- END GENERATED: {name} -->", 1)[0]


def test_the_card_shows_the_atlas_baseline_on_test_and_under_cross_validation(real_build, real_atlas_scores):
    card = (real_build / "README.md").read_text()
    table = format_results([real_atlas_scores["test"], real_atlas_scores["cv"]])
    assert table.strip() in card
    # Each class's test row, then its cross-validation row.
    lines = table.splitlines()
    test_row = next(index for index, line in enumerate(lines) if line.startswith("| Left Lung | `test` | 16 |"))
    assert lines[test_row + 1].startswith("| Left Lung | `cv` | ")
    assert "| Class | fold 0 (17 images) |" in table
    assert "Split `test`: 16 images of 10 patients" in table
    assert "Cross-validation (`cv`, out-of-fold predictions, 5 folds): 84 images of 63 patients" in table


def test_license_file_and_licensed_config_agree_with_the_rows(real_build):
    license = (real_build / "LICENSE.md").read_text()
    rows = parquet_rows(real_build, columns=["image_id", "license"])
    known = sorted(row["image_id"] for row in rows if row["license"] is not None)
    licensed = parquet_rows(real_build, columns=["image_id", "license"], config="licensed")
    assert sorted(row["image_id"] for row in licensed) == known and len(known) == 44
    assert "| none given | 56 |" in license and "44 images whose licence is known" in " ".join(license.split())
    # Each licensed image keeps the split it has in default.
    for split in ("train", "validation", "test"):
        default_ids = {row["image_id"] for row in parquet_rows(real_build, split, columns=["image_id"])}
        assert {
            row["image_id"] for row in parquet_rows(real_build, split, columns=["image_id"], config="licensed")
        } <= default_ids


def test_severity_scores_and_folds_on_the_real_data(real_build):
    rows = parquet_rows(
        real_build,
        columns=["image_id", "file_name", "patient_id", "fold", "severity_geographic_extent", "severity_opacity"],
    )
    scored = {
        row["file_name"]: (row["severity_geographic_extent"], row["severity_opacity"])
        for row in rows
        if row["severity_geographic_extent"] is not None
    }
    assert len(scored) == 64
    # Values straight from ieee8023's file (0.0 is a score, not null).
    assert scored["7C69C012-7479-493F-8722-ABC29C60A2DD.jpeg"] == (0.0, 0.0)
    assert scored["ciaa199.pdf-001-a.png"] == (0.0, 0.0)
    assert scored["covid-19-rapidly-progressive-acute-respiratory-distress-syndrome-ards-day-2.jpg"] == (8.0, 6.0)
    test_ids = {row["image_id"] for row in parquet_rows(real_build, "test", columns=["image_id"])}
    folds: dict = {}
    for row in rows:
        assert (row["fold"] is None) == (row["image_id"] in test_ids)
        if row["fold"] is not None:
            folds.setdefault(row["patient_id"], set()).add(row["fold"])
    assert all(len(chosen) == 1 for chosen in folds.values())  # no patient in two folds
    sizes = sorted(sum(1 for row in rows if row["fold"] == fold) for fold in range(5))
    assert sum(sizes) == 84 and sizes[-1] - sizes[0] <= 1


def test_the_cards_severity_correlation_is_recomputed_from_the_mask_pngs(real_build):
    from scipy.stats import spearmanr

    columns = [
        "mask_left_lung",
        "mask_right_lung",
        "mask_ground_glass_opacities",
        "mask_consolidation",
        "severity_geographic_extent",
    ]
    shares, scores = [], []
    for row in parquet_rows(real_build, columns=columns):
        if row["severity_geographic_extent"] is None or any(row[column] is None for column in columns[:4]):
            continue
        masks = [recipe.decode_mask(row[column]) for column in columns[:4]]
        lungs = masks[0] | masks[1]
        if not masks[0].any() or not masks[1].any():
            continue
        shares.append(((masks[2] | masks[3]) & lungs).sum() / lungs.sum())
        scores.append(row["severity_geographic_extent"])
    rho = spearmanr(shares, scores).statistic
    assert len(shares) == 63
    card = (real_build / "README.md").read_text()
    assert "Over the 63 scored images that have both lung masks" in card
    assert f"Spearman's rho = {rho:.2f}" in card
    assert (real_build / "assets" / "severity.png").is_file()
