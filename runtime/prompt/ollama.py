"""Prompt building the way Ollama does it (server/prompt.go, server/routes.go, template/).

- ``chat_prompt``: the Modelfile SYSTEM is prepended unless the request starts with a system
  message; messages are dropped from the front until the prompt fits ``num_ctx`` (system
  messages always kept, the last message always kept, a tool result never separated from the
  assistant turn that called it); images become ``[img-N]`` tags in the content.
- Template execution (template.Execute): consecutive messages of one role are merged
  ("\\n\\n"), system messages are joined into ``.System``; a template that mentions
  ``.Messages`` gets ``.Messages``/``.Tools``, any other is rendered turn by turn with
  ``.System/.Prompt/.Response`` (the legacy path), the last turn cut right after
  ``{{ .Response }}``. A template that mentions neither ``.Messages`` nor ``.Response`` gets
  ``{{ .Response }}`` appended when parsed, as Ollama does.
- No template at all: Ollama's default template ``{{ .Prompt }}``, i.e. the turns'
  user and assistant texts concatenated, system text dropped.
- A GGUF Jinja template (when there is no Go template) is rendered by :mod:`.jinja`.
"""
from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from runtime.errors import TemplateError
from runtime.prompt import nodes as N
from runtime.prompt.gotemplate import GoTemplate
from runtime.prompt.jinja import render_jinja
from runtime.prompt.values import (
    message_from_api,
    to_template_message,
    to_template_tools,
)

logger = logging.getLogger(__name__)

DEFAULT_TEMPLATE = "{{ .Prompt }}"

_RESPONSE_ACTION = N.Action(
    N.Pipeline([], False, [N.Command([N.FieldRef(("Response",), 0)], 0)], 0), 0)


@dataclass(frozen=True)
class _Prepared:
    tmpl: GoTemplate
    uses_messages: bool
    last_turn: GoTemplate      # the legacy path's last turn: cut after {{ .Response }}


@functools.lru_cache(maxsize=64)
def prepare(text: str) -> _Prepared:
    """Parse an Ollama template once (cached by text), appending ``{{ .Response }}`` when the
    template names neither ``.Messages`` nor ``.Response`` (template.Parse)."""
    tmpl = GoTemplate.parse(text, name="template")
    vs = tmpl.vars()
    if "messages" not in vs and "response" not in vs:
        tmpl = GoTemplate(tmpl.source, N.Tree(tmpl.root.name, [*tmpl.root.body, _RESPONSE_ACTION]),
                          tmpl.defines)
    last_turn = GoTemplate(tmpl.source, N.Tree(tmpl.root.name, cut_after_response(tmpl.root.body)),
                           tmpl.defines)
    return _Prepared(tmpl, "messages" in vs, last_turn)


def _think_values(think: bool | str | None) -> dict[str, Any]:
    # api.ThinkValue: Bool() is true for true and for "high"/"medium"/"low";
    # String() is the level, "medium" for plain true, "" for false.
    if think is None:
        return {"Think": False, "ThinkLevel": "", "IsThinkSet": False}
    if isinstance(think, str):
        return {"Think": think in ("high", "medium", "low", "max"), "ThinkLevel": think,
                "IsThinkSet": True}
    return {"Think": bool(think), "ThinkLevel": "medium" if think else "", "IsThinkSet": True}


