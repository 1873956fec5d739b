"""Go's value printing for templates: fmt's %v, Sprint/Sprintln/Sprintf, encoding/json.

The Python side stands in for Go types like this: ``None`` is nil, ``bool``/``int``/``float``/
``str`` are themselves, ``list`` is a slice, ``dict`` is a map (Go prints and ranges maps in key
order), and :class:`GoStruct` subclasses are structs. A value with a ``go_string()`` method is a
``fmt.Stringer``; a struct's ``go_json()`` gives its JSON fields in declaration order.
"""
from __future__ import annotations

import math
import re
from json.encoder import encode_basestring as _encode_basestring
from typing import Any


class GoStruct:
    """Base for values that behave like Go structs: fixed fields, field access errors."""

    __slots__ = ()
    _go_fields: tuple[str, ...] = ()
    _go_type: str = "struct"

    def go_json(self) -> list[tuple[str, Any]]:
        return [(f, getattr(self, f)) for f in self._go_fields]


def type_name(v: Any) -> str:
    """Go-ish type name used in error messages."""
    if v is None:
        return "interface {}"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float64"
    if isinstance(v, str):
        return "string"
    if isinstance(v, GoStruct):
        return v._go_type
    if isinstance(v, list):
        return getattr(v, "_go_type", "[]interface {}")
    if isinstance(v, dict):
        return getattr(v, "_go_type", "map[string]interface {}")
    return type(v).__name__


# -- floats ----------------------------------------------------------------------------
def _digits(f: float) -> tuple[str, int]:
    """Shortest decimal digits of abs(f) and the decimal point position (like strconv)."""
    r = repr(abs(f))
    if "e" in r:
        mant, exp_s = r.split("e")
        exp = int(exp_s)
    else:
        mant, exp = r, 0
    if "." in mant:
        ip, fp = mant.split(".")
    else:
        ip, fp = mant, ""
    if fp == "0":
        fp = ""
    digits = (ip + fp).lstrip("0")
    lead_zeros = len(ip + fp) - len((ip + fp).lstrip("0"))
    dp = len(ip) + exp - lead_zeros
    digits = digits.rstrip("0") or "0"
    return digits, dp


def _fmt_e(neg: bool, digits: str, dp: int, min_exp_digits: int = 2) -> str:
    mant = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    exp = dp - 1
    sign = "-" if exp < 0 else "+"
    return ("-" if neg else "") + f"{mant}e{sign}{abs(exp):0{min_exp_digits}d}"


def _fmt_f(neg: bool, digits: str, dp: int) -> str:
    if dp <= 0:
        s = "0." + "0" * (-dp) + digits
    elif dp >= len(digits):
        s = digits + "0" * (dp - len(digits))
    else:
        s = digits[:dp] + "." + digits[dp:]
    return ("-" if neg else "") + s


def format_float_v(f: float) -> str:
    """fmt's %v for a float64: strconv's shortest 'g' (exponent form when exp < -4 or >= 6)."""
    if math.isnan(f):
        return "NaN"
    if math.isinf(f):
        return "+Inf" if f > 0 else "-Inf"
    if f == 0:
        return "-0" if math.copysign(1, f) < 0 else "0"
    digits, dp = _digits(f)
    exp = dp - 1
    if exp < -4 or exp >= 6:
        return _fmt_e(f < 0, digits, dp)
    return _fmt_f(f < 0, digits, dp)


def format_float_json(f: float) -> str:
    """encoding/json's float64 form."""
    if math.isnan(f) or math.isinf(f):
        raise ValueError("unsupported value")
    if f == 0:
        return "0" if math.copysign(1, f) > 0 else "-0"
    digits, dp = _digits(f)
    a = abs(f)
    if a < 1e-6 or a >= 1e21:
        s = _fmt_e(f < 0, digits, dp, min_exp_digits=1)
        return s
    return _fmt_f(f < 0, digits, dp)


