"""The FiftyOne companion without FiftyOne installed (the main venv): the export and the publish
say how to install the extra and write nothing, the main card names the companion and follows
the publish. compat/fiftyone runs FiftyOne itself."""

from __future__ import annotations

import importlib.util
import re

import pytest

from covid_chestxray_seg_tools.card.companion import CompanionError, check_companion_id, companion_card, link_companion
from covid_chestxray_seg_tools.cli import main as covid_seg
from covid_chestxray_seg_tools.hub_folder import layout

REPO_ID = "acme-lab/cxr-seg"

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("fiftyone") is not None, reason="checks the venv without the fiftyone extra"
)


def test_export_without_fiftyone_says_how_to_install_it_and_writes_nothing(tmp_path, fixture_build, capsys):
    out = tmp_path / "fiftyone"
    assert covid_seg(["export", "--source", str(fixture_build), "--format", "fiftyone", "--out", str(out)]) == 1
    assert capsys.readouterr().err.strip() == (
        "error: FiftyOne is not installed (an optional extra): pip install 'covid-chestxray-seg[fiftyone]'"
    )
    assert list(tmp_path.iterdir()) == []


def test_export_fiftyone_refuses_the_other_formats_options(tmp_path, fixture_build, capsys):
    args = ["export", "--source", str(fixture_build), "--format", "fiftyone", "--out", str(tmp_path / "x")]
    assert covid_seg([*args, "--classes", "Left Lung"]) == 1
    assert "--classes: applies to --format folder only" in capsys.readouterr().err
    assert covid_seg([*args, "--upstream-form"]) == 1
    assert "--upstream-form: applies to --format coco only" in capsys.readouterr().err


def test_publish_fiftyone_without_fiftyone_publishes_nothing(hub, token, fixture_build, capsys):
    assert covid_seg(["publish", "--repo-id", REPO_ID, "--source", str(fixture_build), "--fiftyone"]) == 1
    assert "FiftyOne is not installed" in capsys.readouterr().err
    assert hub.state.repos == {}


@pytest.mark.parametrize(
    ("companion", "message", "worded"),
    [
        (
            REPO_ID,
            r"^fiftyone='acme-lab/cxr-seg': the companion must be another repo than repo_id$",
            r"^error: --fiftyone acme-lab/cxr-seg: the companion must be another repo than --repo-id$",
        ),
        (
            "no-slash",
            r"^fiftyone='no-slash': not a dataset repo id",
            r"^error: --fiftyone no-slash: not a dataset repo id",
        ),
    ],
)
def test_publish_refuses_a_wrong_companion_id_before_publishing(
    hub, token, fixture_build, capsys, companion, message, worded
):
    # From Python the message names the settings as Python does; the command names its options.
    with pytest.raises(CompanionError, match=message):
        check_companion_id(repo_id=REPO_ID, companion_id=companion)
    assert covid_seg(["publish", "--repo-id", REPO_ID, "--source", str(fixture_build), "--fiftyone", companion]) == 1
    assert re.search(worded, capsys.readouterr().err, flags=re.M)
    assert hub.state.repos == {}


def test_built_card_names_the_default_companion(fixture_build):
    card = (fixture_build / layout.CARD_FILENAME).read_text(encoding="utf-8")
    section = card.split("\n## FiftyOne\n")[1].split("\n## ")[0]
    assert re.findall(r"load_from_hub\(\"([^\"]+)\"\)", section) == ["ORG/covid-chestxray-seg-fiftyone"]
    assert "(https://huggingface.co/datasets/ORG/covid-chestxray-seg-fiftyone)" in section
    # The section says how a null mask differs from an empty one there.
    assert "all-zero" in section and "`None`" in section


def test_published_card_names_the_companion_it_was_told(hub, token, fixture_build):
    assert covid_seg(["publish", "--repo-id", REPO_ID, "--source", str(fixture_build), "--no-verify"]) == 0
    card = hub.state.files(REPO_ID)[layout.CARD_FILENAME].decode("utf-8")
    assert re.findall(r"load_from_hub\(\"([^\"]+)\"\)", card) == [f"{REPO_ID}-fiftyone"]
    assert "ORG/covid-chestxray-seg" not in card
    renamed = link_companion(card, "acme-lab/other")
    assert re.findall(r"load_from_hub\(\"([^\"]+)\"\)", renamed) == ["acme-lab/other"]
    assert "(https://huggingface.co/datasets/acme-lab/other)" in renamed
    # Only the FiftyOne section changes: the load_dataset calls keep the main repo.
    assert renamed.replace("acme-lab/other", f"{REPO_ID}-fiftyone") == card
    plain = "# a card without the section\n"
    assert link_companion(plain, "x/y") == plain


def test_companion_card_links_back_and_carries_the_license_facts():
    card = companion_card(repo_id=REPO_ID, companion_id=f"{REPO_ID}-fiftyone", samples=3, fiftyone_version="1.22.1")
    assert card.startswith("---\n") and "license_link: LICENSE.md" in card and "viewer: false" in card
    assert f"(https://huggingface.co/datasets/{REPO_ID})" in card
    assert 'load_from_hub("acme-lab/cxr-seg-fiftyone")' in card
    assert "CC BY 4.0" in card and "CC BY-SA 4.0" in card and "[LICENSE.md](LICENSE.md)" in card
