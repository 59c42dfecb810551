"""The files a publish sends: a built folder's, checked to be a complete, intact build of this
builder, with the card rewritten for the repo it goes to."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import DatasetCard

import covid_chestxray_seg as recipe
from covid_chestxray_seg_tools.card.companion import companion_repo_id, link_companion
from covid_chestxray_seg_tools.card.render import card_gaps, mark_draft
from covid_chestxray_seg_tools.card.repo import card_for_repo
from covid_chestxray_seg_tools.hub_folder import checksums, layout
from covid_chestxray_seg_tools.publish.request import PublishError

__all__ = ["REPO_TYPE", "LocalFile", "check_card", "local_file", "local_files"]

REPO_TYPE = "dataset"
_BUILD_AGAIN = "build it again (covid-seg build)"


@dataclass(frozen=True)
class LocalFile:
    """A file to publish.

    Attributes:
        path: the file on disk.
        size, sha256, git_sha1: of what is uploaded (the Hub compares LFS files by SHA-256, the
            others by git blob id).
        content: what is uploaded instead of the file, when publishing changes it (the card).
    """

    path: Path
    size: int
    sha256: str
    git_sha1: str
    content: bytes | None = None


def local_file(path: Path, data: bytes, *, changed: bool = False) -> LocalFile:
    """A file to publish, with its hashes.

    Args:
        path: where `data` was read from.
        data: the bytes to upload.
        changed: `data` is not what `path` holds (publishing rewrote it): upload `data`.

    Returns:
        The file, its size and hashes those of `data`.
    """
    return LocalFile(
        path, len(data), hashlib.sha256(data).hexdigest(), recipe.git_blob_sha1(data), data if changed else None
    )


def local_files(
    *,
    folder: Path,
    repo_id: str,
    fiftyone_repo_id: str | None = None,
    tools_url: str | None = None,
    allow_incomplete: bool = False,
) -> dict[str, LocalFile]:
    """The built folder's files by repo path, after checking it is a complete, intact build of
    this builder; the card's code names `repo_id`, whatever repo it was built for, its FiftyOne
    section `fiftyone_repo_id` (default: `repo_id` + "-fiftyone"), and `tools_url` (when given)
    as the repository to install `covid-seg` from, whatever URL it was built with.

    Args:
        folder: the built folder.
        repo_id: the repo the card is published to.
        fiftyone_repo_id: the FiftyOne companion the card names.
        tools_url: the tools' repository the card names (None: the one it was built with).
        allow_incomplete: a card with gaps (`card.render.card_gaps`) goes as a draft, marked
            at its top, instead of being refused.

    Raises:
        PublishError: no such folder, a loading script in it, a file of the build missing, a
            build of another builder version, a data file that differs from its checksums, a
            card with gaps (unless `allow_incomplete`).
        card.render.CardError: `tools_url` is not a URL pip installs from.
    """
    if not folder.is_dir():
        raise PublishError("does not exist", file=folder, fix=f"build it first ({_BUILD_AGAIN})")
    files: dict[str, LocalFile] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        relative = path.relative_to(folder).as_posix()
        if relative.endswith(".py"):
            raise PublishError(
                f"holds {relative}: a loading script would make datasets >= 4 and the Hub viewer refuse the repo",
                file=folder,
                fix="publish only what covid-seg build writes",
            )
        data = path.read_bytes()
        if relative == layout.CARD_FILENAME:
            text = card_for_repo(data.decode("utf-8"), repo_id, tools_url=tools_url)
            text = link_companion(text, fiftyone_repo_id or companion_repo_id(repo_id))
            gaps = card_gaps(text)
            if gaps and not allow_incomplete:
                raise PublishError(
                    "the card is incomplete: " + "; ".join(f"{gap.what} (fill: {gap.fill})" for gap in gaps),
                    file=path,
                    fix=f"publish it as a draft with {recipe.setting('allow_incomplete')}",
                )
            card = (mark_draft(text, gaps) if gaps else text).encode("utf-8")
            files[relative] = local_file(path, card, changed=card != data)
        else:
            files[relative] = local_file(path, data)
    missing = [name for name in layout.REQUIRED_FILES if name not in files]
    if missing or not any(name.startswith(f"{layout.DATA_DIR}/") and name.endswith(".parquet") for name in files):
        raise PublishError(
            f"not a built folder (missing {', '.join(missing) or 'data/**.parquet'})", file=folder, fix=_BUILD_AGAIN
        )
    infos_path = files[layout.INFOS_FILENAME].path
    try:
        infos = json.loads(infos_path.read_text(encoding="utf-8"))
        built = infos[layout.CONFIG_NAME]["version"]["version_str"]
    except (ValueError, KeyError, TypeError) as error:
        raise PublishError(
            f"not a dataset_infos.json written by covid-seg build ({type(error).__name__}: {error})",
            file=infos_path,
            fix=_BUILD_AGAIN,
        ) from None
    if built != recipe.BUILDER_VERSION:
        raise PublishError(
            f"built by builder version {built}, this checkout is {recipe.BUILDER_VERSION}",
            file=folder,
            fix=_BUILD_AGAIN,
        )
    _check_data_files(folder=folder, files=files)
    return files


def _check_data_files(*, folder: Path, files: Mapping[str, LocalFile]) -> None:
    """The data files are the ones the build wrote (`checksums.json`): a damaged build is not published."""
    try:
        expected = checksums.parse(files[layout.CHECKSUMS_FILENAME].path.read_bytes())
    except ValueError as error:
        raise PublishError(str(error), file=folder / layout.CHECKSUMS_FILENAME, fix=_BUILD_AGAIN) from None
    found = {
        name: checksums.FileSum(size=file.size, sha256=file.sha256, git_sha1=file.git_sha1)
        for name, file in files.items()
        if name.startswith(f"{layout.DATA_DIR}/") and name.endswith(".parquet")
    }
    mismatches = checksums.compare(expected, found)
    if mismatches:
        raise PublishError(
            f"{checksums.describe(mismatches)}: the build is damaged or incomplete and is not published",
            file=folder,
            fix=_BUILD_AGAIN,
        )


def check_card(*, folder: Path) -> None:
    """Ask the Hub to validate the card's metadata before anything is uploaded: a card it
    refuses would otherwise fail the commit after every shard had been sent.

    Raises:
        PublishError: the Hub refuses the card's metadata.
    """
    card = DatasetCard.load(folder / layout.CARD_FILENAME)
    try:
        card.validate(repo_type=REPO_TYPE)
    except ValueError as error:
        raise PublishError(
            f"the Hub refuses the card's metadata ({error}); nothing was uploaded",
            file=folder / layout.CARD_FILENAME,
            fix="the card's YAML comes from covid-seg build: fix it there and build again",
        ) from None
