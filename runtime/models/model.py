"""A model as the runtime sees it: its weights' path and its template, system, params, ..."""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runtime.errors import StoreError
from runtime.models.names import ModelName, parse_name
from runtime.models.store import (
    MEDIA_ADAPTER,
    MEDIA_LICENSE,
    MEDIA_MESSAGES,
    MEDIA_MODEL,
    MEDIA_PARAMS,
    MEDIA_PROJECTOR,
    MEDIA_SYSTEM,
    MEDIA_TEMPLATE,
    Manifest,
    Store,
)

logger = logging.getLogger(__name__)


@dataclass
class ModelInfo:
    name: ModelName
    manifest: Manifest
    model_path: Path
    template: str | None = None        # the Go template layer
    #: a template layer holding Jinja (a Modelfile TEMPLATE that is a chat_template of no known
    #: family); rendered by the sandboxed Jinja instead of the GGUF's own chat_template
    jinja_template: str | None = None
    system: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    messages: list[dict[str, Any]] = field(default_factory=list)
    adapters: list[Path] = field(default_factory=list)
    projectors: list[Path] = field(default_factory=list)
    licenses: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    size: int = 0
    modified_at: float = 0.0
    parent_model: str = ""

    @property
    def digest(self) -> str:
        return self.manifest.digest


def _json_blob(store: Store, digest: str, what: str) -> Any:
    try:
        return json.loads(store.read_blob(digest))
    except ValueError as e:
        raise StoreError(f"corrupt {what} blob {digest}: {e}") from e


def details_of(config: dict[str, Any], parent: str = "") -> dict[str, Any]:
    """Ollama's ``details`` block from a config blob."""
    return {
        "parent_model": parent,
        "format": config.get("model_format") or "gguf",
        "family": config.get("model_family") or "",
        "families": config.get("model_families"),
        "parameter_size": config.get("model_type") or "",
        "quantization_level": config.get("file_type") or "",
    }


def link_split_shards(manifest: Manifest, paths: list[Path]) -> Path:
    """A split GGUF is stored as one model layer per shard; llama.cpp loads the first shard and
    finds the others by name (``…-00002-of-0000N.gguf`` beside it). Link the blobs under those
    names in a private folder (per manifest, reused) and return the first shard's link."""
    import os
    import tempfile

    base = Path(tempfile.gettempdir()) / f"llmcrate-shards-{os.getuid()}" / manifest.short_id
    base.mkdir(parents=True, exist_ok=True, mode=0o700)
    count = len(paths)
    links = [base / f"model-{i:05d}-of-{count:05d}.gguf" for i in range(1, count + 1)]
    for link, target in zip(links, paths):
        if link.is_symlink() and os.readlink(link) == str(target):
            continue
        tmp = link.with_name(link.name + ".tmp")
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(target)
        os.replace(tmp, link)
    return links[0]


def load_model_info(store: Store, name: str | ModelName) -> ModelInfo:
    """Resolve ``name`` and read its small layers. ModelNotFound / StoreError on problems."""
    n = name if isinstance(name, ModelName) else parse_name(name)
    m = store.resolve(n)
    models = m.layers_of(MEDIA_MODEL)
    if not models:
        raise StoreError(f'model "{n.display}" has no model layer')
    paths = [store.blob_path(x.digest) for x in models]
    for layer, path in zip(models, paths):
        if not path.is_file():
            raise StoreError(f'model "{n.display}" is incomplete: blob {layer.digest} is missing')
    model_path = paths[0] if len(paths) == 1 else link_split_shards(m, paths)
    info = ModelInfo(name=n, manifest=m, model_path=model_path, size=m.size,
                     parent_model=models[0].from_ or "")
    for layer in m.layers:
        mt = layer.media_type
        if mt == MEDIA_TEMPLATE:
            text = store.read_blob(layer.digest).decode("utf-8")
            from runtime.prompt.families import is_jinja

            if is_jinja(text):
                info.jinja_template = text
            else:
                info.template = text
        elif mt == MEDIA_SYSTEM:
            info.system = store.read_blob(layer.digest).decode("utf-8")
        elif mt == MEDIA_PARAMS:
            p = _json_blob(store, layer.digest, "params")
            info.params = p if isinstance(p, dict) else {}
        elif mt == MEDIA_MESSAGES:
            msgs = _json_blob(store, layer.digest, "messages")
            info.messages = msgs if isinstance(msgs, list) else []
        elif mt == MEDIA_LICENSE:
            info.licenses.append(store.read_blob(layer.digest).decode("utf-8"))
        elif mt == MEDIA_ADAPTER:
            info.adapters.append(store.blob_path(layer.digest))
        elif mt == MEDIA_PROJECTOR:
            info.projectors.append(store.blob_path(layer.digest))
    try:
        cfg = _json_blob(store, m.config.digest, "config")
        info.config = cfg if isinstance(cfg, dict) else {}
    except StoreError as e:
        logger.warning("%s", e)
    info.details = details_of(info.config, "")
    try:
        info.modified_at = store.manifest_path(n).stat().st_mtime
    except OSError:
        info.modified_at = 0.0
    return info
