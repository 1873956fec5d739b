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

from runtime.errors import TemplateError
from runtime.prompt import nodes as N
from runtime.prompt.gofmt import GoStruct, format_v, type_name

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
    __slots__ = (
        "depth",
        "max_depth",
        "max_output",
        "max_steps",
        "out",
        "size",
        "steps",
        "vars",
    )

    def __init__(self, root: Any, max_steps: int, max_output: int, max_depth: int) -> None:
        self.out: list[str] = []
        self.size = 0
        self.vars: list[list[Any]] = [["$", root]]
        self.steps = 0
        self.depth = 0
        self.max_steps = max_steps
        self.max_output = max_output
        self.max_depth = max_depth

    def step(self, pos: int, count: bool = False) -> None:
        # Checked per range iteration and template call: the only ways output can grow without
        # bound (text is fixed; one value is bounded by the data or by funcs.MAX_VALUE).
        if count:
            self.steps += 1
        if self.steps > self.max_steps:
            raise ExecError(f"execution exceeds the limit of {self.max_steps} steps", pos)
        if self.size > self.max_output:
            raise ExecError(f"output exceeds the limit of {self.max_output} characters", pos)

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
class _NoValue:
    """Go's invalid reflect.Value: the dot of ``{{template "t"}}`` called without a pipeline.
    Unlike nil, fields of it are not an error: they are no value too."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<no value>"


NO_VALUE: Any = _NoValue()


def is_true(v: Any) -> bool:
    """Go's template truth: false, 0, nil, empty string/slice/map are false; structs true."""
    if v is None or v is NO_VALUE:
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
    if obj is NO_VALUE:
        return NO_VALUE
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
        if type(obj) is dict:
            obj = obj.get(name)
        elif isinstance(obj, GoStruct) and name[:1].isupper() and name in obj._go_fields:
            obj = getattr(obj, name)
        else:
            obj = get_field(obj, name, pos)
    return obj


