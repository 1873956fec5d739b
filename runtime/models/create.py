"""Turn a Modelfile (or an ``/api/create`` request) into layers and a manifest, as Ollama does.

FROM is a GGUF file (relative to the Modelfile's folder) or a model already in the store; more
FROM lines add files (a projector: ``FROM ./mmproj.gguf``, a GGUF whose architecture is ``clip``
becomes an ``application/vnd.ollama.image.projector`` layer). The model layers come first;
TEMPLATE and SYSTEM replace the parent's layer of that type, LICENSE replaces all licenses,
PARAMETER values are merged over the parent's (request keys win; one params blob as Go's
``json.Encoder`` writes it: sorted keys, trailing newline), MESSAGE replaces the messages layer.
The config blob records format, family, parameter size and quantization read from the GGUF header.

Crash safety: blobs are written (atomically) before the manifest; the manifest is written last by
:meth:`Store.write_manifest`, which refuses to name a missing blob. A ``kill -9`` during the copy
of a large GGUF leaves at most a temp file that :meth:`Store.gc` removes.
"""
from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runtime.errors import (
    GGUFError,
    LlmcrateError,
    ModelfileError,
    ModelNotFound,
    StoreError,
)
from runtime.gojson import go_json
from runtime.models.gguf_info import GGUFInfo, read_gguf_info
from runtime.models.modelfile import Modelfile
from runtime.models.names import ModelName, parse_name
from runtime.models.store import (
    MEDIA_ADAPTER,
    MEDIA_CONFIG,
    MEDIA_LICENSE,
    MEDIA_MESSAGES,
    MEDIA_MODEL,
    MEDIA_PARAMS,
    MEDIA_PROJECTOR,
    MEDIA_SYSTEM,
    MEDIA_TEMPLATE,
    Layer,
    Manifest,
    Store,
)
from runtime.progress import ProgressCallback, ProgressEvent

logger = logging.getLogger(__name__)

@dataclass
class CreateRequest:
    """What a model is made of: the library form of Ollama's ``/api/create`` body.

    Exactly one of ``from_model`` (a model in the store) and ``files`` (file name -> digest of a
    GGUF blob already in the store) is given.
    """

    from_model: str | None = None
    files: dict[str, str] | None = None
    adapters: dict[str, str] | None = None
    template: str | None = None
    system: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    licenses: list[str] | None = None
    messages: list[dict[str, Any]] | None = None
    requires: str | None = None


def check_template(template: str | None) -> None:
    """A TEMPLATE must parse (TemplateError with line:col) before anything is written: as a Go
    template, or as Jinja when it is Jinja text (a GGUF chat_template that ``show`` printed)."""
    if template:
        from runtime.prompt import GoTemplate
        from runtime.prompt.families import is_jinja

        if is_jinja(template):
            from runtime.prompt.jinja import compile_jinja

            compile_jinja(template)
        else:
            GoTemplate.parse(template)


def template_layer_text(given: str | None, gguf: GGUFInfo | None, *, detect: bool = True
                        ) -> tuple[str | None, bool, list[str]]:
    """What the template layer holds, as Ollama's ``create`` decides it.

    Returns ``(text, replace, stop)``: ``replace`` says whether the template layer changes
    (``text`` None then means: no template layer, the GGUF's own chat_template is used);
    ``stop`` is the detected family's stop list (stored unless the request has one).

    - a Go TEMPLATE is stored as it is;
    - a Jinja TEMPLATE (or, with no TEMPLATE and ``detect``, the GGUF's chat_template) of a
      known family is stored as that family's Go template;
    - a Jinja TEMPLATE of no known family: no layer when it is the GGUF's own chat_template
      (so ``show --modelfile`` -> ``create`` round-trips), else stored as it is.
    """
    from runtime.prompt.families import choose_template, is_jinja

    own = gguf.chat_template if gguf is not None else None
    eos = gguf.token("eos") if gguf is not None else None
    if given:
        if not is_jinja(given):
            return given, True, []
        choice = choose_template(given, eos_token=eos)
        if choice is not None and not choice.is_jinja:
            return choice.template, True, list(choice.stop)
        return (None if given == own else given), True, []
    if own and detect:
        choice = choose_template(own, eos_token=eos)
        if choice is not None and not choice.is_jinja:
            return choice.template, True, list(choice.stop)
    return None, False, []


