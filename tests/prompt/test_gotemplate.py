"""The Go text/template interpreter against Go's documented behaviour (pkg.go.dev/text/template).

Expected values are what Go's text/template prints for the same template and data: the cases
that do not need Go 1.22+ (range over an integer) or 1.23+ (``else with``) were run through
Go 1.19's text/template (with ``missingkey=zero`` and Ollama's ``json``) and agree byte for byte.
"""
from __future__ import annotations

from typing import Any

import pytest

from runtime.errors import TemplateError
from runtime.prompt import GoTemplate
from runtime.prompt.gofmt import GoStruct


def render(text: str, data: Any = None) -> str:
    return GoTemplate.parse(text).execute(data if data is not None else {})


class Point(GoStruct):
    __slots__ = ("X", "Y")
    _go_fields = __slots__
    _go_type = "main.Point"

    def __init__(self, x: Any, y: Any) -> None:
        self.X = x
        self.Y = y


@pytest.mark.parametrize("text,data,expected", [
    # text and actions
    ("plain text", {}, "plain text"),
    ("{{.A}}", {"A": "x"}, "x"),
    ("{{ .A }}-{{ .B }}", {"A": 1, "B": True}, "1-true"),
    # trim markers eat all adjacent white space, including newlines
    ("a  \n {{- .A -}} \n\t b", {"A": "X"}, "aXb"),
    ("a {{- .A }} b", {"A": "X"}, "aX b"),
    ("a {{ .A -}} b", {"A": "X"}, "a Xb"),
    # "{{-3}}" is the number -3, not a trim marker
    ("{{-3}}", {}, "-3"),
    ("x {{- 3 -}} y", {}, "x3y"),
    # comments
    ("a{{/* a comment */}}b", {}, "ab"),
    ("a {{- /* trimmed comment */ -}} b", {}, "ab"),
    ("a{{/* multi\nline */}}b", {}, "ab"),
    # missingkey=zero on a map[string]any: the missing value is a nil interface
    ("{{ .Missing }}", {}, "<no value>"),
    ("{{ if .Missing }}y{{ else }}n{{ end }}", {}, "n"),
    # nested fields on maps and structs
    ("{{ .A.B.C }}", {"A": {"B": {"C": "deep"}}}, "deep"),
    ("{{ .P.X }},{{ .P.Y }}", {"P": Point(1, "two")}, "1,two"),
    ("{{ .P }}", {"P": Point(1, "two")}, "{1 two}"),
    # truthiness: empty string, 0, nil, empty slice/map are false; structs true
    ("{{ if .S }}t{{ else }}f{{ end }}", {"S": ""}, "f"),
    ("{{ if .S }}t{{ else }}f{{ end }}", {"S": " "}, "t"),
    ("{{ if .N }}t{{ else }}f{{ end }}", {"N": 0}, "f"),
    ("{{ if .N }}t{{ else }}f{{ end }}", {"N": 0.0}, "f"),
    ("{{ if .N }}t{{ else }}f{{ end }}", {"N": -1}, "t"),
    ("{{ if .L }}t{{ else }}f{{ end }}", {"L": []}, "f"),
    ("{{ if .L }}t{{ else }}f{{ end }}", {"L": [0]}, "t"),
    ("{{ if .M }}t{{ else }}f{{ end }}", {"M": {}}, "f"),
    ("{{ if .P }}t{{ else }}f{{ end }}", {"P": Point(0, 0)}, "t"),
    ("{{ if false }}t{{ else }}f{{ end }}", {}, "f"),
    # else if / else with chains share one {{end}}
    ("{{ if eq .N 1 }}one{{ else if eq .N 2 }}two{{ else }}many{{ end }}", {"N": 2}, "two"),
    ("{{ if eq .N 1 }}one{{ else if eq .N 2 }}two{{ else }}many{{ end }}", {"N": 5}, "many"),
    ("{{ with .A }}[{{ . }}]{{ else with .B }}({{ . }}){{ else }}none{{ end }}", {"B": "b"}, "(b)"),
    ("{{ with .A }}[{{ . }}]{{ end }}", {"A": "a"}, "[a]"),
    ("{{ with .A }}[{{ . }}]{{ else }}empty{{ end }}", {"A": ""}, "empty"),
    # range over slices, with index/element variables, else, break, continue
    ("{{ range .L }}<{{ . }}>{{ end }}", {"L": ["a", "b"]}, "<a><b>"),
    ("{{ range $i, $v := .L }}{{ $i }}={{ $v }};{{ end }}", {"L": ["a", "b"]}, "0=a;1=b;"),
    ("{{ range $v := .L }}{{ $v }}{{ end }}", {"L": ["a", "b"]}, "ab"),
    ("{{ range .L }}x{{ else }}empty{{ end }}", {"L": []}, "empty"),
    ("{{ range .Missing }}x{{ else }}nothing{{ end }}", {}, "nothing"),
    ("{{ range .L }}{{ if eq . 3 }}{{ break }}{{ end }}{{ . }}{{ end }}", {"L": [1, 2, 3, 4]}, "12"),
    ("{{ range .L }}{{ if eq . 2 }}{{ continue }}{{ end }}{{ . }}{{ end }}", {"L": [1, 2, 3]}, "13"),
    # range over a map visits keys in sorted order
    ("{{ range $k, $v := .M }}{{ $k }}:{{ $v }} {{ end }}", {"M": {"b": 2, "a": 1, "c": 3}},
     "a:1 b:2 c:3 "),
    # range over an integer (Go 1.22)
    ("{{ range 3 }}{{ . }}{{ end }}", {}, "012"),
    # $ is the data passed to Execute, also inside range
    ("{{ range .L }}{{ $.Sep }}{{ . }}{{ end }}", {"L": ["a", "b"], "Sep": "/"}, "/a/b"),
    # variables: declaration, assignment, scope ends at {{end}}
    ("{{ $x := 1 }}{{ if true }}{{ $x = 2 }}{{ end }}{{ $x }}", {}, "2"),
    ("{{ $x := 1 }}{{ if true }}{{ $x := 2 }}{{ $x }}{{ end }}{{ $x }}", {}, "21"),
    ("{{ $x := .A }}{{ $x }}", {"A": "v"}, "v"),
    ("{{ range $i, $_ := .L }}{{ $last := eq (len (slice $.L $i)) 1 }}{{ if $last }}last{{ end }}{{ end }}",
     {"L": [1, 2]}, "last"),
    ("{{ range .L }}{{ $y := . }}{{ $y }}{{ end }}", {"L": [1, 2]}, "12"),
    ("{{ range $v := .M }}{{ $v }}{{ end }}", {"M": {"b": 2, "a": 1}}, "12"),
    ('{{ $s := "" }}{{ range .L }}{{ $s = printf "%s%v" $s . }}{{ end }}{{ $s }}', {"L": [1, 2, 3]}, "123"),
    ("{{ with $x := .A }}{{ $x }}{{ . }}{{ end }}", {"A": "a"}, "aa"),
    # pipelines pass the value as the last argument
    ('{{ "abc" | printf "%s-%s" "x" }}', {}, "x-abc"),
    ('{{ .A | or "" | and 1 }}', {"A": "v"}, "v"),
    ('{{ .Missing | or "default" }}', {}, "default"),
    ('{{ "a" | }}', {}, "a"),
    ("{{ .A | len }}", {"A": "héllo"}, "6"),
    ("{{ (.A) }}", {"A": "paren"}, "paren"),
    ("{{ (index .L 1).X }}", {"L": [Point(1, 2), Point(3, 4)]}, "3"),
    # and/or return one of their operands and short-circuit
    ("{{ and 1 0 2 }}", {}, "0"),
    ("{{ and 1 2 }}", {}, "2"),
    ("{{ or 0 \"\" \"x\" }}", {}, "x"),
    ("{{ or 0 \"\" }}", {}, ""),
    ("{{ if and .A .A.B }}y{{ else }}n{{ end }}", {}, "n"),   # .A.B not evaluated
    ("{{ not 0 }} {{ not 1 }}", {}, "true false"),
    # comparisons
    ('{{ eq .R "user" }}', {"R": "user"}, "true"),
    ("{{ eq 1 2 3 1 }}", {}, "true"),
    ('{{ ne "a" "b" }}', {}, "true"),
    ("{{ lt 1 2 }} {{ le 2 2 }} {{ gt 1 2 }} {{ ge 3 2 }}", {}, "true true false true"),
    ('{{ lt "a" "b" }}', {}, "true"),
    ('{{ eq .Missing "x" }}', {}, "false"),
    # index, slice, len
    ("{{ index .L 1 }}", {"L": ["a", "b"]}, "b"),
    ('{{ index .M "k" }}', {"M": {"k": "v"}}, "v"),
    ('{{ index .M "nope" }}', {"M": {"k": "v"}}, "<no value>"),
    ("{{ index .L 1 0 }}", {"L": [[1], [2, 3]]}, "2"),
    ('{{ index "abc" 1 }}', {}, "98"),
    ("{{ slice .L 1 }}", {"L": [1, 2, 3]}, "[2 3]"),
    ("{{ slice .L 1 2 }}", {"L": [1, 2, 3]}, "[2]"),
    ('{{ slice "hello" 1 3 }}', {}, "el"),
    ("{{ len .L }} {{ len .M }}", {"L": [1, 2], "M": {"a": 1}}, "2 1"),
    # print family (fmt.Sprint adds spaces only between non-string operands)
    ('{{ print "a" "b" 1 2 }}', {}, "ab1 2"),
    ('{{ println "a" 1 }}', {}, "a 1\n"),
    ('{{ printf "%d|%5s|%-4s|%q|%v|%t|%x|%05.2f" 42 "ab" "c" "q\\"" .L true 255 3.14159 }}',
     {"L": [1, "a"]}, '42|   ab|c   |"q\\""|[1 a]|true|ff|03.14'),
    ('{{ printf "%d" "x" }}', {}, "%!d(string=x)"),
    # verbs apply to the elements of slices and maps; a bad verb shows the value with %v
    # and the same width/precision
    ('{{ printf "%5.2f|%d|%x" .M .L .F }}', {"M": {"a": "x", "b": 2}, "L": [1, "two"], "F": 3.5},
     "map[%!f(string=    a):%!f(string=    x) %!f(string=    b):%!f(int=   02)]|"
     "[1 %!d(string=two)]|0x1.cp+01"),
    ('{{ printf "%q %q %v" 2 -2 .L }}{{ printf "%d" 1 2 nil }}', {"L": [None]},
     "'\\x02' '\ufffd' [<nil>]1%!(EXTRA int=2, <nil>)"),
    ("{{ html .Missing }} {{ urlquery nil }}", {}, "&lt;no value&gt; %3Cno+value%3E"),
    ('{{ printf "%s" }}', {}, "%!s(MISSING)"),
    # nil is an argument like any other (only "nil" alone as a command is an error)
    ('{{ print 1 2 "a" 3 "b" "c" 4.5 true nil }}', {}, "1 2a3bc4.5 true <nil>"),
    ('{{ printf "%s|%v|%d" nil nil nil }}', {}, "%!s(<nil>)|<nil>|%!d(<nil>)"),
    ("{{ eq .Missing nil }} {{ not nil }} {{ json nil }}", {}, "true true null"),
    # %v of floats is strconv's shortest 'g'
    ("{{ .F }} {{ .G }} {{ .H }} {{ .I }}", {"F": 3.0, "G": 0.1, "H": 1e6, "I": 123456.0},
     "3 0.1 1e+06 123456"),
    ("{{ .M }}", {"M": {"b": 1, "a": [1, 2]}}, "map[a:[1 2] b:1]"),
    ("{{ .N }}", {"N": None}, "<no value>"),
    ("{{ .L }}", {"L": [None, True]}, "[<nil> true]"),
    # escapers
    ('{{ html "<a href=\\"x\\">&\'" }}', {}, "&lt;a href=&#34;x&#34;&gt;&amp;&#39;"),
    ('{{ js "it\'s <b> \\"q\\" =" }}', {}, "it\\'s \\u003Cb\\u003E \\\"q\\\" \\u003D"),
    ('{{ urlquery "a b&c/d" }}', {}, "a+b%26c%2Fd"),
    # width and precision from arguments (granite's counter trick: len (printf "a%*s" $n ""))
    ('{{ printf "a%*s|%-*d|%.*f" 3 "" 4 7 2 3.14159 }}', {}, "a   |7   |3.14"),
    ('{{ $n := 0 }}{{ range 3 }}{{ $n = len (printf "a%*s" $n "") }}{{ end }}{{ $n }}', {}, "3"),
    # literals
    ("{{ 0x1p-2 }} {{ 0o17 }} {{ 017 }} {{ 0b101 }} {{ -0x10 }} {{ 1.5e-3 }}", {}, "0.25 15 15 5 -16 0.0015"),
    ("{{ 0x1F }} {{ 1_000 }} {{ 'a' }} {{ 1.5 }} {{ 1e3 }} {{ `raw\\n` }}", {}, "31 1000 97 1.5 1000 raw\\n"),
    ('{{ "tab\\tnl\\n" }}', {}, "tab\tnl\n"),
    # define / template / block
    ('{{ define "T" }}<{{ . }}>{{ end }}{{ template "T" "x" }}{{ template "T" .A }}', {"A": 1}, "<x><1>"),
    ('{{ block "B" .A }}[{{ . }}]{{ end }}', {"A": "blk"}, "[blk]"),
    ('{{ define "T" }}{{ $ }}{{ end }}{{ template "T" "dollar" }}', {}, "dollar"),
    # without a pipeline the called template's dot is no value at all: its fields are no value
    ('{{ define "T" }}{{ . }}|{{ .X.Y }}|{{ if . }}y{{ else }}n{{ end }}|{{ print . }}|{{ json . }}'
     '{{ end }}{{ template "T" }}', {}, "<no value>|<no value>|n|<nil>|null"),
])
def test_construct(text: str, data: Any, expected: str) -> None:
    assert render(text, data) == expected


