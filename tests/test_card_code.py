"""The published card's code: every Python block runs, top to bottom in one interpreter,
against the repo it was published to, importing nothing from this project. The U-Net training
block runs one epoch here, and trains what `covid-seg baseline unet` trains; its full run is
tests/test_card_training.py's."""

from __future__ import annotations

import ast
import re

import datasets
import numpy as np

import covid_chestxray_seg as recipe
from covid_chestxray_seg_tools.baselines import unet
from covid_chestxray_seg_tools.cli import main as covid_seg
from covid_chestxray_seg_tools.hub_folder import layout, resize
from tests.helpers import FIXTURE_TOOLS_URL, parquet_rows, require_monai, require_torch

REPO_ID = "acme-lab/cxr-seg"
# What a Hub visitor installs for the card: datasets, numpy, pillow; pycocotools, torch or monai where a block
# imports them (and the standard library's pathlib and math).
ALLOWED_IMPORTS = {"datasets", "numpy", "PIL", "pycocotools", "torch", "monai", "pathlib", "math"}
# The training block's settings line -> what this test runs instead: one epoch of the same loop.
QUICK_SETTINGS = {"EPOCHS = 10": "EPOCHS = 1"}
# The baseline's test model: trained at 128 px with seed 0 + 5 (models 0-4 are the folds).
SIZE, SEED = 128, 5


def python_blocks(card: str) -> list[str]:
    """The card's Python blocks but the FiftyOne one, which needs FiftyOne and its database:
    compat/fiftyone runs that one against the published companion."""
    return [block for block in re.findall(r"```python\n(.*?)```", card, flags=re.S) if "fiftyone" not in block]


def with_settings(code: str, settings: dict[str, str]) -> str:
    """`code` with each settings line (`NAME = value`, its comment aside) replaced whole; a line
    the card does not have, or has more than once, fails: the test must follow the card."""
    for line, replacement in settings.items():
        pattern = rf"^{re.escape(line)}[ \t]*(#.*)?$"
        code, count = re.subn(pattern, replacement, code, flags=re.M)
        assert count == 1, f"the card's code has {count} lines `{line}`, not one: update QUICK_SETTINGS"
    return code


