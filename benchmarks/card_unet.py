"""The card's U-Net block run in full, as a Hub visitor runs it, against a local build: its
test-split Dice beside the committed baselines/unet.json for each headline class (the card
promises within 0.02; on the machine the baseline was trained on, equal).

A maintainer's check (about half a minute of training on 2 idle cores, several minutes on a busy
machine), not part of the suite: tests/test_card_code.py runs the same block for one epoch and
checks it trains what `covid-seg baseline unet` trains. From a clone, with torch and monai:

    python -m benchmarks.card_unet --source build
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import sys
import tempfile
import time
from pathlib import Path

import covid_chestxray_seg as recipe
from covid_chestxray_seg_tools.baselines import results
from covid_chestxray_seg_tools.card.render import TEMPLATE
from covid_chestxray_seg_tools.cli import main as covid_seg

TOLERANCE = 0.02


def run(source: Path) -> int:
    """Run the card's blocks on `source`, score the predictions, print the comparison; 1 when a
    headline class is more than TOLERANCE from the committed U-Net."""
    source = source.resolve()  # before the chdir below
    card = TEMPLATE.read_text(encoding="utf-8").replace("__REPO_ID__", str(source))
    # The card's code, but FiftyOne's block (FiftyOne and its database are another venv's).
    code = "\n".join(b for b in re.findall(r"```python\n(.*?)```", card, flags=re.S) if "fiftyone" not in b)
    committed = results.read_results(results.COMMITTED_RESULTS)["scores"]["test"]["unet"]["classes"]
    with tempfile.TemporaryDirectory(prefix="card-unet-") as work:
        os.chdir(work)  # the card writes ./predictions
        start = time.perf_counter()
        exec(compile(code, "the card's code", "exec"), {})
        usage = resource.getrusage(resource.RUSAGE_SELF)
        cpu = usage.ru_utime + usage.ru_stime
        wall = time.perf_counter() - start
        scored = Path(work, "scores.json")
        arguments = ["--split", "test", "--predictions", "predictions", "--json", str(scored), "--quiet"]
        if covid_seg(["evaluate", "--source", str(source), *arguments]) != 0:
            return 1
        ours = json.loads(scored.read_text(encoding="utf-8"))["classes"]
    print(f"the card's code: {wall:.0f} s wall, {cpu:.0f} s CPU; test-split Dice, card / committed:")
    far = []
    for name in recipe.HEADLINE_CLASSES:
        card_dice, baseline_dice = ours[name]["dice"]["mean"], committed[name]["dice"]["mean"]
        print(f"  {name:<24} {card_dice:.6f} / {baseline_dice:.6f} ({card_dice - baseline_dice:+.6f})")
        far += [name] if abs(card_dice - baseline_dice) > TOLERANCE else []
    if far:
        print(f"more than {TOLERANCE} from the committed U-Net: {', '.join(far)}", file=sys.stderr)
    return 1 if far else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, default=Path("build"), help="a built folder (default: build)")
    sys.exit(run(parser.parse_args().source))
