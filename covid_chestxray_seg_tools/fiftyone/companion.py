"""The FiftyOne companion repo on the Hub: whether it exists, and its publish.

The records in FiftyOne's format (`fiftyone_export`) go to a second dataset repo whose id, card
and links are `card.companion`'s. This module does not import FiftyOne: the command line uses
it whether FiftyOne is installed or not; `exporter()` and `publish_companion` need it.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from huggingface_hub import HfApi

import covid_chestxray_seg as recipe
from covid_chestxray_seg_tools import publish
from covid_chestxray_seg_tools.card.companion import check_companion_id
from covid_chestxray_seg_tools.errors import CovidSegError

__all__ = [
    "INSTALL",
    "OWNED_FOLDERS",
    "FiftyOneMissingError",
    "companion_exists",
    "exporter",
    "publish_companion",
]

# The folders of FiftyOne's export layout: media (data/) and files of media and label fields
# (fields/); a publish deletes what an export no longer has there.
OWNED_FOLDERS = ("data/", "fields/")
# How to install the optional extra, for messages.
INSTALL = "pip install 'covid-chestxray-seg[fiftyone]'"


class FiftyOneMissingError(CovidSegError, ImportError):
    """FiftyOne, an optional extra, is not installed."""


def exporter() -> ModuleType:
    """The `fiftyone_export` module.

    Returns:
        The module, with FiftyOne imported.

    Raises:
        FiftyOneMissingError: FiftyOne is not installed (it is an optional extra).
    """
    try:
        from covid_chestxray_seg_tools.fiftyone import export as fiftyone_export
    except ModuleNotFoundError as error:
        if error.name != "fiftyone" and not (error.name or "").startswith("fiftyone."):
            raise
        raise FiftyOneMissingError(f"FiftyOne is not installed (an optional extra): {INSTALL}") from None
    return fiftyone_export


def companion_exists(companion_id: str, *, token: str | None) -> bool:
    """Whether the companion repo exists on the Hub: one `repo_exists` call.

    Args:
        companion_id: the companion's dataset repo id.
        token: a token that can see it if it is private (None: public repos only).

    Returns:
        True when the Hub has a dataset repo of that id the token may see.

    Raises:
        huggingface_hub.errors.HfHubHTTPError: the Hub answered with an error other than "not found".
        httpx2.TransportError: the Hub cannot be reached.
    """
    return HfApi(token=token or False).repo_exists(companion_id, repo_type="dataset")


def publish_companion(
    *,
    folder: Path,
    request: publish.PublishRequest,
    companion_id: str,
    tools_url: str | None = None,
    say: Callable[[str], None] = print,
) -> publish.PublishResult:
    """Export the build in `folder` in FiftyOne's format and publish it to `companion_id` in one
    commit (none when the repo holds those files already: the export is byte-reproducible).

    Args:
        folder: a built folder (as `publish.publish` takes it).
        request: the Parquet repo's publish: the companion's card links back to its repo, and
            the companion is published with its token, branch and options (its commit message
            names the FiftyOne version unless the request gives its own).
        companion_id: the companion repo.
        tools_url: the tools' repository the main card names, as the Parquet repo's publish gave it
            (None: the one the folder was built with); the same card checks as that publish.
        say: where progress lines go.

    Returns:
        What the publish of the export did (`publish.PublishResult`).

    Raises:
        CompanionError: `companion_id` is `repo_id`.
        FiftyOneMissingError: FiftyOne is not installed.
        PublishError: as `publish.publish`.
    """
    repo_id = request.repo_id
    check_companion_id(repo_id=repo_id, companion_id=companion_id)
    if not request.token and not request.dry_run:
        raise publish.PublishError(publish.NO_TOKEN, fix=publish.TOKEN_FIX)
    # The same checks as for the Parquet repo: a complete build of this builder.
    publish.local_files(
        folder=Path(folder), repo_id=repo_id, tools_url=tools_url, allow_incomplete=request.allow_incomplete
    )
    fiftyone_export = exporter()
    with tempfile.TemporaryDirectory(prefix="covid-chestxray-seg-fiftyone-") as scratch:
        out = Path(scratch) / "export"
        fiftyone_export.export_fiftyone(source=str(folder), out=out, repo_id=repo_id, companion_id=companion_id)
        local = {
            path.relative_to(out).as_posix(): publish.local_file(path, path.read_bytes())
            for path in sorted(out.rglob("*"))
            if path.is_file()
        }
        message = request.commit_message
        if message == publish.DEFAULT_COMMIT_MESSAGE:
            message = (
                f"Publish covid-chestxray-seg in FiftyOne format (builder {recipe.BUILDER_VERSION}, "
                f"fiftyone {fiftyone_export.FIFTYONE_VERSION})"
            )
        companion = dataclasses.replace(request, repo_id=companion_id, commit_message=message)
        return publish.push_files(local=local, request=companion, say=say, owned=OWNED_FOLDERS)