# -- %v ---------------------------------------------------------------------------------
def format_v(v: Any, top: bool = True) -> str:
    if v is None:
        return "<nil>"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, str):
        return v
    gs = getattr(v, "go_string", None)
    if gs is not None:
        return gs()
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return format_float_v(v)
    if isinstance(v, list):
        return "[" + " ".join(format_v(x, False) for x in v) + "]"
    if isinstance(v, dict):
        return "map[" + " ".join(f"{format_v(k, False)}:{format_v(v[k], False)}"
                                 for k in sorted(v, key=_sort_key)) + "]"
    if isinstance(v, GoStruct):
        return "{" + " ".join(format_v(getattr(v, f), False) for f in v._go_fields) + "}"
    if isinstance(v, bytes):
        return "[" + " ".join(str(b) for b in v) + "]"
    return str(v)


def _sort_key(k: Any) -> Any:
    return (0, k) if isinstance(k, (int, float)) and not isinstance(k, bool) else (1, str(k))


def sprint(args: list[Any]) -> str:
    """fmt.Sprint: spaces between operands when neither side is a string."""
    out: list[str] = []
    prev_string = True
    for i, a in enumerate(args):
        is_string = isinstance(a, str)
        if i > 0 and not is_string and not prev_string:
            out.append(" ")
        out.append(format_v(a))
        prev_string = is_string
    return "".join(out)


def sprintln(args: list[Any]) -> str:
    return " ".join(format_v(a) for a in args) + "\n"


# -- JSON -------------------------------------------------------------------------------
_JSON_ESC = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t",
             "\b": "\\b", "\f": "\\f", "<": "\\u003c", ">": "\\u003e", "&": "\\u0026",
             "\u2028": "\\u2028", "\u2029": "\\u2029"}




_SLOW_JSON = re.compile("[\u2028\u2029\ud800-\udfff]")


def json_string(s: str) -> str:
    """A JSON string as Go's encoding/json writes it (HTML-safe, control chars escaped)."""
    if s.isascii() or not _SLOW_JSON.search(s):
        out = _encode_basestring(s)
        if "<" in out or ">" in out or "&" in out:
            out = out.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
        return out
    return _json_string_slow(s)


