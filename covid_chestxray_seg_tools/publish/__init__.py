"""Publish a built folder to a Hugging Face dataset repo in one commit, then load it back.

One atomic commit (README.md, dataset_infos.json, data/**, stale shards deleted in the
same commit), made on top of the head it was planned against, so the repo is never
half-published. Publishing an unchanged folder makes no commit. Afterwards the remote
files are compared with the local ones and the dataset is loaded back with plain
`datasets`, normally and streaming.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from huggingface_hub import CommitOperationAdd, CommitOperationDelete, DatasetCard, HfApi, RepoFile
from huggingface_hub.errors import HfHubHTTPError, HFValidationError, RepositoryNotFoundError, RevisionNotFoundError

# Public (in huggingface_hub.utils.__all__), but that list is built at run time, which mypy cannot read.
from huggingface_hub.utils import validate_repo_id  # type: ignore[attr-defined]

import covid_chestxray_seg as recipe
from covid_chestxray_seg_tools.card.companion import companion_repo_id, link_companion
from covid_chestxray_seg_tools.card.render import card_for_repo
from covid_chestxray_seg_tools.errors import CovidSegError, describe
from covid_chestxray_seg_tools.hub_folder import checksums, layout

__all__ = [
    "COMMIT_ATTEMPTS",
    "COMMIT_RETRY_WAIT",
    "DEFAULT_COMMIT_MESSAGE",
    "LocalFile",
    "PublishError",
    "PublishResult",
    "local_file",
    "local_files",
    "publish",
    "push_files",
]

_REPO_TYPE = "dataset"
_RETRY_STATUSES = (408, 429, 500, 502, 503, 504)
COMMIT_ATTEMPTS = 4
COMMIT_RETRY_WAIT = 2.0  # seconds, doubled after each failed attempt
DEFAULT_COMMIT_MESSAGE = f"Publish covid-chestxray-seg (builder {recipe.BUILDER_VERSION})"


class PublishError(CovidSegError, ValueError):
    """A publish that cannot go ahead; the message says why and what to do."""


@dataclass(frozen=True)
class PublishResult:
    """What a publish did (on a dry run: what it would do).

    Attributes:
        repo_id: the dataset repo published to.
        revision: the branch committed to (with a pull request: the branch it is against).
        commit: the commit that holds the files (a pull request's commit); None on a dry run.
        committed: whether this publish made that commit; False when the repo held the files
            already, and on a dry run.
        uploaded: files uploaded (new or changed).
        deleted: files deleted (stale shards, a loading script).
        unchanged: files the repo held already.
        dry_run: nothing was written.
    """

    repo_id: str
    revision: str
    commit: str | None
    committed: bool
    uploaded: int
    deleted: int
    unchanged: int
    dry_run: bool

    def to_json(self) -> dict[str, Any]:
        """The result as plain JSON values, for `--json`."""
        return asdict(self)


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


@dataclass(frozen=True)
class _RemoteFile:
    size: int
    sha256: str | None  # LFS files only
    blob_id: str


@dataclass
class _Plan:
    head: str | None  # the commit the plan was made against; None: repo or branch to be created
    repo_exists: bool
    branch_exists: bool
    add: list[str] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    # Folders whose whole content the published files own: a remote file there that is not
    # local any more is deleted.
    owned: tuple[str, ...] = layout.BUILT_FOLDERS

    @property
    def changes(self) -> bool:
        return bool(self.add or self.delete)


def publish(
    *,
    folder: Path,
    repo_id: str,
    token: str | None,
    private: bool = False,
    revision: str = "main",
    create_pr: bool = False,
    commit_message: str = DEFAULT_COMMIT_MESSAGE,
    dry_run: bool = False,
    verify: bool = True,
    say: Callable[[str], None] = print,
    fiftyone_repo_id: str | None = None,
    tools_url: str | None = None,
) -> PublishResult:
    """Publish a built folder to a Hub dataset repo in one commit, then check it and load it back.

    The repo (and `revision`) is created if missing. Files the repo holds already are not sent
    again; shards of an earlier build that the folder no longer has are deleted in the same
    commit; an unchanged folder makes no commit. The commit is made on top of the head the plan
    was made against, so a concurrent change stops it with nothing committed.

    Args:
        folder: a complete build of this builder version (`covid-seg build --out`).
        repo_id: the dataset repo, ORG/NAME; the card's code is rewritten to name it.
        token: a token with write access (None: only a dry run works).
        private: create a missing repo as private (an existing repo keeps its visibility).
        revision: the branch to commit to (created from main if missing).
        create_pr: open a pull request against `revision` instead of committing to it.
        commit_message: the commit or pull request title.
        dry_run: print the plan (files, sizes, changes) and write nothing.
        verify: afterwards compare the remote files with the local ones (size and SHA-256) and
            load the dataset back with `datasets`, normally and streaming.
        say: where progress lines go (the plan, the commit, the checks).
        fiftyone_repo_id: the FiftyOne companion the card's FiftyOne section names (default:
            `repo_id` + "-fiftyone"); publishing it is `fiftyone_companion.publish_companion`.
        tools_url: the repository of these tools the card tells people to install `covid-seg`
            from (default: the URL the folder was built with).

    Returns:
        The repo, revision and commit, whether a commit was made, and the files uploaded,
        deleted and left unchanged.

    Raises:
        PublishError: a bad repo id or commit message, no token, a folder that is not a
            complete build of this builder (or holds a .py file), a card the Hub refuses, a
            repo of another type under `repo_id`, a commit the Hub refused or a repo changed
            meanwhile (nothing committed), or files that differ after the commit.
        huggingface_hub.errors.HfHubHTTPError: the Hub refused a request (HTTP 401: the token).
        httpx2.TransportError: the Hub cannot be reached.
    """
    _check_repo_id(repo_id=repo_id)
    if not commit_message.strip():
        raise PublishError("--commit-message must not be empty")
    local = local_files(folder=Path(folder), repo_id=repo_id, fiftyone_repo_id=fiftyone_repo_id, tools_url=tools_url)
    if not token and not dry_run:
        raise PublishError("no Hugging Face token: set HF_TOKEN, run `hf auth login`, or pass --token")
    _check_card(folder=Path(folder))
    return push_files(
        local=local,
        repo_id=repo_id,
        token=token,
        private=private,
        revision=revision,
        create_pr=create_pr,
        commit_message=commit_message,
        dry_run=dry_run,
        verify=verify,
        say=say,
        load_back=lambda commit: _verify_load(repo_id=repo_id, revision=commit, token=token, folder=Path(folder)),
    )


def push_files(
    *,
    local: dict[str, LocalFile],
    repo_id: str,
    token: str | None,
    private: bool,
    revision: str,
    create_pr: bool,
    commit_message: str,
    dry_run: bool,
    verify: bool,
    say: Callable[[str], None],
    owned: tuple[str, ...] = layout.BUILT_FOLDERS,
    load_back: Callable[[str], str] | None = None,
) -> PublishResult:
    """Make `repo_id`@`revision` hold `local` in one commit (none when it holds them already).

    Args:
        local: repo path -> file, checked by the caller.
        repo_id, token, private, revision, create_pr, commit_message, dry_run, say: as `publish`.
        verify: compare the remote files with `local` afterwards, then call `load_back`.
        owned: folders whose remote files that are not in `local` are deleted in the commit.
        load_back: loads the published commit back; returns what it found, for `say`.

    Returns:
        What was done (on a dry run: planned), as `publish` returns it.

    Raises:
        PublishError: the Hub refused, answered something unexpected, or differs afterwards.
    """
    try:
        return _publish_checked(
            local=local,
            repo_id=repo_id,
            token=token,
            private=private,
            revision=revision,
            create_pr=create_pr,
            commit_message=commit_message,
            dry_run=dry_run,
            verify=verify,
            say=say,
            owned=owned,
            load_back=load_back,
        )
    except PublishError:
        raise
    except ValueError as error:
        # Local input was checked above: a ValueError from here on is huggingface_hub (or
        # datasets) parsing an answer of the Hub that it did not expect.
        raise PublishError(
            f"unexpected answer from the Hub ({type(error).__name__}: {error}); "
            "nothing was committed unless the output above says so"
        ) from None


def _publish_checked(
    *,
    local: dict[str, LocalFile],
    repo_id: str,
    token: str | None,
    private: bool,
    revision: str,
    create_pr: bool,
    commit_message: str,
    dry_run: bool,
    verify: bool,
    say: Callable[[str], None],
    owned: tuple[str, ...],
    load_back: Callable[[str], str] | None,
) -> PublishResult:
    api = HfApi(token=token or False)
    plan = _make_plan(api=api, repo_id=repo_id, revision=revision, local=local, owned=owned)
    say(_format_plan(plan=plan, local=local, repo_id=repo_id, revision=revision))

    def result(commit: str | None, *, committed: bool) -> PublishResult:
        return PublishResult(
            repo_id=repo_id,
            revision=revision,
            commit=commit,
            committed=committed,
            uploaded=len(plan.add),
            deleted=len(plan.delete),
            unchanged=len(plan.unchanged),
            dry_run=dry_run,
        )

    if dry_run:
        say("dry run: nothing was written")
        return result(None, committed=False)
    if not plan.repo_exists:
        api.create_repo(repo_id, repo_type=_REPO_TYPE, private=private, exist_ok=True)
        plan = _make_plan(api=api, repo_id=repo_id, revision=revision, local=local, owned=owned)
    if not plan.branch_exists and not create_pr:
        api.create_branch(repo_id, repo_type=_REPO_TYPE, branch=revision, exist_ok=True)
        plan = _make_plan(api=api, repo_id=repo_id, revision=revision, local=local, owned=owned)
    if plan.head is not None and not plan.changes:
        say(f"nothing to commit: {repo_id}@{revision} already holds these files")
        commit, committed = plan.head, False
    else:
        committed = True
        commit = _commit_plan(
            api=api,
            repo_id=repo_id,
            revision=revision,
            plan=plan,
            local=local,
            create_pr=create_pr,
            message=commit_message,
            say=say,
        )
    if verify:
        _verify_remote(api=api, repo_id=repo_id, revision=commit, local=local, owned=owned)
        say(f"verified: {len(local)} remote files equal the local ones")
        if load_back is not None:
            say(load_back(commit))
    return result(commit, committed=committed)


def _check_repo_id(*, repo_id: str) -> None:
    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise PublishError(f"--repo-id {repo_id!r} is not a valid repo id: {error}") from None
    if repo_id.count("/") != 1:
        raise PublishError(
            f"--repo-id {repo_id!r} must be ORG/NAME (or USER/NAME), so that load_dataset(ORG/NAME) finds it"
        )


def local_files(
    *, folder: Path, repo_id: str, fiftyone_repo_id: str | None = None, tools_url: str | None = None
) -> dict[str, LocalFile]:
    """The built folder's files by repo path, after checking it is a complete build of this builder;
    the card's code names `repo_id`, whatever repo it was built for, its FiftyOne section
    `fiftyone_repo_id` (default: `repo_id` + "-fiftyone"), and `tools_url` (when given) as the
    repository to install `covid-seg` from, whatever URL it was built with."""
    if not folder.is_dir():
        raise PublishError(f"{folder} does not exist: build it first with `covid-seg build --out {folder}`")
    files: dict[str, LocalFile] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        relative = path.relative_to(folder).as_posix()
        if relative.endswith(".py"):
            raise PublishError(
                f"{folder} holds {relative}: "
                "a loading script would make datasets >= 4 and the Hub viewer refuse the repo; "
                "publish only what covid-seg build writes"
            )
        data = path.read_bytes()
        if relative == layout.CARD_FILENAME:
            text = card_for_repo(data.decode("utf-8"), repo_id, tools_url=tools_url)
            card = link_companion(text, fiftyone_repo_id or companion_repo_id(repo_id)).encode("utf-8")
            files[relative] = local_file(path, card, changed=card != data)
        else:
            files[relative] = local_file(path, data)
    missing = [name for name in layout.REQUIRED_FILES if name not in files]
    if missing or not any(name.startswith("data/") and name.endswith(".parquet") for name in files):
        raise PublishError(
            f"{folder} is not a built folder (missing {', '.join(missing) or 'data/**.parquet'}): "
            f"run `covid-seg build --out {folder}`"
        )
    infos_path = files[layout.INFOS_FILENAME].path
    try:
        infos = json.loads(infos_path.read_text(encoding="utf-8"))
        built = infos[layout.CONFIG_NAME]["version"]["version_str"]
    except (ValueError, KeyError, TypeError) as error:
        raise PublishError(
            f"{infos_path}: not a dataset_infos.json written by covid-seg build ({type(error).__name__}: {error}); "
            f"rebuild with `covid-seg build --out {folder}`"
        ) from None
    if built != recipe.BUILDER_VERSION:
        raise PublishError(
            f"{folder} was built by builder version {built}, this checkout is {recipe.BUILDER_VERSION}: "
            f"rebuild with `covid-seg build --out {folder}`"
        )
    _check_data_files(folder=folder, files=files)
    return files


def _check_data_files(*, folder: Path, files: Mapping[str, LocalFile]) -> None:
    """The data files are the ones the build wrote (`checksums.json`): a damaged build is not published."""
    try:
        expected = checksums.parse(files[layout.CHECKSUMS_FILENAME].path.read_bytes())
    except ValueError as error:
        raise PublishError(f"{folder / layout.CHECKSUMS_FILENAME}: {error}; build it again") from None
    found = {
        name: checksums.FileSum(size=file.size, sha256=file.sha256, git_sha1=file.git_sha1)
        for name, file in files.items()
        if name.startswith(f"{layout.DATA_DIR}/") and name.endswith(".parquet")
    }
    mismatches = checksums.compare(expected, found)
    if mismatches:
        raise PublishError(
            f"{folder}: {checksums.describe(mismatches)}: the build is damaged or incomplete and is not "
            "published; build it again"
        )


def _check_card(*, folder: Path) -> None:
    """Ask the Hub to validate the card's metadata before anything is uploaded: a card it
    refuses would otherwise fail the commit after every shard had been sent."""
    card = DatasetCard.load(folder / layout.CARD_FILENAME)
    try:
        card.validate(repo_type=_REPO_TYPE)
    except ValueError as error:
        raise PublishError(
            f"{folder / layout.CARD_FILENAME}: the Hub refuses the card's metadata ({error}); nothing was uploaded. "
            "The card's YAML comes from covid-seg build: fix it there and rebuild"
        ) from None


def _make_plan(
    *,
    api: HfApi,
    repo_id: str,
    revision: str,
    local: dict[str, LocalFile],
    owned: tuple[str, ...] = layout.BUILT_FOLDERS,
) -> _Plan:
    """Compare the local files with the repo's at `revision`; remote files in `owned` folders
    that are not local are to be deleted."""
    try:
        info = api.repo_info(repo_id, repo_type=_REPO_TYPE, revision=revision)
    except RevisionNotFoundError:
        return _Plan(head=None, repo_exists=True, branch_exists=False, add=sorted(local), owned=owned)
    except RepositoryNotFoundError:
        for other in ("model", "space"):
            if api.repo_exists(repo_id, repo_type=other):
                raise PublishError(
                    f"{repo_id} exists as a {other} repository, not a dataset; choose another --repo-id"
                ) from None
        return _Plan(head=None, repo_exists=False, branch_exists=False, add=sorted(local), owned=owned)
    if info.sha is None:
        raise PublishError(f"unexpected answer from the Hub: {repo_id}@{revision} has no head commit")
    remote = _remote_files(api=api, repo_id=repo_id, revision=info.sha)
    plan = _Plan(head=info.sha, repo_exists=True, branch_exists=True, owned=owned)
    for name, file in local.items():
        (plan.unchanged if _same(file, remote.get(name)) else plan.add).append(name)
    plan.delete = _stale_files(remote=remote, local=local, owned=owned)
    return plan


def _stale_files(
    *, remote: Mapping[str, _RemoteFile], local: Mapping[str, LocalFile], owned: tuple[str, ...] = layout.BUILT_FOLDERS
) -> list[str]:
    """Remote files a publish removes: what the published files own (for a build: data/, assets/)
    but no longer has, and any loading script."""
    return sorted(name for name in remote if name not in local and (name.startswith(owned) or name.endswith(".py")))


def _remote_files(*, api: HfApi, repo_id: str, revision: str) -> dict[str, _RemoteFile]:
    files = {}
    for entry in api.list_repo_tree(repo_id, repo_type=_REPO_TYPE, revision=revision, recursive=True):
        if isinstance(entry, RepoFile):
            files[entry.path] = _RemoteFile(entry.size, entry.lfs.sha256 if entry.lfs else None, entry.blob_id)
    return files


def _same(local: LocalFile, remote: _RemoteFile | None) -> bool:
    """Same size and content hash: SHA-256 for LFS files, the git blob id for the others."""
    if remote is None or remote.size != local.size:
        return False
    return remote.sha256 == local.sha256 if remote.sha256 else remote.blob_id == local.git_sha1


def _format_plan(*, plan: _Plan, local: dict[str, LocalFile], repo_id: str, revision: str) -> str:
    new = "new repo" if not plan.repo_exists else "new branch"
    state = new if plan.head is None else f"head {plan.head[:12]}"
    lines = [f"plan for {repo_id}@{revision} ({state}):"]
    lines += [f"  + {name} ({_size(local[name].size)})" for name in plan.add]
    lines += [f"  - {name} (stale)" for name in plan.delete]
    lines.append(
        f"  {len(plan.add)} to upload ({_size(sum(local[n].size for n in plan.add))}), "
        f"{len(plan.delete)} to delete, {len(plan.unchanged)} unchanged"
    )
    return "\n".join(lines)


def _commit_plan(
    *,
    api: HfApi,
    repo_id: str,
    revision: str,
    plan: _Plan,
    local: dict[str, LocalFile],
    create_pr: bool,
    message: str,
    say: Callable[[str], None],
) -> str:
    """One commit with every addition and deletion, on top of plan.head; retried on server errors."""
    operations: list[CommitOperationAdd | CommitOperationDelete] = []
    for name in plan.add:
        content = local[name].content
        operations.append(
            CommitOperationAdd(
                path_in_repo=name, path_or_fileobj=content if content is not None else str(local[name].path)
            )
        )
    operations += [CommitOperationDelete(path_in_repo=name) for name in plan.delete]
    wait = COMMIT_RETRY_WAIT
    for attempt in range(1, COMMIT_ATTEMPTS + 1):
        try:
            info = api.create_commit(
                repo_id,
                operations,
                commit_message=message,
                repo_type=_REPO_TYPE,
                revision=revision,
                create_pr=create_pr,
                parent_commit=plan.head,
            )
        except HfHubHTTPError as error:
            status = error.response.status_code if error.response is not None else None
            if status == 412:
                planned = f" (its head is no longer {plan.head[:12]})" if plan.head is not None else ""
                raise PublishError(
                    f"{repo_id}@{revision} changed while publishing{planned}; "
                    "nothing was committed: run the command again"
                ) from None
            if status not in _RETRY_STATUSES or attempt == COMMIT_ATTEMPTS:
                raise PublishError(
                    f"the Hub refused the commit to {repo_id}@{revision} (HTTP {status}) after {attempt} attempt(s); "
                    f"nothing was committed: {describe(error)}"
                ) from None
            landed = _landed(api=api, repo_id=repo_id, revision=revision, plan=plan, local=local, create_pr=create_pr)
            if landed:
                say(f"the commit landed although the Hub answered HTTP {status}")
                return landed
            say(
                f"HTTP {status} from the Hub, retrying the commit in {wait:g} s "
                f"(attempt {attempt + 1} of {COMMIT_ATTEMPTS})"
            )
            time.sleep(wait)
            wait *= 2
            continue
        say(f"committed {info.oid[:12]}: {info.pr_url or info.commit_url}")
        return info.oid
    raise AssertionError("unreachable")


def _landed(
    *, api: HfApi, repo_id: str, revision: str, plan: _Plan, local: dict[str, LocalFile], create_pr: bool
) -> str | None:
    """The new head if a commit the Hub answered with an error went through after all."""
    if create_pr:
        return None
    head = api.repo_info(repo_id, repo_type=_REPO_TYPE, revision=revision).sha
    if head == plan.head:
        return None
    again = _make_plan(api=api, repo_id=repo_id, revision=revision, local=local, owned=plan.owned)
    return head if not again.changes else None


def _verify_remote(
    *,
    api: HfApi,
    repo_id: str,
    revision: str,
    local: dict[str, LocalFile],
    owned: tuple[str, ...] = layout.BUILT_FOLDERS,
) -> None:
    remote = _remote_files(api=api, repo_id=repo_id, revision=revision)
    for name, file in local.items():
        if name not in remote:
            raise PublishError(f"verification failed: {name} is missing from {repo_id}@{revision}")
        if not _same(file, remote[name]):
            raise PublishError(f"verification failed: {name} on {repo_id}@{revision} differs from the local file")
    extra = _stale_files(remote=remote, local=local, owned=owned)
    if extra:
        raise PublishError(f"verification failed: {repo_id}@{revision} still holds {', '.join(extra)}")


def _verify_load(*, repo_id: str, revision: str, token: str | None, folder: Path) -> str:
    """Load the published dataset with plain `datasets`, normally and streaming, and check it."""
    import datasets  # imported here: plans and dry runs do not need it

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


def _size(count: int) -> str:
    amount = float(count)
    for unit in ("B", "kB", "MB", "GB"):
        if amount < 1000 or unit == "GB":
            return f"{amount:.0f} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1000
    raise AssertionError("unreachable")
