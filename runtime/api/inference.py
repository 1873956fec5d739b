"""Chat, generate and embed as the routers run them, independent of the answer's wire format.

Each ``start_*`` does everything that can fail with a clean HTTP status (model lookup, options,
format, loading, prompt building) before returning; what follows is a stream of
:class:`Piece` objects that the Ollama and OpenAI routers serialise their own way.
"""
from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Iterator

from runtime.api.errors import ApiError, status_for
from runtime.api.images import decode_images
from runtime.api.prompting import (
    ToolCalls,
    build_chat_prompt,
    build_generate_prompt,
    chat_images,
    generate_images,
)
from runtime.api.schemas import ChatBody, EmbedBody, GenerateBody
from runtime.api.service import CancelToken, Prepared, Service, check_format
from runtime.api.thinking import ThinkingParser, wants_thinking
from runtime.engine import Chunk
from runtime.errors import LlmcrateError
from runtime.model import ModelInfo


@dataclass
class Piece:
    """Some output: text, tool calls, or (last) the final counters."""

    content: str = ""
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    final: Chunk | None = None
    thinking: str = ""
    logprobs: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Run:
    """A started generation: the prepared engine lease and its stream of pieces."""

    prepared: Prepared
    pieces: AsyncIterator[Piece]
    cancel: CancelToken


@dataclass
class Instant:
    """An answer without generation: a load (``done_reason: load``) or unload request."""

    done_reason: str


def check_capabilities(info: ModelInfo, model: str, *, kind: str, tools: bool = False,
                       suffix: bool = False, think: Any = None, images: bool = False) -> None:
    """Ollama's CheckCapabilities: 400 when the request needs what the model's template lacks
    (the Go template, else the Jinja the model is rendered with)."""
    from runtime.api.prompting import template_in_use
    from runtime.api.thinking import THINK_LEVELS

    text, go = template_in_use(info)
    full = str(info.name)
    from runtime.api.service import gguf_facts

    if gguf_facts(info.model_path).pooling and not go:
        raise ApiError(400, f'"{model}" does not support {kind}')
    if tools and not (".Tools" in text if go else "tools" in text):
        raise ApiError(400, f"{full} does not support tools")
    if suffix and not (".Suffix" in text if go else False):
        raise ApiError(400, f"{full} does not support insert")
    # api.ThinkValue: a boolean or one of the levels; Bool() is true for true and any level
    if isinstance(think, str) and think not in THINK_LEVELS:
        raise ApiError(400, f'invalid think value: "{think}" (must be "high", "medium", "low", '
                            '"max", true, or false)')
    if think is not None and not isinstance(think, (bool, str)):
        raise ApiError(400, 'think must be a boolean or string ("high", "medium", "low", '
                            '"max", true, or false)')
    wants = think is True or isinstance(think, str)
    can = ".Think" in text if go else any(
        k in text for k in ("enable_thinking", "reasoning_effort", "<think>"))
    if wants and not can:
        raise ApiError(400, f'"{model}" does not support thinking')
    if images:
        _check_vision(info)


def _check_vision(info: ModelInfo) -> None:
    if not info.projectors:
        raise ApiError(400, f"{info.name} does not support vision")


def _wrap(err: LlmcrateError) -> ApiError:
    return ApiError(status_for(err), str(err))


async def _lease(svc: Service, info: ModelInfo, options: dict[str, Any], keep_alive: Any,
                 started: int, *, embedding: bool = False) -> Prepared:
    try:
        return await svc.prepare(info, options, keep_alive, started=started, embedding=embedding)
    except LlmcrateError as e:
        raise _wrap(e) from None


async def _on_engine(prepared: Prepared, fn: Any, *args: Any) -> Any:
    """Run a blocking call that asks the leased runner (tokenizing) off the event loop."""
    return await asyncio.to_thread(fn, *args)