def printable(v: Any) -> str:
    """What an action prints for a value: nil interface prints ``<no value>``."""
    if v is None or v is NO_VALUE:
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
        merged: list[N.Node] = []
        for n in body:       # text split by comments becomes one text node
            if isinstance(n, N.Text) and merged and isinstance(merged[-1], N.Text):
                merged[-1] = N.Text(merged[-1].text + n.text, merged[-1].pos)
            else:
                merged.append(n)
        parts = [self.node(n) for n in merged]
        if not parts:
            return lambda st, dot: None
        if len(parts) == 1:
            return parts[0]
        if len(parts) == 2:
            p0, p1 = parts

            def run2(st: State, dot: Any) -> None:
                p0(st, dot)
                p1(st, dot)
            return run2
        if len(parts) == 3:
            q0, q1, q2 = parts

            def run3(st: State, dot: Any) -> None:
                q0(st, dot)
                q1(st, dot)
                q2(st, dot)
            return run3
        tup = tuple(parts)

        def run(st: State, dot: Any) -> None:
            for p in tup:
                p(st, dot)
        return run

    def node(self, n: N.Node) -> Node:
        if isinstance(n, N.Text):
            text = n.text
            size = len(text)

            def text_node(st: State, dot: Any) -> None:
                st.size += size         # checked in State.step and at the end
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
        if not _declares(n):
            # no variable can be declared in this scope: nothing to pop at {{end}}
            if is_with:
                def run_with(st: State, dot: Any) -> None:
                    v = pipe(st, dot)
                    if is_true(v):
                        body(st, v)
                    elif else_body is not None:
                        else_body(st, dot)
                return run_with

            def run_if(st: State, dot: Any) -> None:
                if is_true(pipe(st, dot)):
                    body(st, dot)
                elif else_body is not None:
                    else_body(st, dot)
            return run_if

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

        two = len(decl) == 2 and not is_assign
        one = len(decl) == 1 and not is_assign
        needs_pop = bool(decl) or _declares(n)

        def run(st: State, dot: Any) -> None:
            mark = len(st.vars)
            v = pipe(st, dot)
            if v is None or v is NO_VALUE:
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
            else:
                raise ExecError(f"range can't iterate over {printable(v)}", pos)
            ran = False
            out_vars = st.vars
            for key, elem in items:
                ran = True
                st.steps += 1
                if st.steps > st.max_steps or st.size > st.max_output:
                    st.step(pos)
                if two:
                    out_vars.append([decl[0], key])
                    out_vars.append([decl[1], elem])
                elif one:
                    out_vars.append([decl[0], elem])
                elif decl:
                    set_vars(st, key, elem)
                try:
                    body(st, elem)
                except _Continue:
                    pass
                except _Break:
                    break
                finally:
                    if needs_pop:
                        del out_vars[mark:]
            if not ran and else_body is not None:
                else_body(st, dot)
            if needs_pop:
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
            newdot = pipe(st, dot) if pipe is not None else NO_VALUE
            st.depth += 1
            if st.depth > st.max_depth:
                raise ExecError(f"exceeded maximum template depth ({st.max_depth})", pos)
            st.step(pos, count=True)
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
        first = self.command_first(p.cmds[0])
        rest = tuple(self.command_piped(c) for c in p.cmds[1:])
        decl, is_assign, pos = p.decl, p.is_assign, p.pos
        if not rest:
            evaluate: Expr = first
        else:
            def chained(st: State, dot: Any) -> Any:
                v = first(st, dot)
                for c in rest:
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

    def command_first(self, c: N.Command) -> Expr:
        """The first command of a pipeline: no piped-in argument."""
        head = c.args[0]
        if isinstance(head, N.Ident):
            spec = self.funcs[head.name]
            ops = tuple(self.operand(a) for a in c.args[1:])
            lit = c.args[2] if len(c.args) == 3 else None
            if head.name in ("eq", "ne") and isinstance(lit, N.Literal) \
                    and type(lit.value) is str:
                # {{ if eq .Role "user" }}: the commonest test in chat templates
                return self._compare_str(head.name, spec.fn, ops[0], lit.value, c.pos)
            if spec.lazy:
                return self._lazy(head.name, ops, _NOARG, c.pos)
            return self._call(head.name, spec.fn, ops, c.pos)
        if len(c.args) > 1:
            return self._bad_args(head, c.pos)
        if isinstance(head, N.Literal) and head.is_nil:
            def nil_command(st: State, dot: Any) -> Any:
                raise ExecError("nil is not a command", c.pos)
            return nil_command
        return self.operand(head)

    def command_piped(self, c: N.Command) -> Callable[[State, Any, Any], Any]:
        """A later command: the previous command's value is its final argument."""
        head = c.args[0]
        pos = c.pos
        if isinstance(head, N.Ident):
            spec = self.funcs[head.name]
            ops = tuple(self.operand(a) for a in c.args[1:])
            name, fn = head.name, spec.fn
            if spec.lazy:
                def lazy_piped(st: State, dot: Any, final: Any) -> Any:
                    return Compiler._lazy(name, ops, final, pos)(st, dot)
                return lazy_piped

            def piped(st: State, dot: Any, final: Any) -> Any:
                args = [o(st, dot) for o in ops]
                args.append(final)
                return _invoke(name, fn, args, pos)
            return piped
        if len(c.args) > 1:
            bad = self._bad_args(head, pos)
            return lambda st, dot, final: bad(st, dot)
        what = _describe_operand(head)

        def not_function(st: State, dot: Any, final: Any) -> Any:
            raise ExecError(f"can't give argument to non-function {what}", pos)
        return not_function

    @staticmethod
    def _compare_str(name: str, fn: Callable[..., Any], a: Expr, lit: str, pos: int) -> Expr:
        want_equal = name == "eq"

        def compare(st: State, dot: Any) -> Any:
            x = a(st, dot)
            if type(x) is str:
                return (x == lit) is want_equal
            return _invoke(name, fn, [x, lit], pos)     # NO_VALUE becomes nil there
        return compare

    @staticmethod
    def _bad_args(head: N.Operand, pos: int) -> Expr:
        msg = f"{_describe_operand(head)} has arguments but cannot be invoked as function"

        def bad(st: State, dot: Any) -> Any:
            raise ExecError(msg, pos)
        return bad

    @staticmethod
    def _lazy(name: str, ops: tuple[Expr, ...], final: Any, pos: int) -> Expr:
        """and/or: evaluate operands left to right, stop at the first false/true one.
        ``final`` is the piped-in value (the last operand), or _NOARG."""
        want = name == "or"
        if not ops and final is _NOARG:
            def missing(st: State, dot: Any) -> Any:
                raise ExecError(f"wrong number of args for {name}: want at least 1 got 0", pos)
            return missing
        has_final = final is not _NOARG

        def run_lazy(st: State, dot: Any) -> Any:
            v: Any = None
            for o in ops:
                v = o(st, dot)
                if is_true(v) is want:
                    return v
            if has_final:
                v = final
            return v
        return run_lazy

    @staticmethod
    def _call(name: str, fn: Callable[..., Any], ops: tuple[Expr, ...], pos: int) -> Expr:
        n = len(ops)
        if n == 0:
            return lambda st, dot: _invoke(name, fn, [], pos)
        if n == 1:
            (a,) = ops

            def call1(st: State, dot: Any) -> Any:
                x = a(st, dot)
                if x is NO_VALUE:
                    x = None
                try:
                    return fn(x)
                except (TemplateArgError, TypeError):
                    return _invoke(name, fn, [x], pos)
            return call1
        if n == 2:
            a, b = ops

            def call2(st: State, dot: Any) -> Any:
                x, y = a(st, dot), b(st, dot)
                if x is NO_VALUE or y is NO_VALUE:
                    return _invoke(name, fn, [x, y], pos)
                try:
                    return fn(x, y)
                except (TemplateArgError, TypeError):
                    return _invoke(name, fn, [x, y], pos)
            return call2

        def calln(st: State, dot: Any) -> Any:
            return _invoke(name, fn, [o(st, dot) for o in ops], pos)
        return calln

    def operand(self, a: N.Operand) -> Expr:
        if isinstance(a, N.FieldRef):
            idents, pos = a.idents, a.pos
            if len(idents) == 1:
                name = idents[0]
                exported = name[:1].isupper()   # struct fields are exported (upper case)

                def field1(st: State, dot: Any) -> Any:
                    if type(dot) is dict:
                        return dot.get(name)
                    if exported and isinstance(dot, GoStruct):
                        try:
                            return getattr(dot, name)
                        except AttributeError:
                            pass
                    return get_field(dot, name, pos)
                return field1

            def fields(st: State, dot: Any) -> Any:
                return _walk_fields(dot, idents, pos)
            return fields
        if isinstance(a, N.VarRef):
            vname, vidents, vpos = a.name, a.idents, a.pos
            if vname == "$":
                if len(vidents) == 1:
                    rname = vidents[0]

                    def root1(st: State, dot: Any) -> Any:
                        r = st.vars[0][1]
                        if type(r) is dict:
                            return r.get(rname)
                        return get_field(r, rname, vpos)
                    return root1

                def root(st: State, dot: Any) -> Any:
                    return _walk_fields(st.vars[0][1], vidents, vpos)
                return root
            if not vidents:
                def plain_var(st: State, dot: Any) -> Any:
                    vs = st.vars
                    for i in range(len(vs) - 1, -1, -1):
                        if vs[i][0] == vname:
                            return vs[i][1]
                    raise ExecError(f"undefined variable: {vname}", vpos)
                return plain_var

            def var(st: State, dot: Any) -> Any:
                return _walk_fields(st.lookup(vname, vpos), vidents, vpos)
            return var
        if isinstance(a, N.Dot):
            return lambda st, dot: dot
        if isinstance(a, N.Literal):
            value = a.value
            return lambda st, dot: value
        if isinstance(a, N.Ident):
            spec = self.funcs[a.name]
            if spec.lazy:
                return self._lazy(a.name, (), _NOARG, a.pos)
            return self._call(a.name, spec.fn, (), a.pos)
        if isinstance(a, N.Chain):
            inner = self.operand(a.node)
            cidents, cpos = a.idents, a.pos
            return lambda st, dot: _walk_fields(inner(st, dot), cidents, cpos)
        if isinstance(a, N.Pipeline):
            return self.pipeline(a)
        raise AssertionError(f"unknown operand {a!r}")


