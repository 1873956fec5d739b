"""A fake Hugging Face Hub: a real HTTP server on 127.0.0.1 answering the routes huggingface_hub uses.

    with FakeHub() as hub:                       # point HF_ENDPOINT at hub.base_url
        hub.add_repo("bartowski/Tiny-GGUF", {"Tiny-Q4_K_M.gguf": path, "README.md": b"..."},
                     license="apache-2.0")

Routes (huggingface_hub 0.2x-1.x):
- ``GET /api/models/{repo}`` and ``/api/models/{repo}/revision/{rev}``: model info with
  ``sha``, ``siblings`` (with ``size`` and ``lfs`` when ``?blobs=true``) and ``cardData``;
- ``GET /api/models/{repo}/tree/{rev}[/{path}]``: the file tree;
- ``HEAD|GET /{repo}/resolve/{rev}/{file}``: ``X-Repo-Commit``, ``ETag`` (sha256 for LFS files,
  a git blob id otherwise), ``X-Linked-Etag`` / ``X-Linked-Size``; LFS files answer 302 to
  ``/cdn-lfs/<sha256>`` on a second port (another origin) like the real Hub (switch ``redirect_lfs``); Range requests honoured.
Errors carry ``X-Error-Code`` (RepoNotFound, RevisionNotFound, EntryNotFound, GatedRepo) the
way huggingface_hub's ``hf_raise_for_status`` expects. ``token``: when set, every request must
send ``Authorization: Bearer <token>`` (a gated repo). ``faults`` apply to file bodies.
"""
from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from fakes._http import Faults, Handler, RequestRecord, Server

__all__ = ["FakeHub", "HubRepo"]


@dataclass
class HubFile:
    path: Path
    size: int
    sha256: str            # hex
    git_oid: str           # hex (sha1 of the git blob header + content, like git)
    lfs: bool


@dataclass
class HubRepo:
    repo_id: str
    commit: str
    files: dict[str, HubFile] = field(default_factory=dict)
    card: dict[str, Any] = field(default_factory=dict)


class FakeHub:
    def __init__(self, root_dir: str | Path | None = None) -> None:
        import tempfile

        self._tmp = None if root_dir else tempfile.TemporaryDirectory(prefix="fakehub-")
        self.root = Path(root_dir or self._tmp.name)  # type: ignore[union-attr]
        self.root.mkdir(parents=True, exist_ok=True)
        self.repos: dict[str, HubRepo] = {}
        self.token: str | None = None
        self.redirect_lfs = True
        self.faults = Faults()
        self.requests: list[RequestRecord] = []
        self._lock = threading.Lock()
        self._srv: Server | None = None
        self._cdn: Server | None = None

    def start(self) -> str:
        self._srv = Server(_HubHandler, self, "hub")
        self._cdn = Server(_HubHandler, self, "hub-cdn")  # another origin, like cdn-lfs.hf.co
        self._srv.start()
        self._cdn.start()
        return self.base_url

    def stop(self) -> None:
        for srv in (self._srv, self._cdn):
            if srv is not None:
                srv.stop()
        self._srv = self._cdn = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> FakeHub:
        self.start()
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        assert self._srv is not None, "start() first"
        return f"http://127.0.0.1:{self._srv.port}"

    @property
    def cdn_url(self) -> str:
        assert self._cdn is not None, "start() first"
        return f"http://127.0.0.1:{self._cdn.port}"

    def _log_request(self, rec: RequestRecord) -> None:
        with self._lock:
            self.requests.append(rec)

    def bytes_served(self, fragment: str = "") -> int:
        with self._lock:
            return sum(r.sent for r in self.requests if r.method == "GET" and fragment in r.path
                       and ("/resolve/" in r.path or r.path.startswith("/cdn-lfs/")))

    def add_repo(self, repo_id: str, files: dict[str, Path | bytes], *,
                 license: str | None = None, card: dict[str, Any] | None = None) -> HubRepo:
        """Publish a repo; files ending in .gguf / .bin / .safetensors are LFS files."""
        repo_dir = self.root / repo_id.replace("/", "--")
        repo_dir.mkdir(parents=True, exist_ok=True)
        out: dict[str, HubFile] = {}
        commit = hashlib.sha1(repo_id.encode())
        for name, src in sorted(files.items()):
            dst = repo_dir / name.replace("/", "__")
            if isinstance(src, bytes):
                dst.write_bytes(src)
            else:
                try:
                    dst.hardlink_to(src)
                except OSError:
                    dst.write_bytes(Path(src).read_bytes())
            data_sha = hashlib.sha256()
            git = hashlib.sha1(f"blob {dst.stat().st_size}\0".encode())
            with open(dst, "rb") as f:
                while chunk := f.read(8 << 20):
                    data_sha.update(chunk)
                    git.update(chunk)
            lfs = name.endswith((".gguf", ".bin", ".safetensors"))
            out[name] = HubFile(path=dst, size=dst.stat().st_size, sha256=data_sha.hexdigest(),
                                git_oid=git.hexdigest(), lfs=lfs)
            commit.update(name.encode() + data_sha.digest())
        card_data = dict(card or {})
        if license:
            card_data["license"] = license
        repo = HubRepo(repo_id=repo_id, commit=commit.hexdigest(), files=out, card=card_data)
        with self._lock:
            self.repos[repo_id] = repo
        return repo


