"""Pull GGUF models from Hugging Face into the store as Ollama-style models (online host only).

References:

- ``hf.co/<user>/<repo>[:<quant>]`` (also ``huggingface.co/…``): the repo's GGUF whose name
  ends in ``<quant>`` (default ``Q4_K_M``, case-insensitive); a miss lists the quants there are.
- ``hf://<user>/<repo>/<file>.gguf[@revision]``: exactly that file.

Everything goes through ``huggingface_hub``: ``HfApi.model_info`` (file list, sizes, LFS sha256,
the commit the revision points at, the card's license) and ``hf_hub_download`` (resumable,
into the huggingface_hub cache, honouring ``HF_ENDPOINT``, ``HF_TOKEN``, ``HF_HOME`` and
``HF_HUB_CACHE``, read when the pull runs). The download is pinned to the resolved commit, and
the commit is recorded in the model's config blob (``"llmcrate": {"source", "revision", "files"}``).

The GGUF becomes a model the way ``ollama pull hf.co/…`` makes one: model layer(s) (a split
GGUF, ``-00001-of-0000N.gguf``, keeps every shard as a model layer, in order), a template layer
from ``tokenizer.chat_template`` (:mod:`bundler.chat_templates`), a params layer with the stop
tokens, a projector layer when the repo ships an ``mmproj`` GGUF beside the weights (the one of
the pulled quant, else F16; :func:`choose_projector`), and a license layer when the card names
one. Each file's sha256 is checked against the Hub's LFS record before the manifest is written
(last).
"""
from __future__ import annotations

import importlib.util
import io
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bundler.chat_templates import choose_template
from runtime.errors import (
    AuthError,
    DigestMismatch,
    InvalidName,
    LlmcrateError,
    ModelNotFound,
    RegistryError,
)
from runtime.gojson import go_json
from runtime.models.create import config_for, json_layer, text_layer
from runtime.models.gguf_info import read_gguf_info
from runtime.models.names import HF_HOST, HFFileRef, ModelName, parse_name, parse_reference
from runtime.models.store import (
    MEDIA_CONFIG,
    MEDIA_LICENSE,
    MEDIA_MODEL,
    MEDIA_PARAMS,
    MEDIA_PROJECTOR,
    MEDIA_TEMPLATE,
    Layer,
    Manifest,
    Store,
)
from runtime.progress import ProgressCallback, ProgressEvent
from runtime.transfer.sources import PullOptions, SourceRef

__all__ = [
    "DEFAULT_QUANT",
    "HfSource",
    "HuggingFacePuller",
    "choose_projector",
    "pull_hf",
    "puller",
    "quant_of",
    "resolve_hf",
]

logger = logging.getLogger(__name__)

DEFAULT_QUANT = "Q4_K_M"
_SPLIT = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$", re.IGNORECASE)
_QUANT = re.compile(r"(?:^|[-._])((?:I?Q\d[A-Z0-9_]*)|(?:[BF]F?\d{2})|(?:TQ\d_\d))$", re.IGNORECASE)


@dataclass(frozen=True)
class HfSource:
    """What a reference resolved to on the Hub."""

    repo_id: str
    revision: str          # the commit sha the files were taken from
    files: list[str]       # GGUF path(s), shards in order
    projector: str | None
    name: ModelName        # the name in the store
    sizes: dict[str, int]
    sha256: dict[str, str]  # file -> LFS sha256 hex (when the Hub has one)
    license: str | None
    quant: str | None


def _stem(filename: str) -> str:
    base = filename.rsplit("/", 1)[-1]
    base = _SPLIT.sub("", base)
    return base[:-5] if base.lower().endswith(".gguf") else base


def quant_of(filename: str) -> str | None:
    """``"Llama-3.2-1B-Instruct-Q4_K_M.gguf"`` -> ``"Q4_K_M"`` (None when there is none)."""
    m = _QUANT.search(_stem(filename))
    return m.group(1).upper() if m else None


def _is_projector(filename: str) -> bool:
    return "mmproj" in filename.rsplit("/", 1)[-1].lower()


