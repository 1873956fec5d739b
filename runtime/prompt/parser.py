"""Recursive-descent parser for Go's text/template: tokens -> :mod:`.nodes` trees.

Follows text/template/parse: pipelines with ``$x :=`` / ``$x =`` declarations, commands
separated by ``|``, parenthesized pipelines and field chains, ``if/else if/with/else with/
range/else``, ``break``/``continue`` inside ``range`` only, ``define``/``template``/``block``,
variables checked for definition at parse time, unknown functions rejected at parse time.
"""
from __future__ import annotations

from collections.abc import Collection

from runtime.prompt import lexer as L
from runtime.prompt import nodes as N


class _Marker:
    """What ended an item list: ``{{end}}``, ``{{else}}`` (with its offset), or EOF."""

    def __init__(self, kind: str, pos: int) -> None:
        self.kind = kind
        self.pos = pos


#: nesting of control structures and parentheses; real templates stay far below, and the
#: parser, compiler and executor recurse per level (an untrusted template must not blow the stack)
MAX_NESTING = 100


class Parser:
    def __init__(self, src: L.Source, funcs: Collection[str]) -> None:
        self.src = src
        self.funcs = funcs
        self.toks = L.lex(src)
        self.i = 0
        self.vars: list[str] = ["$"]
        self.range_depth = 0
        self.defines: dict[str, N.Tree] = {}
        self.nesting = 0

    def _enter(self, pos: int) -> None:
        self.nesting += 1
        if self.nesting > MAX_NESTING:
            raise self.error(f"template nests deeper than {MAX_NESTING} levels", pos)

    # -- token helpers ------------------------------------------------------------------
    def peek(self) -> L.Token:
        return self.toks[self.i]

    def next(self) -> L.Token:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def next_non_space(self) -> L.Token:
        tok = self.next()
        while tok.kind == L.SPACE:
            tok = self.next()
        return tok

    def peek_non_space(self) -> L.Token:
        j = self.i
        while self.toks[j].kind == L.SPACE:
            j += 1
        return self.toks[j]

    def error(self, msg: str, pos: int) -> Exception:
        return self.src.error(msg, pos)

    def expect(self, kind: str, context: str) -> L.Token:
        tok = self.next_non_space()
        if tok.kind != kind:
            raise self.error(f"unexpected {_describe(tok)} in {context}", tok.pos)
        return tok

    # -- top level ----------------------------------------------------------------------
    def parse(self) -> tuple[N.Tree, dict[str, N.Tree]]:
        root = N.Tree(self.src.name)
        while True:
            tok = self.peek()
            if tok.kind == L.EOF:
                break
            if tok.kind == L.LDELIM:
                nxt = self._after_delim()
                if nxt.kind == L.KEYWORD and nxt.value == "define":
                    self.next()
                    self.next_non_space()
                    self._parse_define(tok.pos)
                    continue
            node = self._text_or_action()
            if isinstance(node, _Marker):
                raise self.error(f"unexpected {{{{{node.kind}}}}}", node.pos)
            root.body.append(node)
        return root, self.defines

    def _after_delim(self) -> L.Token:
        j = self.i + 1
        while self.toks[j].kind == L.SPACE:
            j += 1
        return self.toks[j]

    def _parse_define(self, pos: int) -> None:
        name_tok = self.next_non_space()
        if name_tok.kind not in (L.STRING, L.RAWSTRING):
            raise self.error("name of template in define must be a string", name_tok.pos)
        self.expect(L.RDELIM, "define clause")
        saved_vars, saved_depth = self.vars, self.range_depth
        self.vars, self.range_depth = ["$"], 0
        body, end = self._item_list()
        self.vars, self.range_depth = saved_vars, saved_depth
        if end.kind != "end":
            raise self.error(f"unexpected {_marker_text(end)} in define", end.pos)
        self._add_define(name_tok.value, body, pos)

    def _add_define(self, name: str, body: list[N.Node], pos: int) -> None:
        old = self.defines.get(name)
        if old is not None and _non_empty(old.body) and _non_empty(body):
            raise self.error(f"template: multiple definition of template {name!r}", pos)
        if old is None or _non_empty(body):
            self.defines[name] = N.Tree(name, body)

    def _item_list(self) -> tuple[list[N.Node], _Marker]:
        out: list[N.Node] = []
        while True:
            tok = self.peek()
            if tok.kind == L.EOF:
                return out, _Marker("EOF", tok.pos)
            node = self._text_or_action()
            if isinstance(node, _Marker):
                return out, node
            out.append(node)

    def _text_or_action(self) -> N.Node | _Marker:
        tok = self.next()
        if tok.kind == L.TEXT:
            return N.Text(tok.value, tok.pos)
        if tok.kind == L.LDELIM:
            return self._action(tok.pos)
        raise self.error(f"unexpected {_describe(tok)}", tok.pos)

    # -- actions ------------------------------------------------------------------------
    def _action(self, pos: int) -> N.Node | _Marker:
        tok = self.peek_non_space()
        if tok.kind == L.KEYWORD:
            self.next_non_space()
            kw = tok.value
            if kw == "end":
                self.expect(L.RDELIM, "end")
                return _Marker("end", pos)
            if kw == "else":
                return _Marker("else", pos)  # caller inspects what follows
            if kw == "if":
                return self._control(N.If, "if", pos)
            if kw == "with":
                return self._control(N.With, "with", pos)
            if kw == "range":
                return self._control(N.Range, "range", pos)
            if kw in ("break", "continue"):
                if self.range_depth == 0:
                    raise self.error(f"{{{{{kw}}}}} outside {{{{range}}}}", tok.pos)
                self.expect(L.RDELIM, kw)
                return N.Break(pos) if kw == "break" else N.Continue(pos)
            if kw == "template":
                return self._template_call(pos)
            if kw == "block":
                return self._block(pos)
            raise self.error(f"unexpected <{kw}> in command", tok.pos)
        pipe = self._pipeline("command", L.RDELIM)
        return N.Action(pipe, pos)

    def _control(self, cls: type, context: str, pos: int) -> N.Node:
        self._enter(pos)
        node = self._control_body(cls, context, pos)
        self.nesting -= 1
        return node

    def _control_body(self, cls: type, context: str, pos: int) -> N.Node:
        mark = len(self.vars)
        pipe = self._pipeline(context, L.RDELIM)
        if context == "range":
            self.range_depth += 1
        body, end = self._item_list()
        if context == "range":
            self.range_depth -= 1
        else_body: list[N.Node] | None = None
        if end.kind == "else":
            nxt = self.peek_non_space()
            if context in ("if", "with") and nxt.kind == L.KEYWORD and nxt.value == context:
                # "{{else if ...}}" / "{{else with ...}}": a nested control sharing our {{end}}
                self.next_non_space()
                else_body = [self._control_body(cls, context, end.pos)]
                del self.vars[mark:]
                return cls(pipe, body, else_body, pos)
            self.expect(L.RDELIM, "else")
            else_body, end = self._item_list()
            if end.kind == "else":
                raise self.error("expected end; found {{else}}", end.pos)
        if end.kind != "end":
            raise self.error(f"unexpected {_marker_text(end)}", end.pos)
        del self.vars[mark:]
        return cls(pipe, body, else_body, pos)

    def _template_call(self, pos: int) -> N.TemplateCall:
        name_tok = self.next_non_space()
        if name_tok.kind not in (L.STRING, L.RAWSTRING):
            raise self.error(f"unexpected {_describe(name_tok)} in template clause", name_tok.pos)
        pipe = None
        if self.peek_non_space().kind != L.RDELIM:
            pipe = self._pipeline("template clause", L.RDELIM)
        else:
            self.next_non_space()
        return N.TemplateCall(name_tok.value, pipe, pos)

    def _block(self, pos: int) -> N.TemplateCall:
        name_tok = self.next_non_space()
        if name_tok.kind not in (L.STRING, L.RAWSTRING):
            raise self.error(f"unexpected {_describe(name_tok)} in block clause", name_tok.pos)
        pipe = self._pipeline("block clause", L.RDELIM)
        saved_vars, saved_depth = self.vars, self.range_depth
        self.vars, self.range_depth = ["$"], 0
        body, end = self._item_list()
        self.vars, self.range_depth = saved_vars, saved_depth
        if end.kind != "end":
            raise self.error(f"unexpected {_marker_text(end)} in block clause", end.pos)
        self._add_define(name_tok.value, body, pos)
        return N.TemplateCall(name_tok.value, pipe, pos)

    # -- pipelines ----------------------------------------------------------------------
    def _pipeline(self, context: str, end: str) -> N.Pipeline:
        start = self.peek_non_space()
        decl: list[str] = []
        is_assign = False
        if start.kind == L.VARIABLE:
            j = self.i
            while self.toks[j].kind == L.SPACE:
                j += 1
            j += 1  # the variable
            k = j
            while self.toks[k].kind == L.SPACE:
                k += 1
            after = self.toks[k]
            if after.kind in (L.DECLARE, L.ASSIGN):
                self.i = k + 1
                decl.append(start.value)
                is_assign = after.kind == L.ASSIGN
            elif after.kind == L.COMMA and context == "range":
                m = k + 1
                while self.toks[m].kind == L.SPACE:
                    m += 1
                second = self.toks[m]
                m2 = m + 1
                while self.toks[m2].kind == L.SPACE:
                    m2 += 1
                op = self.toks[m2]
                if second.kind != L.VARIABLE or op.kind not in (L.DECLARE, L.ASSIGN):
                    raise self.error("range can only initialize variables", second.pos)
                decl = [start.value, second.value]
                is_assign = op.kind == L.ASSIGN
                self.i = m2 + 1
            elif after.kind == L.COMMA:
                raise self.error(f"too many declarations in {context}", after.pos)
        if decl:
            # like text/template/parse, an assignment to an unknown variable parses (and fails
            # when executed); either form makes the name known from here on
            self.vars.extend(decl)
        cmds: list[N.Command] = []
        while True:
            tok = self.peek_non_space()
            if tok.kind == end:
                self.next_non_space()
                if not cmds:
                    raise self.error(f"missing value for {context}", tok.pos)
                break
            if tok.kind in (L.RDELIM, L.RPAREN, L.EOF):
                raise self.error(f"unexpected {_describe(tok)} in {context}", tok.pos)
            cmd = self._command(end)
            if cmds and isinstance(cmd.args[0], (N.Literal, N.Dot)):
                # only the first command of a pipeline may start with a non-executable operand
                raise self.error(f"non executable command in pipeline stage {len(cmds) + 1}",
                                 cmd.pos)
            cmds.append(cmd)
            tok = self.peek_non_space()
            if tok.kind == L.PIPE:
                self.next_non_space()      # a trailing "|" is accepted, as Go's parser does
        return N.Pipeline(decl, is_assign, cmds, start.pos)

    def _command(self, end: str) -> N.Command:
        args: list[N.Operand] = []
        pos = self.peek_non_space().pos
        while True:
            tok = self.peek_non_space()
            if tok.kind in (end, L.PIPE):
                break
            if tok.kind in (L.RDELIM, L.RPAREN):
                raise self.error(f"unexpected {_describe(tok)} in operand", tok.pos)
            if args and self.peek().kind != L.SPACE:
                raise self.error(f"missing space before {_describe(tok)}", tok.pos)
            self.next_non_space()
            args.append(self._operand(tok))
        if not args:
            raise self.error("empty command", pos)
        return N.Command(args, pos)

    def _operand(self, tok: L.Token) -> N.Operand:
        term = self._term(tok)
        idents: list[str] = []
        while self.peek().kind == L.FIELD:
            idents.append(self.next().value)
        if not idents:
            return term
        if isinstance(term, N.FieldRef):
            return N.FieldRef(term.idents + tuple(idents), term.pos)
        if isinstance(term, N.VarRef):
            return N.VarRef(term.name, term.idents + tuple(idents), term.pos)
        if isinstance(term, (N.Literal, N.Dot)):
            raise self.error(f"unexpected . after term {_describe(tok)}", tok.pos)
        return N.Chain(term, tuple(idents), tok.pos)

    def _term(self, tok: L.Token) -> N.Operand:
        k = tok.kind
        if k == L.FIELD:
            return N.FieldRef((tok.value,), tok.pos)
        if k == L.VARIABLE:
            if tok.value not in self.vars:
                raise self.error(f'undefined variable "{tok.value}"', tok.pos)
            return N.VarRef(tok.value, (), tok.pos)
        if k == L.DOT:
            return N.Dot(tok.pos)
        if k == L.IDENT:
            if tok.value not in self.funcs:
                raise self.error(f'function "{tok.value}" not defined', tok.pos)
            return N.Ident(tok.value, tok.pos)
        if k in (L.STRING, L.RAWSTRING):
            return N.Literal(tok.value, tok.pos)
        if k == L.BOOL:
            return N.Literal(tok.value == "true", tok.pos)
        if k == L.NIL:
            return N.Literal(None, tok.pos, is_nil=True)
        if k == L.CHAR:
            return N.Literal(ord(tok.value), tok.pos)
        if k == L.NUMBER:
            return N.Literal(self._number(tok), tok.pos)
        if k == L.LPAREN:
            self._enter(tok.pos)
            pipe = self._pipeline("parenthesized pipeline", L.RPAREN)
            self.nesting -= 1
            return pipe
        raise self.error(f"unexpected {_describe(tok)} in operand", tok.pos)

    def _number(self, tok: L.Token) -> int | float:
        text = tok.value
        clean = text.replace("_", "")
        body = clean.lstrip("+-")
        neg = clean.startswith("-")
        lower = body.lower()
        try:
            if lower.startswith("0x") and "p" in lower:
                value: int | float = float.fromhex(body)
            elif lower.startswith(("0x", "0o", "0b")):
                value = int(body, 0)
            elif any(c in body for c in ".eE"):
                value = float(body)
            elif len(body) > 1 and body.startswith("0"):
                value = int(body, 8)
            else:
                value = int(body, 10)
        except ValueError:
            raise self.error(f"bad number syntax: {text!r}", tok.pos) from None
        if isinstance(value, float) and value in (float("inf"), float("-inf")):
            raise self.error(f'illegal number syntax: "{text}"', tok.pos)
        return -value if neg else value


def _non_empty(body: list[N.Node]) -> bool:
    return any(not (isinstance(n, N.Text) and not n.text.strip()) for n in body)


def _describe(tok: L.Token) -> str:
    if tok.kind == L.EOF:
        return "EOF"
    if tok.kind == L.RDELIM:
        return "}}"
    if tok.kind in (L.STRING, L.RAWSTRING):
        return f'"{tok.value}"'
    if tok.kind == L.FIELD:
        return f"<.{tok.value}>"
    if tok.kind == L.KEYWORD:
        return f"<{tok.value}>"
    return f"<{tok.value}>"


def _marker_text(m: _Marker) -> str:
    return "EOF" if m.kind == "EOF" else f"{{{{{m.kind}}}}}"
