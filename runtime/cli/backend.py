"""What the model commands (list, show, create, cp, rm, pull, push, ps, stop) work on, chosen
once per command by :func:`open_backend`: the running server (:class:`ClientBackend`, over
:mod:`runtime.cli.client`, as ``ollama`` does) when one answers at OLLAMA_HOST, else the local
store at OLLAMA_MODELS (:class:`StoreBackend`). Both give the same results and report progress
as :class:`~runtime.progress.ProgressEvent`; the commands only print.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from runtime.config import Settings
from runtime.errors import ServerUnavailable
from runtime.progress import ProgressCallback, ProgressEvent

if TYPE_CHECKING:
    from runtime.cli.client import Client
    from runtime.models.modelfile import Modelfile
    from runtime.models.store import Store
    from runtime.transfer.sources import PullOptions, SourceRef

Json = dict[str, Any]


@dataclass(frozen=True)
class ModelRow:
    """One line of ``llmcrate list``."""

    name: str
    short_id: str             # the first 12 hex digits of the manifest's digest
    size: int
    modified: float | None    # seconds since the epoch


class Backend(Protocol):
    """The operations the CLI's model commands need; see :func:`open_backend`."""

    def list_models(self) -> list[ModelRow]: ...

    def show(self, name: str, *, verbose: bool = False) -> Json:
        """The ``/api/show`` body."""
        ...

    def create(self, name: str, modelfile: Modelfile, *, base_dir: Path,
               progress: ProgressCallback) -> None: ...

    def copy(self, source: str, destination: str) -> None: ...

    def delete(self, name: str) -> None: ...

    def pull(self, ref: SourceRef, *, options: PullOptions, progress: ProgressCallback) -> None: ...

    def push(self, name: str, *, insecure: bool, progress: ProgressCallback) -> None: ...

    def ps(self) -> list[Json]:
        """The loaded models (``/api/ps`` items); only a server has any."""
        ...

    def stop(self, model: str) -> None: ...

    def close(self) -> None: ...


class StoreBackend:
    """No server: the commands work on the store directly."""

    def __init__(self, settings: Settings) -> None:
        from runtime.models.store import Store

        self.settings = settings
        self.store: Store = Store(settings.models_dir)

    def list_models(self) -> list[ModelRow]:
        return [ModelRow(e.name.display, e.manifest.short_id, e.size, e.modified)
                for e in self.store.list_models()]

    def show(self, name: str, *, verbose: bool = False) -> Json:
        from runtime.models.show import show_model

        return show_model(self.store, name, verbose=verbose)

    def create(self, name: str, modelfile: Modelfile, *, base_dir: Path,
               progress: ProgressCallback) -> None:
        from runtime.models.create import create_model

        create_model(self.store, name, modelfile, base_dir=base_dir, progress=progress)

    def copy(self, source: str, destination: str) -> None:
        self.store.copy(source, destination)

    def delete(self, name: str) -> None:
        self.store.delete(name)

    def pull(self, ref: SourceRef, *, options: PullOptions, progress: ProgressCallback) -> None:
        from runtime.transfer.sources import pull

        pull(self.store, ref, progress=progress, options=options)

    def push(self, name: str, *, insecure: bool, progress: ProgressCallback) -> None:
        from runtime.transfer.push import push_model

        push_model(self.store, name, insecure=insecure, progress=progress)

    def ps(self) -> list[Json]:
        raise ServerUnavailable(str(self.settings.host))

    def stop(self, model: str) -> None:
        raise ServerUnavailable(str(self.settings.host))

    def close(self) -> None:
        pass


class ClientBackend:
    """A server answers: the commands go through its API, so they act on the store it serves."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def list_models(self) -> list[ModelRow]:
        return [ModelRow(m["name"], m["digest"][:12], int(m["size"]), _epoch(m.get("modified_at")))
                for m in self.client.list()]

    def show(self, name: str, *, verbose: bool = False) -> Json:
        return self.client.show(name, verbose=verbose)

    def create(self, name: str, modelfile: Modelfile, *, base_dir: Path,
               progress: ProgressCallback) -> None:
        # as `ollama create` does: upload local files as blobs, then /api/create
        from runtime.models.create import check_template, resolve_sources
        from runtime.models.gguf_info import check_magic

        check_template(modelfile.template)
        for src in resolve_sources(modelfile, base_dir).files:
            check_magic(src)  # a bad file fails here, before gigabytes travel
        for status in self.client.create_from_modelfile(name, modelfile, base_dir=base_dir):
            progress(ProgressEvent(status))

    def copy(self, source: str, destination: str) -> None:
        self.client.copy(source, destination)

    def delete(self, name: str) -> None:
        self.client.delete(name)

    def pull(self, ref: SourceRef, *, options: PullOptions, progress: ProgressCallback) -> None:
        """The server pulls registry references itself, with its own download settings."""
        for obj in self.client.pull(ref.name, insecure=options.insecure):
            progress(ProgressEvent.from_json(obj))

    def push(self, name: str, *, insecure: bool, progress: ProgressCallback) -> None:
        for obj in self.client.push(name, insecure=insecure):
            progress(ProgressEvent.from_json(obj))

    def ps(self) -> list[Json]:
        return self.client.ps()

    def stop(self, model: str) -> None:
        self.client.stop(model)

    def close(self) -> None:
        self.client.close()


@contextmanager
def open_backend(settings: Settings, *,
                 prefer: Literal["server", "store"] = "server") -> Iterator[Backend]:
    """The server's backend when one answers at ``settings.host`` (and ``prefer`` is "server"),
    else the local store's; closed when the ``with`` block ends.

    Args:
        settings: OLLAMA_HOST and OLLAMA_MODELS.
        prefer: "store" for work only this machine can do (Hugging Face pulls, pulls with
            download flags).
    """
    backend: Backend = StoreBackend(settings)
    if prefer == "server":
        from runtime.cli.client import connect

        client = connect(settings)
        if client is not None:
            backend = ClientBackend(client)
    try:
        yield backend
    finally:
        backend.close()


def _epoch(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None
