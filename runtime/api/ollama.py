"""Ollama's native routes (docs/api.md), answering with the same JSON and NDJSON streams."""
from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Iterator

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from runtime import OLLAMA_API_VERSION
from runtime.api.errors import ApiError, error_line, status_for, to_api_error
from runtime.api.inference import Instant, Piece, Run, run_embed, start
from runtime.api.schemas import (
    ChatBody,
    CopyBody,
    CreateBody,
    EmbedBody,
    EmbeddingsBody,
    GenerateBody,
    NameBody,
    read_body,
)
from runtime.api.service import Service, Slot
from runtime.api.streaming import started, unless_disconnected, watch_disconnect
from runtime.errors import (
    DigestMismatch,
    InsufficientSpace,
    LlmcrateError,
    ModelNotFound,
    StoreError,
)
from runtime.models.names import parse_name
from runtime.models.store import check_digest
from runtime.serve.engine import Chunk

logger = logging.getLogger(__name__)

NDJSON = "application/x-ndjson"


def _line(obj: dict[str, Any]) -> bytes:
    return (json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n").encode()


def now_iso() -> str:
    """Go's time.Now().UTC() as encoding/json writes it (RFC 3339, nanosecond precision)."""
    t = time.time_ns()
    secs, ns = divmod(t, 1_000_000_000)
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))
    frac = f"{ns:09d}".rstrip("0")
    return f"{base}.{frac}Z" if frac else f"{base}Z"


def metrics(chunk: Chunk, slot: Slot) -> dict[str, Any]:
    """The final object's counters, in nanoseconds."""
    return {
        "total_duration": time.perf_counter_ns() - slot.started,
        "load_duration": slot.load_duration,
        "prompt_eval_count": chunk.prompt_eval_count,
        "prompt_eval_duration": chunk.prompt_eval_duration,
        "eval_count": chunk.eval_count,
        "eval_duration": chunk.eval_duration,
    }