def choose_projector(projectors: list[str], model_file: str) -> str | None:
    """The ``mmproj`` GGUF to pull with ``model_file``: one beside it (same folder, else the
    repo's top level), of the same quant when there is one, else F16, BF16, F32, else the
    first by name."""
    folder = model_file.rsplit("/", 1)[0] if "/" in model_file else ""

    def in_folder(f: str, d: str) -> bool:
        return (f.rsplit("/", 1)[0] if "/" in f else "") == d

    near = [f for f in projectors if in_folder(f, folder)] or \
        [f for f in projectors if in_folder(f, "")]
    if not near:
        return None
    quant = (quant_of(model_file) or "").upper()
    for want in ([quant] if quant else []) + ["F16", "BF16", "F32"]:
        match = sorted(f for f in near if (quant_of(f) or "").upper() == want)
        if match:
            return match[0]
    return sorted(near)[0]


def _endpoint() -> str | None:
    return os.environ.get("HF_ENDPOINT") or None


def _token() -> str | None:
    return os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN") or None


def _cache_dir() -> str | None:
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return str(Path(os.environ["HF_HOME"]) / "hub")
    return None


def _hub_error(e: Exception, repo_id: str, what: str) -> LlmcrateError:
    """Map huggingface_hub's errors to llmcrate's (the HF side of ``raise_for_registry``)."""
    from huggingface_hub import errors as hf

    host = _endpoint() or "huggingface.co"
    if isinstance(e, hf.GatedRepoError):
        return AuthError(f"{repo_id} is gated: accept its terms on the Hub and set HF_TOKEN",
                         host=host, status=403)
    if isinstance(e, hf.RepositoryNotFoundError):
        return ModelNotFound(f"hf.co/{repo_id}")
    if isinstance(e, hf.RevisionNotFoundError):
        return RegistryError(f"{repo_id}: revision not found ({what})", host=host, status=404)
    if isinstance(e, hf.EntryNotFoundError):
        return RegistryError(f"{repo_id}: {what} not found", host=host, status=404)
    if isinstance(e, hf.HfHubHTTPError):
        status = getattr(getattr(e, "response", None), "status_code", None)
        if status in (401, 403):
            return AuthError(f"{repo_id}: access denied ({status}); set HF_TOKEN", host=host,
                             status=status)
        return RegistryError(f"{host}: {what} of {repo_id} failed: {e}".splitlines()[0],
                             host=host, status=status)
    if isinstance(e, (OSError, ValueError)) or type(e).__module__.startswith(("httpx", "httpcore")):
        return RegistryError(f"cannot reach Hugging Face at {host}: {e}", host=host)
    return RegistryError(f"{host}: {what} of {repo_id} failed: {type(e).__name__}: {e}", host=host)


