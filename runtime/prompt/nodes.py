"""AST of a parsed Go template (mirrors text/template/parse's node kinds)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Union


@dataclass(slots=True)
class Text:
    text: str
    pos: int


@dataclass(slots=True)
class FieldRef:                 # .A.B
    idents: tuple[str, ...]
    pos: int


@dataclass(slots=True)
class VarRef:                   # $x.A.B  ($ alone: name "$")
    name: str
    idents: tuple[str, ...]
    pos: int


@dataclass(slots=True)
class Dot:
    pos: int


@dataclass(slots=True)
class Literal:                  # string, number, bool, nil
    value: Any
    pos: int
    is_nil: bool = False


@dataclass(slots=True)
class Ident:                    # function name
    name: str
    pos: int


@dataclass(slots=True)
class Chain:                    # (pipeline).A.B
    node: "Operand"
    idents: tuple[str, ...]
    pos: int


@dataclass(slots=True)
class Command:
    args: list["Operand"]
    pos: int


@dataclass(slots=True)
class Pipeline:
    decl: list[str]             # variable names declared or assigned
    is_assign: bool
    cmds: list[Command]
    pos: int


@dataclass(slots=True)
class Action:
    pipe: Pipeline
    pos: int


@dataclass(slots=True)
class If:
    pipe: Pipeline
    body: list["Node"]
    else_body: list["Node"] | None
    pos: int


@dataclass(slots=True)
class With:
    pipe: Pipeline
    body: list["Node"]
    else_body: list["Node"] | None
    pos: int


@dataclass(slots=True)
class Range:
    pipe: Pipeline
    body: list["Node"]
    else_body: list["Node"] | None
    pos: int


@dataclass(slots=True)
class Break:
    pos: int


@dataclass(slots=True)
class Continue:
    pos: int


@dataclass(slots=True)
class TemplateCall:             # {{template "name" pipeline}}
    name: str
    pipe: Pipeline | None
    pos: int


@dataclass(slots=True)
class Tree:
    name: str
    body: list["Node"] = field(default_factory=list)


Operand = Union[FieldRef, VarRef, Dot, Literal, Ident, Chain, Pipeline]
Node = Union[Text, Action, If, With, Range, Break, Continue, TemplateCall]