def test_json_function_is_go_encoding_json() -> None:
    # Go sorts map keys and escapes <, >, & for HTML safety; floats print without ".0"
    out = render("{{ json .V }}", {"V": {"b": [1, 2.5, None, True], "a": "<x & y>", "c": 3.0}})
    assert out == '{"a":"\\u003cx \\u0026 y\\u003e","b":[1,2.5,null,true],"c":3}'


def test_current_date_is_iso_date() -> None:
    import datetime
    assert render("{{ currentDate }}") == datetime.date.today().isoformat()


def test_thread_safe_reuse() -> None:
    from concurrent.futures import ThreadPoolExecutor
    t = GoTemplate.parse("{{ range .L }}{{ $.P }}{{ . }}{{ end }}")
    jobs = [({"L": list(range(i % 7)), "P": str(i)}) for i in range(200)]
    with ThreadPoolExecutor(4) as ex:
        outs = list(ex.map(t.execute, jobs))
    for d, out in zip(jobs, outs):
        assert out == "".join(f"{d['P']}{x}" for x in d["L"])


def test_uses_reports_fields_like_ollama_vars() -> None:
    t = GoTemplate.parse("{{ range .Messages }}{{ .Role }}{{ end }}{{ if $.Tools }}t{{ end }}")
    assert t.uses("Messages") and t.uses("Tools") and t.uses("role")
    assert not t.uses("Suffix")
    assert sorted(GoTemplate.parse("{{ .System }} {{ .Prompt }}").vars()) == ["prompt", "system"]