class _HubHandler(Handler):
    server: Server

    @property
    def hub(self) -> FakeHub:
        return self.server.owner  # type: ignore[no-any-return]

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        hub = self.hub
        url = urlsplit(self.path)
        parts = [unquote(p) for p in url.path.strip("/").split("/")]
        if parts and parts[0] == "cdn-lfs" and len(parts) == 2:
            return self._cdn(parts[1])
        if hub.token is not None and self.headers.get("Authorization") != f"Bearer {hub.token}":
            return self._fail(401, "GatedRepo", "Access to this repo is restricted.")
        if parts[:2] == ["api", "models"] and len(parts) >= 4:
            repo_id = "/".join(parts[2:4])
            rest = parts[4:]
            repo = self._repo(repo_id)
            if repo is None:
                return
            if not rest:
                return self._info(repo, "main", parse_qs(url.query))
            if rest[0] == "revision" and len(rest) == 2:
                return self._info(repo, rest[1], parse_qs(url.query))
            if rest[0] == "tree" and len(rest) >= 2:
                return self._tree(repo, rest[1], "/".join(rest[2:]))
            return self._fail(404, None, "Not Found")
        if len(parts) >= 5 and parts[2] == "resolve":
            repo = self._repo("/".join(parts[:2]))
            if repo is None:
                return
            return self._resolve(repo, parts[3], "/".join(parts[4:]))
        self._fail(404, None, "Not Found")

    # -- routes ---------------------------------------------------------------------------------
    def _repo(self, repo_id: str) -> HubRepo | None:
        repo = self.hub.repos.get(repo_id)
        if repo is None:
            self._fail(404, "RepoNotFound", "Repository not found")
        return repo

    def _check_rev(self, repo: HubRepo, rev: str) -> bool:
        if rev in ("main", repo.commit):
            return True
        self._fail(404, "RevisionNotFound", f"Invalid rev id: {rev}")
        return False

    def _info(self, repo: HubRepo, rev: str, query: dict[str, list[str]]) -> None:
        if not self._check_rev(repo, rev):
            return
        blobs = query.get("blobs", ["false"])[0].lower() == "true"
        siblings = []
        for name, f in repo.files.items():
            s: dict[str, Any] = {"rfilename": name}
            if blobs:
                s["size"] = f.size
                s["blobId"] = f.git_oid
                if f.lfs:
                    s["lfs"] = {"sha256": f.sha256, "size": f.size, "pointerSize": 134}
            siblings.append(s)
        ggufs = [n for n in repo.files if n.endswith(".gguf")]
        doc = {"_id": repo.commit[:24], "id": repo.repo_id, "author": repo.repo_id.split("/")[0],
               "sha": repo.commit, "private": False, "gated": False, "disabled": False,
               "downloads": 0, "likes": 0, "tags": ["gguf"] + ([f"license:{repo.card['license']}"]
                                                              if "license" in repo.card else []),
               "cardData": repo.card, "siblings": siblings,
               "lastModified": "2026-01-01T00:00:00.000Z", "createdAt": "2026-01-01T00:00:00.000Z"}
        if ggufs:
            doc["gguf"] = {"total": 0, "architecture": "llama"}
        self.send_bytes(200, json.dumps(doc).encode())

    def _tree(self, repo: HubRepo, rev: str, prefix: str) -> None:
        if not self._check_rev(repo, rev):
            return
        items = []
        for name, f in repo.files.items():
            if prefix and not name.startswith(prefix.rstrip("/") + "/"):
                continue
            item: dict[str, Any] = {"type": "file", "oid": f.git_oid, "size": f.size, "path": name}
            if f.lfs:
                item["lfs"] = {"oid": f.sha256, "size": f.size, "pointerSize": 134}
            items.append(item)
        self.send_bytes(200, json.dumps(items).encode())

    def _resolve(self, repo: HubRepo, rev: str, filename: str) -> None:
        if not self._check_rev(repo, rev):
            return
        f = repo.files.get(filename)
        if f is None:
            return self._fail(404, "EntryNotFound", f"{filename} does not exist on \"{rev}\"",
                              headers={"X-Repo-Commit": repo.commit})
        headers = {"X-Repo-Commit": repo.commit, "ETag": f'"{f.sha256 if f.lfs else f.git_oid}"'}
        if f.lfs:
            headers["X-Linked-Etag"] = f'"{f.sha256}"'
            headers["X-Linked-Size"] = str(f.size)
            if self.hub.redirect_lfs:
                self.send_response(302)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Location", f"{self.hub.cdn_url}/cdn-lfs/{f.sha256}?X-Amz-Signature=fake")
                self.send_header("Content-Length", "0")
                self.end_headers()
                self.record(302)
                return
        self.send_file(f.path, faults=self.hub.faults, headers=headers)

    def _cdn(self, sha: str) -> None:
        for repo in list(self.hub.repos.values()):
            for f in repo.files.values():
                if f.lfs and f.sha256 == sha:
                    return self.send_file(f.path, faults=self.hub.faults,
                                          headers={"ETag": f'"{f.sha256}"'})
        self.send_bytes(404, b"<Error>NoSuchKey</Error>", content_type="application/xml")

    def _fail(self, status: int, code: str | None, message: str, *,
              headers: dict[str, str] | None = None) -> None:
        h = dict(headers or {})
        if code:
            h["X-Error-Code"] = code
        h["X-Error-Message"] = message
        self.send_bytes(status, json.dumps({"error": message}).encode(), headers=h)