def router(svc: Service) -> APIRouter:
    r = APIRouter()

    @r.api_route("/", methods=["GET", "HEAD"])
    async def root() -> Response:
        return Response("Ollama is running", media_type="text/plain; charset=utf-8")

    @r.api_route("/api/version", methods=["GET", "HEAD"])
    async def version() -> dict[str, str]:
        return {"version": OLLAMA_API_VERSION}

    # -- inference ---------------------------------------------------------------------------
    @r.post("/api/generate")
    async def generate(request: Request) -> Response:
        begun = time.perf_counter_ns()
        body = await read_body(request, GenerateBody)
        run = await unless_disconnected(request.receive, start(svc, body, started=begun))
        model = body.model
        if isinstance(run, Instant):
            return JSONResponse({"model": model, "created_at": now_iso(), "response": "",
                                 "done": True, "done_reason": run.done_reason})

        def obj(piece: Piece) -> dict[str, Any]:
            out: dict[str, Any] = {"model": model, "created_at": now_iso(),
                                   "response": piece.content}
            if piece.thinking:
                out["thinking"] = piece.thinking
            if piece.logprobs:
                out["logprobs"] = piece.logprobs
            out["done"] = piece.final is not None
            if piece.final is not None:
                out["done_reason"] = piece.final.done_reason
                if not body.raw:
                    out["context"] = piece.final.context
                out.update(metrics(piece.final, run.prepared.slot))
            return out

        return await _answer(request, run, obj, stream=body.stream is not False,
                             merge=_merge_generate)

    @r.post("/api/chat")
    async def chat(request: Request) -> Response:
        begun = time.perf_counter_ns()
        body = await read_body(request, ChatBody)
        run = await unless_disconnected(request.receive, start(svc, body, started=begun))
        model = body.model
        if isinstance(run, Instant):
            return JSONResponse({"model": model, "created_at": now_iso(),
                                 "message": {"role": "assistant", "content": ""},
                                 "done_reason": run.done_reason, "done": True})

        def obj(piece: Piece) -> dict[str, Any]:
            message: dict[str, Any] = {"role": "assistant", "content": piece.content}
            if piece.thinking:
                message["thinking"] = piece.thinking
            if piece.tool_calls:
                message["tool_calls"] = piece.tool_calls
            out: dict[str, Any] = {"model": model, "created_at": now_iso(), "message": message}
            if piece.logprobs:
                out["logprobs"] = piece.logprobs
            if piece.final is not None:
                out["done_reason"] = piece.final.done_reason
                out["done"] = True
                out.update(metrics(piece.final, run.prepared.slot))
            else:
                out["done"] = False
            return out

        return await _answer(request, run, obj, stream=body.stream is not False, merge=_merge_chat)

    @r.post("/api/embed")
    async def embed(request: Request) -> Response:
        begun = time.perf_counter_ns()
        body = await read_body(request, EmbedBody)
        result = await unless_disconnected(request.receive, run_embed(svc, body, started=begun))
        return JSONResponse({
            "model": body.model, "embeddings": result.vectors,
            "total_duration": time.perf_counter_ns() - begun,
            "load_duration": result.slot.load_duration,
            "prompt_eval_count": result.prompt_eval_count,
        })

    @r.post("/api/embeddings")
    async def embeddings(request: Request) -> Response:
        begun = time.perf_counter_ns()
        body = await read_body(request, EmbeddingsBody)
        result = await run_embed(svc, EmbedBody(model=body.model, input=body.prompt or None,
                                                options=body.options, keep_alive=body.keep_alive),
                                 started=begun, normalize=False)
        return JSONResponse({"embedding": result.vectors[0] if result.vectors else []})

    # -- models ------------------------------------------------------------------------------
    @r.api_route("/api/tags", methods=["GET", "HEAD"])
    async def tags() -> dict[str, Any]:
        from runtime.models.show import list_models_json

        return {"models": await asyncio.to_thread(list_models_json, svc.store)}

    @r.get("/api/ps")
    async def ps() -> dict[str, Any]:
        return {"models": [m.to_json() for m in svc.scheduler.loaded()]}

    @r.post("/api/show")
    async def show(request: Request) -> Response:
        from runtime.models.show import show_model

        body = await read_body(request, NameBody)
        name = _required_name(body.target)
        try:
            out = await asyncio.to_thread(show_model, svc.store, name, verbose=body.verbose)
        except ModelNotFound:
            raise ApiError(404, f'model "{name}" not found') from None
        return JSONResponse(out)

    @r.post("/api/copy")
    async def copy(request: Request) -> Response:
        body = await read_body(request, CopyBody)
        for what, value in (("source", body.source), ("destination", body.destination)):
            try:
                parse_name(value)
            except LlmcrateError:
                raise ApiError(400, f'{what} "{value}" is invalid') from None
        try:
            await asyncio.to_thread(svc.store.copy, body.source, body.destination)
        except ModelNotFound:
            raise ApiError(404, f'model "{body.source}" not found') from None
        return Response(status_code=200)

    @r.delete("/api/delete")
    async def delete(request: Request) -> Response:
        body = await read_body(request, NameBody)
        name = body.target
        if not name:
            raise ApiError(400, "model is required")
        try:
            parse_name(name)
        except LlmcrateError:
            raise ApiError(400, f'name "{name}" is invalid') from None
        try:
            digest = await asyncio.to_thread(_delete_model, svc, name)
        except ModelNotFound:
            raise ApiError(404, f'model "{name}" not found') from None
        if digest is not None:   # no other name points at it: unload it now, as Ollama does
            svc.scheduler.expire(digest=digest)
        return Response(status_code=200)

    @r.head("/api/blobs/{digest}")
    async def head_blob(digest: str) -> Response:
        _digest(digest)
        if not await asyncio.to_thread(svc.store.has_blob, digest):
            return JSONResponse({"error": f'blob "{digest}" not found'}, status_code=404)
        return Response(status_code=200)

    @r.post("/api/blobs/{digest}")
    async def post_blob(digest: str, request: Request) -> Response:
        _digest(digest)
        if await asyncio.to_thread(svc.store.has_blob, digest):
            return Response(status_code=200)
        await _receive_blob(svc, digest, request)
        return Response(status_code=201)

    @r.post("/api/create")
    async def create(request: Request) -> Response:
        body = await read_body(request, CreateBody)
        work = _create_job(svc, body)
        return await _progress_answer(work, stream=body.stream is not False)

    @r.post("/api/pull")
    async def pull(request: Request) -> Response:
        body = await read_body(request, NameBody)
        name = _required_name(body.target)
        work = _pull_job(svc, name, insecure=body.insecure)
        return await _progress_answer(work, stream=body.stream is not False)

    @r.post("/api/push")
    async def push(request: Request) -> Response:
        body = await read_body(request, NameBody)
        name = _required_name(body.target)
        work = _push_job(svc, name, insecure=body.insecure)
        return await _progress_answer(work, stream=body.stream is not False)

    return r


