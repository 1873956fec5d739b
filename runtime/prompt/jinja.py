"""The Jinja fallback: a GGUF's ``tokenizer.chat_template`` rendered like Hugging Face does.

Environment as in transformers' chat templating (and llama.cpp's / llama-cpp-python's
Jinja formatter): ``ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)`` with
the loop-controls extension, a ``tojson`` filter that keeps non-ASCII, and the globals
``raise_exception`` and ``strftime_now``. Render variables: ``messages``, ``tools``,
``add_generation_prompt``, ``bos_token``, ``eos_token`` (plus ``enable_thinking`` /
``reasoning_effort`` when a think value is given, as chat servers pass them).

The template is untrusted (it comes with a downloaded file), so besides the sandbox the render
is bounded: ``range`` is budgeted across the whole render, ``*``/``+``/``~`` results and the
output are size-checked, and a render that runs longer than a deadline is stopped.
"""
from __future__ import annotations

import ctypes
import datetime as _dt
import functools
import json
import threading
from collections.abc import Iterable
from typing import Any

import jinja2
import jinja2.ext
import jinja2.nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

from ..errors import TemplateError

MAX_OUTPUT = 16 * 1024 * 1024        # characters of output and of any intermediate string
MAX_RANGE_TOTAL = 1_000_000           # items produced by range() in one render
DEADLINE_S = 10.0                     # wall-clock limit of one render


class _Budget(threading.local):
    range_left = MAX_RANGE_TOTAL


_budget = _Budget()


class _BoundedEnv(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**", "+"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**":
            if isinstance(right, (int, float)) and abs(right) > 1024:
                raise TemplateError("chat template: exponent too large")
        if operator == "*":
            for a, b in ((left, right), (right, left)):
                if isinstance(a, (str, list, tuple)) and isinstance(b, int) \
                        and len(a) * b > MAX_OUTPUT:
                    raise TemplateError("chat template: sequence repetition too large")
        result = super().call_binop(context, operator, left, right)
        if isinstance(result, (str, list, tuple)) and len(result) > MAX_OUTPUT:
            raise TemplateError("chat template: value exceeds the size limit")
        return result


def _checked_join(orig: Any) -> Any:
    def join(seq: Iterable[Any]) -> Any:
        result = orig(seq)
        if len(result) > MAX_OUTPUT:
            raise TemplateError("chat template: value exceeds the size limit")
        return result
    return join


def _range(*args: int) -> range:
    r = range(*args)
    _budget.range_left -= len(r)
    if _budget.range_left < 0:
        raise TemplateError("chat template: too many loop iterations")
    return r


def _raise_exception(message: str) -> None:
    raise TemplateError(f"chat template: {message}")


def _strftime_now(fmt: str) -> str:
    return _dt.datetime.now().strftime(fmt)


def _tojson(x: Any, ensure_ascii: bool = False, indent: int | None = None,
            separators: tuple[str, str] | None = None, sort_keys: bool = False) -> str:
    # transformers' tojson: keeps unicode, no HTML escaping (templates build prompts, not HTML)
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)


class _GenerationBlock(jinja2.ext.Extension):
    """``{% generation %}…{% endgeneration %}`` (transformers' assistant-mask marker): rendered
    as its plain body, as Hugging Face does when no assistant mask is requested."""

    tags = {"generation"}

    def parse(self, parser: Any) -> Any:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return jinja2.nodes.Scope(body, lineno=lineno)


@functools.lru_cache(maxsize=32)
def compile_jinja(source: str) -> jinja2.Template:
    env = _BoundedEnv(trim_blocks=True, lstrip_blocks=True,
                      extensions=[jinja2.ext.loopcontrols, _GenerationBlock])
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    env.globals["range"] = _range
    try:
        tmpl = env.from_string(source)
    except jinja2.TemplateSyntaxError as e:
        raise TemplateError(f"chat template: {e.message}", pos=f"{e.lineno}:1") from None
    g = tmpl.root_render_func.__globals__
    for name in ("str_join", "markup_join"):
        if name in g:
            g[name] = _checked_join(g[name])
    return tmpl