@pytest.mark.parametrize("text,pos,fragment", [
    ("{{ .A ", "1:7", "unclosed action"),
    ("ok\n{{ if .A }}x", "2:13", "unexpected EOF"),
    ("{{ end }}", "1:1", "unexpected {{end}}"),
    ("{{ nosuch .A }}", "1:4", 'function "nosuch" not defined'),
    ("a\nb {{ $x }}", "2:6", 'undefined variable "$x"'),
    ("{{ break }}", "1:4", "{{break}} outside {{range}}"),
    ("{{ }}", "1:4", "missing value for command"),
    ("{{ if }}{{ end }}", "1:7", "missing value for if"),
    ('{{ "unterminated }}', "1:4", "unterminated quoted string"),
    ("{{/* no end }}", "1:1", "unclosed comment"),
    ("{{ .A ) }}", "1:7", "unexpected right paren"),
    ("{{ else }}", "1:1", "unexpected {{else}}"),
    ("{{ 1 | 2 }}", "1:8", "non executable command in pipeline stage 2"),
    ("{{ 1e400 }}", "1:4", 'illegal number syntax: "1e400"'),
])
def test_parse_errors_have_positions(text: str, pos: str, fragment: str) -> None:
    with pytest.raises(TemplateError) as ei:
        GoTemplate.parse(text)
    assert ei.value.pos == pos
    assert fragment in ei.value.msg


