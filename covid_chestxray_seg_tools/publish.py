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
from dataclasses import dataclass, field
from pathlib import Path

from huggingface_hub import CommitOperationAdd, CommitOperationDelete, DatasetCard, HfApi
from huggingface_hub.errors import HfHubHTTPError, HFValidationError, RepositoryNotFoundError, RevisionNotFoundError
from huggingface_hub.utils import validate_repo_id

import covid_chestxray_seg as recipe
from covid_chestxray_seg_tools import fiftyone_companion, layout
from covid_chestxray_seg_tools.card.render import card_for_repo
from covid_chestxray_seg_tools.errors import CovidSegError, describe

REPO_TYPE = "dataset"
RETRY_STATUSES = (408, 429, 500, 502, 503, 504)
COMMIT_ATTEMPTS = 4
COMMIT_RETRY_WAIT = 2.0  # seconds, doubled after each failed attempt
DEFAULT_COMMIT_MESSAGE = f"Publish covid-chestxray-seg (builder {recipe.BUILDER_VERSION})"


class PublishError(CovidSegError, ValueError):
    """A publish that cannot go ahead; the message says why and what to do."""


@dataclass(frozen=True)
class LocalFile:
    path: Path
    size: int
    sha256: str
    git_sha1: str
    content: bytes | None = None  # what is uploaded instead of the file, when publishing changes it


def local_file(path: Path, data: bytes, *, changed: bool = False) -> LocalFile:
    """`data`, read from `path` (or what publishing makes of it, `changed`), with its hashes."""
    return LocalFile(
        path, len(data), hashlib.sha256(data).hexdigest(), recipe.git_blob_sha1(data), data if changed else None
    )


@dataclass(frozen=True)
class RemoteFile:
    size: int
    sha256: str | None  # LFS files only
    blob_id: str


