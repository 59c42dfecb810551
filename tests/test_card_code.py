"""The published card's code: every Python block runs, top to bottom in one interpreter,
against the repo it was published to, importing nothing from this project."""

from __future__ import annotations

import ast
import re

import datasets
import numpy as np

import covid_chestxray_seg as recipe
from covid_chestxray_seg_tools.cli import main as covid_seg
from covid_chestxray_seg_tools.hub_folder import layout, resize
from tests.helpers import parquet_rows, require_torch

REPO_ID = "acme-lab/cxr-seg"
# What a Hub visitor installs for the card: datasets, numpy, pillow; pycocotools or torch where a block imports them
# (and the standard library's pathlib).
ALLOWED_IMPORTS = {"datasets", "numpy", "PIL", "pycocotools", "torch", "pathlib"}


def python_blocks(card: str) -> list[str]:
    """The card's Python blocks but the FiftyOne one, which needs FiftyOne and its database:
    compat/fiftyone runs that one against the published companion."""
    return [block for block in re.findall(r"```python\n(.*?)```", card, flags=re.S) if "fiftyone" not in block]


def test_published_card_code_names_the_repo_and_runs_top_to_bottom(
    hub, token, real_build, tmp_path, monkeypatch, capsys
):
    torch = require_torch()
    # Built for the default id, published to another: the card must follow the publish.
    assert covid_seg(["publish", "--repo-id", REPO_ID, "--source", str(real_build), "--no-verify"]) == 0
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
    torch.manual_seed(0)  # the example shuffles: the same batches on every run
    monkeypatch.chdir(tmp_path)  # the recipe writes its predictions to ./predictions
    exec(compile(code, "README.md (published card)", "exec"), namespace)

    # The blocks' results are what the card says they are.
    row = namespace["row"]
    assert namespace["masks"].shape == (14, row["height"], row["width"]) and namespace["masks"].dtype == bool
    assert max(namespace["row"]["overlay"].size) <= 512
    assert sum(len(split) for split in namespace["licensed"].values()) == 44
    images, batch_masks, known = namespace["images"], namespace["batch_masks"], namespace["known"]
    assert images.dtype == torch.float32 and tuple(images.shape) == (8, 1, 256, 256)
    assert batch_masks.dtype == torch.bool and tuple(batch_masks.shape) == (8, 3, 256, 256)
    assert known.dtype == torch.bool and tuple(known.shape) == (8, 3)
    assert float(images.min()) >= -1e-5 and float(images.max()) <= 1.0 + 1e-5
    # The recipe's tensors are the full-size masks by the mask rule, nulls included.
    columns, small_train = namespace["COLUMNS"], namespace["small"]["train"]
    full = {row["image_id"]: row for row in parquet_rows(real_build, "train", columns=["image_id", *columns])}
    nulls = 0
    for example in small_train:
        _, example_masks, example_known = namespace["to_tensors"](example)
        for channel, column in enumerate(columns):
            stored = recipe.decode_mask(full[example["image_id"]][column])
            if stored is None:
                assert not example_known[channel] and not example_masks[channel].any()
                nulls += 1
                continue
            assert example_known[channel]
            assert np.array_equal(example_masks[channel].numpy(), resize.resize_mask(stored)), column
    assert nulls == 9  # mask_monitoring_probes is null on 9 train images, and the recipe copes
    # Predictions written at full size, scored by covid-seg evaluate against the published repo.
    written = sorted((tmp_path / "predictions" / "test").iterdir())
    assert len(written) == 16
    capsys.readouterr()
    assert covid_seg(["evaluate", "--source", REPO_ID, "--split", "test", "--predictions", "predictions"]) == 0
    assert "| Left Lung | " in capsys.readouterr().out
    # The card's way back to full size is the project's rule.
    probabilities = torch.rand(len(columns), 256, 256)
    card_full = namespace["to_full_size"](probabilities, 601, 803).numpy()
    helper = resize.to_full_size(probabilities.numpy(), width=601, height=803)
    assert (card_full != helper).sum() <= helper.size * 1e-5
    # The cross-validation recipe's last fold: patient-disjoint from the rest of development.
    fit, held_out = namespace["fit"], namespace["held_out"]
    assert len(fit) + len(held_out) == 84 and set(fit["patient_id"]).isdisjoint(held_out["patient_id"])
    assert all(score is not None for score in namespace["scored"]["severity_geographic_extent"])
    assert isinstance(namespace["stream"], datasets.IterableDataset)