async def start_generate(svc: Service, body: GenerateBody, *, started: int) -> Run | Instant:
    info = await svc.model_info(body.model)
    keep_alive = svc.keep_alive(body.keep_alive)
    if not body.prompt and keep_alive == 0:
        svc.scheduler.expire(digest=info.digest)
        return Instant("unload")
    if body.raw and (body.template or body.system or body.context):
        raise ApiError(400, "raw mode does not support template, system, or context")
    if not body.raw:
        check_capabilities(info, body.model, kind="generate", suffix=bool(body.suffix),
                           think=body.think, images=bool(body.images))
    elif body.images:
        _check_vision(info)
    if body.images and body.context:
        raise ApiError(400, "images cannot be combined with context; send the conversation "
                            "to /api/chat instead")
    images = list(body.images or []) if body.raw else generate_images(
        info, body.images or [], has_context=bool(body.context), suffix=body.suffix,
        template=body.template)
    decode_images(images)                     # 400 for a bad image, before a slot is taken
    leased = await _lease_for(svc, info, body, started=started, load_only=not body.prompt)
    if isinstance(leased, Instant):
        return leased
    prepared, fmt = leased
    think = _think(info, body.think, structured=fmt is not None) if not body.raw else None
    with _released_on_error(svc, prepared):
        engine = prepared.lease.engine
        if body.raw:
            text = body.prompt
        else:
            text = await _on_engine(prepared, lambda: build_generate_prompt(
                info, prompt=body.prompt, system=body.system, suffix=body.suffix,
                template=body.template, has_context=bool(body.context),
                tokenize=engine.tokenize, num_ctx=engine.n_ctx, think=think,
                images=body.images or [], image_tokens=engine.info.tokens_per_image))
        prompt: str | list[int] = text
        if body.context:
            tail = await _on_engine(prepared, lambda: engine.tokenize(text, add_bos=False))
            prompt = list(body.context) + list(tail)
        return await _run(svc, prepared, prompt, text=text, fmt=fmt, think=think, tools=None,
                          logprobs=_logprobs(body), images=images)


async def _lease_for(svc: Service, info: ModelInfo, body: GenerateBody | ChatBody, *,
                     started: int, load_only: bool) -> tuple[Prepared, Any] | Instant:
    """Options, format and a runner slot for a generate or chat request; a request with
    nothing to generate only loads the model (Ollama's empty prompt / messages)."""
    try:
        options = svc.options(info, body.options)
    except LlmcrateError as e:
        raise _wrap(e) from None
    fmt = check_format(body.format)
    prepared = await _lease(svc, info, options, body.keep_alive, started)
    if load_only:
        svc.release(prepared)
        return Instant("load")
    return prepared, fmt


@contextlib.contextmanager
def _released_on_error(svc: Service, prepared: Prepared) -> Iterator[None]:
    """Preparing a prompt failed: give the engine back before the error answers the request."""
    try:
        yield
    except LlmcrateError as e:
        svc.release(prepared)
        raise _wrap(e) from None
    except BaseException:
        svc.release(prepared)
        raise


def _logprobs(body: Any) -> tuple[bool, int]:
    top = int(getattr(body, "top_logprobs", 0) or 0)
    if not 0 <= top <= 20:
        raise ApiError(400, "top_logprobs must be between 0 and 20")
    return bool(getattr(body, "logprobs", False)) or top > 0, top


async def _run(svc: Service, prepared: Prepared, prompt: str | list[int], *, text: str,
               fmt: Any, think: Any, tools: ToolCalls | None,
               logprobs: tuple[bool, int] = (False, 0), images: list[str] | None = None) -> Run:
    """Start the generation on the runner (errors here still get a real status) and wrap
    its chunks into pieces. Call inside ``_released_on_error``.

    ``images`` (base64, already checked) are what the prompt's ``[img-N]`` tags index."""
    gen = await svc.start(prepared, prompt, fmt=fmt, logprobs=logprobs[0],
                          top_logprobs=logprobs[1], images=images or None)
    cancel = CancelToken()
    stream = svc.stream(prepared, gen, cancel)
    thinking = ThinkingParser(prompt=text) if think else None
    return Run(prepared=prepared, pieces=_pieces(stream, thinking, tools), cancel=cancel)


def _think(info: ModelInfo, think: Any, *, structured: bool = False) -> Any:
    """The think value for the template: on by default where the template can think, except
    with a ``format`` (the grammar constrains the output from its first token). A level
    ("high", "medium", "low", "max") reaches templates that read it (``.ThinkLevel`` /
    ``reasoning_effort``) as it is, as Ollama passes it."""
    from runtime.api.prompting import template_in_use

    text, go = template_in_use(info)
    if think is None and wants_thinking(text, None):
        return False if structured else True
    if wants_thinking(text, think):
        return think
    reads_level = ".Think" in text if go else ("reasoning_effort" in text
                                               or "enable_thinking" in text)
    if think is not None and think is not False and reads_level:
        return think
    return False if think is not None else None


