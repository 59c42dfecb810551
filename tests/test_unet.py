"""`covid-seg baseline unet`: the whole pipeline on a tiny setting (predictions at full size,
scored into a results file), the card's table from that file, and bad settings."""

from __future__ import annotations

import json
import re

import pytest
from PIL import Image

import covid_chestxray_seg as recipe
from covid_chestxray_seg_tools.baselines import results, unet
from covid_chestxray_seg_tools.cli import main as covid_seg
from tests.helpers import FIXTURE_ARGS, parquet_rows, require_monai, require_torch


@pytest.fixture(scope="module")
def tiny_run(fixture_build, tmp_path_factory):
    """The U-Net trained on the fixture at 32 px for 1 epoch, its predictions scored."""
    require_torch()
    require_monai()
    folder = tmp_path_factory.mktemp("unet")
    out, path = folder / "predictions", folder / "unet.json"
    args = ["baseline", "unet", "--source", str(fixture_build), "--out", str(out), "--size", "32", "--epochs", "1"]
    assert covid_seg([*args, "--limit", "2", "--results", str(path), "--quiet"]) == 0
    return out, path


@pytest.mark.slow
def test_the_tiny_pipeline_writes_full_size_predictions_and_scores_them(tiny_run, fixture_build):
    out, path = tiny_run
    rows = {row["image_id"]: row for row in parquet_rows(fixture_build, columns=["image_id", "width", "height"])}
    written = {}
    for split in ("train", "validation", "test"):
        for folder in (out / split).iterdir():
            files = sorted(folder.glob("*.png"))
            assert [file.stem for file in files] == sorted(recipe.MASK_COLUMNS)
            for file in files:
                with Image.open(file) as mask:
                    assert mask.size == (rows[int(folder.name)]["width"], rows[int(folder.name)]["height"])
            written[split] = written.get(split, 0) + 1
    # The fixture: one image per split; each development image predicted by the model of its fold.
    assert written == {"train": 1, "validation": 1, "test": 1}
    saved = results.read_results(path)
    training = saved["training"]
    assert training["settings"]["size"] == 32 and training["settings"]["epochs"] == 1
    assert training["settings"]["seed"] == 0 and training["cpu_seconds"] > 0
    assert [r["fold"] for r in training["rounds"]][-1] is None and len(training["rounds"]) == 3
    assert training["command"].startswith("covid-seg baseline unet --source ") and "--size 32" in training["command"]
    assert {"torch", "monai", "covid-chestxray-seg"} <= set(training["versions"])
    scores = saved["scores"]
    assert scores["cv"]["unet"]["counts"]["images"] == 2 and scores["test"]["unet"]["counts"]["images"] == 1
    # Each fold's mean under cross-validation: the fixture's two development images are in folds 0 and 1.
    folds = scores["cv"]["unet"]["classes"]["Left Lung"]["dice"]["folds"]
    assert len(folds) == recipe.FOLDS and sum(value is not None for value in folds) == 2
    lung = scores["test"]["unet"]["classes"]["Left Lung"]["dice"]
    assert lung["n"] == 1 and 0 <= lung["mean"] <= 1
    difference = scores["test"]["difference"]["classes"]["Left Lung"]["dice"]
    atlas = scores["test"]["atlas"]["classes"]["Left Lung"]["dice"]["mean"]
    assert difference["difference"] == pytest.approx(lung["mean"] - atlas) and difference["n"] == 1
    # training.json beside the predictions, and scoring it again gives the same file.
    again = out.parent / "again.json"
    rescore = ["baseline", "unet", "--source", str(fixture_build), "--out", str(out), "--results", str(again)]
    assert covid_seg([*rescore, "--rescore", "--quiet"]) == 0
    assert json.loads(again.read_text()) == json.loads(path.read_text())


