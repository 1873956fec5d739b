"""One exception hierarchy for llmcrate, each with a user-facing message.

    LlmcrateError                     (exit code 1)
    ├── InvalidName(name, reason)
    ├── ModelNotFound(name)
    ├── ModelfileError(line, col, msg)
    ├── GGUFError(path, reason)
    ├── StoreError                     corrupt manifest, missing blob, ...
    │   ├── ReadOnlyStore(root)        the models dir cannot be written
    │   └── DigestMismatch(expected, actual)
    ├── InsufficientSpace(path, needed, free)
    ├── RegistryError(host, reason)    network / protocol failures
    │   └── AuthError
    ├── SourceUnavailable(source)      a model source this install cannot pull from (hf.co/… offline)
    ├── TemplateError(msg, pos)        prompt template parse / execution errors
    ├── EngineError                    a model that cannot load or run
    ├── ImageError(reason)             an image in a request cannot be used (HTTP 400)
    ├── InvalidRequest(reason, field)  an API request that cannot be served as written (HTTP 400)
    ├── UnsupportedCapability(model, capability)  the model lacks what a request asks (HTTP 400)
    ├── ServerUnavailable(host)
    ├── ServerError(status)            the server answered a request with an error
    ├── ServerBusy                     request queue full (HTTP 503)
    ├── AddressInUse(address)          serve: the port is taken
    ├── ConfigError(key, reason)
    ├── OptionError               (runtime.options; also a ValueError)
    ├── BundleError                    bundle build / verify / install
    │   └── UnsafeArchive(member, reason)
    └── DeployError                    llmcrate deploy: Ansible missing, inventory unreadable, ...

Library code raises these; only the CLI's error boundary prints them.
"""
from __future__ import annotations

from pathlib import Path


class LlmcrateError(Exception):
    """Base of every error llmcrate reports to a user. ``str(err)`` is the message."""

    exit_code: int = 1
    hint: str | None = None

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        if hint is not None:
            self.hint = hint


class InvalidName(LlmcrateError):
    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self.reason = reason
        super().__init__(f'invalid model name "{name}": {reason}')


class ModelNotFound(LlmcrateError):
    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f'model "{name}" not found')


class ModelfileError(LlmcrateError):
    def __init__(self, msg: str, *, line: int | None = None, col: int | None = None,
                 path: str | None = None) -> None:
        self.line = line
        self.col = col
        self.msg = msg
        self.path = path
        where = path or "Modelfile"
        if line is not None:
            where += f":{line}"
            if col is not None:
                where += f":{col}"
        super().__init__(f"{where}: {msg}")


class GGUFError(LlmcrateError):
    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: not a usable GGUF file: {reason}")


class StoreError(LlmcrateError):
    pass


class ReadOnlyStore(StoreError):
    """The models dir cannot be written (read-only mount, or not this user's)."""

    def __init__(self, root: Path | str, *, permission: bool = False) -> None:
        self.root = root
        why = "is read-only for this user" if permission else "is read-only"
        super().__init__(f"models dir {root} {why}")


class DigestMismatch(StoreError):
    def __init__(self, expected: str, actual: str, *, what: str = "blob") -> None:
        self.expected = expected
        self.actual = actual
        super().__init__(f"digest mismatch for {what}: expected {expected}, got {actual}")


class InsufficientSpace(LlmcrateError):
    def __init__(self, path: str, needed: int, free: int) -> None:
        self.path = path
        self.needed = needed
        self.free = free
        if needed > 0:
            msg = (f"not enough disk space in {path}: need {needed / 1e9:.2f} GB, "
                   f"{free / 1e9:.2f} GB free")
        else:
            msg = f"not enough disk space in {path}: the disk filled up while writing"
        super().__init__(msg)


class RegistryError(LlmcrateError):
    def __init__(self, message: str, *, host: str | None = None, status: int | None = None) -> None:
        self.host = host
        self.status = status
        super().__init__(message)


class AuthError(RegistryError):
    pass


class SourceUnavailable(LlmcrateError):
    """A reference names a model source whose puller is not installed here (runtime.transfer.sources)."""

    def __init__(self, source: str, message: str, *, hint: str | None = None) -> None:
        self.source = source
        super().__init__(message, hint=hint)


class TemplateError(LlmcrateError):
    def __init__(self, msg: str, *, pos: str | None = None) -> None:
        self.msg = msg
        self.pos = pos
        super().__init__(f"template: {pos}: {msg}" if pos else f"template: {msg}")


class EngineError(LlmcrateError):
    pass


class ImageError(LlmcrateError):
    """An image a request carries is not usable: bad base64, not an image, an unsupported
    format, too large. The message names the image (``image 2: …``) and never a path."""

    def __init__(self, reason: str, *, index: int | None = None) -> None:
        self.reason = reason
        self.index = index
        super().__init__(f"image {index + 1}: {reason}" if index is not None else reason)


class InvalidRequest(LlmcrateError):
    """An API request the server cannot serve as written: a missing or malformed field, or
    fields that do not go together. The message is the client's answer (HTTP 400)."""

    def __init__(self, reason: str, *, field: str | None = None) -> None:
        self.reason = reason
        self.field = field
        super().__init__(reason)


class UnsupportedCapability(LlmcrateError):
    """The model cannot do what a request asks: tools, insert (suffix), thinking, vision, or
    text generation from an embedding model (Ollama's CheckCapabilities; HTTP 400).

    Ollama quotes the name as the request wrote it for some capabilities and writes the full
    name bare for others; ``quoted`` keeps each message as Ollama's."""

    def __init__(self, model: str, capability: str, *, quoted: bool = False) -> None:
        self.model = model
        self.capability = capability
        shown = f'"{model}"' if quoted else model
        super().__init__(f"{shown} does not support {capability}")


class ServerUnavailable(LlmcrateError):
    def __init__(self, host: str) -> None:
        self.host = host
        super().__init__(f"could not connect to llmcrate server at {host}",
                         hint="start it with `llmcrate serve` (or `systemctl start llmcrate`)")


class ConfigError(LlmcrateError):
    def __init__(self, key: str, reason: str) -> None:
        self.key = key
        super().__init__(f"{key}: {reason}")


class BundleError(LlmcrateError):
    pass


class UnsafeArchive(BundleError):
    def __init__(self, member: str, reason: str) -> None:
        self.member = member
        super().__init__(f"refusing unsafe archive member {member!r}: {reason}")


class ServerError(LlmcrateError):
    """The server answered with an error: an HTTP status >= 400, or an ``{"error": ...}`` line mid-stream."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        self.status = status
        super().__init__(message)


class ServerBusy(LlmcrateError):
    """Too many requests are waiting for a model (``OLLAMA_MAX_QUEUE``); the API answers 503."""

    def __init__(self, message: str = "server busy, please try again.  maximum pending requests exceeded"
                 ) -> None:
        super().__init__(message)


class AddressInUse(LlmcrateError):
    """``llmcrate serve`` cannot bind its address because something else listens there."""

    def __init__(self, address: str) -> None:
        self.address = address
        super().__init__(f"address {address} already in use",
                         hint="is another llmcrate or ollama server running? stop it or set OLLAMA_HOST")


class DeployError(LlmcrateError):
    """``llmcrate deploy`` could not run (per-host failures are reported, not raised)."""
