"""Template functions: Go's predefined ones plus Ollama's (json, currentDate, toTypeScriptType).

Behaviour follows text/template's funcs.go: ``and``/``or`` short-circuit and return an
operand, ``eq`` takes several right-hand operands, comparisons between different basic kinds
are errors, ``len``/``index``/``slice`` count bytes for strings.
"""
from __future__ import annotations

import datetime as _dt
import urllib.parse
from typing import Any

from runtime.prompt.executor import FuncSpec, TemplateArgError, is_true
from runtime.prompt.gofmt import (
    GoStruct,
    json_marshal,
    sprint,
    sprintf,
    sprintln,
    type_name,
)


def _short_circuit(*args: Any) -> Any:
    # and/or are compiled inline (executor.Compiler._lazy): operands are evaluated lazily
    raise AssertionError("and/or are evaluated by the compiler")


def _not(v: Any) -> bool:
    return not is_true(v)


def _kind(v: Any) -> str:
    if v is None:
        return "invalid"
    if v is True or v is False:
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float"
    if isinstance(v, str):
        return "string"
    if isinstance(v, (list, dict)):
        return "noncomparable"
    return "other"


_BASIC = frozenset({"bool", "int", "float", "string"})


def _eq(a: Any, *bs: Any) -> bool:
    if len(bs) == 1:
        b = bs[0]
        ta = type(a)
        if ta is type(b) and (ta is str or ta is int or ta is bool or ta is float):
            return a == b
    if not bs:
        raise TemplateArgError("missing argument for comparison")
    ka = _kind(a)
    for b in bs:
        kb = _kind(b)
        if ka != kb:
            if a is not None and b is not None:
                raise TemplateArgError("incompatible types for comparison")
            truth = False
        elif ka in _BASIC:
            truth = a == b
        elif ka == "invalid":
            truth = True
        else:
            if kb == "noncomparable":
                raise TemplateArgError(f"non-comparable type {type_name(b)}")
            truth = a is b or a == b
        if truth:
            return True
    return False


def _ne(a: Any, b: Any) -> bool:
    ta = type(a)
    if ta is type(b) and (ta is str or ta is int or ta is bool or ta is float):
        return a != b
    return not _eq(a, b)


def _ordered(a: Any, b: Any) -> tuple[Any, Any]:
    ka, kb = _kind(a), _kind(b)
    if ka not in _BASIC or kb not in _BASIC or ka == "bool" or kb == "bool":
        raise TemplateArgError("invalid type for comparison")
    if ka != kb:
        raise TemplateArgError("incompatible types for comparison")
    return a, b


def _lt(a: Any, b: Any) -> bool:
    x, y = _ordered(a, b)
    return bool(x < y)


def _le(a: Any, b: Any) -> bool:
    x, y = _ordered(a, b)
    return bool(x <= y)


def _gt(a: Any, b: Any) -> bool:
    x, y = _ordered(a, b)
    return bool(x > y)


def _ge(a: Any, b: Any) -> bool:
    x, y = _ordered(a, b)
    return bool(x >= y)


def _len(v: Any) -> int:
    if isinstance(v, str):
        return len(v) if v.isascii() else len(v.encode("utf-8"))
    if isinstance(v, (list, dict, tuple)):
        return len(v)
    if v is None:
        raise TemplateArgError("len of nil pointer")
    raise TemplateArgError(f"len of type {type_name(v)}")


def _int_index(i: Any, cap: int) -> int:
    if isinstance(i, bool) or not isinstance(i, int):
        raise TemplateArgError(f"cannot index slice/array with type {type_name(i)}")
    if i < 0 or i > cap:
        raise TemplateArgError(f"index out of range: {i}")
    return i


def _index(item: Any, *indices: Any) -> Any:
    v = item
    if v is None:
        raise TemplateArgError("index of untyped nil")
    for i in indices:
        if isinstance(v, dict):
            if not isinstance(i, str):      # template data maps have string keys
                raise TemplateArgError(f"value has type {type_name(i)}; should be string")
            v = v.get(i)
        elif isinstance(v, (list, tuple)):
            x = _int_index(i, len(v))
            if x >= len(v):
                raise TemplateArgError(f"index out of range: {x}")
            v = v[x]
        elif isinstance(v, str):
            b = v.encode("utf-8")
            x = _int_index(i, len(b))
            if x >= len(b):
                raise TemplateArgError(f"index out of range: {x}")
            v = b[x]
        elif v is None:
            raise TemplateArgError("index of nil pointer")
        else:
            raise TemplateArgError(f"can't index item of type {type_name(v)}")
    return v