def test_published_card_code_names_the_repo_and_runs_top_to_bottom(
    hub, token, real_build, tmp_path, monkeypatch, capsys
):
    torch = require_torch()
    require_monai()
    # Built for the default id, published to another: the card must follow the publish.
    publish = ["publish", "--repo-id", REPO_ID, "--source", str(real_build), "--tools-url", FIXTURE_TOOLS_URL]
    assert covid_seg([*publish, "--no-verify"]) == 0
    card = hub.state.files(REPO_ID)[layout.CARD_FILENAME].decode("utf-8")
    assert "__REPO_ID__" not in card
    calls = re.findall(r"load_dataset\(\s*\"([^\"]+)\"", card)
    assert len(calls) >= 3 and set(calls) == {REPO_ID}
    blocks = python_blocks(card)
    assert len(blocks) >= 5
    code = "\n".join(blocks)
    imported = {
        (node.module if isinstance(node, ast.ImportFrom) else alias.name).split(".")[0]
        for node in ast.walk(ast.parse(code))
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in node.names
    }
    assert imported <= ALLOWED_IMPORTS, imported - ALLOWED_IMPORTS
    namespace: dict = {}
    monkeypatch.chdir(tmp_path)  # the recipe writes its predictions to ./predictions
    exec(compile(with_settings(code, QUICK_SETTINGS), "README.md (published card)", "exec"), namespace)
    assert namespace["EPOCHS"] == 1 and (namespace["SIZE"], namespace["SEED"]) == (SIZE, SEED)

    # The blocks' results are what the card says they are.
    row = namespace["row"]
    assert namespace["masks"].shape == (14, row["height"], row["width"]) and namespace["masks"].dtype == bool
    assert max(namespace["row"]["overlay"].size) <= 512
    assert sum(len(split) for split in namespace["licensed"].values()) == 44
    # The training tensors: train + validation at 128 px, every class, nulls known False.
    images, masks, known = namespace["images"], namespace["targets"], namespace["known"]
    assert images.dtype == torch.float32 and tuple(images.shape) == (84, 1, SIZE, SIZE)
    assert masks.dtype == torch.bool and tuple(masks.shape) == (84, 14, SIZE, SIZE)
    assert known.dtype == torch.bool and tuple(known.shape) == (84, 14)
    assert float(images.min()) >= -1e-5 and float(images.max()) <= 1.0 + 1e-5
    columns, development = namespace["COLUMNS"], namespace["development"]
    assert columns == list(recipe.MASK_COLUMNS)
    # ... the full-size masks by the mask rule to 256 px (the published size-256 masks), then
    # again to 128 px as the baseline shrinks them.
    full = {
        row["image_id"]: row
        for split in ("train", "validation")
        for row in parquet_rows(real_build, split, columns=["image_id", *columns])
    }
    nulls = 0
    for index, image_id in enumerate(development["image_id"]):
        for channel, column in enumerate(columns):
            stored = recipe.decode_mask(full[image_id][column])
            if stored is None:
                assert not known[index, channel] and not masks[index, channel].any()
                nulls += 1
                continue
            assert known[index, channel]
            expected = resize.resize_mask(resize.resize_mask(stored), size=SIZE)
            assert np.array_equal(masks[index, channel].numpy(), expected), (image_id, column)
    assert nulls == 10  # mask_monitoring_probes is null on 9 train and 1 validation images, and the recipe copes

    # The card trains what `covid-seg baseline unet` trains: its test model (one epoch of it here),
    # from the same tensors in the same order, to the same loss and weights, bit for bit.
    samples = unet.load_samples(source=str(real_build), splits=("train", "validation", "test"), size=SIZE)
    baseline = unet.concatenate([samples[split] for split in unet.DEVELOPMENT_SPLITS], split="development")
    assert development["image_id"] == baseline.image_ids
    assert np.array_equal(images.numpy(), baseline.images)
    assert np.array_equal(masks.float().numpy(), baseline.masks)
    assert np.array_equal(known.numpy(), baseline.known)
    model, losses = unet.train(baseline, settings=unet.Settings(size=SIZE, epochs=1), seed=SEED, say=lambda _: None)
    assert namespace["mean_loss"] == losses[0]
    card_weights, weights = namespace["model"].state_dict(), model.state_dict()
    assert list(card_weights) == list(weights)
    assert all(torch.equal(card_weights[name], weights[name]) for name in weights)

    # Predictions written at full size, the baseline's own files, scored by covid-seg evaluate
    # against the published repo.
    test = samples["test"]
    written = sorted((tmp_path / "predictions" / "test").iterdir())
    assert sorted(int(folder.name) for folder in written) == sorted(test.image_ids) and len(written) == 16
    reference = tmp_path / "baseline"
    unet.write_predictions(unet.predict(model, test, batch_size=2), test, folder=reference)
    for image_id, width, height in zip(test.image_ids, test.widths, test.heights):
        folder = tmp_path / "predictions" / "test" / str(image_id)
        assert sorted(path.name for path in folder.iterdir()) == sorted(f"{column}.png" for column in columns)
        for column in columns:
            card_mask = recipe.decode_mask((folder / f"{column}.png").read_bytes())
            assert card_mask.shape == (height, width), (image_id, column)
            baseline_mask = recipe.decode_mask((reference / "test" / str(image_id) / f"{column}.png").read_bytes())
            assert np.array_equal(card_mask, baseline_mask), (image_id, column)
    capsys.readouterr()
    assert covid_seg(["evaluate", "--source", REPO_ID, "--split", "test", "--predictions", "predictions"]) == 0
    assert "| Left Lung | " in capsys.readouterr().out
    # The card's way back to full size is the project's rule, from 128 px as from 256.
    for side in (SIZE, 256):
        probabilities = torch.rand(len(columns), side, side).numpy()
        card_full = namespace["to_full_size"](probabilities, 601, 803)
        assert card_full.dtype == bool
        assert np.array_equal(card_full, resize.to_full_size(probabilities, width=601, height=803)), side
    # The cross-validation recipe's last fold: patient-disjoint from the rest of development.
    fit, held_out = namespace["fit"], namespace["held_out"]
    assert len(fit) + len(held_out) == 84 and set(fit["patient_id"]).isdisjoint(held_out["patient_id"])
    assert all(score is not None for score in namespace["scored"]["severity_geographic_extent"])
    assert isinstance(namespace["stream"], datasets.IterableDataset)
