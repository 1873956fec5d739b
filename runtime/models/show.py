"""What ``/api/show``, ``/api/tags`` and ``llmcrate show/list`` report about models."""
from __future__ import annotations

from typing import Any

from runtime.errors import GGUFError
from runtime.format import rfc3339_nano
from runtime.models.gguf_info import read_gguf_info
from runtime.models.model import ModelInfo, details_of, load_model_info
from runtime.models.modelfile import render_modelfile
from runtime.models.names import ModelName
from runtime.models.store import Manifest, Store


def rfc3339(ts: float) -> str:
    """A file time as Ollama writes ``modified_at`` (RFC 3339, nanoseconds, local zone)."""
    return rfc3339_nano(ts)


def _go_value(v: Any) -> str:
    """Go's ``%#v`` for the JSON scalar types a params blob holds."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        out = v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
        return f'"{out}"'
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def parameters_text(params: dict[str, Any]) -> str:
    """The ``parameters`` string of ``/api/show``: one ``name value`` line per value."""
    lines = []
    for k in sorted(params):
        v = params[k]
        for item in (v if isinstance(v, list) else [v]):
            lines.append(f"{k:<30} {_go_value(item)}")
    return "\n".join(lines)


def template_text(info: ModelInfo, kv: dict[str, Any] | None) -> tuple[str | None, bool]:
    """``(text, is_go)``: the template a model is prompted with, as ``/api/show`` reports it:
    the Go template layer, else a Jinja template layer, else the GGUF's ``chat_template``."""
    if info.template is not None:
        return info.template, True
    if info.jinja_template is not None:
        return info.jinja_template, False
    own = (kv or {}).get("tokenizer.chat_template")
    return (own if isinstance(own, str) else None), False


def capabilities(info: ModelInfo, kv: dict[str, Any] | None) -> list[str]:
    caps: list[str] = []
    arch = (kv or {}).get("general.architecture", "")
    text, go = template_text(info, kv)
    is_embedding = kv is not None and f"{arch}.pooling_type" in kv and not info.template
    caps.append("embedding" if is_embedding else "completion")
    tmpl = text or ""
    if (".Tools" in tmpl) if go else ("tools" in tmpl):
        caps.append("tools")
    if go and ".Suffix" in tmpl:
        caps.append("insert")
    if info.projectors:
        caps.append("vision")
    if (".Think" in tmpl) if go else any(
            k in tmpl for k in ("enable_thinking", "reasoning_effort", "<think>")):
        caps.append("thinking")
    return caps


def modelfile_text(info: ModelInfo, kv: dict[str, Any] | None = None) -> str:
    """``show --modelfile``: creating a model from it gives the same prompts (the template in
    use is written out, Jinja included)."""
    text, _ = template_text(info, kv)
    return render_modelfile(name=info.name.display, from_=str(info.model_path),
                            template=text if text is not None else "{{ .Prompt }}",
                            system=info.system,
                            parameters=info.params, adapters=[str(a) for a in info.adapters],
                            projectors=[str(p) for p in info.projectors],
                            licenses=info.licenses, messages=info.messages)


def projector_info(info: ModelInfo, *, verbose: bool = False) -> dict[str, Any] | None:
    """``projector_info`` of ``/api/show``: the first projector's GGUF metadata (architecture
    ``clip``, ``clip.vision.*``), as ``model_info`` is for the weights; None without one."""
    if not info.projectors:
        return None
    try:
        return read_gguf_info(info.projectors[0]).model_info(verbose=verbose)
    except GGUFError:
        return None


def show_model(store: Store, name: str | ModelName, *, verbose: bool = False) -> dict[str, Any]:
    """Exactly the body ``/api/show`` answers with (the header read is cached per blob)."""
    info = load_model_info(store, name)
    try:
        gi = read_gguf_info(info.model_path, verbose=verbose)
        model_info: dict[str, Any] | None = gi.model_info(verbose=verbose)
        kv: dict[str, Any] | None = gi.kv
    except GGUFError:
        model_info, kv = None, None
    try:
        modified = rfc3339_nano(store.manifest_path(info.name).stat().st_mtime_ns, ns=True)
    except (OSError, ValueError):
        modified = rfc3339(info.modified_at)
    out: dict[str, Any] = {
        "license": "\n".join(info.licenses) if info.licenses else None,
        "modelfile": modelfile_text(info, kv),
        "parameters": parameters_text(info.params) or None,
        "template": template_text(info, kv)[0],
        "system": info.system,
        "details": info.details,
        "messages": info.messages or None,
        "model_info": model_info,
        "projector_info": projector_info(info, verbose=verbose),
        "capabilities": capabilities(info, kv),
        "modified_at": modified,
    }
    return {k: v for k, v in out.items() if v is not None}


def tags_item(name: ModelName, manifest: Manifest, details: dict[str, Any], modified: float,
              size: int) -> dict[str, Any]:
    return {"name": name.display, "model": name.display, "modified_at": rfc3339(modified),
            "size": size, "digest": manifest.digest.split(":", 1)[1], "details": details}


def list_models_json(store: Store) -> list[dict[str, Any]]:
    """The ``models`` array of ``/api/tags``, newest first."""
    import json

    out = []
    for e in store.list_models():
        try:
            cfg = json.loads(store.read_blob(e.manifest.config.digest))
        except Exception:  # noqa: BLE001 (a missing or corrupt config still lists the model)
            cfg = {}
        out.append(tags_item(e.name, e.manifest, details_of(cfg if isinstance(cfg, dict) else {}),
                             e.modified, e.size))
    return out