def _progress(cb: ProgressCallback | None, status: str) -> None:
    if cb is not None:
        cb(ProgressEvent(status))


def config_for(info: GGUFInfo | None, base: dict[str, Any] | None, *, requires: str | None,
                layers: list[Layer]) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "model_format": "gguf", "model_family": "", "model_families": None,
        "model_type": "", "file_type": "",
    }
    if base:
        for k in ("model_format", "model_family", "model_families", "model_type", "file_type",
                  "requires"):
            if base.get(k):
                cfg[k] = base[k]
    if info is not None:
        cfg["model_family"] = cfg["model_family"] or info.architecture
        cfg["model_type"] = cfg["model_type"] or info.parameter_size
        cfg["file_type"] = cfg["file_type"] or info.file_type
        fams = list(cfg["model_families"] or [])
        if info.architecture not in fams:
            fams.append(info.architecture)
        cfg["model_families"] = fams
    if requires:
        cfg["requires"] = requires
    cfg["architecture"] = "amd64"
    cfg["os"] = "linux"
    cfg["rootfs"] = {"type": "layers", "diff_ids": [x.digest for x in layers]}
    return cfg


def text_layer(store: Store, text: str, media: str) -> Layer:
    blob = store.add_blob_bytes(text.encode("utf-8"))
    return Layer(media_type=media, digest=blob.digest, size=blob.size)


def json_layer(store: Store, value: Any, media: str) -> Layer:
    blob = store.add_blob_bytes(go_json(value, newline=True))
    return Layer(media_type=media, digest=blob.digest, size=blob.size)


def _read_params(store: Store, layers: list[Layer]) -> dict[str, Any]:
    import json

    for layer in layers:
        if layer.media_type == MEDIA_PARAMS:
            try:
                value = json.loads(store.read_blob(layer.digest))
            except ValueError as e:
                raise StoreError(f"corrupt params layer {layer.digest}: {e}") from e
            return value if isinstance(value, dict) else {}
    return {}


def is_projector(info: GGUFInfo) -> bool:
    """A multimodal projector GGUF (llama.cpp's ``mmproj``): architecture ``clip``, or
    ``general.type`` projector/mmproj, or ``clip.*`` keys."""
    return (info.kv.get("general.type") in ("projector", "mmproj") or info.architecture == "clip"
            or any(str(k).startswith("clip.") for k in info.kv))


def _gguf_layer(store: Store, digest: str, source: str, progress: ProgressCallback | None,
                *, media: str | None = None) -> tuple[Layer, GGUFInfo]:
    _progress(progress, "parsing GGUF")
    path = store.blob_path(digest)
    if not path.is_file():
        raise StoreError(f'blob {digest} for "{source}" is not in the store; upload it first')
    info = read_gguf_info(path)
    if media is None:
        media = MEDIA_MODEL
        if is_projector(info):
            media = MEDIA_PROJECTOR
    return Layer(media_type=media, digest=digest, size=path.stat().st_size, from_=source), info