# -- answers -------------------------------------------------------------------------------

def _merge_logprobs(acc: dict[str, Any], obj: dict[str, Any]) -> None:
    logprobs = acc.get("logprobs", []) + obj.get("logprobs", [])
    if logprobs:
        obj["logprobs"] = logprobs


def _merge_generate(acc: dict[str, Any] | None, obj: dict[str, Any]) -> dict[str, Any]:
    if acc is None:
        return obj
    _merge_logprobs(acc, obj)
    obj["response"] = acc["response"] + obj["response"]
    thinking = acc.get("thinking", "") + obj.get("thinking", "")
    if thinking:
        obj["thinking"] = thinking
    return obj


def _merge_chat(acc: dict[str, Any] | None, obj: dict[str, Any]) -> dict[str, Any]:
    if acc is None:
        return obj
    _merge_logprobs(acc, obj)
    calls = acc["message"].get("tool_calls", []) + obj["message"].get("tool_calls", [])
    obj["message"]["content"] = acc["message"]["content"] + obj["message"]["content"]
    thinking = acc["message"].get("thinking", "") + obj["message"].get("thinking", "")
    if thinking:
        obj["message"]["thinking"] = thinking
    if calls:
        obj["message"]["tool_calls"] = calls
    return obj


async def _answer(request: Request, run: Run, obj: Callable[[Piece], dict[str, Any]], *,
                  stream: bool, merge: Callable[[dict[str, Any] | None, dict[str, Any]], dict[str, Any]]
                  ) -> Response:
    if not stream:
        watcher = asyncio.create_task(watch_disconnect(request.receive, run.cancel))
        acc: dict[str, Any] | None = None
        try:
            async for piece in run.pieces:
                acc = merge(acc, obj(piece))
        finally:
            watcher.cancel()
            await run.pieces.aclose()  # type: ignore[attr-defined]
        if run.cancel.is_set() and (acc is None or not acc.get("done")):
            return Response(status_code=499)
        return JSONResponse(acc)
    pieces = await started(run)

    async def body() -> AsyncIterator[bytes]:
        try:
            async for piece in pieces:
                yield _line(obj(piece))
        except Exception as e:  # noqa: BLE001 (the 200 is out: report in the stream, as Ollama does)
            yield error_line(e, store=getattr(request.app.state, "store", None))
        finally:
            await pieces.aclose()  # type: ignore[attr-defined]

    return StreamingResponse(body(), media_type=NDJSON)


def _required_name(name: str) -> str:
    """The request's model name: 400 when it is missing or breaks the naming rules."""
    if not name:
        raise ApiError(400, "model is required")
    try:
        parse_name(name)
    except LlmcrateError as e:
        raise ApiError(400, str(e)) from None
    return name


def _delete_model(svc: Service, name: str) -> str | None:
    """Delete ``name``; the deleted manifest's digest when no remaining name points at it."""
    manifest = svc.store.delete(name)
    if manifest is None:
        return None
    digest = manifest.digest
    if any(e.manifest.digest == digest for e in svc.store.list_models()):
        return None
    return digest