def resolve_hf(ref: str | ModelName | HFFileRef, *, revision: str | None = None) -> HfSource:
    """Look ``ref`` up on the Hub: which files, at which commit, under which store name."""
    from huggingface_hub import HfApi

    parsed = parse_reference(ref) if isinstance(ref, str) else ref
    if isinstance(parsed, HFFileRef):
        repo_id, wanted_file, quant = parsed.repo_id, parsed.filename, None
        revision = revision or parsed.revision
    elif isinstance(parsed, ModelName) and parsed.is_huggingface:
        repo_id, wanted_file = f"{parsed.namespace}/{parsed.model}", None
        quant = DEFAULT_QUANT if parsed.tag.lower() == "latest" else parsed.tag
    else:
        raise InvalidName(str(ref), "not a Hugging Face reference (hf.co/<user>/<repo>[:<quant>] or "
                               "hf://<user>/<repo>/<file>.gguf)")
    api = HfApi(endpoint=_endpoint(), token=_token())
    try:
        info = api.model_info(repo_id, revision=revision, files_metadata=True)
    except Exception as e:  # mapped to one llmcrate error
        raise _hub_error(e, repo_id, "model info") from e
    siblings = {s.rfilename: s for s in (info.siblings or [])}
    ggufs = sorted(f for f in siblings if f.lower().endswith(".gguf"))
    if wanted_file is not None:
        if wanted_file not in siblings:
            raise ModelNotFound(f"hf://{repo_id}/{wanted_file}")
        chosen = wanted_file
    else:
        models = [f for f in ggufs if not _is_projector(f)]
        matches = [f for f in models if (quant_of(f) or "").lower() == str(quant).lower()]
        first_shards = [f for f in matches if not _SPLIT.search(f) or _SPLIT.search(f).group(1) == "00001"]  # type: ignore[union-attr]
        if not first_shards:
            have = sorted({q for q in (quant_of(f) for f in models) if q})
            listing = ", ".join(have) if have else "none (no GGUF files in this repo)"
            raise RegistryError(f"hf.co/{repo_id} has no {quant} GGUF; quants available: {listing}",
                                status=404)
        if len(first_shards) > 1:
            raise RegistryError(f"{len(first_shards)} files in hf.co/{repo_id} match {quant}: "
                                + ", ".join(first_shards) + "; name one with hf://", status=409)
        chosen = first_shards[0]
    files = [chosen]
    split = _SPLIT.search(chosen)
    if split:
        count = int(split.group(2))
        prefix = chosen[:split.start()]
        files = [f"{prefix}-{i:05d}-of-{count:05d}.gguf" for i in range(1, count + 1)]
        missing = [f for f in files if f not in siblings]
        if missing:
            raise RegistryError(f"hf.co/{repo_id}: split GGUF is missing " + ", ".join(missing))
    if _is_projector(chosen):
        raise RegistryError(f"hf://{repo_id}/{chosen} is a multimodal projector; name the model "
                            "GGUF (its projector is pulled with it)", status=400)
    projector = choose_projector([f for f in ggufs if _is_projector(f)], chosen)
    license_id = None
    card = getattr(info, "card_data", None)
    if card is not None:
        lic = getattr(card, "license", None) or (card.get("license") if hasattr(card, "get") else None)
        name = getattr(card, "license_name", None)
        license_id = str(name or lic) if (name or lic) else None
    sizes, shas = {}, {}
    for f in files + ([projector] if projector else []):
        s = siblings[f]
        if s.size is not None:
            sizes[f] = int(s.size)
        lfs = getattr(s, "lfs", None)
        sha = getattr(lfs, "sha256", None) if lfs is not None else None
        if sha is None and isinstance(lfs, dict):
            sha = lfs.get("sha256")
        if sha:
            shas[f] = str(sha)
    file_quant = quant_of(chosen)
    if isinstance(parsed, HFFileRef):
        tag = file_quant or re.sub(r"[^A-Za-z0-9_.-]", "_", _stem(chosen))[:80] or "latest"
        store_name = parse_name(f"{HF_HOST}/{parsed.user}/{parsed.repo}:{tag}")
    else:
        store_name = parsed  # as the user wrote it, like Ollama (":latest" stays ":latest")
    return HfSource(repo_id=repo_id, revision=str(info.sha or revision or "main"), files=files,
                    projector=projector, name=store_name, sizes=sizes, sha256=shas,
                    license=license_id, quant=file_quant)


def _forwarding_tqdm(emit: ProgressCallback, status: str, digest: str) -> type:
    """A tqdm class for ``hf_hub_download`` that reports Ollama-style progress events."""
    from tqdm import tqdm

    class _Forward(tqdm):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.pop("name", None)
            kwargs["file"] = io.StringIO()
            super().__init__(*args, **kwargs)
            self._emit()

        def update(self, n: float | None = 1) -> bool | None:
            out = super().update(n)
            self._emit()
            return out

        def _emit(self) -> None:
            if self.total:
                emit(ProgressEvent(status, digest=digest, total=int(self.total),
                                   completed=int(self.n)))

    return _Forward


def _download(src: HfSource, filename: str, emit: ProgressCallback) -> Path:
    from huggingface_hub import hf_hub_download

    sha = src.sha256.get(filename)
    digest = f"sha256:{sha}" if sha else f"sha256:{'0' * 64}"
    status = f"pulling {sha[:12]}" if sha else f"pulling {filename}"
    try:
        path = hf_hub_download(src.repo_id, filename, revision=src.revision,
                               cache_dir=_cache_dir(), endpoint=_endpoint(), token=_token(),
                               tqdm_class=_forwarding_tqdm(emit, status, digest))
    except Exception as e:  # mapped to one llmcrate error
        raise _hub_error(e, src.repo_id, filename) from e
    return Path(str(path))


