"""nnU-Net as a baseline: its training record read from what nnU-Net logs in a model folder, the
results file in the U-Net's shape, and the card's table, which never passes a shortened run off
as nnU-Net's default."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

import covid_chestxray_seg as recipe
from covid_chestxray_seg_tools.baselines import nnunet, results
from covid_chestxray_seg_tools.cli import main as covid_seg
from tests.nnunet_helpers import DATASET, model_folder, prediction_folder

MODEL_NAME = "nnUNetTrainer_5epochs__nnUNetPlans__2d"
START = "2026-12-04 06"


def train_log(epochs_trained: int, *, done: bool = True) -> str:
    """A training log as nnU-Net 2.8.1 writes it: a header, then per epoch its lines, each stamped;
    epoch e starts at 06:e:00 and takes 59.5 s."""
    lines = [
        "",
        "#######################################################################",
        "Please cite the following paper when using nnU-Net:",
        "#######################################################################",
        " ",
        f"{START}:00:00.000000: do_dummy_2d_data_aug: False ",
        "",
        "This is the configuration used by this training:",
        " {'batch_size': 12, 'patch_size': [256, 256]} ",
    ]
    for epoch in range(epochs_trained):
        lines += [
            f"{START}:{epoch:02d}:00.000000: ",
            f"{START}:{epoch:02d}:00.000001: Epoch {epoch} ",
            f"{START}:{epoch:02d}:00.000002: Current learning rate: 0.01 ",
            f"{START}:{epoch:02d}:59.500000: train_loss -0.5 ",
            f"{START}:{epoch:02d}:59.500000: Epoch time: 59.5 s ",
        ]
    if done:
        lines.append(f"{START}:{epochs_trained:02d}:00.000000: Training done. ")
    return "\n".join(lines) + "\n"


def trained(
    model: Path, fold: int | str, *, epochs: int = 5, iterations: int = 250, done_epochs: int | None = None
) -> None:
    """fold_<fold>/debug.json and a training log, as nnU-Net leaves them."""
    folder = model / f"fold_{fold}"
    folder.mkdir(parents=True, exist_ok=True)
    debug = {
        "num_epochs": str(epochs),
        "num_iterations_per_epoch": str(iterations),
        "device": "cuda:0",
        "gpu_name": "NVIDIA H100 80GB HBM3",
        "torch_version": "2.13.0+cu126",
        "cudnn_version": "91002",
        "hostname": "gpu-box",
        "fold": str(fold),
    }
    (folder / "debug.json").write_text(json.dumps(debug, indent=4))
    trained_epochs = epochs if done_epochs is None else done_epochs
    (folder / "training_log_2026_12_4_06_00_00.txt").write_text(train_log(trained_epochs, done=done_epochs is None))


@pytest.fixture(scope="module")
def made_run(fixture_build, tmp_path_factory) -> Path:
    """An nnU-Net run on the fixture's export, made once for the module: the export (`raw/`), a
    model folder (`results/`, trainer `nnUNetTrainer_5epochs`) with out-of-fold predictions and
    the 6 models' logs, and test predictions (`test/`)."""
    folder = tmp_path_factory.mktemp("nnunet-run")
    out = folder / "raw"
    command = ["export", "--source", str(fixture_build), "--format", "nnunet", "--out", str(out), "--quiet"]
    assert covid_seg(command) == 0
    dataset_json = out / DATASET / "dataset.json"
    model = model_folder(folder / "results", dataset_json, fixture_build)
    model = model.rename(model.with_name(MODEL_NAME))
    for fold in [*range(recipe.FOLDS), "all"]:
        trained(model, fold)
    prediction_folder(folder / "test", dataset_json, fixture_build, [83])
    return folder


@pytest.fixture
def run(made_run, tmp_path) -> dict[str, Path]:
    """A copy of the module's nnU-Net run, for the test to change: the model folder and the test
    predictions."""
    shutil.copytree(made_run, tmp_path / "run")
    return {"model": tmp_path / "run" / "results" / MODEL_NAME, "test": tmp_path / "run" / "test"}


