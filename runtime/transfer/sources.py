"""Where models are pulled from: one resolved reference type and a puller per source.

    resolve("qwen2.5:0.5b")              -> SourceRef("ollama", "registry.ollama.ai/library/qwen2.5:0.5b", ModelName)
    resolve("10.0.0.5:5000/team/m:v1")   -> SourceRef("ollama", ...)        (a private registry)
    resolve("hf.co/user/Repo-GGUF:Q8_0") -> SourceRef("huggingface", "hf.co/user/Repo-GGUF:Q8_0", ModelName)
    resolve("hf://user/repo/f.gguf@rev") -> SourceRef("huggingface", ..., HFFileRef)

    pull(store, resolve(text), progress=..., options=PullOptions(...)) -> Manifest

The syntax of every reference lives in :mod:`runtime.models.names`, so a reference is understood (and
a wrong one explained) everywhere; pulling needs the source's :class:`Puller`. runtime registers
the Ollama registry's itself. Other pullers come from the ``llmcrate.sources`` entry point group
(``pyproject.toml``): each entry is named for its source and points at a zero-argument factory
that returns the puller, or raises ``ImportError`` when its online-only dependencies are missing.
bundler registers Hugging Face there, so imports run one way (bundler -> runtime) and the
air-gapped target, which lacks huggingface_hub, says so in one line instead of failing deep in
an import. Entry points are looked up on each use (not cached), so what is importable now counts.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Protocol, Union

from runtime.errors import SourceUnavailable
from runtime.models.names import HFFileRef, ModelName, parse_name, parse_reference
from runtime.plugins import entry_points

if TYPE_CHECKING:
    from runtime.models.store import Manifest, Store
    from runtime.progress import ProgressCallback
    from runtime.transfer.download import PullSettings

__all__ = ["ENTRY_POINT_GROUP", "HUGGINGFACE", "OLLAMA", "PullOptions", "Puller", "SourceRef",
           "get_puller", "pull", "register_puller", "resolve"]

logger = logging.getLogger(__name__)

OLLAMA = "ollama"
HUGGINGFACE = "huggingface"
ENTRY_POINT_GROUP = "llmcrate.sources"

#: What to say when a source has no puller here: (message, hint).
_UNAVAILABLE: dict[str, tuple[str, str]] = {
    HUGGINGFACE: ("Hugging Face pulls need the online host's extras",
                  "pull it on the online host (pip install 'llmcrate[online]': bundler + "
                  "huggingface_hub) and carry it over in a bundle"),
}

SourceParts = Union[ModelName, HFFileRef]


@dataclass(frozen=True)
class SourceRef:
    """A model reference resolved to its source.

    Attributes:
        source: the key of its puller (:data:`OLLAMA`, :data:`HUGGINGFACE`).
        name: the canonical text (defaults filled in, ``huggingface.co`` spelled ``hf.co``);
            parsing it again gives the same ``parts``.
        parts: the source-specific parts: a :class:`ModelName` (registry names, ``hf.co/…``)
            or an :class:`HFFileRef` (``hf://…``).
    """

    source: str
    name: str
    parts: SourceParts

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class PullOptions:
    """Per-pull choices; a source ignores those it has no use for (the CLI rejects such flags).

    Attributes:
        insecure: registry: allow plain http (private mirrors).
        revision: Hugging Face: a branch, tag or commit to pin.
        settings: registry: download tuning (parts, bandwidth); default from the environment.
        name: store the model under this name instead of the one the reference gives.
    """

    insecure: bool = False
    revision: str | None = None
    settings: PullSettings | None = None
    name: ModelName | None = None


class Puller(Protocol):
    """Pulls one source's models into a store."""

    def pull(self, store: Store, ref: SourceRef, *, progress: ProgressCallback | None = None,
             options: PullOptions | None = None) -> Manifest:
        """Fetch ``ref`` into ``store`` (blobs first, manifest last) and return the stored
        manifest; ``progress`` gets :class:`runtime.progress.ProgressEvent` reports."""
        ...


class RegistryPuller:
    """The Ollama registry protocol (registry.ollama.ai, private registries and mirrors)."""

    def pull(self, store: Store, ref: SourceRef, *, progress: ProgressCallback | None = None,
             options: PullOptions | None = None) -> Manifest:
        from runtime.transfer.registry import pull_model

        assert isinstance(ref.parts, ModelName)
        options = options or PullOptions()
        return pull_model(store, ref.parts, insecure=options.insecure, progress=progress,
                          settings=options.settings, store_as=options.name)


_PULLERS: dict[str, Puller] = {OLLAMA: RegistryPuller()}


def register_puller(source: str, puller: Puller) -> None:
    """Make ``puller`` the one for ``source`` in this process (ahead of entry points)."""
    _PULLERS[source] = puller


def _unavailable(source: str) -> SourceUnavailable:
    message, hint = _UNAVAILABLE.get(source, (f"no puller for model source {source!r} is installed",
                                              "install the package that provides it"))
    return SourceUnavailable(source, message, hint=hint)


def get_puller(source: str) -> Puller:
    """The puller for ``source``: registered in this process, else from its entry point.

    Raises:
        SourceUnavailable: none is installed, or its dependencies are missing here.
    """
    puller = _PULLERS.get(source)
    if puller is not None:
        return puller
    for ep in entry_points(ENTRY_POINT_GROUP):
        if ep.name != source:
            continue
        try:
            factory: Callable[[], Puller] = ep.load()
            return factory()
        except ImportError as e:
            logger.debug("puller %s (%s) is not usable here: %s", source, ep.value, e)
            raise _unavailable(source) from e
    raise _unavailable(source)


def resolve(text: str, *, available: bool = True) -> SourceRef:
    """Tell which source a pull reference names.

    Args:
        text: a registry name (``qwen2.5:0.5b``, ``host:port/ns/model:tag``, ``http://…``),
            ``hf.co/<user>/<repo>[:<quant>]`` (also ``huggingface.co/…``) or
            ``hf://<user>/<repo>/<file>.gguf[@revision]``.
        available: also check that this install can pull from the source.

    Raises:
        InvalidName: the reference breaks its source's rules (an unknown ``scheme://`` too).
        SourceUnavailable: with ``available``, when the source has no usable puller here.
    """
    if text[:5].lower() == "hf://":           # names.py's syntax: the one scheme that is not a registry's
        file_ref = parse_reference(text)
        assert isinstance(file_ref, HFFileRef)
        ref = SourceRef(HUGGINGFACE, str(file_ref), file_ref)
    else:
        name = parse_name(text)
        canonical = f"{name.scheme}://{name}" if name.scheme else str(name)
        source = HUGGINGFACE if name.is_huggingface else OLLAMA
        ref = SourceRef(source, canonical, name)
    if available:
        get_puller(ref.source)
    return ref


def pull(store: Store, ref: SourceRef, *, progress: ProgressCallback | None = None,
         options: PullOptions | None = None) -> Manifest:
    """Pull ``ref`` into ``store`` with its source's puller; return the stored manifest.

    Raises:
        SourceUnavailable, and whatever the source raises (ModelNotFound, RegistryError, …).
    """
    return get_puller(ref.source).pull(store, ref, progress=progress, options=options)