@dataclass
class Plan:
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
) -> str | None:
    """Publish `folder` to `repo_id`; returns the commit id that holds it (None on a dry run).
    The card's FiftyOne section names `fiftyone_repo_id` (default: `repo_id` + "-fiftyone");
    `tools_url`, when given, replaces the tools' repository URL the card names (see `local_files`)."""
    check_repo_id(repo_id=repo_id)
    if not commit_message.strip():
        raise PublishError("--commit-message must not be empty")
    local = local_files(folder=Path(folder), repo_id=repo_id, fiftyone_repo_id=fiftyone_repo_id, tools_url=tools_url)
    if not token and not dry_run:
        raise PublishError("no Hugging Face token: set HF_TOKEN, run `hf auth login`, or pass --token")
    check_card(folder=Path(folder))
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
        load_back=lambda commit: verify_load(repo_id=repo_id, revision=commit, token=token, folder=Path(folder)),
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
) -> str | None:
    """Make `repo_id`@`revision` hold `local` in one commit (none when it holds them already).

    Args:
        local: repo path -> file, checked by the caller.
        repo_id, token, private, revision, create_pr, commit_message, dry_run, say: as `publish`.
        verify: compare the remote files with `local` afterwards, then call `load_back`.
        owned: folders whose remote files that are not in `local` are deleted in the commit.
        load_back: loads the published commit back; returns what it found, for `say`.

    Returns:
        The commit that holds the files (None on a dry run).

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
    local: dict,
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
) -> str | None:
    api = HfApi(token=token or False)
    plan = make_plan(api=api, repo_id=repo_id, revision=revision, local=local, owned=owned)
    say(format_plan(plan=plan, local=local, repo_id=repo_id, revision=revision))
    if dry_run:
        say("dry run: nothing was written")
        return None
    if not plan.repo_exists:
        api.create_repo(repo_id, repo_type=REPO_TYPE, private=private, exist_ok=True)
        plan = make_plan(api=api, repo_id=repo_id, revision=revision, local=local, owned=owned)
    if not plan.branch_exists and not create_pr:
        api.create_branch(repo_id, repo_type=REPO_TYPE, branch=revision, exist_ok=True)
        plan = make_plan(api=api, repo_id=repo_id, revision=revision, local=local, owned=owned)
    if plan.changes:
        commit = commit_plan(
            api=api,
            repo_id=repo_id,
            revision=revision,
            plan=plan,
            local=local,
            create_pr=create_pr,
            message=commit_message,
            say=say,
        )
    else:
        say(f"nothing to commit: {repo_id}@{revision} already holds these files")
        commit = plan.head
    if verify:
        verify_remote(api=api, repo_id=repo_id, revision=commit, local=local, owned=owned)
        say(f"verified: {len(local)} remote files equal the local ones")
        if load_back is not None:
            say(load_back(commit))
    return commit


def check_repo_id(*, repo_id: str) -> None:
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
    files = {}
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
            card = card_for_repo(data.decode("utf-8"), repo_id, tools_url=tools_url)
            card = fiftyone_companion.link_companion(
                card, fiftyone_repo_id or fiftyone_companion.companion_repo_id(repo_id)
            ).encode("utf-8")
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
    return files


def check_card(*, folder: Path) -> None:
    """Ask the Hub to validate the card's metadata before anything is uploaded: a card it
    refuses would otherwise fail the commit after every shard had been sent."""
    card = DatasetCard.load(folder / layout.CARD_FILENAME)
    try:
        card.validate(repo_type=REPO_TYPE)
    except ValueError as error:
        raise PublishError(
            f"{folder / layout.CARD_FILENAME}: the Hub refuses the card's metadata ({error}); nothing was uploaded. "
            "The card's YAML comes from covid-seg build: fix it there and rebuild"
        ) from None


def make_plan(
    *,
    api: HfApi,
    repo_id: str,
    revision: str,
    local: dict[str, LocalFile],
    owned: tuple[str, ...] = layout.BUILT_FOLDERS,
) -> Plan:
    """Compare the local files with the repo's at `revision`; remote files in `owned` folders
    that are not local are to be deleted."""
    try:
        info = api.repo_info(repo_id, repo_type=REPO_TYPE, revision=revision)
    except RevisionNotFoundError:
        return Plan(head=None, repo_exists=True, branch_exists=False, add=sorted(local), owned=owned)
    except RepositoryNotFoundError:
        for other in ("model", "space"):
            if api.repo_exists(repo_id, repo_type=other):
                raise PublishError(
                    f"{repo_id} exists as a {other} repository, not a dataset; choose another --repo-id"
                ) from None
        return Plan(head=None, repo_exists=False, branch_exists=False, add=sorted(local), owned=owned)
    remote = remote_files(api=api, repo_id=repo_id, revision=info.sha)
    plan = Plan(head=info.sha, repo_exists=True, branch_exists=True, owned=owned)
    for name, file in local.items():
        (plan.unchanged if _same(file, remote.get(name)) else plan.add).append(name)
    plan.delete = stale_files(remote=remote, local=local, owned=owned)
    return plan


def stale_files(
    *, remote: Mapping[str, RemoteFile], local: Mapping[str, LocalFile], owned: tuple[str, ...] = layout.BUILT_FOLDERS
) -> list[str]:
    """Remote files a publish removes: what the published files own (for a build: data/, assets/)
    but no longer has, and any loading script."""
    return sorted(name for name in remote if name not in local and (name.startswith(owned) or name.endswith(".py")))


def remote_files(*, api: HfApi, repo_id: str, revision: str) -> dict[str, RemoteFile]:
    files = {}
    for entry in api.list_repo_tree(repo_id, repo_type=REPO_TYPE, revision=revision, recursive=True):
        if hasattr(entry, "blob_id"):
            files[entry.path] = RemoteFile(entry.size, entry.lfs.sha256 if entry.lfs else None, entry.blob_id)
    return files


def _same(local: LocalFile, remote: RemoteFile | None) -> bool:
    """Same size and content hash: SHA-256 for LFS files, the git blob id for the others."""
    if remote is None or remote.size != local.size:
        return False
    return remote.sha256 == local.sha256 if remote.sha256 else remote.blob_id == local.git_sha1


def format_plan(*, plan: Plan, local: dict[str, LocalFile], repo_id: str, revision: str) -> str:
    state = (
        "new repo" if not plan.repo_exists else ("new branch" if not plan.branch_exists else f"head {plan.head[:12]}")
    )
    lines = [f"plan for {repo_id}@{revision} ({state}):"]
    lines += [f"  + {name} ({_size(local[name].size)})" for name in plan.add]
    lines += [f"  - {name} (stale)" for name in plan.delete]
    lines.append(
        f"  {len(plan.add)} to upload ({_size(sum(local[n].size for n in plan.add))}), "
        f"{len(plan.delete)} to delete, {len(plan.unchanged)} unchanged"
    )
    return "\n".join(lines)


def commit_plan(
    *,
    api: HfApi,
    repo_id: str,
    revision: str,
    plan: Plan,
    local: dict[str, LocalFile],
    create_pr: bool,
    message: str,
    say,
) -> str:
    """One commit with every addition and deletion, on top of plan.head; retried on server errors."""
    operations = [
        CommitOperationAdd(
            path_in_repo=name,
            path_or_fileobj=local[name].content if local[name].content is not None else str(local[name].path),
        )
        for name in plan.add
    ]
    operations += [CommitOperationDelete(path_in_repo=name) for name in plan.delete]
    wait = COMMIT_RETRY_WAIT
    for attempt in range(1, COMMIT_ATTEMPTS + 1):
        try:
            info = api.create_commit(
                repo_id,
                operations,
                commit_message=message,
                repo_type=REPO_TYPE,
                revision=revision,
                create_pr=create_pr,
                parent_commit=plan.head,
            )
        except HfHubHTTPError as error:
            status = error.response.status_code if error.response is not None else None
            if status == 412:
                raise PublishError(
                    f"{repo_id}@{revision} changed while publishing (its head is no longer {plan.head[:12]}); "
                    "nothing was committed: run the command again"
                ) from None
            if status not in RETRY_STATUSES or attempt == COMMIT_ATTEMPTS:
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


def _landed(*, api: HfApi, repo_id: str, revision: str, plan: Plan, local, create_pr: bool) -> str | None:
    """The new head if a commit the Hub answered with an error went through after all."""
    if create_pr:
        return None
    head = api.repo_info(repo_id, repo_type=REPO_TYPE, revision=revision).sha
    if head == plan.head:
        return None
    again = make_plan(api=api, repo_id=repo_id, revision=revision, local=local, owned=plan.owned)
    return head if not again.changes else None


def verify_remote(
    *,
    api: HfApi,
    repo_id: str,
    revision: str,
    local: dict[str, LocalFile],
    owned: tuple[str, ...] = layout.BUILT_FOLDERS,
) -> None:
    remote = remote_files(api=api, repo_id=repo_id, revision=revision)
    for name, file in local.items():
        if name not in remote:
            raise PublishError(f"verification failed: {name} is missing from {repo_id}@{revision}")
        if not _same(file, remote[name]):
            raise PublishError(f"verification failed: {name} on {repo_id}@{revision} differs from the local file")
    extra = stale_files(remote=remote, local=local, owned=owned)
    if extra:
        raise PublishError(f"verification failed: {repo_id}@{revision} still holds {', '.join(extra)}")


def verify_load(*, repo_id: str, revision: str, token: str | None, folder: Path) -> str:
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
    for unit in ("B", "kB", "MB", "GB"):
        if count < 1000 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    raise AssertionError("unreachable")