def _collate(messages: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    system: list[str] = []
    out: list[dict[str, Any]] = []
    for m in messages:
        if m["role"] == "system":
            system.append(m["content"])
        if out and out[-1]["role"] == m["role"] and m["role"] != "tool":
            out[-1] = {**out[-1], "content": out[-1]["content"] + "\n\n" + m["content"]}
        else:
            out.append(m)
    return "\n\n".join(system), out


def execute_ollama(text: str, *, messages: list[dict[str, Any]],
                   tools: list[dict[str, Any]] | None = None, prompt: str = "",
                   suffix: str = "", think: bool | str | None = None) -> str:
    """Ollama's ``Template.Execute(w, Values{...})`` for a Go template text."""
    prep = prepare(text)
    tmpl = prep.tmpl
    thinkv = _think_values(think)
    system, collated = _collate(messages)
    if prompt and suffix:
        return tmpl.execute({"Prompt": prompt, "Suffix": suffix, "Response": "", **thinkv})
    if prep.uses_messages:
        return tmpl.execute({
            "System": system,
            "Messages": [to_template_message(m) for m in collated],
            "Tools": to_template_tools(tools),
            "Response": "",
            **thinkv,
        })
    return _execute_legacy(prep, collated, thinkv)


def _execute_legacy(prep: _Prepared, messages: list[dict[str, Any]],
                    thinkv: dict[str, Any]) -> str:
    tmpl = prep.tmpl
    out: list[str] = []
    turn = {"System": "", "Prompt": "", "Response": ""}

    def flush() -> None:
        out.append(tmpl.execute({**turn, **thinkv}))
        turn.update(System="", Prompt="", Response="")

    for m in messages:
        role = m["role"]
        if role == "system":
            if turn["Prompt"] or turn["Response"]:
                flush()
            turn["System"] = m["content"]
        elif role == "user":
            if turn["Response"]:
                flush()
            turn["Prompt"] = m["content"]
        elif role == "assistant":
            turn["Response"] = m["content"]
    out.append(prep.last_turn.execute({**turn, **thinkv}))
    return "".join(out)


def cut_after_response(body: list[N.Node]) -> list[N.Node]:
    """Ollama's deleteNode: keep everything up to and including the first ``.Response`` field
    (in walk order through action pipelines and branch bodies), drop everything after it."""
    cut = False

    def walk_list(nodes: list[N.Node]) -> list[N.Node]:
        out = []
        for n in nodes:
            r = walk(n)
            if r is not None:
                out.append(r)
        return out

    def walk(n: N.Node) -> N.Node | None:
        if cut:
            return None
        if isinstance(n, (N.If, N.With, N.Range)):
            body = walk_list(n.body)
            # Go walks the else list after the body; once cut, it is emptied
            else_body = walk_list(n.else_body) if n.else_body is not None and not cut else (
                [] if n.else_body is not None else None)
            return type(n)(n.pipe, body, else_body, n.pos)
        if isinstance(n, N.Action):
            pipe = walk_pipe(n.pipe)
            return None if pipe is None else N.Action(pipe, n.pos)
        return n

    def walk_pipe(p: N.Pipeline) -> N.Pipeline | None:
        cmds = []
        for c in p.cmds:
            args = []
            for a in c.args:
                r = walk_arg(a)
                if r is not None:
                    args.append(r)
            if not args:
                return None
            cmds.append(N.Command(args, c.pos))
        return N.Pipeline(p.decl, p.is_assign, cmds, p.pos) if cmds else None

    def walk_arg(a: N.Operand) -> N.Operand | None:
        nonlocal cut
        if cut:
            return None
        if isinstance(a, N.FieldRef) and "Response" in a.idents:
            cut = True
            return a
        if isinstance(a, N.Pipeline):
            return walk_pipe(a)
        return a

    return walk_list(body)


def filter_think_tags(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Drop ``<think>…</think>`` from assistant turns before the last user message, as
    Ollama's ChatHandler does for thinking model families (qwen3, deepseek-r1): earlier
    reasoning is not fed back. The caller decides whether the model is such a family."""
    last_user = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=-1)
    out = []
    for i, m in enumerate(messages):
        if m.get("role") == "assistant" and i < last_user and isinstance(m.get("content"), str):
            m = {**m, "content": _strip_think(m["content"])}
        out.append(m)
    return out


def _strip_think(content: str) -> str:
    # thinking.Parser: an opening tag after optional leading white space starts the thinking;
    # what follows the closing tag (leading white space trimmed) is the content
    body = content.lstrip()
    if not body.startswith("<think>"):
        return content
    end = body.find("</think>")
    if end < 0:
        return ""
    return body[end + len("</think>"):].lstrip()


# -- the public entry points ---------------------------------------------------------------
def _normalise(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if not isinstance(messages, list):
        raise TemplateError("messages must be a list")
    return [message_from_api(m) for m in messages]


def _tool_block_start(msgs: list[dict[str, Any]], idx: int) -> int:
    """Never start the kept window on a tool result whose assistant call was dropped."""
    if idx <= 0 or idx >= len(msgs) or msgs[idx]["role"] != "tool":
        return idx
    start = idx
    while start > 0 and msgs[start - 1]["role"] == "tool":
        start -= 1
    a = start - 1
    if a >= 0 and msgs[a]["role"] == "assistant" and msgs[a].get("tool_calls"):
        return a
    return idx


def _with_image_tags(msgs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Ollama's chatPrompt: each image gets a tag ``[img-N]`` where its message says ``[img]``,
    else before the message's text. N counts the images of the whole conversation (not only
    of the messages kept after truncation, as Ollama numbers them), so a runner can map tag N
    to the N-th image of all the messages it was given (:func:`runtime.serve.vision.split_image_tags`)."""
    out = []
    image_id = 0
    for m in msgs:
        images = m.get("images") or []
        if not images:
            out.append(m)
            continue
        prefix = ""
        content = m["content"]
        for _ in images:
            tag = f"[img-{image_id}]"
            image_id += 1
            if "[img]" in content:
                content = content.replace("[img]", tag, 1)
            else:
                prefix += tag
        out.append({**m, "content": prefix + content})
    return out


def _n_images(msgs: list[dict[str, Any]]) -> int:
    return sum(len(m.get("images") or []) for m in msgs)


def chat_prompt(*, template: str | None, jinja_template: str | None,
                messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None,
                system: str | None = None, think: bool | str | None = None,
                bos_token: str = "", eos_token: str = "",
                count_tokens: Callable[[str], int] | None = None,
                num_ctx: int | None = None, image_tokens: int = 0) -> str:
    """The prompt Ollama's /api/chat would feed the model.

    Args:
        template: the model's Go template (Modelfile TEMPLATE); preferred when given.
        jinja_template: the GGUF ``tokenizer.chat_template``, used when ``template`` is None.
            With neither, Ollama's default ``{{ .Prompt }}`` is used.
        messages: /api/chat ``messages`` (role, content, images, tool_calls, tool_name, thinking).
        tools: /api/chat ``tools``.
        system: the Modelfile SYSTEM, prepended unless the first message is a system message.
        think: the request's ``think`` (true/false or "high"/"medium"/"low"); None if unset.
        bos_token, eos_token: handed to Jinja templates.
        count_tokens, num_ctx: when both are given, the oldest messages are dropped until the
            prompt's token count fits in ``num_ctx`` (system messages and the last message stay).
        image_tokens: what one image costs in that count (the projector's tokens per image;
            Ollama counts 768); 0 counts only the ``[img-N]`` tags' text.

    Raises:
        TemplateError: bad template, bad message shape, or a render limit exceeded.
    """
    msgs = _normalise(messages)
    if system and (not msgs or msgs[0]["role"] != "system"):
        msgs = [{"role": "system", "content": system}, *msgs]

    if template is not None:
        def render(ms: list[dict[str, Any]]) -> str:
            return execute_ollama(template, messages=ms, tools=tools, think=think)
    elif jinja_template is not None:
        def render(ms: list[dict[str, Any]]) -> str:
            return render_jinja(jinja_template, messages=ms, tools=tools,
                                add_generation_prompt=True, bos_token=bos_token,
                                eos_token=eos_token, think=think)
    else:
        def render(ms: list[dict[str, Any]]) -> str:
            return execute_ollama(DEFAULT_TEMPLATE, messages=ms, tools=tools, think=think)

    tagged = _with_image_tags(msgs)
    if count_tokens is None or num_ctx is None or not msgs:
        return render(tagged)
    last = len(msgs) - 1
    prompt = ""
    for i in range(last + 1):
        start = _tool_block_start(msgs, i)
        kept = [m for m in tagged[:start] if m["role"] == "system"] + tagged[start:]
        prompt = render(kept)
        if count_tokens(prompt) + image_tokens * _n_images(kept) <= num_ctx or i == last:
            if start > 0:
                logger.debug("truncating input messages which exceed context length: "
                             "kept %d of %d", len(msgs) - start, len(msgs))
            break
    return prompt


def generate_prompt(*, template: str | None, jinja_template: str | None, prompt: str,
                    system: str | None = None, suffix: str | None = None,
                    think: bool | str | None = None, bos_token: str = "",
                    eos_token: str = "") -> str:
    """The prompt Ollama's /api/generate (not raw) would feed the model.

    Args:
        template: the model's Go template; ``jinja_template`` is used when it is None.
        prompt: the request's prompt.
        system: the request's system, or else the Modelfile SYSTEM (the caller picks).
        suffix: fill-in-the-middle suffix; with a Go template, ``.Prompt``/``.Suffix`` are set
            instead of messages (as Ollama does). Jinja templates cannot take a suffix.

    Raises:
        TemplateError: as for :func:`chat_prompt`, or a suffix with a Jinja template.
    """
    if not isinstance(prompt, str):
        raise TemplateError("prompt must be a string")
    if template is None and jinja_template is not None:
        if suffix:
            raise TemplateError("this model's chat template does not support a suffix (insert)")
        msgs: list[dict[str, Any]] = []
        if system:
            msgs.append({"role": "system", "content": system})
        msgs.append({"role": "user", "content": prompt})
        return render_jinja(jinja_template, messages=msgs, add_generation_prompt=True,
                            bos_token=bos_token, eos_token=eos_token, think=think)
    text = template if template is not None else DEFAULT_TEMPLATE
    if suffix:
        # Values{Prompt, Suffix}: no messages at all
        return execute_ollama(text, messages=[], prompt=prompt, suffix=suffix, think=think)
    msgs = []
    if system:
        msgs.append({"role": "system", "content": system})
    msgs.append({"role": "user", "content": prompt})
    return execute_ollama(text, messages=msgs, think=think)
