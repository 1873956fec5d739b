"""Lexer for Go's text/template language (the part Ollama templates use).

The source is split into text and actions. Text keeps its bytes except where a trim marker
(``{{- `` / `` -}}``) eats the whitespace next to it; comments (``{{/* */}}``) vanish. Each
action becomes a list of :class:`Token` ending in ``RDELIM``. Positions are ``line:col``
(1-based, counted in characters) so parse errors can point at the spot, as Go's do.
"""
from __future__ import annotations

from dataclasses import dataclass

from runtime.errors import TemplateError

# token kinds
TEXT = "text"
LDELIM = "{{"
RDELIM = "}}"
SPACE = "space"
FIELD = "field"          # .Name (value without the dot)
VARIABLE = "variable"    # $ or $name
DOT = "dot"
IDENT = "ident"
KEYWORD = "keyword"
STRING = "string"        # value is the decoded string
RAWSTRING = "rawstring"
CHAR = "char"
NUMBER = "number"
BOOL = "bool"
NIL = "nil"
PIPE = "|"
LPAREN = "("
RPAREN = ")"
DECLARE = ":="
ASSIGN = "="
COMMA = ","
EOF = "eof"

KEYWORDS = frozenset({"if", "else", "end", "range", "with", "define", "template", "block",
                      "break", "continue"})
_SPACE_CHARS = " \t\r\n"
_IDENT_START = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_")
_IDENT_CHARS = _IDENT_START | set("0123456789")


@dataclass
class Token:
    kind: str
    value: str
    pos: int            # offset into the source


class Source:
    """The template text plus offset -> "line:col" mapping for error messages."""

    def __init__(self, text: str, name: str) -> None:
        self.text = text
        self.name = name
        self._line_starts: list[int] | None = None

    def where(self, offset: int) -> str:
        if self._line_starts is None:
            starts = [0]
            for i, ch in enumerate(self.text):
                if ch == "\n":
                    starts.append(i + 1)
            self._line_starts = starts
        import bisect
        line = bisect.bisect_right(self._line_starts, offset)
        col = offset - self._line_starts[line - 1] + 1
        return f"{line}:{col}"

    def error(self, msg: str, offset: int) -> TemplateError:
        return TemplateError(msg, pos=self.where(offset))


def _is_space(ch: str) -> bool:
    return ch in _SPACE_CHARS


def lex(src: Source) -> list[Token]:
    """Tokenize the whole template. Text tokens carry already-trimmed text."""
    text = src.text
    n = len(text)
    tokens: list[Token] = []
    pos = 0
    trim_next_text = False
    while pos < n:
        start = text.find("{{", pos)
        if start < 0:
            start = n
        chunk = text[pos:start]
        if trim_next_text:
            chunk = chunk.lstrip(_SPACE_CHARS)
        trim_left = (start + 2 < n and text[start + 2] == "-"
                     and start + 3 < n and _is_space(text[start + 3]))
        if start < n and trim_left:
            chunk = chunk.rstrip(_SPACE_CHARS)
        if chunk:
            tokens.append(Token(TEXT, chunk, pos))
        if start >= n:
            break
        # inside an action
        p = start + 2 + (2 if trim_left else 0)
        # comment: only directly after the delimiter (and trim marker)
        if text.startswith("/*", p):
            end = text.find("*/", p + 2)
            if end < 0:
                raise src.error("unclosed comment", start)
            q = end + 2
            if text.startswith("}}", q):
                trim_next_text = False
                pos = q + 2
            elif q < n and _is_space(text[q]) and text.startswith("-}}", q + 1):
                trim_next_text = True
                pos = q + 4
            else:
                raise src.error("comment ends before closing delimiter", start)
            continue
        tokens.append(Token(LDELIM, "{{", start))
        pos, trim_next_text = _lex_action(src, p, tokens)
    tokens.append(Token(EOF, "", n))
    return tokens


