"""The local test Hub's repositories, as the server holds them in memory: repos, commits and
their files (LFS or git blobs), uploaded LFS objects, the request log, injected faults and
hooks; and the identifiers the Hub derives from content (git blob SHA-1, SHA-256, commit ids)."""

from __future__ import annotations

import functools
import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field

__all__ = [
    "LFS_SUFFIXES",
    "REPO_TYPES",
    "USER",
    "VALID_TOKEN",
    "Commit",
    "Fault",
    "HubError",
    "HubState",
    "Logged",
    "Repo",
    "StoredFile",
    "git_blob_sha1",
    "object_id",
    "signature",
]

REPO_TYPES = {"datasets": "dataset", "models": "model", "spaces": "space"}
VALID_TOKEN = "hf_test_token_0123456789"
USER = "tester"
# The real Hub stores binary and large files in LFS; the rest are plain git blobs.
LFS_SUFFIXES = (".parquet", ".arrow", ".png", ".jpg", ".jpeg", ".zip", ".bin")


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class StoredFile:
    data: bytes  # never replaced: a commit stores new StoredFiles, so the hashes are computed once
    lfs: bool

    @functools.cached_property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @functools.cached_property
    def blob_id(self) -> str:
        return git_blob_sha1(self.data)

    @property
    def etag(self) -> str:
        return self.sha256 if self.lfs else self.blob_id


@dataclass
class Commit:
    oid: str
    parent: str | None
    message: str
    files: dict[str, StoredFile]


@dataclass
class Repo:
    repo_type: str
    repo_id: str
    private: bool
    commits: dict[str, Commit] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)  # branch or refs/pr/N -> commit oid
    pulls: int = 0

    def resolve(self, revision: str) -> Commit | None:
        oid = self.refs.get(revision, revision)
        return self.commits.get(oid)


@dataclass
class Logged:
    method: str
    path: str
    query: dict
    body: bytes
    authorized: bool
    status: int = 0
    sent: int = 0  # response body bytes


@dataclass
class Fault:
    method: str
    pattern: re.Pattern
    status: int
    times: int
    body: bytes
    headers: dict


class HubState:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.repos: dict[tuple[str, str], Repo] = {}
            self.lfs: dict[str, bytes] = {}
            self.log: list[Logged] = []
            self.faults: list[Fault] = []
            self.hooks: list[tuple[str, re.Pattern, object]] = []

    # --- for tests ---------------------------------------------------------------------
    def fail(
        self,
        method: str,
        path_regex: str,
        status: int,
        *,
        times: int = 1,
        body: bytes = b"",
        headers: dict | None = None,
    ) -> None:
        """Answer the next `times` requests matching method and path with `status` (0: drop the connection)."""
        with self.lock:
            self.faults.append(Fault(method, re.compile(path_regex), status, times, body, headers or {}))

    def before(self, method: str, path_regex: str, hook) -> None:
        """Call hook(state) once, just before the next matching request is handled (to stage races)."""
        with self.lock:
            self.hooks.append((method, re.compile(path_regex), hook))

    def commits(self, repo_id: str, repo_type: str = "dataset") -> list[Commit]:
        repo = self.repos[(repo_type, repo_id)]
        return list(repo.commits.values())

    def files(self, repo_id: str, revision: str = "main", repo_type: str = "dataset") -> dict[str, bytes]:
        commit = self.repos[(repo_type, repo_id)].resolve(revision)
        return {path: stored.data for path, stored in commit.files.items()}

    def requests(self, method: str | None = None, path_regex: str = "") -> list[Logged]:
        pattern = re.compile(path_regex)
        return [r for r in self.log if (method is None or r.method == method) and pattern.search(r.path)]

    def commit_directly(
        self,
        repo_id: str,
        files: dict[str, bytes],
        *,
        revision: str = "main",
        repo_type: str = "dataset",
        delete: tuple[str, ...] = (),
    ) -> str:
        """A commit made by someone else (another publisher, the web UI): `files` added or replaced,
        `delete` removed."""
        with self.lock:
            repo = self.repos[(repo_type, repo_id)]
            head = repo.resolve(revision)
            merged = {**head.files, **{p: StoredFile(d, p.endswith(LFS_SUFFIXES)) for p, d in files.items()}}
            for path in delete:
                del merged[path]
            oid = object_id(head.oid, sorted(files), sorted(delete), time.time_ns())
            repo.commits[oid] = Commit(oid, head.oid, "direct commit", merged)
            repo.refs[revision] = oid
            return oid

    def commit_folder(self, repo_id: str, folder, *, revision: str = "main") -> str:
        """Every file of `folder` in one direct commit: a build as publish.py would commit it."""
        files = {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
        return self.commit_directly(repo_id, files, revision=revision)

    def create_repo(self, repo_id: str, repo_type: str = "dataset", private: bool = False) -> Repo:
        with self.lock:
            repo = Repo(repo_type, repo_id, private)
            initial = Commit(
                object_id("initial", repo_type, repo_id),
                None,
                "initial commit",
                {".gitattributes": StoredFile(b"*.parquet filter=lfs diff=lfs merge=lfs -text\n", False)},
            )
            repo.commits[initial.oid] = initial
            repo.refs["main"] = initial.oid
            self.repos[(repo_type, repo_id)] = repo
            return repo


def signature(oid: str, size: int) -> str:
    return hashlib.sha256(f"{VALID_TOKEN}:{oid}:{size}".encode()).hexdigest()[:32]


def object_id(*parts) -> str:
    return hashlib.sha1(json.dumps([str(p) for p in parts]).encode()).hexdigest()


class HubError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code
