"""The card's U-Net block run in full (10 epochs: the baseline's test model), against the
published real build: its test-split Dice is within 0.02 of the committed baselines/unet.json
on each headline class (on the machine the baseline was trained on, equal).

Not in the default run, slow or not: it trains for about half a minute on 2 idle cores (more on
a busy machine) on top of the real build. Run it where torch, monai and the full data are:

    COVID_SEG_CARD_FULL_RUN=1 python -m pytest tests/test_card_training.py -s

tests/test_card_code.py runs the same block for one epoch on every slow run.
"""

from __future__ import annotations

import json
import os

import pytest

from covid_chestxray_seg_tools.baselines import results
from covid_chestxray_seg_tools.cli import main as covid_seg
from covid_chestxray_seg_tools.hub_folder import layout
from tests.helpers import FIXTURE_TOOLS_URL, require_monai, require_torch
from tests.test_card_code import REPO_ID, python_blocks

FULL_RUN = "COVID_SEG_CARD_FULL_RUN"
HEADLINE = ("Left Lung", "Right Lung", "Cardiomediastinum", "Airways", "Ground Glass Opacities", "Consolidation")
TOLERANCE = 0.02

pytestmark = pytest.mark.skipif(
    os.environ.get(FULL_RUN) != "1", reason=f"the card's full U-Net run: set {FULL_RUN}=1 to run it"
)


def test_the_card_block_reproduces_the_committed_unet_test_scores(hub, token, real_build, tmp_path, monkeypatch):
    require_torch()
    require_monai()
    committed_file = results.committed_results()
    assert committed_file is not None, "baselines/unet.json is not in this checkout"
    committed = results.read_results(committed_file)["scores"]["test"]["unet"]["classes"]
    publish = ["publish", "--repo-id", REPO_ID, "--source", str(real_build), "--tools-url", FIXTURE_TOOLS_URL]
    assert covid_seg([*publish, "--no-verify"]) == 0
    card = hub.state.files(REPO_ID)[layout.CARD_FILENAME].decode("utf-8")
    monkeypatch.chdir(tmp_path)  # the card writes ./predictions
    # Every block, as a visitor runs them, the training one as it stands: nothing substituted.
    exec(compile("\n".join(python_blocks(card)), "README.md (published card)", "exec"), {})

    arguments = ["--split", "test", "--predictions", "predictions", "--json", "scores.json", "--quiet"]
    assert covid_seg(["evaluate", "--source", REPO_ID, *arguments]) == 0
    ours = json.loads((tmp_path / "scores.json").read_text(encoding="utf-8"))["classes"]
    rows, far = [], []
    for name in HEADLINE:
        card_dice, baseline_dice = ours[name]["dice"]["mean"], committed[name]["dice"]["mean"]
        rows.append(f"{name:<24} card {card_dice:.6f}  committed {baseline_dice:.6f}  {card_dice - baseline_dice:+.6f}")
        if abs(card_dice - baseline_dice) > TOLERANCE:
            far.append(name)
    print("\ntest-split Dice, the card's full run against baselines/unet.json:\n" + "\n".join(rows))
    assert not far, f"more than {TOLERANCE} Dice from the committed U-Net: {far}\n" + "\n".join(rows)