def create_from_request(store: Store, name: str | ModelName, req: CreateRequest, *,
                        progress: ProgressCallback | None = None) -> Manifest:
    """Build a model's layers from ``req`` and write its manifest (last)."""
    import json

    target = name if isinstance(name, ModelName) else parse_name(name)
    check_template(req.template)
    layers: list[Layer] = []
    info: GGUFInfo | None = None
    base_config: dict[str, Any] | None = None
    if not req.from_model and not req.files:
        raise LlmcrateError("neither 'from' or 'files' was specified")
    if req.from_model:
        base = store.resolve(req.from_model)
        try:
            base_config = json.loads(store.read_blob(base.config.digest))
        except (ValueError, StoreError):
            base_config = None
        for layer in base.layers:
            _progress(progress, f"using existing layer {layer.digest}")
            layers.append(layer)
        if not any(x.media_type == MEDIA_MODEL for x in layers):
            raise StoreError(f'model "{req.from_model}" has no model layer')
    if req.files:
        # model layers first (split shards in name order), then projectors, as Ollama lists them
        found = [_gguf_layer(store, req.files[f], f, progress) for f in sorted(req.files)]
        found.sort(key=lambda x: x[0].media_type == MEDIA_PROJECTOR)
        shards = 0
        for layer, li in found:
            if layer.media_type == MEDIA_MODEL:
                if req.from_model:
                    raise LlmcrateError(f"FROM {req.from_model} and the GGUF model file "
                                        f"{layer.from_}: a model can have only one of them (a "
                                        "projector file may be added to a model)")
                shards += 1
                if info is None:
                    info = li
                elif shards > 1:  # a split GGUF: the model is all of its shards
                    info.parameter_count += li.parameter_count
            elif any(x.digest == layer.digest for x in layers):
                continue
            layers.append(layer)
        if info is None and not req.from_model:
            raise LlmcrateError("no model layer among the files (only projectors?)")

    for fname, digest in sorted((req.adapters or {}).items()):
        layer, _ = _gguf_layer(store, digest, fname, progress, media=MEDIA_ADAPTER)
        layers.append(layer)

    if info is None and base_config is None:
        model = next(x for x in layers if x.media_type == MEDIA_MODEL)
        try:
            info = read_gguf_info(store.blob_path(model.digest))
        except GGUFError:
            info = None

    inherited = {x.digest for x in layers}

    def replace(media: str, new: list[Layer]) -> None:
        nonlocal layers
        layers = [x for x in layers if x.media_type != media] + new

    detected_stop: list[str] = []
    if req.template or not any(x.media_type == MEDIA_TEMPLATE for x in layers):
        gguf = info
        if gguf is None and req.template:
            model = next(x for x in layers if x.media_type == MEDIA_MODEL)
            try:
                gguf = read_gguf_info(store.blob_path(model.digest))
            except GGUFError:
                gguf = None
        text, changed, detected_stop = template_layer_text(req.template or None, gguf,
                                                           detect=bool(req.files))
        if changed:
            replace(MEDIA_TEMPLATE, [text_layer(store, text, MEDIA_TEMPLATE)] if text else [])
    if req.system is not None and req.system != "":
        replace(MEDIA_SYSTEM, [text_layer(store, req.system, MEDIA_SYSTEM)])
    if req.licenses:
        replace(MEDIA_LICENSE, [text_layer(store, x, MEDIA_LICENSE) for x in req.licenses])
    params = dict(req.parameters or {})
    for k, v in _read_params(store, layers).items():
        params.setdefault(k, v)
    if detected_stop:
        params.setdefault("stop", detected_stop)
    if params:
        replace(MEDIA_PARAMS, [json_layer(store, params, MEDIA_PARAMS)])
    if req.messages:
        replace(MEDIA_MESSAGES, [json_layer(store, req.messages, MEDIA_MESSAGES)])

    for layer in layers:
        if layer.digest not in inherited:
            _progress(progress, f"creating new layer {layer.digest}")
    config = config_for(info, base_config, requires=req.requires, layers=layers)
    cblob = store.add_blob_bytes(go_json(config, sort_keys=False, newline=True))
    config_layer = Layer(media_type=MEDIA_CONFIG, digest=cblob.digest, size=cblob.size)
    manifest = Manifest.build(config=config_layer, layers=layers)
    _progress(progress, "writing manifest")
    store.write_manifest(target, manifest.raw)
    _progress(progress, "success")
    return manifest


_SPLIT = re.compile(r"^(?P<stem>.+)-(?P<no>\d{5})-of-(?P<count>\d{5})\.gguf$")


def split_shards(path: Path) -> list[Path]:
    """Every shard of a llama.cpp split GGUF named by any one of them (``x-00001-of-00003.gguf``),
    in order; ``[path]`` for an ordinary file. A missing shard is a ModelfileError."""
    m = _SPLIT.match(path.name)
    if not m:
        return [path]
    count = int(m.group("count"))
    shards = [path.with_name(f"{m.group('stem')}-{i:05d}-of-{count:05d}.gguf")
              for i in range(1, count + 1)]
    missing = [p.name for p in shards if not p.is_file()]
    if missing:
        raise ModelfileError(f"split GGUF {path.name} is incomplete: missing {', '.join(missing)}")
    return shards


