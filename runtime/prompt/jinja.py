"""The Jinja fallback: a GGUF's ``tokenizer.chat_template`` rendered like Hugging Face does.

Environment as in transformers' chat templating (and llama.cpp's / llama-cpp-python's
Jinja formatter): ``ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)`` with
the loop-controls extension, a ``tojson`` filter that keeps non-ASCII, and the globals
``raise_exception`` and ``strftime_now``. Render variables: ``messages``, ``tools``,
``add_generation_prompt``, ``bos_token``, ``eos_token`` (plus ``enable_thinking`` /
``reasoning_effort`` when a think value is given, as chat servers pass them).

The template is untrusted (it comes with a downloaded file), so besides the sandbox both its
compilation and its render are bounded. They run in a child process (:mod:`.jinja_worker`)
whose address space is capped and which is killed when it passes the deadline: no template can
hold the server's memory or an engine thread. Inside, clear errors come first: ``range`` is
budgeted across the whole render; ``*``/``+``/``%`` results, every filter's and method call's
result and the output are size-checked; ``%``/``format`` widths and integer arguments beyond
the size limit are refused before anything is built; and no filter is run at compile time
(Jinja's optimizer folds constant filter calls such as ``'%999999999s'|format('x')`` while
compiling: every filter is marked context-dependent, which Jinja never folds).
"""
from __future__ import annotations

import datetime as _dt
import functools
import json
import re
import string
import threading
from collections.abc import Iterable
from typing import Any

import jinja2
import jinja2.ext
import jinja2.nodes
from jinja2.filters import do_format as _jinja_format
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import _PassArg

from runtime.errors import TemplateError

MAX_OUTPUT = 16 * 1024 * 1024        # characters of output and of any intermediate string
MAX_RANGE_TOTAL = 1_000_000           # items produced by range() in one render
DEADLINE_S = 10.0                     # wall-clock limit of one compile + render


class _Budget(threading.local):
    range_left = MAX_RANGE_TOTAL


_budget = _Budget()

# printf conversions (width and precision) and the numbers in str.format specs
_PRINTF_SPEC = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\d*)(?:\.(\d*))?")
_NUMBER = re.compile(r"\d+")


def _too_large(what: str) -> TemplateError:
    return TemplateError(f"chat template: {what} exceeds the size limit ({MAX_OUTPUT})")


def _check_printf(fmt: str) -> None:
    for m in _PRINTF_SPEC.finditer(fmt):
        for num in m.groups():
            if num and int(num) > MAX_OUTPUT:
                raise _too_large(f"format width {num}")


def _check_str_format(fmt: str) -> None:
    try:
        fields = list(string.Formatter().parse(fmt))
    except ValueError:
        return                      # str.format raises its own error for it
    for _, _, spec, _ in fields:
        for num in _NUMBER.findall(spec or ""):
            if int(num) > MAX_OUTPUT:
                raise _too_large(f"format width {num}")


#: filters whose integer arguments size their result (width, count, indent)
_SIZING_FILTERS = frozenset({"center", "indent", "wordwrap", "truncate", "batch", "slice",
                             "tojson", "pprint"})


#: str methods whose integer arguments size their result
_SIZING_METHODS = frozenset({"center", "ljust", "rjust", "zfill", "expandtabs"})


def _check_args(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Integers beyond the size limit (``center(10**9)``, ``indent(10**9)``) build huge strings.
    Only for calls whose integers size their result: a timestamp passed to ``default`` is fine."""
    for a in (*args, *kwargs.values()):
        if isinstance(a, int) and not isinstance(a, bool) and abs(a) > MAX_OUTPUT:
            raise _too_large(f"argument {a}")


def _check_result(result: Any) -> Any:
    if isinstance(result, (str, list, tuple)) and len(result) > MAX_OUTPUT:
        raise _too_large("value")
    return result


class _BoundedEnv(ImmutableSandboxedEnvironment):
    # intercepted binops are also never folded at compile time (jinja2.nodes.BinExpr.as_const)
    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(right, (int, float)) and abs(right) > 1024:
            raise TemplateError("chat template: exponent too large")
        if operator == "*":
            for a, b in ((left, right), (right, left)):
                if isinstance(a, (str, list, tuple)) and isinstance(b, int) \
                        and len(a) * b > MAX_OUTPUT:
                    raise TemplateError("chat template: sequence repetition too large")
        if operator == "%" and isinstance(left, str):
            _check_printf(left)
        return _check_result(super().call_binop(context, operator, left, right))

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        # methods the sandbox allows can still build huge strings: 'x'.center(10**9),
        # '{:999999999}'.format(x), ...
        if isinstance(getattr(__obj, "__self__", None), str):
            method = getattr(__obj, "__name__", None)
            if method in ("format", "format_map"):
                _check_str_format(__obj.__self__)
            elif method in _SIZING_METHODS:              # 'x'.center(n), 'x'.zfill(n), ...
                _check_args(args, kwargs)
        return _check_result(super().call(__context, __obj, *args, **kwargs))


def _guarded_filter(name: str, func: Any) -> Any:
    """``func`` behind the size checks, marked ``pass_context`` so that Jinja never runs it at
    compile time (``_FilterTestCommon.as_const`` gives up on context filters)."""
    pass_arg = _PassArg.from_obj(func)

    @jinja2.pass_context
    def guarded(context: Any, value: Any, *args: Any, **kwargs: Any) -> Any:
        if name in _SIZING_FILTERS:
            _check_args(args, kwargs)
        if func is _jinja_format and isinstance(value, str):
            _check_printf(value)
        if pass_arg is _PassArg.context:
            result = func(context, value, *args, **kwargs)
        elif pass_arg is _PassArg.eval_context:
            result = func(context.eval_ctx, value, *args, **kwargs)
        elif pass_arg is _PassArg.environment:
            result = func(context.environment, value, *args, **kwargs)
        else:
            result = func(value, *args, **kwargs)
        return _check_result(result)

    return guarded


def _checked_join(orig: Any) -> Any:
    def join(seq: Iterable[Any]) -> Any:
        return _check_result(orig(seq))
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

    tags = {"generation"}  # noqa: RUF012 (jinja2.ext.Extension declares it so)

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
    env.filters = {name: _guarded_filter(name, f) for name, f in env.filters.items()}
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
    """Render a Jinja chat template (sandboxed, in a bounded child process). Raises TemplateError."""
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
    from runtime.prompt.jinja_worker import render_in_worker

    return render_in_worker(source, ctx, deadline_s=DEADLINE_S, max_range=MAX_RANGE_TOTAL)


def render_in_process(source: str, ctx: dict[str, Any], *,
                      max_range: int | None = None) -> str:
    """Compile and render here, with the in-template checks only (the worker process runs this)."""
    _budget.range_left = MAX_RANGE_TOTAL if max_range is None else max_range
    try:
        tmpl = compile_jinja(source)
        parts: list[str] = []
        size = 0
        for chunk in tmpl.generate(**ctx):
            size += len(chunk)
            if size > MAX_OUTPUT:
                raise TemplateError(f"chat template: output exceeds {MAX_OUTPUT} characters")
            parts.append(chunk)
        return "".join(parts)
    except TemplateError:
        raise
    except jinja2.exceptions.SecurityError as e:
        raise TemplateError(f"chat template: unsafe operation: {e}") from None
    except jinja2.TemplateError as e:
        raise TemplateError(f"chat template: {e}") from None
    except (TypeError, ValueError, KeyError, IndexError, AttributeError,
            ZeroDivisionError, OverflowError, RecursionError) as e:
        raise TemplateError(f"chat template: {type(e).__name__}: {e}") from None
