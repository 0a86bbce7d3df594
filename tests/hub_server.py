"""A stand-in for the Hugging Face Hub's HTTP API on 127.0.0.1, for tests (point HF_ENDPOINT at it).

It implements what huggingface_hub 2.x calls to create a repository, upload a folder (preupload,
commit: every file is answered "regular", so no LFS or Xet transfer is needed), tag a revision, and
list refs, trees and revision info. Repositories live in memory as real commit chains. Writes need
`Authorization: Bearer <token>`. Failures can be injected per operation, to interrupt a push:

    server.fail("commit", after_apply=True)   # the commit lands but the response is an error (lost)
    server.fail("tag")                          # the tag request fails once, nothing changes
    server.fail("commit", echo=True)            # the error body echoes the request's headers (token included)
    server.hang("tag", after_apply=True, repo_type="model")  # tag the model, then hold the response open
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit


@dataclass
class Commit:
    oid: str
    parent: str | None
    message: str
    files: dict[str, bytes]


@dataclass
class Repo:
    repo_id: str
    repo_type: str
    private: bool
    commits: dict[str, Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    tag_messages: dict[str, str] = field(default_factory=dict)

    def resolve(self, revision: str) -> Commit | None:
        oid = self.branches.get(revision) or self.tags.get(revision) or revision
        return self.commits.get(oid)

    def user_commits(self) -> list[Commit]:
        """The commits on main, oldest first, without the Hub's initial one."""
        chain = []
        commit = self.commits.get(self.branches.get("main", ""))
        while commit is not None:
            chain.append(commit)
            commit = self.commits.get(commit.parent or "")
        return [c for c in reversed(chain) if c.parent is not None]


@dataclass
class Failure:
    operation: str
    after_apply: bool
    status: int
    remaining: int
    hang: threading.Event | None = None  # hold the request until the test sets it (to kill a client mid-call)
    repo_type: str | None = None  # only requests for this kind of repository ("model", "dataset")
    echo: bool = False  # the error body repeats the request's headers, as some proxies and debug pages do


@dataclass
class RecordedRequest:
    method: str
    path: str
    operation: str
    authorization: str | None
    body: bytes


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


GITATTRIBUTES = b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"
_RESOLVE_ROUTE = re.compile(r"^/(datasets/)?([^/]+/[^/]+)/resolve/([^/]+)/(.+)$")
_REPO_ROUTE = re.compile(r"^/api/(models|datasets)/([^/]+/[^/]+)/(refs|tree|preupload|commit|tag|revision)(?:/(.*))?$")


class HubState:
    def __init__(self, token: str) -> None:
        self.token = token
        self.repos: dict[tuple[str, str], Repo] = {}
        self.requests: list[RecordedRequest] = []
        self.failures: list[Failure] = []
        self.lock = threading.Lock()
        self._counter = 0
        self._nonce = uuid.uuid4().hex

    def new_oid(self, seed: str) -> str:
        """A commit id unique to this server, as the Hub's are (clients cache files by commit id)."""
        self._counter += 1
        return hashlib.sha1(f"{self._nonce}:{self._counter}:{seed}".encode(), usedforsecurity=False).hexdigest()

    def take_failure(self, operation: str, repo_type: str | None = None) -> Failure | None:
        for failure in self.failures:
            if failure.repo_type is not None and failure.repo_type != repo_type:
                continue
            if failure.operation == operation and failure.remaining > 0:
                failure.remaining -= 1
                return failure
        return None


