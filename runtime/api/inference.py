"""Chat, generate and embed as the routers run them, independent of the answer's wire format.

One call, :func:`prepare`, takes a generate or chat body to a :class:`PreparedRequest`, in the
order the data flows: the name -> the model's info -> what the model must be able to do ->
options (defaults < Modelfile < request) -> load options -> a runner slot -> the prompt
rendered for that runner. Everything that can fail with a clean status fails there, as a
:mod:`runtime.errors` error (:func:`runtime.api.errors.status_for` gives the status).
:func:`launch` hands a prepared request to its runner; what follows is a stream of
:class:`Piece` objects that the Ollama and OpenAI routers serialise their own way.
:func:`start` is both; :func:`run_embed` is the same for embeddings.
"""
from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Iterator

from runtime.api.images import decode_images
from runtime.api.prompting import (
    ToolCalls,
    build_chat_prompt,
    build_generate_prompt,
    chat_images,
    generate_images,
    template_in_use,
)
from runtime.api.schemas import ChatBody, EmbedBody, GenerateBody
from runtime.api.service import CancelToken, Service, Slot, check_format, gguf_facts
from runtime.api.thinking import THINK_LEVELS, ThinkingParser, wants_thinking
from runtime.errors import InvalidRequest, UnsupportedCapability
from runtime.models.model import ModelInfo
from runtime.serve.engine import Chunk


@dataclass
class Piece:
    """Some output: text, tool calls, or (last) the final counters."""

    content: str = ""
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    final: Chunk | None = None
    thinking: str = ""
    logprobs: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class PreparedRequest:
    """A generate or chat request, checked and ready to run on the runner slot it holds.

    Whoever holds one holds the slot: :func:`launch` hands it to the generation, which gives
    it back when it ends.
    """

    slot: Slot
    prompt: str | list[int]          # the rendered prompt; token ids for a generate ``context``
    text: str                        # the rendered prompt's text (the thinking parser reads it)
    images: list[str]                # base64, checked; the prompt's ``[img-N]`` tags index them
    fmt: Any                         # "json", a JSON schema, or None
    think: Any                       # the template's think value; truthy: split thinking off
    tools: list[dict[str, Any]] | None
    logprobs: bool = False
    top_logprobs: int = 0

    @property
    def info(self) -> ModelInfo:
        return self.slot.info


@dataclass
class Run:
    """A started generation: the prepared request and its stream of pieces."""

    prepared: PreparedRequest
    pieces: AsyncIterator[Piece]
    cancel: CancelToken


@dataclass
class Instant:
    """An answer without generation: a load (``done_reason: load``) or unload request."""

    done_reason: str


def check_capabilities(info: ModelInfo, model: str, *, kind: str, tools: bool = False,
                       suffix: bool = False, think: Any = None, images: bool = False) -> None:
    """Ollama's CheckCapabilities: UnsupportedCapability when the request needs what the
    model's template lacks (the Go template, else the Jinja the model is rendered with)."""
    text, go = template_in_use(info)
    full = str(info.name)
    if gguf_facts(info.model_path).pooling and not go:
        raise UnsupportedCapability(model, kind, quoted=True)
    if tools and not (".Tools" in text if go else "tools" in text):
        raise UnsupportedCapability(full, "tools")
    if suffix and not (".Suffix" in text if go else False):
        raise UnsupportedCapability(full, "insert")
    # api.ThinkValue: a boolean or one of the levels; Bool() is true for true and any level
    if isinstance(think, str) and think not in THINK_LEVELS:
        raise InvalidRequest(f'invalid think value: "{think}" (must be "high", "medium", "low", '
                             '"max", true, or false)', field="think")
    if think is not None and not isinstance(think, (bool, str)):
        raise InvalidRequest('think must be a boolean or string ("high", "medium", "low", '
                             '"max", true, or false)', field="think")
    wants = think is True or isinstance(think, str)
    can = ".Think" in text if go else any(
        k in text for k in ("enable_thinking", "reasoning_effort", "<think>"))
    if wants and not can:
        raise UnsupportedCapability(model, "thinking", quoted=True)
    if images:
        _check_vision(info)