def test_the_training_record_is_what_nnunet_logged(run):
    record = nnunet.training_record(run["model"], command="covid-seg baseline nnunet ...")
    assert record["trainer"] == "nnUNetTrainer_5epochs"
    assert (record["plans"], record["configuration"]) == ("nnUNetPlans", "2d")
    assert record["export"] == {"config": "default", "regions": 5}
    assert record["schedule"] == {
        "epochs": 5,
        "iterations_per_epoch": 250,
        "same_for_every_model": True,
        "all_epochs_trained": True,
    }
    assert [(r["fold"], r["model"], r["fit_images"], r["predicted_images"]) for r in record["rounds"]] == [
        (0, "fold_0", 1, 1),
        (1, "fold_1", 1, 1),
        (2, "fold_2", 2, 0),
        (3, "fold_3", 2, 0),
        (4, "fold_4", 2, 0),
        (None, "fold_all", 2, None),
    ]
    first = record["rounds"][0]
    assert (first["epochs"], first["epochs_trained"], first["finished"]) == (5, 5, True)
    assert (first["epoch_seconds"], first["wall_seconds"], first["logs"]) == (297.5, 300.0, 1)
    assert (record["epoch_seconds"], record["wall_seconds"]) == (6 * 297.5, 6 * 300.0)
    assert record["hardware"] == {"device": "cuda:0", "gpu": "NVIDIA H100 80GB HBM3", "cudnn": "91002"}
    assert record["versions"]["torch"] == "2.13.0+cu126"
    assert record["command"] == "covid-seg baseline nnunet ..."


def test_the_label_never_passes_a_shortened_run_off_as_the_default(run):
    record = nnunet.training_record(run["model"], command="c")
    assert nnunet.schedule_label(record) == (
        "trainer `nnUNetTrainer_5epochs`, 5 epochs of 250 iterations per model (not nnU-Net's default trainer "
        "`nnUNetTrainer`; shortened: NOT nnU-Net's default of `nnUNetTrainer`, 1000 epochs of 250 iterations)"
    )
    default = {**record, "trainer": "nnUNetTrainer", "schedule": {**record["schedule"], "epochs": 1000}}
    assert nnunet.is_default_schedule(default)
    assert nnunet.schedule_label(default) == (
        "trainer `nnUNetTrainer`, 1000 epochs of 250 iterations per model (nnU-Net's default schedule)"
    )
    stopped = {**default, "schedule": {**default["schedule"], "all_epochs_trained": False}}
    assert not nnunet.is_default_schedule(stopped)
    assert "(stopped early (epochs trained per model: 5, 5, 5, 5, 5, 5): NOT nnU-Net's default" in (
        nnunet.schedule_label(stopped)
    )
    longer = {**default, "schedule": {**default["schedule"], "epochs": 2000}}
    assert "2000 epochs of 250 iterations per model (changed: NOT nnU-Net's default" in nnunet.schedule_label(longer)


def test_a_model_stopped_early_or_with_another_schedule_is_recorded(run):
    trained(run["model"], 2, epochs=5, done_epochs=3)
    trained(run["model"], "all", epochs=8)
    record = nnunet.training_record(run["model"], command="c")
    assert [r["epochs_trained"] for r in record["rounds"]] == [5, 5, 3, 5, 5, 8]
    assert record["rounds"][2]["finished"] is False
    assert record["schedule"]["same_for_every_model"] is False
    assert record["schedule"]["all_epochs_trained"] is False
    assert "not the same for every model; stopped early (epochs trained per model: 5, 5, 3, 5, 5, 8)" in (
        nnunet.schedule_label(record)
    )


