"""Nothing half-made reaches the Hub: publish refuses a card with gaps (sections the build left
out, placeholders in links and commands), naming each and what fills it; `--allow-incomplete`
publishes a draft, marked at the top of its card."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from covid_chestxray_seg_tools import publish as publishing
from covid_chestxray_seg_tools.card import render
from covid_chestxray_seg_tools.cli import main as covid_seg
from covid_chestxray_seg_tools.hub_folder import layout
from tests.helpers import FIXTURE_ARGS

REPO_ID = "org/covid-chestxray-seg"
TOOLS_URL = "https://github.com/example-lab/covid-chestxray-seg"


@pytest.fixture(scope="module")
def plain_build(tmp_path_factory) -> Path:
    """A build with none of the optional parts and the placeholder tools URL."""
    out = tmp_path_factory.mktemp("plain") / "out"
    assert covid_seg(["build", *FIXTURE_ARGS, "--out", str(out), "--allow-modified", "--quiet", "--num-proc", "1"]) == 0
    return out


def test_publish_refuses_a_card_with_gaps_and_names_what_fills_each(hub, token, plain_build, capsys):
    args = ["publish", "--repo-id", REPO_ID, "--source", str(plain_build)]
    assert covid_seg(args) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(
        f"error: {plain_build / layout.CARD_FILENAME}: the card is incomplete: "
    )
    for gap in (
        "the atlas baseline tables are not computed (fill: covid-seg build --baseline)",
        "the U-Net table is not in the build (fill: covid-seg build --baseline with a U-Net results file)",
        "the data-quality report was not run (fill: covid-seg build --validate)",
        "the card names the placeholder https://github.com/OWNER/covid-chestxray-seg (fill: --tools-url URL)",
    ):
        assert gap in err, gap
    assert err.rstrip().endswith("; publish it as a draft with --allow-incomplete")
    assert hub.state.repos == {}
    # A dry run says the same before anything is planned against the Hub.
    assert covid_seg([*args, "--dry-run"]) == 1 and "the card is incomplete" in capsys.readouterr().err
    # The tools URL given at publishing fills its gap; the others stay.
    assert covid_seg([*args, "--tools-url", TOOLS_URL]) == 1
    err = capsys.readouterr().err
    assert "OWNER" not in err and "the atlas baseline tables are not computed" in err


def test_from_python_the_gaps_name_the_build_settings(hub, token, plain_build):
    request = publishing.PublishRequest(repo_id=REPO_ID, token=token, dry_run=True)
    with pytest.raises(publishing.PublishError, match=r"tables are not computed \(fill: baseline\);") as raised:
        publishing.publish(folder=plain_build, request=request, say=lambda _: None)
    assert "(fill: tools_url=URL)" in str(raised.value) and "draft with allow_incomplete" in str(raised.value)


def test_a_draft_is_published_marked_at_the_top_of_its_card(hub, token, plain_build):
    args = ["publish", "--repo-id", REPO_ID, "--source", str(plain_build), "--no-verify", "--allow-incomplete"]
    assert covid_seg(args) == 0
    card = hub.state.files(REPO_ID)[layout.CARD_FILENAME].decode("utf-8")
    body = card.split("\n---\n", 1)[1]
    assert body.startswith("> **Draft.** This card is incomplete and is no release: the atlas baseline tables are")
    assert "the card names the placeholder https://github.com/OWNER/covid-chestxray-seg." in body.splitlines()[0]
    assert render.card_gaps(card)  # still the same gaps: a draft says so, it does not hide them


def test_a_complete_build_has_no_gap_and_publishes_unmarked(hub, token, fixture_build):
    files = publishing.local_files(folder=fixture_build, repo_id=REPO_ID)
    assert render.card_gaps(files[layout.CARD_FILENAME].content.decode("utf-8")) == []
    assert covid_seg(["publish", "--repo-id", REPO_ID, "--source", str(fixture_build), "--no-verify"]) == 0
    published = hub.state.files(REPO_ID)[layout.CARD_FILENAME].decode("utf-8")
    assert "**Draft.**" not in published and not re.search(r"\bOWNER\b|\bORG/", published)