def _lex_action(src: Source, p: int, out: list[Token]) -> tuple[int, bool]:
    """Lex one action starting at p (after the left delimiter); return (end, trim_right)."""
    text = src.text
    n = len(text)
    paren_depth = 0
    while True:
        if p >= n:
            raise src.error("unclosed action", p)
        ch = text[p]
        # right delimiter, possibly with a trim marker " -}}"
        if _is_space(ch):
            q = p
            while q < n and _is_space(text[q]):
                q += 1
            if text.startswith("-}}", q):
                if paren_depth:
                    raise src.error("unclosed left paren", q)
                out.append(Token(RDELIM, "}}", q))
                return q + 3, True
            out.append(Token(SPACE, text[p:q], p))
            p = q
            continue
        if text.startswith("}}", p):
            if paren_depth:
                raise src.error("unclosed left paren", p)
            out.append(Token(RDELIM, "}}", p))
            return p + 2, False
        if ch == "|":
            out.append(Token(PIPE, ch, p))
            p += 1
        elif ch == "(":
            paren_depth += 1
            out.append(Token(LPAREN, ch, p))
            p += 1
        elif ch == ")":
            paren_depth -= 1
            if paren_depth < 0:
                raise src.error("unexpected right paren", p)
            out.append(Token(RPAREN, ch, p))
            p += 1
        elif ch == ",":
            out.append(Token(COMMA, ch, p))
            p += 1
        elif ch == ":":
            if not text.startswith(":=", p):
                raise src.error("expected :=", p)
            out.append(Token(DECLARE, ":=", p))
            p += 2
        elif ch == "=":
            out.append(Token(ASSIGN, "=", p))
            p += 1
        elif ch == '"':
            p = _lex_quote(src, p, out)
        elif ch == "`":
            end = text.find("`", p + 1)
            if end < 0:
                raise src.error("unterminated raw quoted string", p)
            out.append(Token(RAWSTRING, text[p + 1:end], p))
            p = end + 1
        elif ch == "'":
            p = _lex_char(src, p, out)
        elif ch == "$":
            q = p + 1
            while q < n and text[q] in _IDENT_CHARS:
                q += 1
            out.append(Token(VARIABLE, text[p:q], p))
            p = q
        elif ch == "." and p + 1 < n and text[p + 1].isdigit():
            p = _lex_number(src, p, out)
        elif ch == ".":
            q = p + 1
            while q < n and (text[q] in _IDENT_CHARS or (text[q].isalpha())):
                q += 1
            if q == p + 1:
                out.append(Token(DOT, ".", p))
            else:
                out.append(Token(FIELD, text[p + 1:q], p))
            p = q
        elif ch in "+-" or ch.isdigit():
            p = _lex_number(src, p, out)
        elif ch in _IDENT_START or ch.isalpha():
            q = p + 1
            while q < n and (text[q] in _IDENT_CHARS or text[q].isalpha()):
                q += 1
            word = text[p:q]
            if word in KEYWORDS:
                out.append(Token(KEYWORD, word, p))
            elif word in ("true", "false"):
                out.append(Token(BOOL, word, p))
            elif word == "nil":
                out.append(Token(NIL, word, p))
            else:
                out.append(Token(IDENT, word, p))
            p = q
        else:
            raise src.error(f"unrecognized character in action: {ch!r}", p)


_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v",
            "\\": "\\", "'": "'", '"': '"'}


def _unescape(src: Source, body: str, at: int, quote: str) -> str:
    out: list[str] = []
    i = 0
    raw: bytearray | None = None  # \x / octal escapes build bytes
    while i < len(body):
        c = body[i]
        if c != "\\":
            out.append(c)
            i += 1
            continue
        i += 1
        if i >= len(body):
            raise src.error("unterminated quoted string", at)
        e = body[i]
        if e in _ESCAPES and (e != "'" or quote == "'") and (e != '"' or quote == '"'):
            out.append(_ESCAPES[e])
            i += 1
        elif e == "x" or e in "01234567":
            if e == "x":
                digits, base, width = body[i + 1:i + 3], 16, 2
                i += 3
            else:
                digits, base, width = body[i:i + 3], 8, 3
                i += 3
            try:
                if len(digits) != width:
                    raise ValueError
                b = int(digits, base)
                if b > 255:
                    raise ValueError
            except ValueError:
                raise src.error("invalid escape in quoted string", at) from None
            # collect consecutive byte escapes and decode as UTF-8 (Go strings are bytes)
            raw = bytearray([b])
            while body.startswith("\\x", i) or (i + 1 < len(body) and body[i] == "\\"
                                                 and body[i + 1] in "01234567"):
                if body.startswith("\\x", i):
                    raw.append(int(body[i + 2:i + 4], 16))
                else:
                    raw.append(int(body[i + 1:i + 4], 8))
                i += 4
            out.append(raw.decode("utf-8", errors="replace"))
        elif e in "uU":
            width = 4 if e == "u" else 8
            digits = body[i + 1:i + 1 + width]
            try:
                if len(digits) != width:
                    raise ValueError
                out.append(chr(int(digits, 16)))
            except ValueError:
                raise src.error("invalid escape in quoted string", at) from None
            i += 1 + width
        else:
            raise src.error(f"unknown escape sequence: \\{e}", at)
    return "".join(out)


def _lex_quote(src: Source, p: int, out: list[Token]) -> int:
    text = src.text
    q = p + 1
    while True:
        if q >= len(text) or text[q] == "\n":
            raise src.error("unterminated quoted string", p)
        if text[q] == "\\":
            q += 2
            continue
        if text[q] == '"':
            break
        q += 1
    out.append(Token(STRING, _unescape(src, text[p + 1:q], p, '"'), p))
    return q + 1


def _lex_char(src: Source, p: int, out: list[Token]) -> int:
    text = src.text
    q = p + 1
    while True:
        if q >= len(text) or text[q] == "\n":
            raise src.error("unterminated character constant", p)
        if text[q] == "\\":
            q += 2
            continue
        if text[q] == "'":
            break
        q += 1
    value = _unescape(src, text[p + 1:q], p, "'")
    if len(value) != 1:
        raise src.error(f"malformed character constant: {text[p:q + 1]}", p)
    out.append(Token(CHAR, value, p))
    return q + 1


def _lex_number(src: Source, p: int, out: list[Token]) -> int:
    text = src.text
    n = len(text)
    q = p
    if text[q] in "+-":
        q += 1
    is_hex = text[p:p + 3].lower().lstrip("+-").startswith("0x")
    exp_chars = "pP" if is_hex else "eE"
    while q < n and (text[q].isalnum() or text[q] in "._" or
                     (text[q] in "+-" and text[q - 1] in exp_chars)):
        q += 1
    out.append(Token(NUMBER, text[p:q], p))
    return q