def _check_vision(info: ModelInfo) -> None:
    if not info.projectors:
        raise UnsupportedCapability(str(info.name), "vision")


async def prepare(svc: Service, body: GenerateBody | ChatBody, *, started: int
                  ) -> PreparedRequest | Instant:
    """Take a generate or chat request from its body to a prompt ready to run on a leased
    runner slot. A request with nothing to generate only loads the model (Ollama's empty
    prompt / messages), or unloads it with ``keep_alive: 0``.

    Args:
        svc: the server's service (store, settings, scheduler).
        body: the request; a :class:`ChatBody` is a chat, a :class:`GenerateBody` a generate.
        started: ``perf_counter_ns()`` when the request arrived (for the answer's durations).

    Raises:
        LlmcrateError: InvalidRequest, InvalidName, ModelNotFound, UnsupportedCapability,
            OptionError, or what loading the model or rendering the prompt raises; any slot
            taken is given back first.
    """
    info = await svc.model_info(body.model)
    keep_alive = svc.keep_alive(body.keep_alive)
    nothing = not body.messages if isinstance(body, ChatBody) else not body.prompt
    if nothing and keep_alive == 0:
        svc.scheduler.expire(digest=info.digest)
        return Instant("unload")
    messages: list[dict[str, Any]] = []
    if isinstance(body, ChatBody):
        messages = _message_dicts(body)
        images = _chat_checks(info, body, messages)
    else:
        images = _generate_checks(info, body)
    decode_images(images)                     # 400 for a bad image, before a slot is taken
    options = svc.options(info, body.options)
    fmt = check_format(body.format)
    slot = await svc.acquire(info, options, keep_alive, started=started)
    if nothing:
        svc.release(slot)
        return Instant("load")
    with _released_on_error(svc, slot):
        tools: list[dict[str, Any]] | None = None
        if isinstance(body, ChatBody):
            think = _think(info, body.think, structured=fmt is not None)
            engine = slot.lease.engine
            text = await asyncio.to_thread(lambda: build_chat_prompt(
                info, messages, tools=body.tools, tokenize=engine.tokenize,
                num_ctx=engine.n_ctx, think=think, image_tokens=engine.info.tokens_per_image))
            prompt: str | list[int] = text
            tools = body.tools
        else:
            think = None if body.raw else _think(info, body.think, structured=fmt is not None)
            text, prompt = await _generate_prompt(slot, body, think)
        logprobs, top = _logprobs(body)
    return PreparedRequest(slot=slot, prompt=prompt, text=text, images=images, fmt=fmt,
                           think=think, tools=tools, logprobs=logprobs, top_logprobs=top)


def _generate_checks(info: ModelInfo, body: GenerateBody) -> list[str]:
    """What /api/generate refuses before a slot is taken; the images the prompt will index."""
    if body.raw and (body.template or body.system or body.context):
        raise InvalidRequest("raw mode does not support template, system, or context")
    if not body.raw:
        check_capabilities(info, body.model, kind="generate", suffix=bool(body.suffix),
                           think=body.think, images=bool(body.images))
    elif body.images:
        _check_vision(info)
    if body.images and body.context:
        raise InvalidRequest("images cannot be combined with context; send the conversation "
                             "to /api/chat instead", field="images")
    if body.raw:
        return list(body.images or [])
    return generate_images(info, body.images or [], has_context=bool(body.context),
                           suffix=body.suffix, template=body.template)


def _chat_checks(info: ModelInfo, body: ChatBody, messages: list[dict[str, Any]]) -> list[str]:
    """What /api/chat refuses before a slot is taken; the images the prompt will index."""
    check_capabilities(info, body.model, kind="chat", tools=bool(body.tools),
                       think=body.think, images=any(m.images for m in body.messages))
    return chat_images(info, messages)