async def _pieces(stream: AsyncIterator[Chunk], thinking: ThinkingParser | None,
                  tools: ToolCalls | None) -> AsyncIterator[Piece]:
    """Chunks -> pieces: thinking split off first, then tool calls out of the answer."""
    try:
        async for piece in _split(stream, thinking, tools):
            yield piece
    finally:
        await stream.aclose()  # type: ignore[attr-defined]


async def _split(stream: AsyncIterator[Chunk], thinking: ThinkingParser | None,
                 tools: ToolCalls | None) -> AsyncIterator[Piece]:
    async for chunk in stream:
        think_text, content = thinking.add(chunk.text) if thinking else ("", chunk.text)
        if chunk.done and thinking:
            more_think, more = thinking.finish()
            think_text, content = think_text + more_think, content + more
        calls: list[dict[str, Any]] = []
        if tools is not None:
            calls, content = tools.add(content) if content else ([], "")
            if chunk.done:
                more_calls, rest = tools.finish()
                calls, content = calls + more_calls, content + rest
        lps = chunk.logprobs or []
        if chunk.done:
            yield Piece(content=content, thinking=think_text, tool_calls=calls, final=chunk,
                        logprobs=lps)
        elif content or think_text or calls or lps:
            yield Piece(content=content, thinking=think_text, tool_calls=calls, logprobs=lps)


def _message_dicts(body: ChatBody) -> list[dict[str, Any]]:
    out = []
    for m in body.messages:
        d: dict[str, Any] = {"role": m.role, "content": m.content or ""}
        if m.images:
            d["images"] = m.images
        if m.tool_calls:
            d["tool_calls"] = m.tool_calls
        if m.tool_name:
            d["tool_name"] = m.tool_name
        if m.thinking:
            d["thinking"] = m.thinking
        out.append(d)
    return out


async def start_chat(svc: Service, body: ChatBody, *, started: int) -> Run | Instant:
    info = await svc.model_info(body.model)
    keep_alive = svc.keep_alive(body.keep_alive)
    if not body.messages and keep_alive == 0:
        svc.scheduler.expire(digest=info.digest)
        return Instant("unload")
    check_capabilities(info, body.model, kind="chat", tools=bool(body.tools),
                       think=body.think, images=any(m.images for m in body.messages))
    msgs = _message_dicts(body)
    images = chat_images(info, msgs)
    decode_images(images)                     # 400 for a bad image, before a slot is taken
    leased = await _lease_for(svc, info, body, started=started, load_only=not body.messages)
    if isinstance(leased, Instant):
        return leased
    prepared, fmt = leased
    engine = prepared.lease.engine
    with _released_on_error(svc, prepared):
        think = _think(info, body.think, structured=fmt is not None)
        text = await _on_engine(prepared, lambda: build_chat_prompt(
            info, msgs, tools=body.tools, tokenize=engine.tokenize, num_ctx=engine.n_ctx,
            think=think, image_tokens=engine.info.tokens_per_image))
        tools = ToolCalls(info, body.tools) if body.tools else None
        return await _run(svc, prepared, text, text=text, fmt=fmt, think=think, tools=tools,
                          logprobs=_logprobs(body), images=images)


@dataclass
class Embedded:
    vectors: list[list[float]]
    prompt_eval_count: int
    prepared: Prepared | None


def embed_inputs(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value] if value else []
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise ApiError(400, "invalid input type")


async def run_embed(svc: Service, body: EmbedBody, *, started: int, normalize: bool = True
                    ) -> Embedded:
    texts = embed_inputs(body.input)
    info = await svc.model_info(body.model)
    try:
        options = svc.options(info, body.options)
    except LlmcrateError as e:
        raise _wrap(e) from None
    prepared = await _lease(svc, info, options, body.keep_alive, started, embedding=True)
    if not texts:
        svc.release(prepared)
        return Embedded([], 0, prepared)
    engine = prepared.lease.engine
    truncate = body.truncate is None or body.truncate
    work = asyncio.ensure_future(asyncio.to_thread(
        lambda: engine.embed(texts, truncate=truncate, normalize=normalize)))
    # the slot goes back only when the runner has answered, even if the client left
    work.add_done_callback(lambda _: svc.release(prepared))
    try:
        vectors, count = await asyncio.shield(work)
    except LlmcrateError as e:
        raise _wrap(e) from None
    if body.dimensions and 0 < body.dimensions < len(vectors[0]):
        from runtime.engine import normalize as l2

        vectors = [l2(v[: body.dimensions]) for v in vectors]
    return Embedded(vectors, count, prepared)
