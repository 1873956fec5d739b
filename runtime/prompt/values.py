"""Ollama's template values, built from /api/chat-shaped JSON.

Templates see what Ollama's template package hands them: ``.Messages`` of structs with Role,
Content, Thinking, Images, ToolCalls (ID, Function.Index/Name/Arguments), ToolName, ToolCallID;
``.Tools`` of structs (Type, Items, Function.Name/Description/Parameters with Type, Defs, Items,
Required, Properties of ToolProperty: AnyOf, Type, Items, Description, Enum, Properties).

String forms follow Ollama's ``String()`` methods: ``.Tools``, a tool, ``.Function``,
``.Parameters``, ``.Properties`` and ``.Arguments`` print as compact JSON (Go's encoding/json:
HTML-safe escapes, map keys sorted); a property's ``.Type`` prints its type name. Numbers
inside JSON values are float64 as in Go (``3`` prints as ``3``, ``1e6`` as ``1e+06``).
"""
from __future__ import annotations

import json
from typing import Any

from runtime.errors import TemplateError
from runtime.prompt.gofmt import GoStruct, json_marshal


def _obj(v: Any, what: str) -> dict[str, Any]:
    """A JSON object from a request, {} when absent; anything else is a clear error."""
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise TemplateError(f"{what} must be a JSON object, got {type(v).__name__}")
    return v


def _list(v: Any, what: str) -> list[Any]:
    if v is None:
        return []
    if not isinstance(v, list):
        raise TemplateError(f"{what} must be a JSON array, got {type(v).__name__}")
    return v


def go_any(v: Any) -> Any:
    """JSON-decoded value as Go's ``any`` holds it: every number becomes float64."""
    if v is True or v is False or v is None or isinstance(v, str):
        return v
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, list):
        return [go_any(x) for x in v]
    if isinstance(v, dict):
        return {str(k): go_any(x) for k, x in v.items()}
    return v


class JSONMap(dict):
    """A Go map whose String() is its JSON (Ollama's templateArgs / templateProperties)."""

    _go_type = "map[string]interface {}"

    def go_string(self) -> str:
        return json_marshal(dict(self))


class PropertyType(list):
    """api.PropertyType: one type prints as itself, several as [a b]; JSON str or array."""

    _go_type = "api.PropertyType"

    def go_string(self) -> str:
        if not self:
            return ""
        if len(self) == 1:
            return str(self[0])
        return "[" + " ".join(self) + "]"

    def go_json(self) -> Any:
        return self[0] if len(self) == 1 else list(self)


class ToolList(list):
    _go_type = "api.Tools"

    def go_string(self) -> str:
        return json_marshal(list(self))


_TS = {"string": "string", "number": "number", "integer": "number", "boolean": "boolean",
       "array": "any[]", "object": "Record<string, any>", "null": "null"}


class ToolProperty(GoStruct):
    __slots__ = ("AnyOf", "Description", "Enum", "Items", "Properties", "Type")
    _go_fields = __slots__
    _go_type = "api.ToolProperty"

    def __init__(self, d: Any) -> None:
        d = _obj(d, "a tool parameter property")
        self.AnyOf = [ToolProperty(x) for x in _list(d.get("anyOf"), "anyOf")] or None
        t = d.get("type")
        self.Type = PropertyType([t] if isinstance(t, str) else
                                 [str(x) for x in _list(t, "a property type")])
        self.Items = go_any(d.get("items"))
        self.Description = str(d.get("description") or "")
        self.Enum = go_any(d.get("enum")) or None
        props = d.get("properties")
        self.Properties = (JSONMap({k: ToolProperty(v) for k, v in props.items()})
                           if isinstance(props, dict) else None)

    def go_json(self) -> list[tuple[str, Any]]:
        out: list[tuple[str, Any]] = []
        if self.AnyOf:
            out.append(("anyOf", self.AnyOf))
        if self.Type:
            out.append(("type", self.Type))
        if self.Items is not None:
            out.append(("items", self.Items))
        if self.Description:
            out.append(("description", self.Description))
        if self.Enum:
            out.append(("enum", self.Enum))
        if self.Properties is not None:
            out.append(("properties", dict(self.Properties)))
        return out

    def to_typescript_type(self) -> str:
        if self.AnyOf:
            return " | ".join(p.to_typescript_type() for p in self.AnyOf)
        if not self.Type:
            return "any"
        return " | ".join(_TS.get(t, "any") for t in self.Type)


class ToolParameters(GoStruct):
    __slots__ = ("Defs", "Items", "Properties", "Required", "Type")
    _go_fields = __slots__
    _go_type = "api.ToolFunctionParameters"

    def __init__(self, d: Any) -> None:
        d = _obj(d, "a tool's parameters")
        self.Type = str(d.get("type") or "")
        self.Defs = go_any(d.get("$defs"))
        self.Items = go_any(d.get("items"))
        self.Required = [str(x) for x in _list(d.get("required"), "required")]
        props = _obj(d.get("properties"), "parameters.properties")
        self.Properties = JSONMap({k: ToolProperty(v) for k, v in props.items()})

    def go_string(self) -> str:
        return json_marshal(self)

    def go_json(self) -> list[tuple[str, Any]]:
        out: list[tuple[str, Any]] = [("type", self.Type)]
        if self.Defs is not None:
            out.append(("$defs", self.Defs))
        if self.Items is not None:
            out.append(("items", self.Items))
        if self.Required:
            out.append(("required", self.Required))
        out.append(("properties", dict(self.Properties)))
        return out