async def _generate_prompt(slot: Slot, body: GenerateBody, think: Any
                           ) -> tuple[str, str | list[int]]:
    """(text, prompt) of a generate request: the prompt as it is in raw mode, else rendered;
    with a ``context``, its token ids followed by the text's."""
    engine = slot.lease.engine
    info = slot.info
    if body.raw:
        text = body.prompt
    else:
        text = await asyncio.to_thread(lambda: build_generate_prompt(
            info, prompt=body.prompt, system=body.system, suffix=body.suffix,
            template=body.template, has_context=bool(body.context),
            tokenize=engine.tokenize, num_ctx=engine.n_ctx, think=think,
            images=body.images or [], image_tokens=engine.info.tokens_per_image))
    if not body.context:
        return text, text
    tail = await asyncio.to_thread(lambda: engine.tokenize(text, add_bos=False))
    return text, list(body.context) + list(tail)


async def launch(svc: Service, prepared: PreparedRequest) -> Run:
    """Start the generation on the runner (errors here still get a real status: the runner
    has accepted the prompt, sampler and ``format`` grammar when this returns) and wrap its
    chunks into pieces."""
    slot = prepared.slot
    with _released_on_error(svc, slot):
        tools = ToolCalls(slot.info, prepared.tools) if prepared.tools else None
        gen = await svc.generate(slot, prepared.prompt, fmt=prepared.fmt,
                                 logprobs=prepared.logprobs,
                                 top_logprobs=prepared.top_logprobs,
                                 images=prepared.images or None)
    cancel = CancelToken()
    stream = svc.stream(slot, gen, cancel)
    thinking = ThinkingParser(prompt=prepared.text) if prepared.think else None
    return Run(prepared=prepared, pieces=_pieces(stream, thinking, tools), cancel=cancel)


async def start(svc: Service, body: GenerateBody | ChatBody, *, started: int) -> Run | Instant:
    """:func:`prepare` then :func:`launch`: what a generate or chat route awaits."""
    prepared = await prepare(svc, body, started=started)
    if isinstance(prepared, Instant):
        return prepared
    return await launch(svc, prepared)


@contextlib.contextmanager
def _released_on_error(svc: Service, slot: Slot) -> Iterator[None]:
    """Preparing or starting failed: give the slot back before the error answers."""
    try:
        yield
    except BaseException:
        svc.release(slot)
        raise


def _logprobs(body: GenerateBody | ChatBody) -> tuple[bool, int]:
    top = int(body.top_logprobs or 0)
    if not 0 <= top <= 20:
        raise InvalidRequest("top_logprobs must be between 0 and 20", field="top_logprobs")
    return bool(body.logprobs) or top > 0, top


def _think(info: ModelInfo, think: Any, *, structured: bool = False) -> Any:
    """The think value for the template: on by default where the template can think, except
    with a ``format`` (the grammar constrains the output from its first token). A level
    ("high", "medium", "low", "max") reaches templates that read it (``.ThinkLevel`` /
    ``reasoning_effort``) as it is, as Ollama passes it."""
    text, go = template_in_use(info)
    if think is None and wants_thinking(text, None):
        return not structured
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


@dataclass
class Embedded:
    vectors: list[list[float]]
    prompt_eval_count: int
    slot: Slot


def embed_inputs(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value] if value else []
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise InvalidRequest("invalid input type", field="input")


async def run_embed(svc: Service, body: EmbedBody, *, started: int, normalize: bool = True
                    ) -> Embedded:
    """Embed the request's inputs (none: only load the model)."""
    texts = embed_inputs(body.input)
    info = await svc.model_info(body.model)
    options = svc.options(info, body.options)
    slot = await svc.acquire(info, options, svc.keep_alive(body.keep_alive), started=started,
                             embedding=True)
    if not texts:
        svc.release(slot)
        return Embedded([], 0, slot)
    engine = slot.lease.engine
    truncate = body.truncate is None or body.truncate
    work = asyncio.ensure_future(asyncio.to_thread(
        lambda: engine.embed(texts, truncate=truncate, normalize=normalize)))
    # the slot goes back only when the runner has answered, even if the client left
    work.add_done_callback(lambda _: svc.release(slot))
    vectors, count = await asyncio.shield(work)
    if body.dimensions and 0 < body.dimensions < len(vectors[0]):
        from runtime.serve.engine import normalize as l2

        vectors = [l2(v[: body.dimensions]) for v in vectors]
    return Embedded(vectors, count, slot)
