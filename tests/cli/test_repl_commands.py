"""The REPL's / commands are tables: each listed name reaches its handler, and the help texts
are made from the same tables (so a command cannot be added without its help line)."""
from __future__ import annotations

from typing import Any

import pytest

from runtime.cli import repl
from runtime.cli.session import Session


class FakeClient:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def show(self, name: str, **_: Any) -> dict[str, Any]:
        self.calls.append(f"show {name}")
        return {"license": "MIT", "modelfile": "FROM x", "parameters": "stop <eos>",
                "system": "be brief", "template": "{{ .Prompt }}", "details": {}}

    def list(self) -> list[dict[str, Any]]:
        self.calls.append("list")
        return []


def _repl() -> tuple[repl.Repl, FakeClient]:
    client = FakeClient()
    return repl.Repl(client, Session(model="m")), client  # type: ignore[arg-type]


def test_help_lists_every_documented_command_from_the_table() -> None:
    for c in repl.COMMANDS:
        if c.usage:
            assert f"  {c.usage:<16}{c.summary}\n" in repl.USAGE
    for s in repl.SET_COMMANDS:
        assert f"  {s.usage:<23}{s.summary}\n" in repl.USAGE_SET
    for w in repl.SHOW_COMMANDS:
        assert f"  /show {w.name:<13}{w.summary}\n" in repl.USAGE_SHOW
    assert repl.USAGE.startswith("Available Commands:\n  /set            Set session variables\n")
    assert repl.USAGE.endswith('\nUse """ to begin a multi-line message.\n\n')


@pytest.mark.parametrize("topic, text", [("", "USAGE"), ("set", "USAGE_SET"), ("/show", "USAGE_SHOW"),
                                         ("shortcuts", "USAGE_SHORTCUTS")])
def test_help_topics(topic: str, text: str, capsys: pytest.CaptureFixture[str]) -> None:
    r, _ = _repl()
    assert r._handle(f"/? {topic}".strip()) is None
    assert capsys.readouterr().err == getattr(repl, text)


def test_each_name_reaches_its_handler(capsys: pytest.CaptureFixture[str]) -> None:
    r, client = _repl()
    assert r._handle("/bye") == "exit" and r._handle("/exit") == "exit"
    r._handle("/set verbose")
    r._handle("/set parameter temperature 0.5")
    r._handle("/set system be terse")
    r._handle("/set format json")
    r._handle("/set nothink")
    assert (r.s.verbose, r.s.options, r.s.system, r.s.format, r.s.think) == \
        (True, {"temperature": 0.5}, "be terse", "json", False)
    r._handle("/clear")
    assert r.s.messages == [{"role": "system", "content": "be terse"}]
    r._handle("/show license")
    r._handle("/list")
    assert client.calls == ["show m", "list"]
    r._handle("/nope")
    r._handle("/set nope")
    r._handle("/show nope")
    out = capsys.readouterr().out
    assert "Set 'verbose' mode.\n" in out and "MIT\n" in out
    assert "Unknown command '/nope'. Type /? for help\n" in out
    assert "Unknown command '/set nope'. Type /? for help\n" in out
    assert "Unknown command '/show nope'. Type /? for help\n" in out