@pytest.mark.parametrize("text,data,fragment", [
    ("{{ .A.B }}", {"A": "s"}, "can't evaluate field B in type string"),
    ("{{ .A.B }}", {}, "nil pointer evaluating interface {}.B"),
    ("{{ .P.Z }}", {"P": Point(1, 2)}, "can't evaluate field Z in type main.Point"),
    ("{{ index .L 5 }}", {"L": [1]}, "index out of range: 5"),
    ('{{ eq 1 "a" }}', {}, "incompatible types for comparison"),
    ('{{ lt true false }}', {}, "invalid type for comparison"),
    ('{{ template "nope" }}', {}, 'no such template "nope"'),
    ("{{ range .S }}{{ end }}", {"S": "str"}, "range can't iterate over str"),
    ("{{ len 3 }}", {}, "len of type int"),
    ("{{ nil }}", {}, "nil is not a command"),
    ("{{ index .M 1 }}", {"M": {"a": 1}}, "value has type int; should be string"),
    ("{{ $x = 1 }}", {}, "undefined variable: $x"),
])
def test_execution_errors(text: str, data: Any, fragment: str) -> None:
    with pytest.raises(TemplateError) as ei:
        render(text, data)
    assert fragment in str(ei.value)
    assert ei.value.pos is not None
