"""The card for the Hub repo it is published to: a card is built for one repo id (or the
placeholder) and one tools URL; publishing to another rewrites every place that names them."""

from __future__ import annotations

import re

import covid_chestxray_seg as recipe
from covid_chestxray_seg_tools.card.render import CardError, check_tools_url

__all__ = ["card_for_repo"]

_LOAD_CALL = re.compile(r"""(load_dataset\(\s*)(["'])([^"']+)\2""")
# `covid-seg ... --source ORG/NAME` in the card's commands (a repo id, never a local folder there).
_SOURCE_OPTION = re.compile(r"(--source\s+)[A-Za-z0-9][\w.-]*/[\w.-]+")
# The install line names the tools' URL; its other mentions are found from there.
_INSTALL_LINE = re.compile(r"""covid-chestxray-seg @ git\+([^\s"']+)""")


def card_for_repo(card: str, repo_id: str, *, tools_url: str | None = None) -> str:
    """The card with every `load_dataset("...")`, `--source` and link to the dataset's Hub page
    (the citation's) naming `repo_id` (a card built for one repo, or none, is published to
    another), and, when given, `tools_url` wherever the card names the tools' repository. Links
    to other repos (the FiftyOne companion's) stay as they are.

    Args:
        card: a built card.
        repo_id: the Hub repo it is published to.
        tools_url: the tools' repository URL; None leaves the card's as it is.

    Returns:
        The card, naming `repo_id` (and `tools_url`).

    Raises:
        CardError: `tools_url` is not a URL pip installs from, or the card names no tools URL
            to replace (a build of an older version).
    """
    built_for = _LOAD_CALL.search(card)
    card = _LOAD_CALL.sub(lambda match: f"{match.group(1)}{match.group(2)}{repo_id}{match.group(2)}", card)
    card = _SOURCE_OPTION.sub(lambda match: f"{match.group(1)}{repo_id}", card)
    if built_for is not None:
        # The repo id the card was built for, whole: "ORG/NAME-fiftyone" is another repo.
        page = re.compile(rf"(https://huggingface\.co/datasets/){re.escape(built_for.group(3))}(?![\w.-])")
        card = page.sub(lambda match: f"{match.group(1)}{repo_id}", card)
    if tools_url is None:
        return card
    check_tools_url(tools_url)
    found = _INSTALL_LINE.search(card)
    if found is None:
        raise CardError(
            'the card names no tools URL to replace (no `pip install "covid-chestxray-seg @ git+URL"`)',
            setting="tools_url",
            fix=f"build it again with {recipe.setting('tools_url', 'URL')}",
        )
    # The old URL where it stands alone: not where it is the start of a longer URL.
    mentions = re.compile(re.escape(found.group(1)) + r"(?![\w./-])")
    return mentions.sub(lambda _: tools_url, card)