class TemplateArgError(Exception):
    """Raised by template functions for bad arguments (becomes 'error calling f: ...')."""


def _invoke(name: str, fn: Callable[..., Any], args: list[Any], pos: int) -> Any:
    args = [None if a is NO_VALUE else a for a in args]
    try:
        return fn(*args)
    except ExecError:
        raise
    except TemplateArgError as e:
        raise ExecError(f"error calling {name}: {e}", pos) from None
    except TypeError:
        raise ExecError(f"wrong number of args for {name}: got {len(args)}", pos) from None


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


def _declares(n: N.If | N.With | N.Range) -> bool:
    """Whether a control structure can declare variables in its own scope."""
    def pipe_declares(p: N.Pipeline) -> bool:
        return bool(p.decl) or any(isinstance(a, N.Pipeline) and pipe_declares(a)
                                   for c in p.cmds for a in c.args)
    if pipe_declares(n.pipe):
        return True
    for body in (n.body, n.else_body or []):
        for x in body:
            # nested structures pop their own variables; only direct actions matter
            if isinstance(x, N.Action) and pipe_declares(x.pipe):
                return True
    return False


def run(body: Node, data: Any, *, source: Any, max_steps: int = MAX_STEPS,
        max_output: int = MAX_OUTPUT, max_depth: int = MAX_DEPTH) -> str:
    st = State(data, max_steps, max_output, max_depth)
    try:
        body(st, data)
        if st.size > max_output:
            raise ExecError(f"output exceeds the limit of {max_output} characters", 0)
    except ExecError as e:
        raise source.error(f"executing: {e.msg}", e.pos) from None
    except RecursionError:
        raise TemplateError(f"{source.name}: template nesting too deep") from None
    return "".join(st.out)
