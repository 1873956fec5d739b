"""Model references: Ollama registry names, Hugging Face GGUF files and local paths.

Registry names follow Ollama's rules (``types/model/name.go``)::

    [scheme://][host/][namespace/]model[:tag][@sha256:<hex>]

* defaults: host ``registry.ollama.ai``, namespace ``library``, tag ``latest``;
* the tag is whatever follows the last ``:`` that comes after the last ``/`` — so
  ``localhost:5000/ns/m`` has a port, not a tag;
* host: 1-350 characters, ``[A-Za-z0-9_][A-Za-z0-9_.:-]*`` (``:`` for a port);
* namespace: 1-80 characters, ``[A-Za-z0-9_][A-Za-z0-9_-]*`` (no dots);
* model and tag: 1-80 characters, ``[A-Za-z0-9_][A-Za-z0-9_.-]*``;
* names compare case-insensitively (:meth:`ModelName.key`), but keep the case they were given.

``hf.co/<user>/<repo>[:<quant>]`` is an ordinary registry name on host ``hf.co`` (Hugging Face
speaks Ollama's registry protocol there); ``huggingface.co`` is accepted as an alias.
``hf://<user>/<repo>/<file>.gguf[@revision]`` names one GGUF file of a Hugging Face repository,
and anything that looks like a file path is a :class:`LocalPath`.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Union

from runtime.errors import InvalidName

DEFAULT_HOST = "registry.ollama.ai"
DEFAULT_NAMESPACE = "library"
DEFAULT_TAG = "latest"
HF_HOST = "hf.co"
#: Hosts that are other spellings of another host (compared lowercased).
HOST_ALIASES = {"huggingface.co": HF_HOST}

MAX_HOST_LEN = 350
MAX_PART_LEN = 80

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_DIGEST = re.compile(r"^sha256[:-]([0-9a-fA-F]{64})$")
_HF_PART = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_ALNUM_ = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
#: Characters allowed after the first one, per part (the first must be in _ALNUM_).
_ALLOWED = {
    "host": _ALNUM_ | frozenset(".-:"),
    "namespace": _ALNUM_ | frozenset("-"),
    "model": _ALNUM_ | frozenset(".-"),
    "tag": _ALNUM_ | frozenset(".-"),
}


@dataclass(frozen=True)
class ModelName:
    """A fully qualified registry name; build one with :func:`parse_name`."""

    host: str
    namespace: str
    model: str
    tag: str
    scheme: str | None = None
    digest: str | None = None   # "sha256:<hex>" when the name pinned one with "@"

    def __str__(self) -> str:
        text = f"{self.host}/{self.namespace}/{self.model}:{self.tag}"
        return f"{text}@{self.digest}" if self.digest else text

    @property
    def display(self) -> str:
        """The shortest form, as ``ollama list`` prints it: default host and namespace dropped."""
        if self.host.lower() != DEFAULT_HOST:
            return f"{self.host}/{self.namespace}/{self.model}:{self.tag}"
        if self.namespace.lower() != DEFAULT_NAMESPACE:
            return f"{self.namespace}/{self.model}:{self.tag}"
        return f"{self.model}:{self.tag}"

    def manifest_relpath(self) -> Path:
        """Where the manifest lives under the models directory (Ollama's layout)."""
        return Path("manifests", self.host, self.namespace, self.model, self.tag)

    def key(self) -> tuple[str, str, str, str]:
        """The name lowercased, for case-insensitive comparison and lookup."""
        return (self.host.lower(), self.namespace.lower(), self.model.lower(), self.tag.lower())

    def same_as(self, other: ModelName) -> bool:
        """Whether both name the same model, ignoring case (Ollama's ``EqualFold``)."""
        return self.key() == other.key()

    @property
    def base_url(self) -> str:
        """The registry's base URL: the scheme as given (default https) and the host."""
        return f"{self.scheme or 'https'}://{self.host}"

    @property
    def repository(self) -> str:
        """``namespace/model``, the repository part of registry API paths."""
        return f"{self.namespace}/{self.model}"

    @property
    def is_huggingface(self) -> bool:
        return self.host.lower() == HF_HOST


@dataclass(frozen=True)
class HFFileRef:
    """One GGUF file in a Hugging Face repository: ``hf://user/repo/file.gguf[@revision]``."""

    user: str
    repo: str
    filename: str
    revision: str | None = None

    @property
    def repo_id(self) -> str:
        return f"{self.user}/{self.repo}"

    def __str__(self) -> str:
        text = f"hf://{self.user}/{self.repo}/{self.filename}"
        return f"{text}@{self.revision}" if self.revision else text


@dataclass(frozen=True)
class LocalPath:
    """A model file on this machine (``~`` expanded; relative paths as given or under base_dir)."""

    path: Path

    def __str__(self) -> str:
        return str(self.path)


Reference = Union[ModelName, HFFileRef, LocalPath]


def _show_char(ch: str) -> str:
    if (ch.isprintable() and not ch.isspace()) or ch == " ":
        return f'"{ch}"'
    name = unicodedata.name(ch, "")
    escaped = ch.encode("unicode_escape").decode("ascii")
    return f'"{escaped}"' + (f" ({name})" if name else "")


def _check_part(text: str, kind: str, value: str) -> None:
    if not value:
        raise InvalidName(text, f"{kind} part is empty")
    limit = MAX_HOST_LEN if kind == "host" else MAX_PART_LEN
    if len(value) > limit:
        raise InvalidName(text, f"{kind} part is too long ({len(value)} characters, at most {limit})")
    if value[0] not in _ALNUM_:
        allowed = _ALLOWED[kind]
        if value[0] in allowed:
            raise InvalidName(text, f'{kind} part must start with a letter, a digit or "_", '
                                    f"not {_show_char(value[0])}")
        raise InvalidName(text, f"{kind} part contains {_show_char(value[0])}")
    allowed = _ALLOWED[kind]
    for ch in value:
        if ch not in allowed:
            raise InvalidName(text, f"{kind} part contains {_show_char(ch)}")


def parse_name(text: str) -> ModelName:
    """Parse a registry model name, filling in Ollama's defaults.

    Args:
        text: e.g. ``"qwen2.5:0.5b"``, ``"user/model"``, ``"localhost:5000/ns/m:tag"``,
            ``"http://10.0.0.5:5000/library/tiny:latest"``, ``"hf.co/user/repo:Q4_K_M"``.

    Raises:
        InvalidName: saying which part is wrong and why.
    """
    if not isinstance(text, str):
        raise InvalidName(repr(text), "a name must be a string")
    if not text:
        raise InvalidName(text, "name is empty")
    rest = text
    scheme = None
    m = _SCHEME.match(rest)
    if m:
        scheme = m.group(1).lower()
        if scheme not in ("http", "https"):
            raise InvalidName(text, f'unsupported scheme "{m.group(1)}" (use http:// or https://)')
        rest = rest[m.end():]

    digest = None
    if "@" in rest:
        rest, _, raw_digest = rest.rpartition("@")
        dm = _DIGEST.match(raw_digest)
        if not dm:
            raise InvalidName(text, f'digest "{raw_digest}" is not sha256:<64 hex digits>')
        digest = "sha256:" + dm.group(1).lower()
        if not rest:
            raise InvalidName(text, "model part is empty")

    tag = None
    if rest.rfind(":") > rest.rfind("/"):
        rest, _, tag = rest.rpartition(":")
        if not tag:
            raise InvalidName(text, "tag part is empty")

    parts = rest.split("/")
    if len(parts) > 3:
        raise InvalidName(text, 'too many "/"-separated parts (at most host/namespace/model)')
    host = namespace = None
    if len(parts) == 3:
        host, namespace, model = parts
    elif len(parts) == 2:
        namespace, model = parts
    else:
        (model,) = parts
    if scheme and host is None:
        raise InvalidName(text, f"{scheme}:// needs a host: {scheme}://host[:port]/namespace/model[:tag]")

    if host is not None:
        _check_part(text, "host", host)
        host = HOST_ALIASES.get(host.lower(), host)
    if namespace is not None:
        _check_part(text, "namespace", namespace)
    _check_part(text, "model", model)
    if tag is not None:
        _check_part(text, "tag", tag)
    return ModelName(
        host=host or DEFAULT_HOST,
        namespace=namespace or DEFAULT_NAMESPACE,
        model=model,
        tag=tag or DEFAULT_TAG,
        scheme=scheme,
        digest=digest,
    )


def is_valid_name(text: str) -> bool:
    try:
        parse_name(text)
    except InvalidName:
        return False
    return True


def _parse_hf_file(text: str) -> HFFileRef:
    body = text[len("hf://"):]
    revision = None
    lowered = body.lower()
    at = lowered.rfind(".gguf@")
    if at >= 0:
        body, revision = body[:at + len(".gguf")], body[at + len(".gguf@"):]
        if not revision:
            raise InvalidName(text, 'revision after "@" is empty')
    parts = body.split("/", 2)
    if len(parts) < 3 or not all(parts):
        raise InvalidName(text, "expected hf://<user>/<repo>/<file>.gguf[@revision]")
    user, repo, filename = parts
    for kind, value in (("user", user), ("repo", repo)):
        if len(value) > 96:
            raise InvalidName(text, f"Hugging Face {kind} is too long ({len(value)} characters, at most 96)")
        if not _HF_PART.match(value):
            bad = next((c for c in value if c not in _ALNUM_ and c not in ".-"), value[0])
            raise InvalidName(text, f"Hugging Face {kind} contains {_show_char(bad)}")
    if not filename.lower().endswith(".gguf"):
        raise InvalidName(text, "hf:// references name a .gguf file (hf://<user>/<repo>/<file>.gguf)")
    if any(p in ("", ".", "..") for p in filename.split("/")):
        raise InvalidName(text, f'file path "{filename}" is not a plain path inside the repository')
    return HFFileRef(user=user, repo=repo, filename=filename, revision=revision)


def looks_like_path(text: str) -> bool:
    """Whether *text* is written as a file path rather than a model name."""
    return (text.startswith(("/", "./", "../", "~", ".\\", "..\\"))
            or text in (".", "..")
            or text.lower().endswith(".gguf"))


def parse_reference(text: str, *, base_dir: str | Path | None = None) -> ModelName | HFFileRef | LocalPath:
    """Tell what a user's model reference means: a registry name, a Hugging Face file or a path.

    Args:
        text: a registry name (see :func:`parse_name`), ``hf://user/repo/file.gguf[@rev]``, or a
            path (starting with ``/``, ``./``, ``../`` or ``~``, or ending in ``.gguf``).
        base_dir: where relative paths are resolved (e.g. the Modelfile's folder). When given,
            a relative reference that exists there is a path even if it also reads as a name,
            as Ollama does for ``FROM``.

    Raises:
        InvalidName: for a malformed ``hf://`` reference or a name that breaks the rules.
    """
    if not isinstance(text, str) or not text:
        raise InvalidName(str(text), "name is empty")
    if text[:5].lower() == "hf://":
        return _parse_hf_file(text)
    if looks_like_path(text):
        return LocalPath(_resolve_path(text, base_dir))
    if base_dir is not None and (Path(base_dir) / text).exists():
        return LocalPath(_resolve_path(text, base_dir))
    return parse_name(text)


def _resolve_path(text: str, base_dir: str | Path | None) -> Path:
    path = Path(text).expanduser()
    if base_dir is not None and not path.is_absolute():
        path = Path(base_dir) / path
    return path
