"""Executes a parsed Go template with Go's semantics.

The AST is compiled once into nested Python closures (``node(st, dot)`` writes output,
``expr(st, dot)`` returns a value), so a render does no dispatch on node types. Semantics
follow text/template: truthiness, ``missingkey=zero`` on maps (a missing key is nil and prints
``<no value>``), variables scoped to the enclosing control structure, ``range`` over slices,
maps (sorted keys) and integers, ``break``/``continue``, lazily evaluated ``and``/``or``.

Untrusted templates are bounded: template recursion depth, total loop iterations and output
size are capped and exceeding any of them raises :class:`TemplateError`.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import TemplateError
from . import nodes as N
from .gofmt import GoStruct, type_name, format_v

#: default limits for one execution
MAX_DEPTH = 200               # nested {{template}} calls (Go allows 100000; Python's stack won't)
MAX_STEPS = 2_000_000         # range iterations + template calls
MAX_OUTPUT = 16 * 1024 * 1024  # characters


class ExecError(Exception):
    """Raised inside execution; turned into TemplateError with the position at the top."""

    def __init__(self, msg: str, pos: int) -> None:
        super().__init__(msg)
        self.msg = msg
        self.pos = pos


class _Break(Exception):
    pass


class _Continue(Exception):
    pass


class State:
    __slots__ = ("out", "size", "vars", "steps", "depth", "max_steps", "max_output",
                 "max_depth")

    def __init__(self, root: Any, max_steps: int, max_output: int, max_depth: int) -> None:
        self.out: list[str] = []
        self.size = 0
        self.vars: list[list[Any]] = [["$", root]]
        self.steps = 0
        self.depth = 0
        self.max_steps = max_steps
        self.max_output = max_output
        self.max_depth = max_depth

    def write(self, s: str, pos: int) -> None:
        self.size += len(s)
        if self.size > self.max_output:
            raise ExecError(f"output exceeds the limit of {self.max_output} characters", pos)
        self.out.append(s)

    def step(self, pos: int) -> None:
        self.steps += 1
        if self.steps > self.max_steps:
            raise ExecError(f"execution exceeds the limit of {self.max_steps} steps", pos)

    def lookup(self, name: str, pos: int) -> Any:
        for i in range(len(self.vars) - 1, -1, -1):
            v = self.vars[i]
            if v[0] == name:
                return v[1]
        raise ExecError(f"undefined variable: {name}", pos)

    def assign(self, name: str, value: Any, pos: int) -> None:
        for i in range(len(self.vars) - 1, -1, -1):
            v = self.vars[i]
            if v[0] == name:
                v[1] = value
                return
        raise ExecError(f"undefined variable: {name}", pos)


# -- Go semantics helpers ----------------------------------------------------------------
def is_true(v: Any) -> bool:
    """Go's template truth: false, 0, nil, empty string/slice/map are false; structs true."""
    if v is None:
        return False
    if v is True or v is False:
        return v
    if isinstance(v, (str, list, dict, tuple)):
        return len(v) > 0
    if isinstance(v, (int, float)):
        return v != 0
    return True


def get_field(obj: Any, name: str, pos: int) -> Any:
    if isinstance(obj, dict):
        return obj.get(name)        # missingkey=zero: nil interface
    if isinstance(obj, GoStruct):
        if name in obj._go_fields:
            return getattr(obj, name)
        if name == "String" and hasattr(obj, "go_string"):
            return obj.go_string()
        raise ExecError(f"can't evaluate field {name} in type {obj._go_type}", pos)
    if obj is None:
        raise ExecError(f"nil pointer evaluating interface {{}}.{name}", pos)
    if name == "String" and hasattr(obj, "go_string"):
        return obj.go_string()
    raise ExecError(f"can't evaluate field {name} in type {type_name(obj)}", pos)


def _walk_fields(obj: Any, idents: tuple[str, ...], pos: int) -> Any:
    for name in idents:
        obj = get_field(obj, name, pos)
    return obj


def printable(v: Any) -> str:
    """What an action prints for a value: nil interface prints ``<no value>``."""
    if v is None:
        return "<no value>"
    if type(v) is str:
        return v
    return format_v(v)