def _digest(digest: str) -> None:
    try:
        check_digest(digest)
    except StoreError as e:
        raise ApiError(400, str(e)) from None


async def _receive_blob(svc: Service, digest: str, request: Request) -> None:
    """Stream an upload into the store (:meth:`Store.add_blob_stream` in a thread, fed from
    the event loop); 400 when the digest differs, 507 when the disk cannot hold it."""
    length = request.headers.get("content-length")
    expected = "sha256:" + check_digest(digest)
    loop = asyncio.get_running_loop()
    body = request.stream().__aiter__()

    async def next_chunk() -> bytes:
        return await body.__anext__()

    def chunks() -> Iterator[bytes]:      # runs in the worker thread
        while True:
            try:
                yield asyncio.run_coroutine_threadsafe(next_chunk(), loop).result()
            except StopAsyncIteration:
                return

    try:
        await asyncio.to_thread(svc.store.add_blob_stream, chunks(), expected=expected,
                                size_hint=int(length) if length and length.isdigit() else None)
    except DigestMismatch as e:
        raise ApiError(400, f'digest mismatch, expected "{e.expected}", got "{e.actual}"') from None
    except InsufficientSpace as e:      # only here: a pull or create out of space answers 500
        raise ApiError(507, str(e)) from None


# -- create / pull: progress streams -------------------------------------------------------

Job = Callable[[Callable[[dict[str, Any]], None]], None]