def pull_hf(store: Store, ref: str | ModelName | HFFileRef, *, revision: str | None = None,
            progress: ProgressCallback | None = None,
            name: str | ModelName | None = None) -> Manifest:
    """Pull a Hugging Face GGUF into ``store`` as an Ollama-style model; return its manifest.

    Args:
        store: the model store to fill.
        ref: ``hf.co/<user>/<repo>[:<quant>]`` or ``hf://<user>/<repo>/<file>.gguf[@rev]``.
        revision: a branch, tag or commit to pin (default: the ref's, else ``main``).
        progress: receives Ollama ``/api/pull``-style progress events.
        name: store the model under this name instead of the one derived from ``ref``.
    """
    emit: ProgressCallback = progress or (lambda _e: None)
    emit(ProgressEvent("pulling manifest"))
    src = resolve_hf(ref, revision=revision)
    needed = sum(src.sizes.values())
    if needed:
        store.check_space(needed)
    layers: list[Layer] = []
    info = None
    local: dict[str, Path] = {}
    for f in src.files + ([src.projector] if src.projector else []):
        local[f] = _download(src, f, emit)
    emit(ProgressEvent("verifying sha256 digest"))
    for f, path in local.items():
        blob = store.add_blob_file(path)
        expected = src.sha256.get(f)
        if expected and blob.digest != f"sha256:{expected}":
            # the cached file is bad: drop it (the cache's blob behind the snapshot link too)
            # so the next pull fetches it again, and drop the copy the store just took
            real = path.resolve()
            path.unlink(missing_ok=True)
            real.unlink(missing_ok=True)
            if blob.digest not in store.referenced_digests():
                store.blob_path(blob.digest).unlink(missing_ok=True)
            raise DigestMismatch(f"sha256:{expected}", blob.digest, what=f"hf.co/{src.repo_id}/{f}")
        media = MEDIA_PROJECTOR if f == src.projector else MEDIA_MODEL
        layers.append(Layer(media_type=media, digest=blob.digest, size=blob.size, from_=None))
        if f == src.files[0]:
            info = read_gguf_info(store.blob_path(blob.digest))
    assert info is not None
    choice = choose_template(info.chat_template, eos_token=info.token("eos"),
                             eot_token=info.token("eot"))
    # Only a Go template goes into the template layer (Ollama reads the store too); for a
    # family we do not map, the runtime renders the GGUF's own tokenizer.chat_template.
    if choice is not None and not choice.is_jinja:
        layers.append(text_layer(store, choice.template, MEDIA_TEMPLATE))
    stop = choice.stop if choice else [t for t in (info.token("eos"),) if t]
    if stop:
        layers.append(json_layer(store, {"stop": stop}, MEDIA_PARAMS))
    if src.license:
        layers.append(text_layer(store, src.license, MEDIA_LICENSE))
    config = config_for(info, None, requires=None, layers=layers)
    if src.quant:
        config["file_type"] = src.quant
    # the pinned revision, so a bundle can say exactly which upstream files it carries
    config["llmcrate"] = {"source": f"hf.co/{src.repo_id}", "revision": src.revision,
                          "files": list(local), "template": choice.family if choice else None}
    cblob = store.add_blob_bytes(go_json(config, sort_keys=False, newline=True))
    manifest = Manifest.build(config=Layer(MEDIA_CONFIG, cblob.digest, cblob.size), layers=layers)
    emit(ProgressEvent("writing manifest"))
    target = src.name if name is None else (name if isinstance(name, ModelName) else parse_name(name))
    stored = store.write_manifest(target, manifest.raw)
    emit(ProgressEvent("success"))
    return stored



class HuggingFacePuller:
    """The ``huggingface`` source of :mod:`runtime.transfer.sources` (``hf.co/…`` and ``hf://…``)."""

    def pull(self, store: Store, ref: SourceRef, *, progress: ProgressCallback | None = None,
             options: PullOptions | None = None) -> Manifest:
        assert isinstance(ref.parts, (ModelName, HFFileRef))
        options = options or PullOptions()
        return pull_hf(store, ref.parts, revision=options.revision, progress=progress,
                       name=options.name)


def puller() -> HuggingFacePuller:
    """The ``llmcrate.sources`` entry point: the puller, when huggingface_hub is installed.

    Raises:
        ModuleNotFoundError: without huggingface_hub (the air-gapped target), so
            :func:`runtime.transfer.sources.resolve` says to pull on the online host.
    """
    if importlib.util.find_spec("huggingface_hub") is None:
        raise ModuleNotFoundError("huggingface_hub is not installed", name="huggingface_hub")
    return HuggingFacePuller()
