"""A small Hugging Face Hub-compatible HTTP server for the test suite, bound to 127.0.0.1.

It implements the endpoints that the real ``huggingface_hub`` client calls to create a repository, upload files in
one commit and download them again, so that publishing, ``timm.create_model(..., pretrained=True)`` and
``datasets.load_dataset("org/name")`` (a parquet dataset repository) run end to end without patching any library.
Dataset repositories are served under the same routes with ``datasets`` in place of ``models`` (``/api/datasets/...``,
``/datasets/{repo}/resolve/...``) and stored as ``datasets/{repo}``:

    GET    /api/whoami-v2                                     who owns the token (401 for an unknown token)
    POST   /api/repos/create, DELETE /api/repos/delete        create (409 if it exists) / delete a model repo
    POST   /api/validate-yaml                                 README.md metadata check before a commit
    GET    /api/models/{repo}[/revision/{rev}]                model_info, repo_exists
    GET    /api/models/{repo}/tree/{rev}[/{path}]             list_repo_tree / list_repo_files
    POST   /api/models/{repo}/paths-info/{rev}                get_paths_info (HfFileSystem, used by datasets)
    POST   /api/models/{repo}/branch/{branch}                 create_branch
    POST   /api/models/{repo}/preupload/{rev}                 "lfs" or "regular" upload mode per file
    POST   /api/models/{repo}/commit/{rev}                    NDJSON commit: inline base64 files, LFS pointers
    POST   /{repo}.git/info/lfs/objects/batch                 LFS batch API, basic transfer
    PUT    /_lfs/upload/{oid}?sig=...                         the "pre-signed" upload URL of the batch answer
    POST   /{repo}.git/info/lfs/objects/verify                LFS verify step
    HEAD   /{repo}/resolve/{rev}/{path}, GET ...              file metadata (X-Repo-Commit, ETag, X-Linked-*) + body

Errors carry the headers the client turns into typed exceptions (``X-Error-Code: RepoNotFound``,
``RevisionNotFound``, ``EntryNotFound``; ``X-Error-Message`` for an invalid token).

What it does not serve: the Xet transfer protocol (content-defined chunking, CAS and shard uploads to Xet storage
servers through ``hf_xet``). Tests therefore either disable Xet (``HF_HUB_DISABLE_XET=1``, the LFS path) or switch
the server to ``upload_mode = "regular"``, which makes the client send every file inline in the commit.

Only the standard library (and PyYAML for the metadata check) is imported here: the conftest imports this module
before ``huggingface_hub`` is imported, because the client reads ``HF_ENDPOINT`` once, at import.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import secrets
import socket
import sys
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

GITATTRIBUTES = b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n*.bin filter=lfs diff=lfs merge=lfs -text\n"
LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".onnx", ".npz", ".h5", ".msgpack")
LFS_SIZE_THRESHOLD = 10 * 1024 * 1024  # the Hub stores larger files through LFS whatever their type
INVALID_CREDENTIALS = "Invalid credentials in Authorization header"


# ----------------------------------------------------------------------------------------------- storage


@dataclass(frozen=True)
class Blob:
    """A stored file. ``lfs`` files are kept as git-LFS objects (the repo tree holds their pointer)."""

    data: bytes
    lfs: bool

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def pointer(self) -> bytes:
        return f"version https://git-lfs.github.com/spec/v1\noid sha256:{self.sha256}\nsize {len(self.data)}\n".encode()

    @property
    def git_oid(self) -> str:
        """The git blob id: of the content for a regular file, of the LFS pointer for an LFS file."""
        content = self.pointer if self.lfs else self.data
        return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()

    @property
    def etag(self) -> str:
        return self.sha256 if self.lfs else self.git_oid


@dataclass
class Commit:
    oid: str
    parent: str | None
    message: str
    files: dict[str, Blob]


@dataclass
class Repo:
    repo_id: str
    private: bool
    commits: dict[str, Commit] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)  # branch or refs/pr/N -> commit oid
    num_prs: int = 0

    def resolve(self, revision: str) -> Commit | None:
        oid = self.refs.get(revision, revision)
        return self.commits.get(oid)

    def add_commit(self, parent: Commit | None, message: str, files: dict[str, Blob]) -> Commit:
        digest = hashlib.sha1((parent.oid if parent else "").encode() + message.encode())
        for path in sorted(files):
            digest.update(f"\0{path}\0{files[path].git_oid}".encode())
        commit = Commit(digest.hexdigest(), parent.oid if parent else None, message, files)
        self.commits[commit.oid] = commit
        return commit


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    host: str
    client: str
    authenticated: bool


class HubState:
    """Everything the server knows; tests read and set it directly (same process)."""

    def __init__(self, *, user: str = "recipe-tester", orgs: tuple[str, ...] = ("recipe-org",)) -> None:
        self.user = user
        self.orgs = orgs
        self.token = "hf_write_" + secrets.token_hex(16)  # write access to `user` and `orgs`
        self.read_token = "hf_read_" + secrets.token_hex(16)  # valid, read-only
        self.secret = secrets.token_bytes(16)  # signs the LFS upload URLs
        self.lock = threading.RLock()
        self.repos: dict[str, Repo] = {}
        self.lfs_objects: dict[str, bytes] = {}
        self.requests: list[RecordedRequest] = []
        self.upload_mode = "lfs"  # "lfs": the Hub's rules; "regular": every file inline in the commit
        self.fail_next_commits = 0  # answer that many commits with a 500, to test failures

    def reset(self) -> None:
        with self.lock:
            self.repos.clear()
            self.lfs_objects.clear()
            self.requests.clear()
            self.upload_mode = "lfs"
            self.fail_next_commits = 0

    def sign(self, oid: str) -> str:
        return hmac.new(self.secret, oid.encode(), hashlib.sha256).hexdigest()

    def upload_mode_for(self, path: str, size: int, sample: bytes) -> str:
        if self.upload_mode == "regular":
            return "regular"
        binary = b"\0" in sample
        return "lfs" if path.endswith(LFS_SUFFIXES) or size >= LFS_SIZE_THRESHOLD or binary else "regular"


class HubError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.headers = status, message, code, headers or {}


# ----------------------------------------------------------------------------------------------- HTTP


class HubHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: HubServer

    # -- plumbing --------------------------------------------------------------------------------------

    def log_message(self, format: str, *args: object) -> None:
        pass

    @property
    def state(self) -> HubState:
        return self.server.state

    def _dispatch(self) -> None:
        url = urlsplit(self.path)
        self.query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        self.segments = [unquote(s) for s in url.path.strip("/").split("/")] if url.path.strip("/") else []
        self.body = self._read_body()
        auth = self.headers.get("Authorization", "")
        with self.state.lock:
            self.state.requests.append(
                RecordedRequest(
                    self.command, url.path, self.headers.get("Host", ""), self.client_address[0], bool(auth)
                )
            )
        try:
            self._route()
        except HubError as err:
            self._send_json({"error": err.message}, err.status, err.code, err.headers)

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _dispatch

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", headers.get("Content-Length", str(len(body))))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_json(self, payload: object, status: int = 200, code: str | None = None, extra=None) -> None:
        headers = {"Content-Type": "application/json", **(extra or {})}
        if code:
            headers["X-Error-Code"] = code
        self._send(status, json.dumps(payload).encode(), headers)

    def _json_body(self) -> dict:
        try:
            return json.loads(self.body or b"{}")
        except json.JSONDecodeError as err:
            raise HubError(400, f"Invalid JSON body: {err}") from None

    # -- authentication --------------------------------------------------------------------------------

    def _access(self) -> str | None:
        """None (anonymous), "read" or "write"; an unknown token is a 401, as on the Hub."""
        auth = self.headers.get("Authorization")
        if not auth:
            return None
        token = auth.removeprefix("Bearer ").strip()
        if hmac.compare_digest(token, self.state.token):
            return "write"
        if hmac.compare_digest(token, self.state.read_token):
            return "read"
        raise HubError(401, INVALID_CREDENTIALS, headers={"X-Error-Message": INVALID_CREDENTIALS})

    def _require_write(self, namespace: str) -> None:
        access = self._access()
        if access is None:
            raise HubError(401, "You must be authenticated to access this resource")
        if access != "write" or namespace not in (self.state.user, *self.state.orgs):
            raise HubError(403, f"You don't have the rights to write to the namespace '{namespace}'")

    def _repo(self, repo_id: str, *, write: bool = False) -> Repo:
        if write:
            self._require_write(repo_id.removeprefix("datasets/").split("/")[0])
        access = self._access()
        repo = self.state.repos.get(repo_id)
        if repo is None or (repo.private and access is None):
            raise HubError(404, "Repository not found", "RepoNotFound")
        return repo

    def _commit(self, repo: Repo, revision: str) -> Commit:
        commit = repo.resolve(revision)
        if commit is None:
            raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return commit

    # -- routes ----------------------------------------------------------------------------------------

    def _route(self) -> None:
        s, method = self.segments, self.command
        if s == ["api", "whoami-v2"] and method == "GET":
            return self._whoami()
        if s == ["api", "repos", "create"] and method == "POST":
            return self._create_repo()
        if s == ["api", "repos", "delete"] and method == "DELETE":
            return self._delete_repo()
        if s == ["api", "validate-yaml"] and method == "POST":
            return self._validate_yaml()
        if len(s) >= 4 and s[:2] in (["api", "models"], ["api", "datasets"]):
            repo_id, rest = _repo_key(s[1], f"{s[2]}/{s[3]}"), s[4:]
            if len(rest) == 2 and rest[0] == "paths-info" and method == "POST":
                return self._paths_info(repo_id, rest[1])
            if rest and rest[0] == "parquet":  # the Hub's parquet conversion: not served (the files are parquet)
                raise HubError(404, "No parquet conversion on the test Hub", "EntryNotFound")
            if not rest and method == "GET":
                return self._model_info(repo_id, "main")
            if len(rest) == 2 and rest[0] == "revision" and method == "GET":
                return self._model_info(repo_id, rest[1])
            if len(rest) >= 2 and rest[0] == "tree" and method == "GET":
                return self._tree(repo_id, rest[1], "/".join(rest[2:]))
            if len(rest) == 2 and rest[0] == "branch" and method == "POST":
                return self._create_branch(repo_id, rest[1])
            if len(rest) == 2 and rest[0] == "preupload" and method == "POST":
                return self._preupload(repo_id, rest[1])
            if len(rest) == 2 and rest[0] == "commit" and method == "POST":
                return self._commit_ndjson(repo_id, rest[1])
            if rest and rest[0] in ("xet-write-token", "xet-read-token"):
                raise HubError(501, "The test Hub does not serve the Xet transfer protocol: set HF_HUB_DISABLE_XET=1")
        if len(s) == 3 and s[:2] == ["_lfs", "upload"] and method == "PUT":
            return self._lfs_put(s[2])
        if len(s) == 6 and s[1].endswith(".git") and s[2:5] == ["info", "lfs", "objects"] and method == "POST":
            repo_id = f"{s[0]}/{s[1].removesuffix('.git')}"
            if s[5] == "batch":
                return self._lfs_batch(repo_id)
            if s[5] == "verify":
                return self._lfs_verify(repo_id)
        if len(s) == 7 and s[0] == "datasets" and s[2].endswith(".git") and s[3:6] == ["info", "lfs", "objects"]:
            repo_id = _repo_key("datasets", f"{s[1]}/{s[2].removesuffix('.git')}")
            if s[6] == "batch" and method == "POST":
                return self._lfs_batch(repo_id)
            if s[6] == "verify" and method == "POST":
                return self._lfs_verify(repo_id)
        if len(s) >= 6 and s[0] == "datasets" and s[3] == "resolve" and method in ("GET", "HEAD"):
            return self._resolve(_repo_key("datasets", f"{s[1]}/{s[2]}"), s[4], "/".join(s[5:]))
        if len(s) >= 5 and s[2] == "resolve" and method in ("GET", "HEAD"):
            return self._resolve(f"{s[0]}/{s[1]}", s[3], "/".join(s[4:]))
        raise HubError(404, f"No route for {method} {urlsplit(self.path).path}")

    def _whoami(self) -> None:
        access = self._access()
        if access is None:
            raise HubError(401, "You must be authenticated to access this resource")
        role = "write" if access == "write" else "read"
        orgs = [{"name": org, "type": "org"} for org in self.state.orgs]
        self._send_json(
            {"type": "user", "name": self.state.user, "orgs": orgs, "auth": {"accessToken": {"role": role}}}
        )

    def _create_repo(self) -> None:
        payload = self._json_body()
        kind = payload.get("type", "model")
        if kind not in ("model", "dataset"):
            raise HubError(400, "This test server hosts model and dataset repositories only")
        namespace = payload.get("organization") or self.state.user
        repo_id = _repo_key(f"{kind}s", f"{namespace}/{payload['name']}")
        self._require_write(namespace)
        url = f"{self.server.url}/{repo_id}"
        with self.state.lock:
            if repo_id in self.state.repos:
                raise HubError(409, "You already created this model repo", headers={"X-Error-Message": "conflict"})
            repo = Repo(repo_id, private=payload.get("visibility") == "private" or bool(payload.get("private")))
            repo.refs["main"] = repo.add_commit(
                None, "initial commit", {".gitattributes": Blob(GITATTRIBUTES, False)}
            ).oid
            self.state.repos[repo_id] = repo
        self._send_json({"url": url, "name": repo_id, "id": repo_id})

    def _delete_repo(self) -> None:
        payload = self._json_body()
        namespace = payload.get("organization") or self.state.user
        repo_id = _repo_key(f"{payload.get('type', 'model')}s", f"{namespace}/{payload['name']}")
        self._require_write(namespace)
        with self.state.lock:
            if self.state.repos.pop(repo_id, None) is None:
                raise HubError(404, "Repository not found", "RepoNotFound")
        self._send_json({})

    def _validate_yaml(self) -> None:
        self._access()
        content = self._json_body().get("content", "")
        errors = []
        if content.startswith("---"):
            end = content.find("\n---", 3)
            try:
                metadata = yaml.safe_load(content[3:end] if end > 0 else "")
                if metadata is not None and not isinstance(metadata, dict):
                    errors.append({"message": "metadata must be a YAML mapping"})
            except yaml.YAMLError as err:
                errors.append({"message": f"invalid YAML: {err}"})
        if errors:
            self._send_json({"errors": errors, "warnings": []}, 400)
        else:
            self._send_json({"errors": [], "warnings": []})

    def _model_info(self, repo_id: str, revision: str) -> None:
        repo = self._repo(repo_id)
        commit = self._commit(repo, revision)
        siblings = [{"rfilename": path} for path in sorted(commit.files)]
        public_id = repo_id.removeprefix("datasets/")
        self._send_json(
            {
                "_id": hashlib.sha1(repo_id.encode()).hexdigest()[:24],
                "id": public_id,
                **({} if repo_id.startswith("datasets/") else {"modelId": public_id}),
                "author": public_id.split("/")[0],
                "lastModified": "2026-01-01T00:00:00.000Z",
                "sha": commit.oid,
                "private": repo.private,
                "disabled": False,
                "gated": False,
                "tags": [],
                "siblings": siblings,
            }
        )

    def _tree(self, repo_id: str, revision: str, folder: str) -> None:
        commit = self._commit(self._repo(repo_id), revision)
        recursive = self.query.get("recursive", "").lower() in ("1", "true")
        prefix = f"{folder.strip('/')}/" if folder.strip("/") else ""
        entries, folders = [], set()
        for path, blob in sorted(commit.files.items()):
            if not path.startswith(prefix):
                continue
            rest = path[len(prefix) :]
            if "/" in rest and not recursive:
                folders.add(prefix + rest.split("/")[0])
                continue
            entry = {"type": "file", "oid": blob.git_oid, "size": len(blob.data), "path": path}
            if blob.lfs:
                entry["lfs"] = {"oid": blob.sha256, "size": len(blob.data), "pointerSize": len(blob.pointer)}
            entries.append(entry)
        if prefix and not entries and not folders:
            raise HubError(404, f"{folder} does not exist", "EntryNotFound")
        entries += [{"type": "directory", "oid": "0" * 40, "size": 0, "path": f} for f in sorted(folders)]
        self._send_json(entries)

    def _paths_info(self, repo_id: str, revision: str) -> None:
        commit = self._commit(self._repo(repo_id), revision)
        body = self.body.decode()
        if self.headers.get("Content-Type", "").startswith("application/json"):
            paths = self._json_body().get("paths", [])
        else:
            paths = parse_qs(body).get("paths", [])
        entries = []
        for path in paths:
            path = path.strip("/")
            blob = commit.files.get(path)
            if blob is not None:
                entry = {"type": "file", "oid": blob.git_oid, "size": len(blob.data), "path": path}
                if blob.lfs:
                    entry["lfs"] = {"oid": blob.sha256, "size": len(blob.data), "pointerSize": len(blob.pointer)}
                entries.append(entry)
            elif any(p.startswith(f"{path}/") for p in commit.files):
                entries.append({"type": "directory", "oid": "0" * 40, "size": 0, "path": path})
        self._send_json(entries)

    def _create_branch(self, repo_id: str, branch: str) -> None:
        repo = self._repo(repo_id, write=True)
        start = self._commit(repo, self._json_body().get("startingPoint") or "main")
        with self.state.lock:
            if branch in repo.refs:
                raise HubError(409, f"Reference already exists: {branch}")
            repo.refs[branch] = start.oid
        self._send_json({})

    def _preupload(self, repo_id: str, revision: str) -> None:
        repo = self._repo(repo_id, write=True)
        head = repo.resolve("main" if self.query.get("create_pr") else revision)
        files = []
        for item in self._json_body().get("files", []):
            sample = base64.b64decode(item.get("sample", ""))
            mode = self.state.upload_mode_for(item["path"], int(item["size"]), sample)
            existing = head.files.get(item["path"]) if head else None
            oid = None
            if existing is not None:
                oid = existing.sha256 if mode == "lfs" else existing.git_oid
            files.append({"path": item["path"], "uploadMode": mode, "shouldIgnore": False, "oid": oid})
        self._send_json({"files": files, "commitOid": head.oid if head else None})

    def _commit_ndjson(self, repo_id: str, revision: str) -> None:
        repo = self._repo(repo_id, write=True)
        with self.state.lock:
            if self.state.fail_next_commits > 0:
                self.state.fail_next_commits -= 1
                raise HubError(500, "Internal Error - injected by the test server")
            lines = [json.loads(line) for line in self.body.decode().splitlines() if line.strip()]
            if not lines or lines[0].get("key") != "header":
                raise HubError(400, "The first line of a commit must be its header")
            header = lines[0]["value"]
            create_pr = self.query.get("create_pr") == "1"
            parent = self._commit(repo, revision)
            if header.get("parentCommit") and header["parentCommit"] != parent.oid:
                raise HubError(412, "A commit has happened since. Please refresh and try again.")
            files = dict(parent.files)
            for op in lines[1:]:
                key, value = op["key"], op["value"]
                if key == "file":
                    files[value["path"]] = Blob(base64.b64decode(value["content"]), lfs=False)
                elif key == "lfsFile":
                    data = self.state.lfs_objects.get(value["oid"])
                    if data is None or ("size" in value and len(data) != value["size"]):
                        raise HubError(422, f"LFS object {value['oid']} for {value['path']} was never uploaded")
                    files[value["path"]] = Blob(data, lfs=True)
                elif key == "deletedFile":
                    if files.pop(value["path"], None) is None:
                        raise HubError(404, "A file with this name doesn't exist", "EntryNotFound")
                elif key == "deletedFolder":
                    files = {p: b for p, b in files.items() if not p.startswith(value["path"].rstrip("/") + "/")}
                else:
                    raise HubError(400, f"Unknown commit operation {key!r}")
            commit = repo.add_commit(parent, header.get("summary", ""), files)
            answer = {"commitUrl": f"{self.server.url}/{repo_id}/commit/{commit.oid}", "commitOid": commit.oid}
            if create_pr:
                repo.num_prs += 1
                repo.refs[f"refs/pr/{repo.num_prs}"] = commit.oid
                answer["pullRequestUrl"] = f"{self.server.url}/{repo_id}/discussions/{repo.num_prs}"
            else:
                repo.refs[revision] = commit.oid
        self._send_json({"success": True, **answer})

    def _lfs_batch(self, repo_id: str) -> None:
        self._repo(repo_id, write=True)
        payload = self._json_body()
        if payload.get("operation") != "upload":
            raise HubError(400, "Only the upload operation is served")
        objects = []
        for obj in payload.get("objects", []):
            oid, size = obj["oid"], obj["size"]
            if len(oid) != 64 or not isinstance(size, int) or size < 0:
                objects.append({"oid": oid, "size": size, "error": {"code": 422, "message": "invalid object"}})
            elif oid in self.state.lfs_objects:
                objects.append({"oid": oid, "size": size})  # already stored: no action
            else:
                upload = f"{self.server.url}/_lfs/upload/{oid}?size={size}&sig={self.state.sign(oid)}"
                verify = f"{self.server.url}/{repo_id}.git/info/lfs/objects/verify"
                objects.append(
                    {
                        "oid": oid,
                        "size": size,
                        "authenticated": True,
                        "actions": {"upload": {"href": upload}, "verify": {"href": verify}},
                    }
                )
        self._send_json({"transfer": "basic", "objects": objects, "hash_algo": "sha256"})

    def _lfs_put(self, oid: str) -> None:
        if not hmac.compare_digest(self.query.get("sig", ""), self.state.sign(oid)):
            raise HubError(403, "Invalid upload signature")
        if int(self.query.get("size", -1)) != len(self.body) or hashlib.sha256(self.body).hexdigest() != oid:
            raise HubError(400, "Uploaded content does not match the announced oid and size")
        with self.state.lock:
            self.state.lfs_objects[oid] = self.body
        self._send(200, b"", {"ETag": f'"{oid}"'})

    def _lfs_verify(self, repo_id: str) -> None:
        self._repo(repo_id, write=True)
        payload = self._json_body()
        data = self.state.lfs_objects.get(payload.get("oid", ""))
        if data is None or len(data) != payload.get("size"):
            raise HubError(404, "Object not found")
        self._send_json({"success": True})

    def _resolve(self, repo_id: str, revision: str, path: str) -> None:
        commit = self._commit(self._repo(repo_id), revision)
        blob = commit.files.get(path)
        if blob is None:
            raise HubError(404, "Entry not found", "EntryNotFound", {"X-Repo-Commit": commit.oid})
        headers = {
            "X-Repo-Commit": commit.oid,
            "ETag": f'"{blob.etag}"',
            "Content-Type": "application/octet-stream",
            "Accept-Ranges": "bytes",
        }
        if blob.lfs:
            headers.update({"X-Linked-Etag": f'"{blob.sha256}"', "X-Linked-Size": str(len(blob.data))})
        data, status = blob.data, 200
        byte_range = self.headers.get("Range", "")
        if byte_range.startswith("bytes=") and self.command == "GET":
            start_text, _, end_text = byte_range[6:].partition("-")
            start = int(start_text or 0)
            end = int(end_text) if end_text else len(blob.data) - 1
            data, status = blob.data[start : end + 1], 206
            headers["Content-Range"] = f"bytes {start}-{end}/{len(blob.data)}"
        headers["Content-Length"] = str(len(data))
        self._send(status, data, headers)


def _repo_key(kind: str, repo_id: str) -> str:
    """Model repos are stored under their id, dataset repos under ``datasets/<id>`` (the Hub's URL prefix)."""
    return f"datasets/{repo_id}" if kind == "datasets" else repo_id


class HubServer(ThreadingHTTPServer):
    """The server, on 127.0.0.1 and a free port, served from a daemon thread: ``start()``, ``url``, ``state``."""

    daemon_threads = True

    def __init__(self, state: HubState | None = None) -> None:
        super().__init__(("127.0.0.1", 0), HubHandler)
        self.state = state or HubState()
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        self._thread = threading.Thread(target=self.serve_forever, name="test-hub", daemon=True)

    def start(self) -> HubServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


# ----------------------------------------------------------------------------------------------- network guard

NETWORK_VIOLATIONS: list[str] = []


def _is_loopback(host: object) -> bool:
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return str(host) == "localhost"


def _guard(event: str, args: tuple) -> None:
    if event != "socket.connect":
        return
    sock, address = args
    if getattr(sock, "family", None) in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address[0]):
        NETWORK_VIOLATIONS.append(f"connect to {address!r}")
        raise PermissionError(f"test network guard: connection to {address!r} refused (only 127.0.0.1 is allowed)")


_GUARD_INSTALLED = False


def install_network_guard() -> list[str]:
    """Refuse (and record) every Python-level socket connection to a non-loopback address in this process.

    An audit hook (PEP 578) sees each ``socket.connect`` before it happens, whichever library makes it; it cannot be
    removed, so it is installed once per process. Returns the list that records the refused attempts.
    """
    global _GUARD_INSTALLED
    if not _GUARD_INSTALLED:
        sys.addaudithook(_guard)
        _GUARD_INSTALLED = True
    return NETWORK_VIOLATIONS
