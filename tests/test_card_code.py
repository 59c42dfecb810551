"""The published card's code: every Python block runs, top to bottom in one interpreter,
against the repo it was published to, importing nothing from this project."""

from __future__ import annotations

import ast
import re

import datasets
import numpy as np
from PIL import Image

from covid_chestxray_seg_tools import layout
from covid_chestxray_seg_tools.cli import main as covid_seg
from tests.helpers import require_torch

REPO_ID = "acme-lab/cxr-seg"
# What a Hub visitor installs for the card: datasets, numpy, pillow; pycocotools or torch where a block imports them.
ALLOWED_IMPORTS = {"datasets", "numpy", "PIL", "pycocotools", "torch"}


def python_blocks(card: str) -> list[str]:
    """The card's Python blocks but the FiftyOne one, which needs FiftyOne and its database:
    compat/fiftyone runs that one against the published companion."""
    return [block for block in re.findall(r"```python\n(.*?)```", card, flags=re.S) if "fiftyone" not in block]


def _resized(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize with PIL: an independent check of the example's torch resize."""
    return np.asarray(Image.fromarray(mask).resize(size[::-1], Image.Resampling.NEAREST))


def test_published_card_code_names_the_repo_and_runs_top_to_bottom(hub, token, real_build):
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
    exec(compile(code, "README.md (published card)", "exec"), namespace)

    # The blocks' results are what the card says they are.
    row = namespace["row"]
    assert namespace["masks"].shape == (14, row["height"], row["width"]) and namespace["masks"].dtype == bool
    assert max(namespace["row"]["overlay"].size) <= 512
    assert sum(len(split) for split in namespace["licensed"].values()) == 44
    images, batch_masks = namespace["images"], namespace["batch_masks"]
    assert images.dtype == torch.float32 and tuple(images.shape) == (8, 1, 256, 256)
    assert batch_masks.dtype == torch.bool and tuple(batch_masks.shape) == (8, 2, 256, 256)
    assert float(images.min()) >= -1e-5 and float(images.max()) <= 1.0 + 1e-5
    train = namespace["train"]
    for index in range(3):
        example = train[index]
        _, example_masks = namespace["to_tensors"](example)
        for channel, column in enumerate(["mask_left_lung", "mask_right_lung"]):
            expected = _resized(np.asarray(example[column]), (256, 256))
            got = example_masks[channel].numpy()
            assert (got & expected).sum() / max(1, (got | expected).sum()) > 0.95, (example["image_id"], column)
    # The cross-validation recipe's last fold: patient-disjoint from the rest of development.
    fit, held_out = namespace["fit"], namespace["held_out"]
    assert len(fit) + len(held_out) == 84 and set(fit["patient_id"]).isdisjoint(held_out["patient_id"])
    assert all(score is not None for score in namespace["scored"]["severity_geographic_extent"])
    assert isinstance(namespace["stream"], datasets.IterableDataset)
