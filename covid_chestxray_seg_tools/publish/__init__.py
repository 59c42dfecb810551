"""Publish a built folder to a Hugging Face dataset repo in one commit, then load it back.

    request  PublishRequest (where and how), PublishResult (what was done), PublishError
    local    the built folder's files, checked to be a complete, intact build, the card
             rewritten for the repo it goes to
    hub      the plan against the repo's head, the one commit, the check of what landed

After the commit the remote files are compared with the local ones and the dataset is loaded
back with plain `datasets`, normally and streaming.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path

from covid_chestxray_seg_tools.hub_folder import layout
from covid_chestxray_seg_tools.publish.hub import COMMIT_ATTEMPTS, COMMIT_RETRY_WAIT, push_files
from covid_chestxray_seg_tools.publish.local import LocalFile, check_card, local_file, local_files
from covid_chestxray_seg_tools.publish.request import (
    DEFAULT_COMMIT_MESSAGE,
    NO_TOKEN,
    TOKEN_FIX,
    PublishError,
    PublishRequest,
    PublishResult,
)

__all__ = [
    "COMMIT_ATTEMPTS",
    "COMMIT_RETRY_WAIT",
    "DEFAULT_COMMIT_MESSAGE",
    "NO_TOKEN",
    "TOKEN_FIX",
    "LocalFile",
    "PublishError",
    "PublishRequest",
    "PublishResult",
    "check_card",
    "local_file",
    "local_files",
    "publish",
    "push_files",
]


def publish(
    *,
    folder: Path,
    request: PublishRequest,
    fiftyone_repo_id: str | None = None,
    tools_url: str | None = None,
    say: Callable[[str], None] = print,
) -> PublishResult:
    """Publish a built folder to a Hub dataset repo in one commit, then check it and load it back.

    The repo (and the branch) is created if missing. Files the repo holds already are not sent
    again; shards of an earlier build that the folder no longer has are deleted in the same
    commit; an unchanged folder makes no commit. The commit is made on top of the head the plan
    was made against, so a concurrent change stops it with nothing committed.

    Args:
        folder: a complete build of this builder version (`covid-seg build --out`).
        request: the repo, branch, token and how to commit; the card's code is rewritten to
            name `request.repo_id`.
        fiftyone_repo_id: the FiftyOne companion the card's FiftyOne section names (default:
            the repo id + "-fiftyone"); publishing it is `fiftyone.companion.publish_companion`.
        tools_url: the repository of these tools the card tells people to install `covid-seg`
            from (default: the URL the folder was built with).
        say: where progress lines go (the plan, the commit, the checks).

    Returns:
        The repo, revision and commit, whether a commit was made, and the files uploaded,
        deleted and left unchanged.

    Raises:
        PublishError: a bad repo id or commit message, no token, a folder that is not a
            complete, intact build of this builder (or holds a .py file), a card the Hub
            refuses, a repo of another type under the repo id, a commit the Hub refused or a
            repo changed meanwhile (nothing committed), or files that differ after the commit.
        huggingface_hub.errors.HfHubHTTPError: the Hub refused a request (HTTP 401: the token).
        httpx2.TransportError: the Hub cannot be reached.
    """
    request.check()
    folder = Path(folder)
    local = local_files(
        folder=folder,
        repo_id=request.repo_id,
        fiftyone_repo_id=fiftyone_repo_id,
        tools_url=tools_url,
        allow_incomplete=request.allow_incomplete,
    )
    check_card(folder=folder)
    return push_files(
        local=local,
        request=request,
        say=say,
        load_back=lambda commit: _verify_load(request=request, revision=commit, folder=folder),
    )


def _verify_load(*, request: PublishRequest, revision: str, folder: Path) -> str:
    """Load the published dataset with plain `datasets`, normally and streaming, and check it."""
    import datasets  # imported here: plans and dry runs do not need it

    repo_id, token = request.repo_id, request.token
    infos = json.loads((folder / layout.INFOS_FILENAME).read_text(encoding="utf-8"))[layout.CONFIG_NAME]
    expected = {name: split["num_examples"] for name, split in infos["splits"].items()}
    features = datasets.Features.from_dict(infos["features"])
    with tempfile.TemporaryDirectory(prefix="covid-chestxray-seg-verify-") as cache_dir:
        loaded = datasets.load_dataset(repo_id, revision=revision, token=token, cache_dir=cache_dir)
        rows = {name: len(split) for name, split in loaded.items()}
        if rows != expected:
            raise PublishError(f"verification failed: load_dataset({repo_id!r}) gave rows {rows}, expected {expected}")
        if any(split.features != features for split in loaded.values()):
            raise PublishError(f"verification failed: load_dataset({repo_id!r}) gave other features than the build")
        streamed = datasets.load_dataset(repo_id, revision=revision, token=token, streaming=True, cache_dir=cache_dir)
        first = {name: next(iter(split))["image_id"] for name, split in streamed.items()}
        if first != {name: split[0]["image_id"] for name, split in loaded.items()}:
            raise PublishError(f"verification failed: streaming {repo_id!r} starts with other rows than loading it")
    return (
        "loaded back: "
        + ", ".join(f"{name} {count} rows" for name, count in rows.items())
        + "; streaming reads the same first rows"
    )
