"""The Hub side of a publish: plan against the repo's head, commit once, check what landed.

One atomic commit (every addition, stale files deleted in the same commit), made on top of
the head the plan was made against, so the repo is never half-published and a concurrent
change stops it with nothing committed. Server errors and rate limits are retried (uploads by
huggingface_hub, the commit here); a commit the Hub answered with an error but made is found.
Publishing what the repo holds already makes no commit. Every call here is idempotent.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi, RepoFile
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

import covid_chestxray_seg as recipe
from covid_chestxray_seg_tools.errors import describe
from covid_chestxray_seg_tools.hub_folder import layout
from covid_chestxray_seg_tools.publish.local import REPO_TYPE, LocalFile
from covid_chestxray_seg_tools.publish.request import PublishError, PublishRequest, PublishResult

__all__ = ["COMMIT_ATTEMPTS", "COMMIT_RETRY_WAIT", "push_files"]

_RETRY_STATUSES = (408, 429, 500, 502, 503, 504)
COMMIT_ATTEMPTS = 4
COMMIT_RETRY_WAIT = 2.0  # seconds, doubled after each failed attempt


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


def push_files(
    *,
    local: dict[str, LocalFile],
    request: PublishRequest,
    say: Callable[[str], None],
    owned: tuple[str, ...] = layout.BUILT_FOLDERS,
    load_back: Callable[[str], str] | None = None,
) -> PublishResult:
    """Make `request.repo_id`@`request.revision` hold `local` in one commit (none when it holds
    them already), creating the repo and the branch where missing.

    Args:
        local: repo path -> file, checked by the caller.
        request: where and how to publish (`request.check()` passed).
        say: where progress lines go (the plan, the commit, the checks).
        owned: folders whose remote files that are not in `local` are deleted in the commit.
        load_back: with `request.verify`, loads the published commit back; returns what it
            found, for `say`.

    Returns:
        What was done (on a dry run: planned).

    Raises:
        PublishError: the Hub refused, answered something unexpected, or differs afterwards.
        huggingface_hub.errors.HfHubHTTPError: the Hub refused a request (HTTP 401: the token).
        httpx2.TransportError: the Hub cannot be reached.
    """
    try:
        return _push(local=local, request=request, say=say, owned=owned, load_back=load_back)
    except PublishError:
        raise
    except ValueError as error:
        # Local input was checked before: a ValueError from here on is huggingface_hub (or
        # datasets) parsing an answer of the Hub that it did not expect.
        raise PublishError(
            f"unexpected answer from the Hub ({type(error).__name__}: {error})",
            fix="nothing was committed unless the output above says so",
        ) from None


def _push(
    *,
    local: dict[str, LocalFile],
    request: PublishRequest,
    say: Callable[[str], None],
    owned: tuple[str, ...],
    load_back: Callable[[str], str] | None,
) -> PublishResult:
    repo_id, revision = request.repo_id, request.revision
    api = HfApi(token=request.token or False)
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
            dry_run=request.dry_run,
        )

    if request.dry_run:
        say("dry run: nothing was written")
        return result(None, committed=False)
    if not plan.repo_exists:
        api.create_repo(repo_id, repo_type=REPO_TYPE, private=request.private, exist_ok=True)
        plan = _make_plan(api=api, repo_id=repo_id, revision=revision, local=local, owned=owned)
    if not plan.branch_exists and not request.create_pr:
        api.create_branch(repo_id, repo_type=REPO_TYPE, branch=revision, exist_ok=True)
        plan = _make_plan(api=api, repo_id=repo_id, revision=revision, local=local, owned=owned)
    if plan.head is not None and not plan.changes:
        say(f"nothing to commit: {repo_id}@{revision} already holds these files")
        commit, committed = plan.head, False
    else:
        committed = True
        commit = _commit_plan(api=api, request=request, plan=plan, local=local, say=say)
    if request.verify:
        _verify_remote(api=api, repo_id=repo_id, revision=commit, local=local, owned=owned)
        say(f"verified: {len(local)} remote files equal the local ones")
        if load_back is not None:
            say(load_back(commit))
    return result(commit, committed=committed)


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
        info = api.repo_info(repo_id, repo_type=REPO_TYPE, revision=revision)
    except RevisionNotFoundError:
        return _Plan(head=None, repo_exists=True, branch_exists=False, add=sorted(local), owned=owned)
    except RepositoryNotFoundError:
        for other in ("model", "space"):
            if api.repo_exists(repo_id, repo_type=other):
                raise PublishError(
                    f"exists as a {other} repository, not a dataset",
                    setting="repo_id",
                    value=repo_id,
                    fix=f"choose another {recipe.setting('repo_id')}",
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
    for entry in api.list_repo_tree(repo_id, repo_type=REPO_TYPE, revision=revision, recursive=True):
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
    *, api: HfApi, request: PublishRequest, plan: _Plan, local: dict[str, LocalFile], say: Callable[[str], None]
) -> str:
    """One commit with every addition and deletion, on top of plan.head; retried on server errors."""
    repo_id, revision, create_pr = request.repo_id, request.revision, request.create_pr
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
                commit_message=request.commit_message,
                repo_type=REPO_TYPE,
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
    head = api.repo_info(repo_id, repo_type=REPO_TYPE, revision=revision).sha
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


def _size(count: int) -> str:
    amount = float(count)
    for unit in ("B", "kB", "MB", "GB"):
        if amount < 1000 or unit == "GB":
            return f"{amount:.0f} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1000
    raise AssertionError("unreachable")