def test_the_results_file_has_the_unets_shape_and_renders_the_card_table(fixture_build, run, tmp_path, capsys):
    path = tmp_path / "baselines" / "nnunet.json"
    out = tmp_path / "preds"
    command = ["baseline", "nnunet", "--source", str(fixture_build), "--cv", str(run["model"]), "--test",
               str(run["test"]), "--out", str(out), "--results", str(path)]  # fmt: skip
    assert covid_seg(command) == 0
    text = capsys.readouterr().out
    assert text.endswith(f"wrote {path}\n") and "  trainer `nnUNetTrainer_5epochs`, 5 epochs" in text
    written = json.loads(path.read_text())
    assert written == results.read_results(path)
    assert list(written) == ["baseline", "training", "protocol", "scores"] and written["baseline"] == "nnunet"
    assert written["training"]["command"] == "covid-seg " + " ".join(command)
    assert set(written["scores"]) == {"cv", "test"}
    for label in ("cv", "test"):
        assert set(written["scores"][label]) == {"nnunet", "atlas", "difference"}
        # The truth as predictions: Dice 1 for every class with a region.
        classes = written["scores"][label]["nnunet"]["classes"]
        assert {entry["dice"]["mean"] for entry in classes.values()} == {1.0}
    table = nnunet.card_table(written).splitlines()
    assert table[0] == (
        "| Class | atlas, cv | nnU-Net, cv | nnU-Net - atlas, cv | atlas, test | nnU-Net, test | nnU-Net - atlas, "
        "test |"
    )
    assert len(table) == 3 + len(recipe.CLASSES) + 3
    # The headline first, as in the U-Net's table: the macro mean over the headline classes, which
    # nnU-Net has none of here (no region for Consolidation on the fixture, so no prediction).
    headline = table[2].strip("| ").split(" | ")
    assert headline[0] == "**Headline** (6 classes)" and headline[2:4] == headline[5:7] == ["–", "–"]
    assert headline[1] != "–" and headline[4] != "–"  # the atlas's
    assert table[3].startswith("| Left Lung | ") and "| 1.000 [1.000, 1.000] |" in table[3]
    assert table[3 + recipe.CLASSES.index("Chest Tube")].startswith("| Chest Tube | – | – | – |")
    assert "Not predicted (no training pixel, so no region): Consolidation, Pleural Effusion" in table[-2]
    assert table[-1].startswith(
        "nnU-Net v2 (version not recorded): trainer `nnUNetTrainer_5epochs`, 5 epochs of 250 iterations per model "
        "(not nnU-Net's default trainer `nnUNetTrainer`; shortened: NOT nnU-Net's default of `nnUNetTrainer`, 1000 "
        "epochs of 250 iterations); plans `nnUNetPlans`, configuration `2d`, on the `default` export; 6 models in "
        "0.5 hours of epochs (0.5 hours with validation) on NVIDIA H100 80GB HBM3, torch 2.13.0+cu126. Command: "
        "`covid-seg baseline nnunet --source "
    )


def test_a_unet_results_file_is_not_rendered_as_nnunets():
    with pytest.raises(ValueError, match=r"not an nnU-Net results file \(baseline 'unet'\)"):
        nnunet.card_table(results.read_results(results.COMMITTED_RESULTS))


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("no final model", r"fold_all: no such folder: the results need the 5 folds and the final model \(fold all"),
        ("no debug", r"fold_3/debug\.json: no such file: nnU-Net writes it when a fold's training starts"),
        ("bad debug", r"fold_3/debug\.json: no integer 'num_epochs': not nnU-Net's debug\.json"),
        ("no log", r"fold_3: no training_log_\*\.txt: nnU-Net has not trained this fold"),
        ("bad name", r"nnUNetTrainer_5epochs: not an nnU-Net model folder: its name is <trainer>__<plans>__"),
    ],
)
def test_a_model_folder_without_what_the_results_need_is_refused_before_converting(
    fixture_build, run, tmp_path, capsys, how, message
):
    model = run["model"]
    if how == "no final model":
        shutil.rmtree(model / "fold_all")
    elif how == "no debug":
        (model / "fold_3" / "debug.json").unlink()
    elif how == "bad debug":
        (model / "fold_3" / "debug.json").write_text('{"num_epochs": "many"}')
    elif how == "no log":
        next((model / "fold_3").glob("training_log_*")).unlink()
    else:
        model = model.rename(model.with_name("nnUNetTrainer_5epochs"))
    out = tmp_path / "preds"
    command = ["baseline", "nnunet", "--source", str(fixture_build), "--cv", str(model), "--test", str(run["test"])]
    assert covid_seg([*command, "--out", str(out), "--results", str(tmp_path / "r.json")]) == 1
    assert re.search(f"^error: .*{message}", capsys.readouterr().err)
    assert not out.exists() and not (tmp_path / "r.json").exists()


def test_no_nnunet_results_are_committed_until_a_gpu_run():
    assert nnunet.committed_results() is None