@pytest.mark.slow
def test_the_card_table_equals_the_results_file(tiny_run, tmp_path):
    _, path = tiny_run
    saved = json.loads(path.read_text())
    out = tmp_path / "build"
    args = ["build", *FIXTURE_ARGS, "--out", str(out), "--allow-modified", "--quiet", "--baseline"]
    assert covid_seg([*args, "--unet-results", str(path)]) == 0
    card = (out / "README.md").read_text()
    block = re.search(r"<!-- BEGIN GENERATED: unet -->\n(.*?)\n<!-- END GENERATED: unet -->", card, flags=re.S)
    assert block.group(1) == results.card_table(saved)
    # Each cell is the file's number: the Left Lung row, read back from the card.
    row = next(line for line in block.group(1).splitlines() if line.startswith("| Left Lung |"))
    cells = [cell.strip() for cell in row.strip("|").split("|")][1:]
    expected = []
    for label in ("cv", "test"):
        entry = saved["scores"][label]
        expected += [
            entry["atlas"]["classes"]["Left Lung"]["dice"]["mean"],
            entry["unet"]["classes"]["Left Lung"]["dice"]["mean"],
            entry["difference"]["classes"]["Left Lung"]["dice"]["difference"],
        ]
    assert [float(cell.split(" [")[0]) for cell in cells] == pytest.approx(expected, abs=5e-4)
    assert saved["training"]["command"] in block.group(1)


def test_bad_settings_are_one_clear_error(fixture_build, tmp_path, capsys):
    with pytest.raises(unet.UNetError, match=r"size=300: must be 8 to 256"):
        unet.Settings(size=300)
    with pytest.raises(unet.UNetError, match=r"size=100: must be a multiple of 16 \(a U-Net of 5 levels"):
        unet.Settings(size=100)
    out = tmp_path / "missing"
    assert covid_seg(["baseline", "unet", "--source", str(fixture_build), "--out", str(out), "--size", "100"]) == 1
    assert "error: --size 100: must be a multiple of 16" in capsys.readouterr().err and not out.exists()
    args = ["baseline", "unet", "--source", str(fixture_build), "--out", str(out), "--rescore"]
    assert covid_seg(args) == 1
    assert "--rescore scores an earlier run's predictions into --results FILE" in capsys.readouterr().err
    assert covid_seg([*args, "--results", str(tmp_path / "r.json")]) == 1
    assert "missing/training.json: no readable training record" in capsys.readouterr().err


def test_a_results_file_is_checked_when_read(tmp_path):
    path = tmp_path / "other.json"
    path.write_text(json.dumps({"split": "test"}))
    with pytest.raises(results.ResultsError, match=r"other\.json: not a results file of covid-seg baseline unet"):
        results.read_results(path)
    with pytest.raises(results.ResultsError, match=r"nothing\.json: not a readable results file"):
        results.read_results(tmp_path / "nothing.json")


@pytest.mark.slow
def test_the_real_card_shows_the_committed_results(real_build):
    # real_build runs `covid-seg build --baseline`, which renders the repository's baselines/unet.json.
    committed = results.read_results(results.COMMITTED_RESULTS)
    assert committed["training"]["command"].startswith("covid-seg baseline unet ")
    assert committed["scores"]["cv"]["unet"]["counts"]["images"] == 84
    assert committed["scores"]["test"]["unet"]["counts"]["images"] == 16
    assert results.card_table(committed) in (real_build / "README.md").read_text()


def test_the_card_says_which_classes_the_committed_u_net_learns():
    text = results.learnt_text(results.read_results(results.COMMITTED_RESULTS))
    assert text.startswith(
        "What the U-Net learns: 5 of 14 classes (Left Lung, Right Lung, Cardiomediastinum, Airways, "
        "Ground Glass Opacities), cross-validation Dice from 0.1 up."
    )
    assert "Consolidation 0.002, the atlas 0.102 (24 images)" in text and "Pneumothorax 0.000" in text
    assert "(1 image);" in text and "Chest Tube not scored (0 images)" in text
