"""AST of a parsed Go template (mirrors text/template/parse's node kinds)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Union


@dataclass
class Text:
    text: str
    pos: int


@dataclass
class FieldRef:                 # .A.B
    idents: tuple[str, ...]
    pos: int


@dataclass
class VarRef:                   # $x.A.B  ($ alone: name "$")
    name: str
    idents: tuple[str, ...]
    pos: int


@dataclass
class Dot:
    pos: int


@dataclass
class Literal:                  # string, number, bool, nil
    value: Any
    pos: int
    is_nil: bool = False


@dataclass
class Ident:                    # function name
    name: str
    pos: int


@dataclass
class Chain:                    # (pipeline).A.B
    node: Operand
    idents: tuple[str, ...]
    pos: int


@dataclass
class Command:
    args: list[Operand]
    pos: int


@dataclass
class Pipeline:
    decl: list[str]             # variable names declared or assigned
    is_assign: bool
    cmds: list[Command]
    pos: int


@dataclass
class Action:
    pipe: Pipeline
    pos: int


@dataclass
class If:
    pipe: Pipeline
    body: list[Node]
    else_body: list[Node] | None
    pos: int


@dataclass
class With:
    pipe: Pipeline
    body: list[Node]
    else_body: list[Node] | None
    pos: int


@dataclass
class Range:
    pipe: Pipeline
    body: list[Node]
    else_body: list[Node] | None
    pos: int


@dataclass
class Break:
    pos: int


@dataclass
class Continue:
    pos: int


@dataclass
class TemplateCall:             # {{template "name" pipeline}}
    name: str
    pipe: Pipeline | None
    pos: int


@dataclass
class Tree:
    name: str
    body: list[Node] = field(default_factory=list)


Operand = Union[FieldRef, VarRef, Dot, Literal, Ident, Chain, Pipeline]
Node = Union[Text, Action, If, With, Range, Break, Continue, TemplateCall]