def _json_string_slow(s: str) -> str:
    out = ['"']
    for ch in s:
        e = _JSON_ESC.get(ch)
        if e is not None:
            out.append(e)
        elif ch < " ":
            out.append(f"\\u{ord(ch):04x}")
        elif "\ud800" <= ch <= "\udfff":
            out.append("\ufffd")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def json_marshal(v: Any) -> str:
    """encoding/json.Marshal: compact, HTML-safe, map keys sorted, struct fields in order."""
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, str):
        return json_string(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return format_float_json(v)
    gj = getattr(v, "go_json", None)
    if gj is not None:
        data = gj()
        if isinstance(data, list) and (not data or isinstance(data[0], tuple)) \
                and isinstance(v, GoStruct):
            return "{" + ",".join(f"{json_string(k)}:{json_marshal(x)}" for k, x in data) + "}"
        return json_marshal(data) if data is not v else _json_plain(v)
    return _json_plain(v)


def _json_plain(v: Any) -> str:
    if isinstance(v, list):
        return "[" + ",".join(json_marshal(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ",".join(f"{json_string(str(k))}:{json_marshal(v[k])}"
                              for k in sorted(v, key=str)) + "}"
    if isinstance(v, bytes):
        import base64
        return json_string(base64.b64encode(v).decode())
    raise ValueError(f"json: unsupported type: {type_name(v)}")


# -- printf -----------------------------------------------------------------------------
def sprintf(fmt: str, args: list[Any], *, max_width: int = 1 << 24) -> str:
    """fmt.Sprintf for the verbs templates use: %v %s %d %q %t %f %e %g %x %X %c %%."""
    out: list[str] = []
    i = 0
    n = len(fmt)
    argi = 0
    while i < n:
        c = fmt[i]
        if c != "%":
            j = fmt.find("%", i)
            if j < 0:
                j = n
            out.append(fmt[i:j])
            i = j
            continue
        i += 1
        if i >= n:
            out.append("%!(NOVERB)")
            break
        flags = ""
        while i < n and fmt[i] in "-+# 0":
            flags += fmt[i]
            i += 1
        width = ""
        if i < n and fmt[i] == "*":      # width from the argument list
            i += 1
            w = args[argi] if argi < len(args) else None
            argi += 1
            if isinstance(w, int) and not isinstance(w, bool):
                if w < 0:
                    flags += "-"
                width = str(abs(w))
            else:
                out.append("%!(BADWIDTH)")
        while i < n and fmt[i].isdigit():
            width += fmt[i]
            i += 1
        prec: str | None = None
        if i < n and fmt[i] == ".":
            i += 1
            prec = ""
            if i < n and fmt[i] == "*":
                i += 1
                pv = args[argi] if argi < len(args) else None
                argi += 1
                if isinstance(pv, int) and not isinstance(pv, bool) and pv >= 0:
                    prec = str(pv)
                else:
                    out.append("%!(BADPREC)")
                    prec = None
            while prec is not None and i < n and fmt[i].isdigit():
                prec += fmt[i]
                i += 1
        if i >= n:
            out.append("%!(NOVERB)")
            break
        if (width and int(width) > max_width) or (prec and int(prec) > max_width):
            raise ValueError(f"printf width or precision above {max_width}")
        verb = fmt[i]
        i += 1
        if verb == "%":
            out.append("%")
            continue
        if argi >= len(args):
            out.append(f"%!{verb}(MISSING)")
            continue
        arg = args[argi]
        argi += 1
        spec = _Spec(flags, int(width) if width else None, int(prec) if prec else
                     (0 if prec == "" else None))
        out.append(_fmt_top(verb, spec, arg))
    if argi < len(args):
        extra = ", ".join("<nil>" if a is None else f"{type_name(a)}={format_v(a)}"
                          for a in args[argi:])
        out.append(f"%!(EXTRA {extra})")
    return "".join(out)


class _Spec:
    __slots__ = ("flags", "prec", "width")

    def __init__(self, flags: str, width: int | None, prec: int | None) -> None:
        self.flags = flags
        self.width = width
        self.prec = prec


def _pad(s: str, spec: _Spec, numeric: bool = False) -> str:
    w = spec.width
    if w is None or len(s) >= w:
        return s
    if "-" in spec.flags:
        return s + " " * (w - len(s))
    if "0" in spec.flags:      # Go pads with zeros after the sign, strings too
        sign = s[0] if numeric and s[:1] in "-+ " else ""
        return sign + "0" * (w - len(s)) + s[len(sign):]
    return " " * (w - len(s)) + s


def _fmt_top(verb: str, spec: _Spec, arg: Any) -> str:
    if arg is None:          # a nil interface argument
        return _pad("<nil>", spec) if verb in "vT" else f"%!{verb}(<nil>)"
    if verb == "T":
        return _pad(type_name(arg), spec)
    return _fmt(verb, spec, arg)


def _bad(verb: str, spec: _Spec, arg: Any) -> str:
    # fmt's badVerb prints the value with %v and the same width/precision
    return f"%!{verb}({type_name(arg)}={_fmt('v', spec, arg)})"


def _fmt(verb: str, spec: _Spec, arg: Any) -> str:
    """One operand, fmt-style: verbs apply to the leaves of slices, maps and structs."""
    if arg is None:          # nil inside a container
        return _pad("<nil>", spec)
    gs = getattr(arg, "go_string", None)
    if gs is not None and verb in "vsqxX":
        return _fmt_str(verb, spec, gs())
    if arg is True or arg is False:
        return _pad("true" if arg else "false", spec) if verb in "vt" else _bad(verb, spec, arg)
    if isinstance(arg, int):
        return _fmt_int(verb, spec, arg)
    if isinstance(arg, float):
        return _fmt_float(verb, spec, arg)
    if isinstance(arg, str):
        return _fmt_str(verb, spec, arg)
    if isinstance(arg, (list, tuple)):
        return "[" + " ".join(_fmt(verb, spec, x) for x in arg) + "]"
    if isinstance(arg, dict):
        return "map[" + " ".join(f"{_fmt(verb, spec, k)}:{_fmt(verb, spec, arg[k])}"
                                 for k in sorted(arg, key=_sort_key)) + "]"
    if isinstance(arg, GoStruct):
        return "{" + " ".join(_fmt(verb, spec, getattr(arg, f)) for f in arg._go_fields) + "}"
    return _pad(str(arg), spec)


def _fmt_str(verb: str, spec: _Spec, s: str) -> str:
    if verb in "vs":
        if spec.prec is not None:
            s = s[:spec.prec]
        return _pad(s, spec)
    if verb == "q":
        return _pad(go_quote(s if spec.prec is None else s[:spec.prec]), spec)
    if verb in "xX":
        h = s.encode("utf-8").hex()
        return _pad(h.upper() if verb == "X" else h, spec)
    return _bad(verb, spec, s)


def _fmt_int(verb: str, spec: _Spec, n: int) -> str:
    if verb in "vd":
        s = str(abs(n)) if spec.prec is None else str(abs(n)).zfill(spec.prec)
        s = "-" + s if n < 0 else s
        if "+" in spec.flags and n >= 0:
            s = "+" + s
        elif " " in spec.flags and n >= 0:
            s = " " + s
        return _pad(s, spec, numeric=True)
    if verb in "xXob":
        s = format(abs(n), verb)
        if spec.prec is not None:
            s = s.zfill(spec.prec)
        if "#" in spec.flags and verb in "xX":
            s = ("0x" if verb == "x" else "0X") + s
        return _pad(("-" if n < 0 else "") + s, spec, numeric=True)
    if verb in "cq":
        ch = chr(n) if 0 <= n <= 0x10FFFF and not 0xD800 <= n <= 0xDFFF else "\ufffd"
        if verb == "c":
            return _pad(ch, spec)
        return _pad(go_quote_rune(ch), spec)
    return _bad(verb, spec, n)


def _fmt_float(verb: str, spec: _Spec, f: float) -> str:
    if verb in "vgG" and spec.prec is None:
        s = format_float_v(f)
        s = s.upper() if verb == "G" else s
    elif verb in "feEgG":      # Python, like Go, writes at least two exponent digits
        s = format(f, f".{6 if spec.prec is None else spec.prec}{verb}")
    elif verb == "F":
        s = format(f, f".{6 if spec.prec is None else spec.prec}f")
    elif verb in "xX" and spec.prec is None and math.isfinite(f):
        s = _hex_float(f)
        s = s.upper() if verb == "X" else s
    else:
        return _bad(verb, spec, f)
    if "+" in spec.flags and not s.startswith("-"):
        s = "+" + s
    return _pad(s, spec, numeric=True)


def _hex_float(f: float) -> str:
    """Go's %x of a float64: shortest hex mantissa, exponent of at least two digits."""
    if f == 0:
        return "-0x0p+00" if math.copysign(1, f) < 0 else "0x0p+00"
    h = f.hex()                                   # e.g. 0x1.c000000000000p+1
    sign = "-" if h.startswith("-") else ""
    mant, exp = h.lstrip("-")[2:].split("p")
    mant = mant.rstrip("0").rstrip(".")
    e = int(exp)
    return f"{sign}0x{mant}p{'-' if e < 0 else '+'}{abs(e):02d}"


def go_quote_rune(ch: str) -> str:
    """strconv.QuoteRune."""
    if ch == "'":
        return "'\\''"
    if ch == '"':
        return "'\"'"
    q = go_quote(ch)[1:-1]
    return "'" + q + "'"


def go_quote(s: str) -> str:
    """strconv.Quote: Go-syntax double-quoted string."""
    out = ['"']
    for ch in s:
        o = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\a":
            out.append("\\a")
        elif ch == "\b":
            out.append("\\b")
        elif ch == "\f":
            out.append("\\f")
        elif ch == "\v":
            out.append("\\v")
        elif o < 0x20 or o == 0x7F:
            out.append(f"\\x{o:02x}")
        elif not ch.isprintable() and o > 0x7F:
            out.append(f"\\u{o:04x}" if o <= 0xFFFF else f"\\U{o:08x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)