Node = Callable[[State, Any], None]
Expr = Callable[[State, Any], Any]


class FuncSpec:
    """A template function. ``lazy`` ones receive unevaluated argument thunks (and/or)."""

    __slots__ = ("fn", "lazy")

    def __init__(self, fn: Callable[..., Any], lazy: bool = False) -> None:
        self.fn = fn
        self.lazy = lazy


class Compiler:
    def __init__(self, funcs: dict[str, FuncSpec], templates: dict[str, list[Node]]) -> None:
        self.funcs = funcs
        self.templates = templates   # filled with compiled defines (shared dict)

    # -- lists / nodes ----------------------------------------------------------------------
    def list(self, body: list[N.Node]) -> Node:
        parts = [self.node(n) for n in body]
        # merge adjacent text for speed
        if not parts:
            return lambda st, dot: None
        if len(parts) == 1:
            return parts[0]
        tup = tuple(parts)

        def run(st: State, dot: Any) -> None:
            for p in tup:
                p(st, dot)
        return run

    def node(self, n: N.Node) -> Node:
        if isinstance(n, N.Text):
            text, pos = n.text, n.pos

            def text_node(st: State, dot: Any) -> None:
                st.size += len(text)
                if st.size > st.max_output:
                    raise ExecError(f"output exceeds the limit of {st.max_output} characters", pos)
                st.out.append(text)
            return text_node
        if isinstance(n, N.Action):
            return self.action(n)
        if isinstance(n, N.If):
            return self.if_with(n, is_with=False)
        if isinstance(n, N.With):
            return self.if_with(n, is_with=True)
        if isinstance(n, N.Range):
            return self.range(n)
        if isinstance(n, N.Break):
            def brk(st: State, dot: Any) -> None:
                raise _Break()
            return brk
        if isinstance(n, N.Continue):
            def cont(st: State, dot: Any) -> None:
                raise _Continue()
            return cont
        if isinstance(n, N.TemplateCall):
            return self.template_call(n)
        raise AssertionError(f"unknown node {n!r}")

    def action(self, n: N.Action) -> Node:
        pipe = self.pipeline(n.pipe)
        pos = n.pos
        if n.pipe.decl:
            def decl_action(st: State, dot: Any) -> None:
                pipe(st, dot)
            return decl_action

        def act(st: State, dot: Any) -> None:
            v = pipe(st, dot)
            s = v if type(v) is str else printable(v)
            st.size += len(s)
            if st.size > st.max_output:
                raise ExecError(f"output exceeds the limit of {st.max_output} characters", pos)
            st.out.append(s)
        return act

    def if_with(self, n: N.If | N.With, is_with: bool) -> Node:
        pipe = self.pipeline(n.pipe)
        body = self.list(n.body)
        else_body = self.list(n.else_body) if n.else_body is not None else None

        def run(st: State, dot: Any) -> None:
            mark = len(st.vars)
            v = pipe(st, dot)
            if is_true(v):
                body(st, v if is_with else dot)
            elif else_body is not None:
                else_body(st, dot)
            del st.vars[mark:]
        return run

    def range(self, n: N.Range) -> Node:
        decl = n.pipe.decl
        is_assign = n.pipe.is_assign
        # evaluate the pipeline without its declaration: range assigns per element
        pipe = self.pipeline(N.Pipeline([], False, n.pipe.cmds, n.pipe.pos))
        body = self.list(n.body)
        else_body = self.list(n.else_body) if n.else_body is not None else None
        pos = n.pos

        def set_vars(st: State, key: Any, elem: Any) -> None:
            if not decl:
                return
            if len(decl) == 1:
                if is_assign:
                    st.assign(decl[0], elem, pos)
                else:
                    st.vars.append([decl[0], elem])
            else:
                if is_assign:
                    st.assign(decl[0], key, pos)
                    st.assign(decl[1], elem, pos)
                else:
                    st.vars.append([decl[0], key])
                    st.vars.append([decl[1], elem])

        def run(st: State, dot: Any) -> None:
            mark = len(st.vars)
            v = pipe(st, dot)
            if v is None:
                items: Any = ()
            elif isinstance(v, dict):
                items = [(k, v[k]) for k in sorted(v, key=_map_key)]
            elif isinstance(v, (list, tuple)):
                items = enumerate(v)
            elif isinstance(v, int) and not isinstance(v, bool):
                if len(decl) > 1:
                    raise ExecError("can't use range over int with two variables", pos)
                if v > st.max_steps:
                    raise ExecError(f"execution exceeds the limit of {st.max_steps} steps", pos)
                items = ((i, i) for i in range(v))
                if len(decl) == 1:
                    items = ((i, i) for i in range(v))
            else:
                raise ExecError(f"range can't iterate over {printable(v)}", pos)
            ran = False
            for key, elem in items:
                ran = True
                st.step(pos)
                set_vars(st, key, elem)
                try:
                    body(st, elem)
                except _Continue:
                    pass
                except _Break:
                    del st.vars[mark:]
                    break
                del st.vars[mark:]
            if not ran and else_body is not None:
                else_body(st, dot)
            del st.vars[mark:]
        return run

    def template_call(self, n: N.TemplateCall) -> Node:
        name, pos = n.name, n.pos
        pipe = self.pipeline(n.pipe) if n.pipe is not None else None
        templates = self.templates

        def call(st: State, dot: Any) -> None:
            body = templates.get(name)
            if body is None:
                raise ExecError(f'no such template "{name}"', pos)
            newdot = pipe(st, dot) if pipe is not None else None
            st.depth += 1
            if st.depth > st.max_depth:
                raise ExecError(f"exceeded maximum template depth ({st.max_depth})", pos)
            st.step(pos)
            saved = st.vars
            st.vars = [["$", newdot]]
            try:
                body[0](st, newdot)
            finally:
                st.vars = saved
                st.depth -= 1
        return call

    # -- pipelines / commands ----------------------------------------------------------------
    def pipeline(self, p: N.Pipeline) -> Expr:
        cmds = [self.command(c, first=(i == 0)) for i, c in enumerate(p.cmds)]
        decl, is_assign, pos = p.decl, p.is_assign, p.pos
        if len(cmds) == 1:
            only = cmds[0]

            def single(st: State, dot: Any) -> Any:
                return only(st, dot, _NOARG)
            evaluate: Expr = single
        else:
            tup = tuple(cmds)

            def chained(st: State, dot: Any) -> Any:
                v: Any = _NOARG
                for c in tup:
                    v = c(st, dot, v)
                return v
            evaluate = chained
        if not decl:
            return evaluate
        name = decl[0]

        def declaring(st: State, dot: Any) -> Any:
            v = evaluate(st, dot)
            if is_assign:
                st.assign(name, v, pos)
            else:
                st.vars.append([name, v])
            return v
        return declaring

    def command(self, c: N.Command, first: bool) -> Callable[[State, Any, Any], Any]:
        head = c.args[0]
        pos = c.pos
        if isinstance(head, N.Ident):
            spec = self.funcs[head.name]
            fn = spec.fn
            name = head.name
            if spec.lazy:
                thunks = tuple(self.operand(a) for a in c.args[1:])

                def lazy_call(st: State, dot: Any, final: Any) -> Any:
                    args: list[Callable[[], Any]] = [
                        (lambda t=t: t(st, dot)) for t in thunks]
                    if final is not _NOARG:
                        args.append(lambda: final)
                    try:
                        return fn(*args)
                    except ExecError:
                        raise
                    except TemplateArgError as e:
                        raise ExecError(f"error calling {name}: {e}", pos) from None
                return lazy_call
            ops = tuple(self.operand(a) for a in c.args[1:])

            def call(st: State, dot: Any, final: Any) -> Any:
                args = [o(st, dot) for o in ops]
                if final is not _NOARG:
                    args.append(final)
                try:
                    return fn(*args)
                except ExecError:
                    raise
                except TemplateArgError as e:
                    raise ExecError(f"error calling {name}: {e}", pos) from None
                except TypeError:
                    raise ExecError(f"wrong number of args for {name}: got {len(args)}",
                                    pos) from None
            return call
        if len(c.args) > 1:
            what = _describe_operand(head)
            raise_msg = f"{what} has arguments but cannot be invoked as function"

            def bad(st: State, dot: Any, final: Any) -> Any:
                raise ExecError(raise_msg, pos)
            return bad
        op = self.operand(head)
        what = _describe_operand(head)

        def value(st: State, dot: Any, final: Any) -> Any:
            if final is not _NOARG:
                raise ExecError(f"can't give argument to non-function {what}", pos)
            return op(st, dot)
        return value

    def operand(self, a: N.Operand) -> Expr:
        if isinstance(a, N.FieldRef):
            idents, pos = a.idents, a.pos
            if len(idents) == 1:
                name = idents[0]

                def field1(st: State, dot: Any) -> Any:
                    if type(dot) is dict:
                        return dot.get(name)
                    return get_field(dot, name, pos)
                return field1

            def fields(st: State, dot: Any) -> Any:
                return _walk_fields(dot, idents, pos)
            return fields
        if isinstance(a, N.VarRef):
            vname, vidents, vpos = a.name, a.idents, a.pos
            if vname == "$":
                def root(st: State, dot: Any) -> Any:
                    return _walk_fields(st.vars[0][1], vidents, vpos)
                return root

            def var(st: State, dot: Any) -> Any:
                return _walk_fields(st.lookup(vname, vpos), vidents, vpos)
            return var
        if isinstance(a, N.Dot):
            return lambda st, dot: dot
        if isinstance(a, N.Literal):
            value = a.value
            if a.is_nil:
                lpos = a.pos

                def nil(st: State, dot: Any) -> Any:
                    raise ExecError("nil is not a command", lpos)
                return nil
            return lambda st, dot: value
        if isinstance(a, N.Ident):
            spec = self.funcs[a.name]
            fn = spec.fn
            if spec.lazy:
                return lambda st, dot: fn()
            ipos, iname = a.pos, a.name

            def niladic(st: State, dot: Any) -> Any:
                try:
                    return fn()
                except TemplateArgError as e:
                    raise ExecError(f"error calling {iname}: {e}", ipos) from None
                except TypeError:
                    raise ExecError(f"wrong number of args for {iname}: got 0", ipos) from None
            return niladic
        if isinstance(a, N.Chain):
            inner = self.operand(a.node)
            cidents, cpos = a.idents, a.pos
            return lambda st, dot: _walk_fields(inner(st, dot), cidents, cpos)
        if isinstance(a, N.Pipeline):
            inner_pipe = self.pipeline(a)
            mark_pipe = bool(a.decl)
            if not mark_pipe:
                return inner_pipe
            return inner_pipe
        raise AssertionError(f"unknown operand {a!r}")


class TemplateArgError(Exception):
    """Raised by template functions for bad arguments (becomes 'error calling f: ...')."""


class _NoArg:
    __slots__ = ()


_NOARG: Any = _NoArg()


def _map_key(k: Any) -> Any:
    return (0, k) if isinstance(k, (int, float)) and not isinstance(k, bool) else (1, str(k))


def _describe_operand(a: N.Operand) -> str:
    if isinstance(a, N.FieldRef):
        return "." + ".".join(a.idents)
    if isinstance(a, N.VarRef):
        return a.name + "".join("." + i for i in a.idents)
    if isinstance(a, N.Dot):
        return "."
    if isinstance(a, N.Literal):
        return repr(a.value)
    return "operand"


def run(body: Node, data: Any, *, source: Any, max_steps: int = MAX_STEPS,
        max_output: int = MAX_OUTPUT, max_depth: int = MAX_DEPTH) -> str:
    st = State(data, max_steps, max_output, max_depth)
    try:
        body(st, data)
    except ExecError as e:
        raise source.error(f"executing: {e.msg}", e.pos) from None
    except RecursionError:
        raise TemplateError(f"{source.name}: template nesting too deep") from None
    return "".join(st.out)