async def _progress_answer(job: Job, *, stream: bool) -> Response:
    """Run a blocking job that reports progress dicts; NDJSON or one final object."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Any] = asyncio.Queue()
    end = object()

    reported: list[dict[str, Any]] = []

    def report(obj: dict[str, Any]) -> None:
        reported[:] = [obj]
        loop.call_soon_threadsafe(queue.put_nowait, obj)

    def work() -> None:
        try:
            job(report)
            if not reported or reported[0].get("status") != "success":
                report({"status": "success"})
        except BaseException as e:  # noqa: BLE001 - becomes an error line / status
            loop.call_soon_threadsafe(queue.put_nowait, e)
        finally:
            loop.call_soon_threadsafe(queue.put_nowait, end)

    task = asyncio.ensure_future(asyncio.to_thread(work))

    async def items() -> AsyncIterator[Any]:
        while True:
            item = await queue.get()
            if item is end:
                return
            yield item

    if not stream:
        last: dict[str, Any] = {}
        async for item in items():
            if isinstance(item, BaseException):
                await task
                err = to_api_error(item)
                return JSONResponse({"error": err.message}, status_code=err.status)
            last = item
        await task
        return JSONResponse(last)

    gen = items()
    first = await gen.__anext__()
    if isinstance(first, BaseException):
        err = to_api_error(first)
        return JSONResponse({"error": err.message}, status_code=err.status)

    async def body() -> AsyncIterator[bytes]:
        yield _line(first)
        async for item in gen:
            yield error_line(item) if isinstance(item, BaseException) else _line(item)

    return StreamingResponse(body(), media_type=NDJSON)


def _create_job(svc: Service, body: CreateBody) -> Job:
    from runtime.models.create import CreateRequest, create_from_request
    from runtime.options import coerce_options

    name = _required_name(body.model or body.name)
    if body.quantize:
        raise ApiError(400, "quantization is not supported by llmcrate; quantize before bundling")
    if body.modelfile and not body.from_ and not body.files:
        _apply_legacy_modelfile(body, svc)
    if not body.from_ and not body.files:
        raise ApiError(400, "neither 'from' or 'files' was specified")
    try:
        params, _ = coerce_options(body.parameters, strict=True)
    except LlmcrateError as e:
        raise ApiError(400, str(e)) from None
    licenses = body.license
    if isinstance(licenses, str):
        licenses = [licenses]
    req = CreateRequest(from_model=body.from_, files=body.files, adapters=body.adapters,
                        template=body.template, system=body.system, parameters=params,
                        licenses=licenses, messages=body.messages)

    def job(report: Callable[[dict[str, Any]], None]) -> None:
        try:
            create_from_request(svc.store, name, req, progress=lambda e: report(e.as_json()))
        except LlmcrateError as e:
            raise ApiError(status_for(e, request_input=True), str(e)) from None

    return job


def _apply_legacy_modelfile(body: CreateBody, svc: Service) -> None:
    """The pre-0.5 form of /api/create, still sent by older clients and scripts:
    ``{"name": ..., "modelfile": "FROM ...\nSYSTEM ..."}``. FROM names a model, a blob
    (``@sha256:<hex>``, as old clients wrote after uploading) or a blob file of this very store
    (what ``show --modelfile`` prints); ADAPTER lines name blobs the same ways. Fields given
    beside the Modelfile win over it."""
    from runtime.models.modelfile import parse_modelfile

    try:
        mf = parse_modelfile(body.modelfile or "")
    except LlmcrateError as e:
        raise ApiError(400, str(e)) from None
    froms = [f.strip() for f in mf.froms if f.strip()]
    if not froms:
        raise ApiError(400, "Modelfile: no FROM line")
    for src in froms:   # a model's blob, then a projector's (what show --modelfile prints)
        digest = _legacy_blob(svc, src, "FROM")
        if digest:
            body.files = body.files or {}
            body.files["model.gguf" if not body.files else f"{digest[7:19]}.gguf"] = digest
        elif body.from_ and body.from_ != src:
            raise ApiError(400, f"Modelfile: FROM {src}: a Modelfile can build on one model")
        else:
            body.from_ = src
    # ADAPTER lines follow FROM's rules for files; an adapter is never a model name
    adapters: dict[str, str] = {}
    for i, a in enumerate(mf.adapters):
        digest = _legacy_blob(svc, a.strip(), "ADAPTER")
        if not digest:
            raise ApiError(400, f"ADAPTER {a}: name an uploaded blob (@sha256:<hex>, uploaded "
                                "with POST /api/blobs/<digest>)")
        adapters[f"adapter-{i}.gguf"] = digest
    if adapters:
        body.adapters = {**adapters, **(body.adapters or {})}
    body.template = body.template if body.template is not None else mf.template
    body.system = body.system if body.system is not None else mf.system
    body.parameters = {**(mf.parameters or {}), **(body.parameters or {})} or None
    if body.license is None and mf.licenses:
        body.license = list(mf.licenses)
    if body.messages is None and mf.messages:
        body.messages = list(mf.messages)


def _legacy_blob(svc: Service, src: str, what: str) -> str | None:
    """The digest a legacy Modelfile's FROM/ADAPTER value names (``@sha256:<hex>`` or a blob
    file of this store); None for anything else that is not a path; 400 for other paths."""
    blob = src.lstrip("@")
    name = Path(blob).name
    if name.startswith(("sha256-", "sha256:")) and len(name) == 71 and (
            "/" not in blob or Path(blob).parent.resolve() == svc.store.blobs_dir.resolve()):
        return "sha256:" + name[7:]
    if src.startswith(("/", "./", "../", "~")) or src.lower().endswith(".gguf"):
        raise ApiError(400, f"{what} {src}: the server does not read files by path; upload the "
                            "file with POST /api/blobs/<digest> and name it in 'files'")
    return None


def _pull_job(svc: Service, name: str, *, insecure: bool) -> Job:
    from runtime.transfer.registry import pull_model

    def job(report: Callable[[dict[str, Any]], None]) -> None:
        pull_model(svc.store, name, insecure=insecure, progress=lambda e: report(e.as_json()))

    return job



def _push_job(svc: Service, name: str, *, insecure: bool) -> Job:
    from runtime.transfer.push import push_model

    def job(report: Callable[[dict[str, Any]], None]) -> None:
        push_model(svc.store, name, insecure=insecure, progress=lambda e: report(e.as_json()))

    return job
