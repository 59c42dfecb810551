"""The local test Hub's HTTP API: the routes `huggingface_hub` and `datasets` call (repo info,
create, preupload, LFS batch / upload / verify, commit, tree, paths-info, refs, resolve), each
refusing what the real Hub refuses, every request logged in the `HubState`."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import socket
import time
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

from covid_chestxray_seg_dev.hub.metadata import dataset_metadata_errors
from covid_chestxray_seg_dev.hub.state import (
    LFS_SUFFIXES,
    REPO_TYPES,
    USER,
    VALID_TOKEN,
    Commit,
    HubError,
    HubState,
    Logged,
    Repo,
    StoredFile,
    object_id,
    signature,
)

__all__ = ["make_handler"]


# The routes' shared parts: a repo's API path, and a file's download path (GET and HEAD).
_API_REPO = r"^/api/(?P<kind>datasets|models|spaces)/(?P<repo>[^/]+/[^/]+)"
_RESOLVE = r"^/(?P<prefix>datasets/|spaces/|)(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>refs/pr/\d+|[^/]+)/(?P<file>.+)$"


def make_handler(state: HubState):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out in two writes; with Nagle on, each keep-alive request
        # waits out the client's delayed ACK (about 40 ms), which made publishing tests slow.
        disable_nagle_algorithm = True

        def log_message(self, *args):
            pass

        # ---- plumbing -------------------------------------------------------------
        def _handle(self, method: str) -> None:
            url = urlsplit(self.path)
            path, query = unquote(url.path), {k: v[-1] for k, v in parse_qs(url.query).items()}
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            auth = self.headers.get("Authorization", "")
            entry = Logged(method, path, query, body, auth == f"Bearer {VALID_TOKEN}")
            with state.lock:
                state.log.append(entry)
                fault = next(
                    (f for f in state.faults if f.method == method and f.pattern.search(path) and f.times > 0), None
                )
                if fault:
                    fault.times -= 1
                hook = next((h for h in state.hooks if h[0] == method and h[1].search(path)), None)
                if hook:
                    state.hooks.remove(hook)
                    hook[2](state)
            if fault and fault.status == 0:
                # A dropped connection: no answer at all.
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            if fault:
                entry.status = fault.status
                return self._send(
                    fault.status,
                    fault.body or json.dumps({"error": "injected fault"}).encode(),
                    headers=fault.headers,
                    head=method == "HEAD",
                )
            if auth and not entry.authorized:
                entry.status = 401
                return self._error(HubError(401, "Invalid credentials in Authorization header"))
            try:
                status, payload, headers = self._route(method, path, query, body, entry.authorized)
            except HubError as error:
                entry.status = error.status
                return self._error(error)
            entry.status = status
            if method != "HEAD":
                entry.sent = len(payload) if isinstance(payload, (bytes, bytearray)) else 0
            self._send(status, payload, headers=headers, head=method == "HEAD")

        def _send(self, status: int, payload, *, headers: dict | None = None, head: bool = False) -> None:
            if not isinstance(payload, (bytes, bytearray)):
                payload = json.dumps(payload).encode()
                headers = {"Content-Type": "application/json", **(headers or {})}
            self.send_response(status)
            for key, value in (headers or {}).items():
                self.send_header(key, str(value))
            if "Content-Length" not in (headers or {}):
                self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if not head:
                self.wfile.write(payload)

        def _error(self, error: HubError) -> None:
            headers = {"X-Error-Message": error.message}
            if error.code:
                headers["X-Error-Code"] = error.code
            # A HEAD answer has headers only, errors included, or the connection desyncs.
            self._send(error.status, {"error": error.message}, headers=headers, head=self.command == "HEAD")

        def do_GET(self):
            self._handle("GET")

        def do_HEAD(self):
            self._handle("HEAD")

        def do_POST(self):
            self._handle("POST")

        def do_PUT(self):
            self._handle("PUT")

        # ---- routes ---------------------------------------------------------------
        def _route(self, method, path, query, body, authorized):
            base = f"http://{self.headers.get('Host')}"
            routes = [
                ("GET", r"^/api/whoami-v2$", self._whoami),
                ("POST", r"^/api/repos/create$", self._create_repo),
                ("POST", r"^/api/validate-yaml$", self._validate_yaml),
                (
                    "GET",
                    _API_REPO + r"(?:/revision/(?P<rev>.+))?$",
                    self._repo_info,
                ),
                (
                    "POST",
                    _API_REPO + r"/preupload/(?P<rev>.+)$",
                    self._preupload,
                ),
                (
                    "POST",
                    _API_REPO + r"/commit/(?P<rev>.+)$",
                    self._commit,
                ),
                (
                    "POST",
                    _API_REPO + r"/branch/(?P<rev>.+)$",
                    self._create_branch,
                ),
                (
                    "GET",
                    _API_REPO + r"/tree/(?P<rev>[^/]+(?:/pr/\d+)?)(?:/(?P<sub>.*))?$",
                    self._tree,
                ),
                (
                    "POST",
                    _API_REPO + r"/paths-info/(?P<rev>.+)$",
                    self._paths_info,
                ),
                ("GET", _API_REPO + r"/refs$", self._refs),
                (
                    "POST",
                    r"^/(?P<prefix>datasets/|spaces/|)(?P<repo>[^/]+/[^/]+)\.git/info/lfs/objects/batch$",
                    self._lfs_batch,
                ),
                ("PUT", r"^/lfs-upload/(?P<oid>[0-9a-f]{64})$", self._lfs_upload),
                ("POST", r"^/lfs-verify/(?P<oid>[0-9a-f]{64})$", self._lfs_verify),
                (
                    "GET",
                    _RESOLVE,
                    self._resolve,
                ),
                (
                    "HEAD",
                    _RESOLVE,
                    self._resolve,
                ),
            ]
            for route_method, pattern, handler in routes:
                match = re.match(pattern, path)
                if match and route_method == method:
                    return handler(
                        base=base, query=query, body=body, authorized=authorized, method=method, **match.groupdict()
                    )
            raise HubError(404, f"no route for {method} {path}")

        def _repo(self, kind: str, repo_id: str, authorized: bool, *, write: bool = False) -> Repo:
            if write and not authorized:
                raise HubError(401, "You must be authenticated to write to a repo")
            # API routes say "datasets"; file routes say "datasets/" or nothing for models.
            repo_type = REPO_TYPES[kind.strip("/") or "models"]
            repo = state.repos.get((repo_type, repo_id))
            if repo is None or (repo.private and not authorized):
                raise HubError(404, f"Repository Not Found for url: {repo_type} {repo_id}", code="RepoNotFound")
            return repo

        def _commit_of(self, repo: Repo, revision: str) -> Commit:
            commit = repo.resolve(unquote(revision))
            if commit is None:
                raise HubError(404, f"Invalid rev id: {revision}", code="RevisionNotFound")
            return commit

        def _whoami(self, authorized, **_):
            if not authorized:
                raise HubError(401, "Invalid user token")
            return 200, {"type": "user", "name": USER, "orgs": [], "auth": {"accessToken": {"role": "write"}}}, {}

        def _create_repo(self, body, authorized, base, **_):
            if not authorized:
                raise HubError(401, "You must be authenticated to create a repo")
            payload = json.loads(body)
            repo_type = payload.get("type") or "model"
            repo_id = f"{payload.get('organization') or USER}/{payload['name']}"
            prefix = {"dataset": "datasets/", "space": "spaces/"}.get(repo_type, "")
            url = f"{base}/{prefix}{repo_id}"
            if (repo_type, repo_id) in state.repos:
                raise HubError(409, f"You already created this {repo_type} repo: {url}")
            state.create_repo(
                repo_id, repo_type, private=payload.get("visibility") == "private" or bool(payload.get("private"))
            )
            return 200, {"url": url, "name": repo_id, "id": repo_id}, {}

        def _validate_yaml(self, body, **_):
            payload = json.loads(body)
            content = payload.get("content", "")
            match = re.match(r"^---\n(.*?)\n---", content, flags=re.S)
            try:
                metadata = yaml.safe_load(match.group(1) if match else "")
            except yaml.YAMLError as error:
                raise HubError(400, f"Invalid YAML: {error}") from None
            if payload.get("repoType") == "dataset":
                errors = dataset_metadata_errors(metadata)
                if errors:
                    # huggingface_hub asks for text/plain and turns a 400 into ValueError(text).
                    raise HubError(400, "Invalid metadata: " + "; ".join(errors))
            return 200, {"errors": [], "warnings": []}, {}

        def _repo_info(self, kind, repo, rev, authorized, **_):
            stored = self._repo(kind, repo, authorized)
            commit = self._commit_of(stored, rev or "main")
            card = commit.files.get("README.md")
            card_data = None
            if card is not None:
                match = re.match(r"^---\n(.*?)\n---", card.data.decode("utf-8"), flags=re.S)
                card_data = yaml.safe_load(match.group(1)) if match else None
            siblings = [
                {
                    "rfilename": path,
                    "size": len(f.data),
                    "blobId": f.blob_id,
                    **({"lfs": {"size": len(f.data), "sha256": f.sha256, "pointerSize": 134}} if f.lfs else {}),
                }
                for path, f in sorted(commit.files.items())
            ]
            return (
                200,
                {
                    "id": stored.repo_id,
                    "_id": object_id(stored.repo_id),
                    "sha": commit.oid,
                    "private": stored.private,
                    "gated": False,
                    "disabled": False,
                    "author": stored.repo_id.split("/")[0],
                    "lastModified": "2026-01-01T00:00:00.000Z",
                    "createdAt": "2026-01-01T00:00:00.000Z",
                    "siblings": siblings,
                    "cardData": card_data,
                    "tags": [],
                    "downloads": 0,
                    "likes": 0,
                },
                {},
            )

        def _create_branch(self, kind, repo, rev, body, authorized, **_):
            stored = self._repo(kind, repo, authorized, write=True)
            payload = json.loads(body or b"{}")
            if rev in stored.refs:
                raise HubError(409, f"Reference already exists: {rev}")
            start = self._commit_of(stored, payload.get("startingPoint") or "main")
            stored.refs[rev] = start.oid
            return 200, {}, {}

        def _preupload(self, kind, repo, rev, body, authorized, **_):
            stored = self._repo(kind, repo, authorized, write=True)
            self._commit_of(stored, rev)
            files = json.loads(body)["files"]
            return (
                200,
                {
                    "files": [
                        {
                            "path": f["path"],
                            "uploadMode": "lfs"
                            if f["path"].endswith(LFS_SUFFIXES) or f["size"] > 10 * 1024 * 1024
                            else "regular",
                            "shouldIgnore": False,
                        }
                        for f in files
                    ]
                },
                {},
            )

        def _lfs_batch(self, prefix, repo, body, authorized, base, **_):
            self._repo(prefix, repo, authorized, write=True)
            payload = json.loads(body)
            if payload.get("operation") != "upload" or payload.get("hash_algo", "sha256") != "sha256":
                raise HubError(400, "only sha256 uploads are supported")
            objects = []
            for obj in payload["objects"]:
                oid, size = obj["oid"], obj["size"]
                entry = {"oid": oid, "size": size, "authenticated": True}
                if oid not in state.lfs:
                    entry["actions"] = {
                        # Like a presigned storage URL: no Authorization header, a signature in the query.
                        "upload": {"href": f"{base}/lfs-upload/{oid}?size={size}&signature={signature(oid, size)}"},
                        "verify": {"href": f"{base}/lfs-verify/{oid}", "header": {}},
                    }
                objects.append(entry)
            return 200, {"transfer": "basic", "objects": objects}, {}

        def _lfs_upload(self, oid, body, query, **_):
            size = query.get("size", "")
            if not size.isdigit() or query.get("signature") != signature(oid, int(size)):
                raise HubError(403, "upload URL signature is missing or wrong")
            if hashlib.sha256(body).hexdigest() != oid:
                raise HubError(400, f"SHA-256 of the uploaded content does not match the oid {oid}")
            if int(size) != len(body):
                raise HubError(400, f"size {len(body)} does not match the announced {size}")
            state.lfs[oid] = body
            return 200, b"", {}

        def _lfs_verify(self, oid, body, **_):
            payload = json.loads(body)
            if state.lfs.get(oid) is None or len(state.lfs[oid]) != payload.get("size"):
                raise HubError(404, f"LFS object {oid} not found or of the wrong size")
            return 200, {}, {}

        def _commit(self, kind, repo, rev, body, query, authorized, base, **_):
            stored = self._repo(kind, repo, authorized, write=True)
            lines = [json.loads(line) for line in body.decode("utf-8").splitlines() if line.strip()]
            if not lines or lines[0].get("key") != "header":
                raise HubError(400, "the first NDJSON line must be the header")
            header = lines[0]["value"]
            branch = unquote(rev)
            head = self._commit_of(stored, branch)
            parent = header.get("parentCommit")
            if parent is not None and parent != head.oid:
                raise HubError(
                    412,
                    f"A commit has happened since. Please refresh and try again. ({parent} is not the head {head.oid})",
                )
            files = dict(head.files)
            for line in lines[1:]:
                key, value = line["key"], line["value"]
                path = value["path"]
                if path.startswith("/") or ".." in path.split("/"):
                    raise HubError(400, f"invalid path {path!r}")
                if key == "file":
                    files[path] = StoredFile(base64.b64decode(value["content"]), False)
                elif key == "lfsFile":
                    data = state.lfs.get(value["oid"])
                    if data is None:
                        raise HubError(422, f"LFS object {value['oid']} for {path} was never uploaded")
                    files[path] = StoredFile(data, True)
                elif key == "deletedFile":
                    if path not in files:
                        raise HubError(404, f"cannot delete {path}: no such file")
                    del files[path]
                elif key == "deletedFolder":
                    files = {p: f for p, f in files.items() if not p.startswith(path.rstrip("/") + "/")}
                else:
                    raise HubError(400, f"unknown operation {key!r}")
            oid = object_id(
                head.oid, header.get("summary"), sorted((p, f.etag) for p, f in files.items()), time.time_ns()
            )
            stored.commits[oid] = Commit(oid, head.oid, header.get("summary", ""), files)
            prefix = {"dataset": "datasets/", "space": "spaces/"}.get(stored.repo_type, "")
            pr_url = None
            if query.get("create_pr") == "1":
                stored.pulls += 1
                stored.refs[f"refs/pr/{stored.pulls}"] = oid
                pr_url = f"{base}/{prefix}{stored.repo_id}/discussions/{stored.pulls}"
            else:
                stored.refs[branch] = oid
            return (
                200,
                {
                    "success": True,
                    "commitOid": oid,
                    "commitUrl": f"{base}/{prefix}{stored.repo_id}/commit/{oid}",
                    "pullRequestUrl": pr_url,
                },
                {},
            )

        def _entries(self, commit: Commit, sub: str, recursive: bool) -> list[dict]:
            sub = (sub or "").strip("/")
            entries, folders = [], set()
            for path, stored in sorted(commit.files.items()):
                if sub and not path.startswith(sub + "/"):
                    continue
                rest = path[len(sub) + 1 :] if sub else path
                parts = rest.split("/")
                for depth in range(1, len(parts)):
                    folder = "/".join(([sub] if sub else []) + parts[:depth])
                    if (recursive or depth == 1) and folder not in folders:
                        folders.add(folder)
                        entries.append({"type": "directory", "oid": object_id(folder), "size": 0, "path": folder})
                if recursive or len(parts) == 1:
                    entries.append(self._file_entry(path, stored))
            return entries

        def _file_entry(self, path: str, stored: StoredFile) -> dict:
            entry = {"type": "file", "oid": stored.blob_id, "size": len(stored.data), "path": path}
            if stored.lfs:
                entry["lfs"] = {"oid": stored.sha256, "size": len(stored.data), "pointerSize": 134}
            return entry

        def _tree(self, kind, repo, rev, sub, query, authorized, **_):
            stored = self._repo(kind, repo, authorized)
            commit = self._commit_of(stored, rev)
            if sub and sub.strip("/") not in {
                "/".join(p.split("/")[:i]) for p in commit.files for i in range(1, p.count("/") + 1)
            }:
                raise HubError(404, f"{sub} does not exist on {rev}", code="EntryNotFound")
            return 200, self._entries(commit, sub, query.get("recursive") in ("true", "1", "True")), {}

        def _paths_info(self, kind, repo, rev, body, authorized, **_):
            stored = self._repo(kind, repo, authorized)
            commit = self._commit_of(stored, rev)
            form = parse_qs(body.decode("utf-8"))
            paths = form.get("paths", [])
            if not paths and body.startswith(b"{"):
                paths = json.loads(body).get("paths", [])
            result = []
            folders = {"/".join(p.split("/")[:i]) for p in commit.files for i in range(1, p.count("/") + 1)}
            for path in paths:
                if path in commit.files:
                    result.append(self._file_entry(path, commit.files[path]))
                elif path.strip("/") in folders:
                    result.append({"type": "directory", "oid": object_id(path), "size": 0, "path": path.strip("/")})
            return 200, result, {}

        def _refs(self, kind, repo, authorized, **_):
            stored = self._repo(kind, repo, authorized)
            branches = [
                {"name": n, "ref": f"refs/heads/{n}", "targetCommit": o}
                for n, o in stored.refs.items()
                if not n.startswith("refs/")
            ]
            return 200, {"branches": branches, "converts": [], "tags": []}, {}

        def _resolve(self, prefix, repo, rev, file, authorized, method, **_):
            stored = self._repo(prefix, repo, authorized)
            commit = self._commit_of(stored, rev)
            entry = commit.files.get(file)
            if entry is None:
                raise HubError(404, f"Entry not found: {file}", code="EntryNotFound")
            data = entry.data
            headers = {"X-Repo-Commit": commit.oid, "ETag": f'"{entry.etag}"', "Accept-Ranges": "bytes"}
            if entry.lfs:
                headers["X-Linked-Etag"] = f'"{entry.sha256}"'
                headers["X-Linked-Size"] = str(len(data))
            byte_range = self.headers.get("Range")
            if byte_range and method == "GET":
                match = re.match(r"bytes=(\d*)-(\d*)$", byte_range.strip())
                if not match:
                    raise HubError(416, f"bad Range {byte_range!r}")
                start, end = match.groups()
                if start == "":
                    start, end = max(0, len(data) - int(end)), len(data) - 1
                else:
                    start, end = int(start), (int(end) if end else len(data) - 1)
                end = min(end, len(data) - 1)
                if start >= len(data) or start > end:
                    return 416, b"", {**headers, "Content-Range": f"bytes */{len(data)}"}
                headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
                return 206, data[start : end + 1], headers
            if method == "HEAD":
                headers["Content-Length"] = str(len(data))
                return 200, b"", headers
            return 200, data, headers

    return Handler