class _Handler(BaseHTTPRequestHandler):
    server: HubServer

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests capture output
        return

    # --- plumbing ---------------------------------------------------------------------------------

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str, code: str | None = None) -> None:
        self._send(
            status,
            {"error": message},
            {"X-Error-Code": code, "X-Error-Message": message} if code else {"X-Error-Message": message},
        )

    def _authorised(self) -> bool:
        return self.headers.get("Authorization") == f"Bearer {self.server.state.token}"

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_HEAD(self) -> None:
        self._resolve(head=True)

    def _resolve(self, head: bool) -> None:
        """`hf_hub_download`: HEAD for the metadata (commit, ETag, size), then GET for the bytes."""
        state = self.server.state
        match = _RESOLVE_ROUTE.match(urlsplit(self.path).path)
        with state.lock:
            state.requests.append(
                RecordedRequest("HEAD" if head else "GET", self.path, "resolve", self.headers.get("Authorization"), b"")
            )
            failure = state.take_failure("resolve")
            repo = (
                state.repos.get(("dataset" if match and match.group(1) else "model", match.group(2))) if match else None
            )
            commit = repo.resolve(unquote(match.group(3))) if repo and match else None
            data = commit.files.get(unquote(match.group(4))) if commit and match else None
        if failure is not None:
            self.send_response(failure.status)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if commit is None or data is None or (repo is not None and repo.private and not self._authorised()):
            self.send_response(404)
            self.send_header("X-Error-Code", "EntryNotFound" if commit is not None else "RevisionNotFound")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("X-Repo-Commit", commit.oid)
        self.send_header("ETag", f'"{git_blob_id(data)}"')
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if not head:
            self.wfile.write(data)

    def _dispatch(self, method: str) -> None:
        state = self.server.state
        url = urlsplit(self.path)
        if method == "GET" and _RESOLVE_ROUTE.match(url.path):
            return self._resolve(head=False)
        body = self._body() if method == "POST" else b""
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        path = unquote(url.path)
        match = _REPO_ROUTE.match(url.path)
        operation = (
            "create"
            if path == "/api/repos/create"
            else "validate-yaml"
            if path == "/api/validate-yaml"
            else (match.group(3) if match else "other")
        )
        if operation == "create" and method == "POST":
            repo_type = json.loads(body or b"{}").get("type") or "model"
        else:
            repo_type = match.group(1)[:-1] if match else None
        with state.lock:
            state.requests.append(RecordedRequest(method, path, operation, self.headers.get("Authorization"), body))
            failure = state.take_failure(operation, repo_type)
        if failure is not None and failure.hang is not None and not failure.after_apply:
            failure.hang.wait(60)
            return self._error(503, f"{operation} interrupted")
        with state.lock:
            if failure is not None and failure.echo:
                echoed = "\n".join(f"{name}: {value}" for name, value in self.headers.items())
                body_text = f"injected failure of {operation}; your request was:\n{echoed}"
                return self._send(failure.status, {"error": body_text})
            if failure is not None and not failure.after_apply:
                return self._error(failure.status, f"injected failure of {operation}")
            if operation == "create" and method == "POST":
                self._create(body)
            elif operation == "validate-yaml":
                self._send(200, {"errors": [], "warnings": []})
            elif match:
                repo_type = match.group(1)[:-1]
                repo = state.repos.get((repo_type, match.group(2)))
                if repo is None:
                    return self._error(404, "Repository not found", "RepoNotFound")
                if repo.private and not self._authorised():
                    return self._error(401, "Invalid credentials", "RepoNotFound")
                rest = unquote(match.group(4) or "")
                handler = getattr(self, f"_{operation}")
                if failure is not None:  # apply, then lose the response
                    handler(repo, rest, body, query, respond=False)
                    if failure.hang is None:
                        return self._error(failure.status, f"injected failure after {operation}")
                else:
                    handler(repo, rest, body, query)
                    return None
            else:
                return self._error(404, f"no route for {method} {path}")
        if failure is not None and failure.hang is not None:  # applied: hold the response until released
            failure.hang.wait(60)
            self._error(503, f"{operation} interrupted after it was applied")
        return None

    # --- operations ---------------------------------------------------------------------------------

    def _create(self, body: bytes) -> None:
        state = self.server.state
        if not self._authorised():
            return self._error(401, "Invalid username or password.")
        payload = json.loads(body)
        repo_type = payload.get("type") or "model"
        repo_id = (
            f"{payload['organization']}/{payload['name']}" if payload.get("organization") else f"user/{payload['name']}"
        )
        prefix = "" if repo_type == "model" else f"{repo_type}s/"
        url = f"http://{self.server.server_address[0]}:{self.server.server_address[1]}/{prefix}{repo_id}"
        if (repo_type, repo_id) in state.repos:
            return self._send(409, {"error": "You already created this repo", "url": url})
        repo = Repo(repo_id, repo_type, payload.get("visibility") == "private" or bool(payload.get("private")))
        initial = Commit(state.new_oid(repo_id), None, "initial commit", {".gitattributes": GITATTRIBUTES})
        repo.commits[initial.oid] = initial
        repo.branches["main"] = initial.oid
        state.repos[(repo_type, repo_id)] = repo
        self._send(200, {"url": url, "name": repo_id})

    def _refs(self, repo: Repo, rest: str, body: bytes, query: dict[str, str], respond: bool = True) -> None:
        def refs(kind: str, names: dict[str, str]) -> list[dict[str, str]]:
            return [{"name": n, "ref": f"refs/{kind}/{n}", "targetCommit": oid} for n, oid in sorted(names.items())]

        self._send(200, {"branches": refs("heads", repo.branches), "tags": refs("tags", repo.tags), "converts": []})

    def _tree(self, repo: Repo, rest: str, body: bytes, query: dict[str, str], respond: bool = True) -> None:
        revision, _, prefix = rest.partition("/")
        commit = repo.resolve(revision)
        if commit is None:
            return self._error(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        recursive = query.get("recursive", "false").lower() == "true"
        base = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
        entries: dict[str, dict[str, Any]] = {}
        for path, data in sorted(commit.files.items()):
            if not path.startswith(base):
                continue
            relative = path[len(base) :]
            parts = relative.split("/")
            for depth in range(1, len(parts)):
                directory = base + "/".join(parts[:depth])
                if recursive or depth == 1:
                    entries.setdefault(
                        directory,
                        {"type": "directory", "oid": git_blob_id(directory.encode()), "size": 0, "path": directory},
                    )
                if not recursive:
                    break
            if recursive or len(parts) == 1:
                entries[path] = {"type": "file", "oid": git_blob_id(data), "size": len(data), "path": path}
        self._send(200, list(entries.values()))

    def _revision(self, repo: Repo, rest: str, body: bytes, query: dict[str, str], respond: bool = True) -> None:
        commit = repo.resolve(rest or "main")
        if commit is None:
            return self._error(404, f"Invalid rev id: {rest}", "RevisionNotFound")
        siblings = [{"rfilename": path} for path in sorted(commit.files)]
        self._send(200, {"id": repo.repo_id, "sha": commit.oid, "private": repo.private, "siblings": siblings})

    def _preupload(self, repo: Repo, rest: str, body: bytes, query: dict[str, str], respond: bool = True) -> None:
        if not self._authorised():
            return self._error(401, "Invalid credentials")
        commit = repo.resolve(rest)
        existing = commit.files if commit else {}
        files = [
            {
                "path": item["path"],
                "uploadMode": "regular",
                "shouldIgnore": False,
                "oid": git_blob_id(existing[item["path"]]) if item["path"] in existing else None,
            }
            for item in json.loads(body)["files"]
        ]
        self._send(200, {"files": files, "commitOid": commit.oid if commit else None})

    def _commit(self, repo: Repo, rest: str, body: bytes, query: dict[str, str], respond: bool = True) -> None:
        state = self.server.state
        if not self._authorised():
            return self._error(401, "Invalid credentials")
        branch = rest or "main"
        head = repo.branches.get(branch)
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        header = next(line["value"] for line in lines if line["key"] == "header")
        parent = header.get("parentCommit")
        if parent is not None and parent != head:
            return self._error(412, "A commit has happened since. Please refresh and try again.")
        files = dict(repo.commits[head].files) if head else {}
        for line in lines:
            key, value = line["key"], line["value"]
            if key == "file":
                files[value["path"]] = base64.b64decode(value["content"])
            elif key == "deletedFile":
                files.pop(value["path"], None)
            elif key == "deletedFolder":
                files = {p: d for p, d in files.items() if not p.startswith(value["path"].rstrip("/") + "/")}
            elif key == "lfsFile":
                return self._error(400, "this stand-in Hub stores regular files only")
        commit = Commit(state.new_oid(header["summary"]), head, header["summary"], files)
        repo.commits[commit.oid] = commit
        repo.branches[branch] = commit.oid
        if respond:
            self._send(
                200,
                {"commitUrl": f"/{repo.repo_id}/commit/{commit.oid}", "commitOid": commit.oid, "pullRequestUrl": None},
            )

    def _tag(self, repo: Repo, rest: str, body: bytes, query: dict[str, str], respond: bool = True) -> None:
        if not self._authorised():
            return self._error(401, "Invalid credentials")
        payload = json.loads(body)
        commit = repo.resolve(rest)
        if commit is None:
            return self._error(404, f"Invalid rev id: {rest}", "RevisionNotFound")
        if payload["tag"] in repo.tags:
            return self._error(409, f"Tag {payload['tag']} already exists")
        repo.tags[payload["tag"]] = commit.oid
        repo.tag_messages[payload["tag"]] = payload.get("message") or ""
        if respond:
            self._send(200, {})


class HubServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, token: str) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state = HubState(token)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def fail(
        self,
        operation: str,
        *,
        after_apply: bool = False,
        status: int = 500,
        times: int = 1,
        repo_type: str | None = None,
        echo: bool = False,
    ) -> None:
        with self.state.lock:
            self.state.failures.append(Failure(operation, after_apply, status, times, None, repo_type, echo))

    def hang(self, operation: str, *, after_apply: bool = False, repo_type: str | None = None) -> threading.Event:
        """Hold the next `operation` request open until the returned event is set (`after_apply`: having
        done what it asked first, as a request whose response never reached a killed client)."""
        release = threading.Event()
        with self.state.lock:
            self.state.failures.append(Failure(operation, after_apply, 503, 1, release, repo_type))
        return release

    def repo(self, repo_id: str, repo_type: str = "model") -> Repo:
        return self.state.repos[(repo_type, repo_id)]

    def operations(self, method: str = "POST") -> list[str]:
        return [r.operation for r in self.state.requests if r.method == method]


@contextmanager
def running_hub(token: str) -> Iterator[HubServer]:
    server = HubServer(token)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
