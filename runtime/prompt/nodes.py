"""AST of a parsed Go template (mirrors text/template/parse's node kinds)."""
from __future__ import annotations

import sys
from dataclasses import dataclass, field

# slots make the many small nodes cheaper; dataclass(slots=) is Python 3.10+, and the target
# host may run 3.9 (RHEL 9, Debian 11)
_slotted = dataclass(slots=True) if sys.version_info >= (3, 10) else dataclass  # novermin
from typing import Any, Union


@_slotted
class Text:
    text: str
    pos: int


@_slotted
class FieldRef:                 # .A.B
    idents: tuple[str, ...]
    pos: int


@_slotted
class VarRef:                   # $x.A.B  ($ alone: name "$")
    name: str
    idents: tuple[str, ...]
    pos: int


@_slotted
class Dot:
    pos: int


@_slotted
class Literal:                  # string, number, bool, nil
    value: Any
    pos: int
    is_nil: bool = False


@_slotted
class Ident:                    # function name
    name: str
    pos: int


@_slotted
class Chain:                    # (pipeline).A.B
    node: "Operand"
    idents: tuple[str, ...]
    pos: int


@_slotted
class Command:
    args: list["Operand"]
    pos: int


@_slotted
class Pipeline:
    decl: list[str]             # variable names declared or assigned
    is_assign: bool
    cmds: list[Command]
    pos: int


@_slotted
class Action:
    pipe: Pipeline
    pos: int


@_slotted
class If:
    pipe: Pipeline
    body: list["Node"]
    else_body: list["Node"] | None
    pos: int


@_slotted
class With:
    pipe: Pipeline
    body: list["Node"]
    else_body: list["Node"] | None
    pos: int


@_slotted
class Range:
    pipe: Pipeline
    body: list["Node"]
    else_body: list["Node"] | None
    pos: int


@_slotted
class Break:
    pos: int


@_slotted
class Continue:
    pos: int


@_slotted
class TemplateCall:             # {{template "name" pipeline}}
    name: str
    pipe: Pipeline | None
    pos: int


@_slotted
class Tree:
    name: str
    body: list["Node"] = field(default_factory=list)


Operand = Union[FieldRef, VarRef, Dot, Literal, Ident, Chain, Pipeline]
Node = Union[Text, Action, If, With, Range, Break, Continue, TemplateCall]
