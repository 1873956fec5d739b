"""``GoTemplate``: parse once, execute many times (thread-safe: execution state is per call)."""
from __future__ import annotations

from typing import Any

from runtime.errors import TemplateError
from runtime.prompt import executor
from runtime.prompt import nodes as N
from runtime.prompt.funcs import ALL_FUNCS
from runtime.prompt.lexer import Source
from runtime.prompt.parser import Parser


class GoTemplate:
    """A parsed Go text/template with Ollama's functions and ``missingkey=zero``."""

    def __init__(self, source: Source, root: N.Tree, defines: dict[str, N.Tree]) -> None:
        self.source = source
        self.root = root
        self.defines = defines
        self._compiled: dict[str, list[executor.Node]] = {}
        compiler = executor.Compiler(ALL_FUNCS, self._compiled)
        for name, tree in defines.items():
            self._compiled[name] = [compiler.list(tree.body)]
        self._body = compiler.list(root.body)
        self._vars: frozenset[str] | None = None

    @classmethod
    def parse(cls, text: str, *, name: str = "template") -> GoTemplate:
        """Parse ``text``; raises TemplateError("name: msg", pos="line:col") on bad syntax."""
        src = Source(text, name)
        try:
            root, defines = Parser(src, ALL_FUNCS).parse()
            return cls(src, root, defines)
        except RecursionError:
            raise TemplateError("template nests too deeply") from None

    @property
    def text(self) -> str:
        return self.source.text

    def execute(self, data: Any, *, max_steps: int = executor.MAX_STEPS,
                max_output: int = executor.MAX_OUTPUT,
                max_depth: int = executor.MAX_DEPTH) -> str:
        """Render with ``data`` as dot. Bounded: see :mod:`.executor` for the limits."""
        return executor.run(self._body, data, source=self.source, max_steps=max_steps,
                            max_output=max_output, max_depth=max_depth)

    # -- Ollama's identifier scan (template.Vars) -------------------------------------------
    def vars(self) -> frozenset[str]:
        """Lower-cased identifiers of every field and variable, across all defined templates."""
        if self._vars is None:
            names: set[str] = set()
            for tree in [self.root, *self.defines.values()]:
                for n in tree.body:
                    _identifiers(n, names)
            self._vars = frozenset(x.lower() for x in names)
        return self._vars

    def uses(self, field: str) -> bool:
        """Whether the template mentions ``field`` (e.g. "Messages", "Tools", "Suffix")."""
        return field.lower() in self.vars()


def _identifiers(n: Any, out: set[str]) -> None:
    """Mirror of Ollama's template.Identifiers: fields and variables reachable from actions,
    branch pipelines, bodies and template calls (not through parenthesized chains)."""
    if isinstance(n, N.Action):
        _identifiers(n.pipe, out)
    elif isinstance(n, (N.If, N.With, N.Range)):
        _identifiers(n.pipe, out)
        for sub in n.body:
            _identifiers(sub, out)
        for sub in n.else_body or ():
            _identifiers(sub, out)
    elif isinstance(n, N.TemplateCall):
        if n.pipe is not None:
            _identifiers(n.pipe, out)
    elif isinstance(n, N.Pipeline):
        for c in n.cmds:
            for a in c.args:
                _identifiers(a, out)
    elif isinstance(n, N.FieldRef):
        out.update(n.idents)
    elif isinstance(n, N.VarRef):
        out.add(n.name)
        out.update(n.idents)