def _slice(item: Any, *indices: Any) -> Any:
    if item is None:
        raise TemplateArgError("slice of untyped nil")
    if len(indices) > 3:
        raise TemplateArgError(f"too many slice indexes: {len(indices)}")
    if isinstance(item, str):
        if len(indices) == 3:
            raise TemplateArgError("cannot 3-index slice a string")
        seq: Any = item.encode("utf-8") if not item.isascii() else item
    elif isinstance(item, (list, tuple)):
        seq = item
    else:
        raise TemplateArgError(f"can't slice item of type {type_name(item)}")
    n = len(seq)
    idx = [_int_index(i, n) for i in indices]
    lo = idx[0] if idx else 0
    hi = idx[1] if len(idx) > 1 else n
    if len(idx) == 3 and idx[2] < hi:
        raise TemplateArgError(f"invalid slice index: {idx[2]} < {hi}")
    if lo > hi:
        raise TemplateArgError(f"invalid slice index: {lo} > {hi}")
    out = seq[lo:hi]
    if isinstance(out, bytes):
        return out.decode("utf-8", errors="replace")
    if isinstance(item, list) and type(item) is not list:
        return type(item)(out)
    return out


#: largest string one function call may build: with variables (``$x = print $x $x``) inside a
#: range, values could otherwise double per step and exhaust memory before any output is written
MAX_VALUE = 16 * 1024 * 1024


def _bounded(s: str) -> str:
    if len(s) > MAX_VALUE:
        raise TemplateArgError(f"result exceeds the limit of {MAX_VALUE} characters")
    return s


def _eval_args(args: tuple[Any, ...]) -> str:
    if len(args) == 1 and isinstance(args[0], str):
        return args[0]
    # text/template's evalArgs: a nil argument prints as "<no value>" here
    return _bounded(sprint(["<no value>" if a is None else a for a in args]))


def _html(*args: Any) -> str:
    s = _eval_args(args)
    return _bounded(s.replace("&", "&amp;").replace("'", "&#39;").replace("<", "&lt;")
                    .replace(">", "&gt;").replace('"', "&#34;").replace("\0", "\ufffd"))


_JS = {"\\": "\\\\", "'": "\\'", '"': '\\"', "<": "\\u003C", ">": "\\u003E", "&": "\\u0026",
       "=": "\\u003D"}


def _js(*args: Any) -> str:
    out = []
    for ch in _eval_args(args):
        e = _JS.get(ch)
        if e is not None:
            out.append(e)
        elif ch < " " or (ord(ch) >= 0x80 and not ch.isprintable()):
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    return _bounded("".join(out))


def _urlquery(*args: Any) -> str:
    return _bounded(urllib.parse.quote_plus(_eval_args(args), safe=""))


def _print(*args: Any) -> str:
    return _bounded(sprint(list(args)))


def _println(*args: Any) -> str:
    return _bounded(sprintln(list(args)))


def _printf(fmt: Any, *args: Any) -> str:
    if not isinstance(fmt, str):
        raise TemplateArgError(f"wrong type for value; expected string; got {type_name(fmt)}")
    try:
        return _bounded(sprintf(fmt, list(args), max_width=MAX_VALUE))
    except ValueError as e:
        raise TemplateArgError(str(e)) from None


def _call(fn: Any, *args: Any) -> Any:
    if fn is None:
        raise TemplateArgError("call of nil")
    if not callable(fn):
        raise TemplateArgError(f"non-function of type {type_name(fn)}")
    return fn(*args)


def _json(v: Any) -> str:
    try:
        return json_marshal(v)
    except ValueError:
        return ""      # Ollama ignores json.Marshal's error and prints the empty result


def _current_date(*args: Any) -> str:
    # Ollama ignores the optional format argument and prints YYYY-MM-DD in local time.
    return _dt.date.today().isoformat()


def _yesterday_date(*args: Any) -> str:
    return (_dt.date.today() - _dt.timedelta(days=1)).isoformat()


def _to_typescript_type(v: Any) -> str:
    fn = getattr(v, "to_typescript_type", None)
    if fn is not None and isinstance(v, GoStruct):
        return str(fn())
    return "any"


BUILTINS: dict[str, FuncSpec] = {
    "and": FuncSpec(_short_circuit, lazy=True),
    "or": FuncSpec(_short_circuit, lazy=True),
    "not": FuncSpec(_not),
    "eq": FuncSpec(_eq),
    "ne": FuncSpec(_ne),
    "lt": FuncSpec(_lt),
    "le": FuncSpec(_le),
    "gt": FuncSpec(_gt),
    "ge": FuncSpec(_ge),
    "len": FuncSpec(_len),
    "index": FuncSpec(_index),
    "slice": FuncSpec(_slice),
    "print": FuncSpec(_print),
    "printf": FuncSpec(_printf),
    "println": FuncSpec(_println),
    "html": FuncSpec(_html),
    "js": FuncSpec(_js),
    "urlquery": FuncSpec(_urlquery),
    "call": FuncSpec(_call),
}

OLLAMA_FUNCS: dict[str, FuncSpec] = {
    "json": FuncSpec(_json),
    "currentDate": FuncSpec(_current_date),
    "yesterdayDate": FuncSpec(_yesterday_date),
    "toTypeScriptType": FuncSpec(_to_typescript_type),
}

ALL_FUNCS: dict[str, FuncSpec] = {**BUILTINS, **OLLAMA_FUNCS}