def jinja_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """/api/chat messages in the shape HF chat templates expect."""
    out = []
    for m in messages:
        msg: dict[str, Any] = {k: v for k, v in m.items() if v is not None}
        calls = m.get("tool_calls")
        if calls:
            fixed = []
            for c in calls:
                if not isinstance(c, dict) or not isinstance(c.get("function") or {}, dict):
                    raise TemplateError(
                        'a tool call must be a JSON object with a "function" object')
                fn = dict(c.get("function") or {})
                if isinstance(fn.get("arguments"), str):
                    try:
                        fn["arguments"] = json.loads(fn["arguments"] or "{}")
                    except ValueError:
                        pass
                call: dict[str, Any] = {"type": c.get("type", "function")}
                if c.get("id"):
                    call["id"] = c["id"]
                call["function"] = fn
                fixed.append(call)
            msg["tool_calls"] = fixed
        if m.get("role") == "tool" and m.get("tool_name") and "name" not in msg:
            msg["name"] = m["tool_name"]
        if m.get("thinking") and "reasoning_content" not in msg:
            msg["reasoning_content"] = m["thinking"]
        out.append(msg)
    return out


def render_jinja(source: str, *, messages: list[dict[str, Any]],
                 tools: list[dict[str, Any]] | None = None, add_generation_prompt: bool = True,
                 bos_token: str = "", eos_token: str = "",
                 think: bool | str | None = None) -> str:
    """Render a Jinja chat template (sandboxed and bounded). Raises TemplateError."""
    tmpl = compile_jinja(source)
    ctx: dict[str, Any] = {
        "messages": jinja_messages(messages), "add_generation_prompt": add_generation_prompt,
        "bos_token": bos_token, "eos_token": eos_token,
    }
    if tools:
        ctx["tools"] = tools
    if think is not None:
        ctx["enable_thinking"] = bool(think) if not isinstance(think, str) else True
        if isinstance(think, str):
            ctx["reasoning_effort"] = think
    return _run_bounded(tmpl, ctx)


def _run_bounded(tmpl: jinja2.Template, ctx: dict[str, Any]) -> str:
    _budget.range_left = MAX_RANGE_TOTAL
    try:
        return _render_with_deadline(tmpl, ctx)
    except _Deadline:
        raise TemplateError(f"chat template: rendering took longer than {DEADLINE_S:g}s") from None
    except TemplateError:
        raise
    except jinja2.exceptions.SecurityError as e:
        raise TemplateError(f"chat template: unsafe operation: {e}") from None
    except jinja2.TemplateError as e:
        raise TemplateError(f"chat template: {e}") from None
    except (TypeError, ValueError, KeyError, IndexError, AttributeError,
            ZeroDivisionError, OverflowError, RecursionError, MemoryError) as e:
        raise TemplateError(f"chat template: {type(e).__name__}: {e}") from None


def _render_with_deadline(tmpl: jinja2.Template, ctx: dict[str, Any]) -> str:
    target = threading.get_ident()
    done = threading.Event()
    lock = threading.Lock()
    finished = [False]

    def watchdog() -> None:
        if not done.wait(DEADLINE_S):
            with lock:
                if finished[0]:
                    return
                # stop the rendering thread at its next bytecode (the compiled template is
                # pure Python); it surfaces in _run_bounded as a TemplateError
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(target),
                                                           ctypes.py_object(_Deadline))

    timer = threading.Thread(target=watchdog, daemon=True)
    timer.start()
    parts: list[str] = []
    size = 0
    try:
        for chunk in tmpl.generate(**ctx):
            size += len(chunk)
            if size > MAX_OUTPUT:
                raise TemplateError(f"chat template: output exceeds {MAX_OUTPUT} characters")
            parts.append(chunk)
    finally:
        with lock:
            finished[0] = True
        done.set()
    return "".join(parts)


class _Deadline(BaseException):
    pass