def _resolve_path(raw: str, base_dir: Path, line: int | None) -> Path | None:
    p = Path(os.path.expanduser(raw))
    if not p.is_absolute():
        p = base_dir / p
    if p.exists():
        return p
    looks_like_path = raw.startswith(("/", "./", "../", "~")) or raw.lower().endswith(".gguf")
    if looks_like_path:
        raise ModelfileError(f"FROM {raw}: file does not exist ({p})", line=line)
    return None


def resolve_from(modelfile: Modelfile, base_dir: Path) -> Path | None:
    """The GGUF path FROM names, or None when FROM names a model. Paths are relative to
    ``base_dir``; ``~`` is expanded. Anything that exists on disk is a file reference."""
    raw = (modelfile.from_ or "").strip()
    if not raw:
        raise ModelfileError("no FROM line")
    line = next((i.line for i in modelfile.instructions if i.command == "from"), None)
    return _resolve_path(raw, base_dir, line)


@dataclass
class Sources:
    """What a Modelfile's FROM lines name: GGUF files (split shards expanded, in FROM order;
    a projector is one more FROM file) and at most one model of the store."""

    files: list[Path] = field(default_factory=list)
    model: str | None = None


def resolve_sources(modelfile: Modelfile, base_dir: Path) -> Sources:
    """Every FROM of ``modelfile`` (``FROM ./model.gguf`` + ``FROM ./mmproj.gguf``, or
    ``FROM llava`` + ``FROM ./mmproj.gguf``). ModelfileError for a missing file, no FROM,
    or two FROMs that both name models."""
    froms = [i for i in modelfile.instructions if i.command == "from"]
    if not froms or not any(i.args.strip() for i in froms):
        raise ModelfileError("no FROM line")
    out = Sources()
    for ins in froms:
        raw = ins.args.strip()
        path = _resolve_path(raw, base_dir, ins.line)
        if path is not None:
            out.files += [p for p in split_shards(path) if p not in out.files]
        elif out.model is not None and out.model != raw:
            raise ModelfileError(f"FROM {raw}: a Modelfile can build on one model "
                                 f"(FROM {out.model} came first)", line=ins.line)
        else:
            out.model = raw
    return out


def _blob_from_file(store: Store, path: Path, progress: ProgressCallback | None) -> str:
    from runtime.models.gguf_info import check_magic

    check_magic(path)
    _progress(progress, f"copying file {path.name}")
    read_gguf_info(path)  # reject truncated or malformed files before copying gigabytes
    return store.add_blob_file(path).digest


def create_model(store: Store, name: str | ModelName, modelfile: Modelfile, *, base_dir: Path,
                 progress: ProgressCallback | None = None) -> Manifest:
    """``llmcrate create NAME -f Modelfile`` on the local store.

    Args:
        store: the store to write into.
        name: the new model's name.
        modelfile: the parsed Modelfile.
        base_dir: the Modelfile's folder (relative FROM/ADAPTER paths resolve against it).
        progress: receives Ollama-style status events.
    """
    target = name if isinstance(name, ModelName) else parse_name(name)
    check_template(modelfile.template)
    _progress(progress, "gathering model components")
    src = resolve_sources(modelfile, base_dir)
    req = CreateRequest(template=modelfile.template, system=modelfile.system,
                        parameters=dict(modelfile.parameters or {}),
                        licenses=list(modelfile.licenses) or None,
                        messages=list(modelfile.messages) or None,
                        requires=modelfile.requires)
    if src.files:
        req.files = {p.name: _blob_from_file(store, p, progress) for p in src.files}
    if src.model is not None:
        try:
            store.resolve(src.model)
        except ModelNotFound:
            raise ModelNotFound(src.model) from None
        req.from_model = src.model
    if modelfile.adapters:
        req.adapters = {}
        for a in modelfile.adapters:
            p = Path(os.path.expanduser(a))
            p = p if p.is_absolute() else base_dir / p
            if not p.is_file():
                raise ModelfileError(f"ADAPTER {a}: file does not exist ({p})")
            req.adapters[p.name] = _blob_from_file(store, p, progress)
    return create_from_request(store, target, req, progress=progress)
