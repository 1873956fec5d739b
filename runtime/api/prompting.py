"""The seam between the API and :mod:`runtime.prompt`: building prompts, parsing tool calls.

Everything about templates (Go templates, the GGUF's Jinja template, truncation to
``num_ctx``) lives in :mod:`runtime.prompt`; this module hands it what the routers have.
"""
from __future__ import annotations

import json
import logging
import uuid
from typing import Any, Callable, Sequence

from runtime.api.service import gguf_facts
from runtime.models.model import ModelInfo
from runtime.prompt import ToolCallParser, chat_prompt, generate_prompt

logger = logging.getLogger(__name__)

Tokenize = Callable[[str], Sequence[int]]


def _jinja(info: ModelInfo) -> tuple[str | None, str, str]:
    if info.template is not None:
        return None, "", ""
    facts = gguf_facts(info.model_path)
    jinja = info.jinja_template if info.jinja_template is not None else facts.chat_template
    return jinja, facts.bos, facts.eos


def template_in_use(info: ModelInfo) -> tuple[str, bool]:
    """``(text, is_go)``: the model's Go template, else the Jinja it is rendered with (a Jinja
    template layer, else the GGUF's chat_template), else ``("", False)``."""
    if info.template is not None:
        return info.template, True
    return _jinja(info)[0] or "", False


def _log_prompt(kind: str, prompt: str, messages: list[dict[str, Any]] | None = None) -> str:
    # OLLAMA_DEBUG=1: the rendered prompt, as Ollama's "chat request" / "generate request" lines
    if logger.isEnabledFor(logging.DEBUG):
        images = sum(len(m.get("images") or []) for m in messages or [])
        logger.debug("%s request: images=%d prompt=%s", kind, images,
                     json.dumps(prompt, ensure_ascii=False))
    return prompt


def build_chat_prompt(info: ModelInfo, messages: list[dict[str, Any]], *,
                      tools: list[dict[str, Any]] | None, tokenize: Tokenize, num_ctx: int,
                      think: Any = None, image_tokens: int = 0) -> str:
    """Ollama's chat prompt: the model's MESSAGEs, then the request's, SYSTEM prepended,
    oldest turns dropped until it fits ``num_ctx`` (each image counted as ``image_tokens``).
    Images become ``[img-N]`` tags, N indexing :func:`chat_images` of the same messages."""
    jinja, bos, eos = _jinja(info)
    return _log_prompt("chat", chat_prompt(
        template=info.template, jinja_template=jinja,
        messages=[dict(m) for m in info.messages] + messages, tools=tools or None,
        system=info.system, think=think, bos_token=bos, eos_token=eos,
        count_tokens=lambda s: len(tokenize(s)), num_ctx=num_ctx,
        image_tokens=image_tokens), messages)


def chat_images(info: ModelInfo, messages: list[dict[str, Any]]) -> list[str]:
    """Every image (base64) of the conversation :func:`build_chat_prompt` renders, in tag
    order: the model's MESSAGE images, then the request's."""
    return [img for m in [*info.messages, *messages] for img in (m.get("images") or [])]


def build_generate_prompt(info: ModelInfo, *, prompt: str, system: str, suffix: str,
                          template: str, has_context: bool, tokenize: Tokenize, num_ctx: int,
                          think: Any = None, images: Sequence[str] = (),
                          image_tokens: int = 0) -> str:
    """Ollama's /api/generate prompt: the chat flow unless a suffix or a template is given.

    ``images`` (the request's) become user turns ``[img-N]`` before the prompt, as Ollama's
    GenerateHandler writes them; N indexes :func:`generate_images` (the model's MESSAGE images
    come first unless ``has_context``)."""
    jinja, bos, eos = _jinja(info)
    if not suffix and not template:
        msgs: list[dict[str, Any]] = [] if has_context else [dict(m) for m in info.messages]
        msgs += [{"role": "user", "content": "", "images": [img]} for img in images]
        msgs.append({"role": "user", "content": prompt})
        return _log_prompt("generate", chat_prompt(
            template=info.template, jinja_template=jinja, messages=msgs,
            system=system or info.system, think=think, bos_token=bos, eos_token=eos,
            count_tokens=lambda s: len(tokenize(s)), num_ctx=num_ctx,
            image_tokens=image_tokens))
    if images:
        # a suffix or a request template: Values{Prompt, Suffix} have no place for images;
        # put their tags before the prompt (split_image_tags would do the same)
        prompt = "".join(f"[img-{i}]" for i in range(len(images))) + prompt
    return _log_prompt("generate", generate_prompt(
        template=template or info.template, jinja_template=jinja, prompt=prompt,
        system=system or info.system, suffix=suffix, think=think, bos_token=bos, eos_token=eos))


def generate_images(info: ModelInfo, images: Sequence[str], *, has_context: bool,
                    suffix: str = "", template: str = "") -> list[str]:
    """The image list :func:`build_generate_prompt`'s ``[img-N]`` tags index."""
    if suffix or template or has_context:
        return list(images)
    return [img for m in info.messages for img in (m.get("images") or [])] + list(images)


class ToolCalls:
    """Separates tool calls from content as text streams in (Ollama's tools.Parser)."""

    def __init__(self, info: ModelInfo, tools: list[dict[str, Any]]) -> None:
        template = info.template if info.template is not None else _jinja(info)[0]
        self._parser = ToolCallParser(template, tools)

    def add(self, text: str) -> tuple[list[dict[str, Any]], str]:
        content, calls = self._parser.add(text)
        return [with_id(c) for c in calls], content

    def finish(self) -> tuple[list[dict[str, Any]], str]:
        content, calls = self._parser.finish()
        return [with_id(c) for c in calls], content


def with_id(call: Any) -> dict[str, Any]:
    """A tool call as Ollama writes it: ``{"id", "function": {"index", "name", "arguments"}}``."""
    if not isinstance(call, dict):
        call = dict(call)
    fn = dict(call.get("function") or {})
    args = fn.get("arguments")
    if isinstance(args, str):
        try:
            fn["arguments"] = json.loads(args)
        except ValueError:
            pass
    return {"id": call.get("id") or "call_" + uuid.uuid4().hex[:8], "function": fn}