class ToolFunction(GoStruct):
    __slots__ = ("Description", "Name", "Parameters")
    _go_fields = __slots__
    _go_type = "api.ToolFunction"

    def __init__(self, d: Any) -> None:
        d = _obj(d, "a tool's function")
        self.Name = str(d.get("name") or "")
        self.Description = str(d.get("description") or "")
        self.Parameters = ToolParameters(d.get("parameters"))

    def go_string(self) -> str:
        return json_marshal(self)

    def go_json(self) -> list[tuple[str, Any]]:
        # template.templateToolFunction: `json:"description"` has no omitempty, so an empty
        # description is written as "" (api.ToolFunction would omit it; templates get the former)
        return [("name", self.Name), ("description", self.Description),
                ("parameters", self.Parameters)]


class Tool(GoStruct):
    __slots__ = ("Function", "Items", "Type")
    _go_fields = __slots__
    _go_type = "api.Tool"

    def __init__(self, d: dict[str, Any]) -> None:
        if not isinstance(d, dict):
            raise TemplateError(f"a tool must be a JSON object, got {type(d).__name__}")
        self.Type = str(d.get("type") or "")
        self.Items = go_any(d.get("items"))
        self.Function = ToolFunction(d.get("function"))

    def go_string(self) -> str:
        return json_marshal(self)

    def go_json(self) -> list[tuple[str, Any]]:
        out: list[tuple[str, Any]] = [("type", self.Type)]
        if self.Items is not None:
            out.append(("items", self.Items))
        out.append(("function", self.Function))
        return out


class ToolCallFunction(GoStruct):
    __slots__ = ("Arguments", "Index", "Name")
    _go_fields = __slots__
    _go_type = "template.templateToolCallFunction"

    def __init__(self, d: Any) -> None:
        d = _obj(d, "a tool call's function")
        index = d.get("index") or 0
        if not isinstance(index, int) or isinstance(index, bool):
            raise TemplateError("a tool call's index must be an integer")
        self.Index = index
        self.Name = str(d.get("name") or "")
        args = d.get("arguments")
        if isinstance(args, str):       # OpenAI-style JSON text
            try:
                args = json.loads(args) if args.strip() else {}
            except ValueError:
                raise TemplateError(f"tool call arguments are not JSON: {args[:80]!r}") from None
        self.Arguments = JSONMap(go_any(_obj(args, "tool call arguments")))


class ToolCall(GoStruct):
    __slots__ = ("Function", "ID")
    _go_fields = __slots__
    _go_type = "template.templateToolCall"

    def __init__(self, d: Any) -> None:
        d = _obj(d, "a tool call")
        self.ID = str(d.get("id") or "")
        self.Function = ToolCallFunction(d.get("function"))


class Message(GoStruct):
    __slots__ = ("Content", "Images", "Role", "Thinking", "ToolCallID", "ToolCalls", "ToolName")
    _go_fields = __slots__
    _go_type = "*template.templateMessage"

    def __init__(self, role: str, content: str, thinking: str = "", images: Any = None,
                 tool_calls: list[ToolCall] | None = None, tool_name: str = "",
                 tool_call_id: str = "") -> None:
        self.Role = role
        self.Content = content
        self.Thinking = thinking
        self.Images = images
        self.ToolCalls = tool_calls
        self.ToolName = tool_name
        self.ToolCallID = tool_call_id


def message_from_api(m: dict[str, Any]) -> dict[str, Any]:
    """Validate and normalise one /api/chat message (role lower-cased, as Ollama does)."""
    if not isinstance(m, dict):
        raise TemplateError(f"a message must be a JSON object, got {type(m).__name__}")
    role = m.get("role")
    if not isinstance(role, str):
        raise TemplateError("every message needs a string \"role\"")
    content = m.get("content")
    if content is not None and not isinstance(content, str):
        raise TemplateError("message content must be a string")
    _list(m.get("tool_calls"), "a message's tool_calls")
    _list(m.get("images"), "a message's images")
    if content and role.islower():
        return m
    return {**m, "role": role.lower(), "content": content or ""}


def to_template_message(m: dict[str, Any]) -> Message:
    calls = m.get("tool_calls") or None
    return Message(
        role=m["role"], content=m.get("content") or "", thinking=m.get("thinking") or "",
        images=m.get("images") or None,
        tool_calls=[ToolCall(c) for c in calls] if calls else None,
        tool_name=m.get("tool_name") or "", tool_call_id=m.get("tool_call_id") or "")


def to_template_tools(tools: list[dict[str, Any]] | None) -> ToolList | None:
    if tools is None:
        return None
    return ToolList(Tool(t) for t in _list(tools, "tools"))
