"""Untrusted Go templates cannot hang or exhaust memory: depth, steps and output are bounded."""
from __future__ import annotations

import pytest

from runtime.errors import TemplateError
from runtime.prompt import GoTemplate, chat_prompt


def _fails_fast(text: str, data: dict | None = None, **limits: int) -> TemplateError:
    t = GoTemplate.parse(text)
    with pytest.raises(TemplateError) as ei:   # a template the limits miss hangs: pytest-timeout
        t.execute(data or {}, **limits)
    return ei.value


def test_infinite_template_recursion() -> None:
    err = _fails_fast('{{ define "r" }}x{{ template "r" . }}{{ end }}{{ template "r" . }}')
    assert "maximum template depth" in err.msg


def test_mutual_recursion() -> None:
    err = _fails_fast('{{ define "a" }}{{ template "b" }}{{ end }}{{ define "b" }}{{ template "a" }}{{ end }}'
                      '{{ template "a" }}')
    assert "maximum template depth" in err.msg


def test_nested_range_step_bomb() -> None:
    # 10^4 * 10^4 * 10^4 iterations, no output at all
    err = _fails_fast("{{ range 10000 }}{{ range 10000 }}{{ range 10000 }}{{ end }}{{ end }}{{ end }}")
    assert "steps" in err.msg


def test_recursive_fan_out_bomb() -> None:
    # each level calls the next twice: 2^100 calls if unbounded
    t = '{{ define "f" }}{{ template "f" . }}{{ template "f" . }}{{ end }}{{ template "f" . }}'
    _fails_fast(t, max_depth=100)


def test_output_size_bomb() -> None:
    text = "{{ range .L }}{{ range $.L }}{{ range $.L }}{{ $.Big }}{{ end }}{{ end }}{{ end }}"
    err = _fails_fast(text, {"L": list(range(100)), "Big": "x" * 10_000})
    assert "output exceeds" in err.msg


def test_printf_width_cannot_blow_up() -> None:
    # the width is part of the template text, so output checks still apply to the result
    err = _fails_fast("{{ range 100 }}{{ printf \"%999999s\" \"x\" }}{{ end }}", max_output=1_000_000)
    assert "output exceeds" in err.msg


def test_limits_apply_through_chat_prompt() -> None:
    bomb = "{{ range 100000 }}{{ range 100000 }}{{ end }}{{ end }}{{ range .Messages }}{{ end }}"
    with pytest.raises(TemplateError):
        chat_prompt(template=bomb, jinja_template=None, messages=[{"role": "user", "content": "x"}])


def test_deeply_nested_source_is_rejected_cleanly() -> None:
    text = "{{ if true }}" * 3000 + "x" + "{{ end }}" * 3000
    try:
        out = GoTemplate.parse(text).execute({})
    except TemplateError:
        return
    assert out == "x"


def test_doubling_a_variable_is_bounded() -> None:
    # no output at all, but $x would reach 2^60 characters
    err = _fails_fast('{{ $x := "ab" }}{{ range 60 }}{{ $x = print $x $x }}{{ end }}')
    assert "result exceeds the limit" in err.msg
    err = _fails_fast('{{ $x := "ab" }}{{ range 60 }}{{ $x = html $x $x }}{{ end }}')
    assert "result exceeds the limit" in err.msg


def test_huge_printf_width_is_refused() -> None:
    err = _fails_fast('{{ printf "%999999999999s" "x" }}')
    assert "width" in err.msg
