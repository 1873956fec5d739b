"""Modelfile parsing and rendering, checked against Ollama's parser rules and real show output."""
from __future__ import annotations

import codecs
import json
import logging
import random
from pathlib import Path

import pytest

from runtime.errors import ModelfileError
from runtime.models.modelfile import (
    Instruction,
    Modelfile,
    load_modelfile,
    parse_modelfile,
    quote,
    render_modelfile,
)

DATA = Path(__file__).resolve().parent.parent / "data" / "modelfiles"


def parse(text: str | bytes, **kw: object) -> Modelfile:
    return parse_modelfile(text, **kw)  # type: ignore[arg-type]


def error_of(text: str | bytes, **kw: object) -> ModelfileError:
    with pytest.raises(ModelfileError) as info:
        parse_modelfile(text, **kw)  # type: ignore[arg-type]
    return info.value


# --- every instruction -------------------------------------------------------------------------

def test_every_instruction() -> None:
    mf = parse(
        "FROM llama3.2\n"
        "PARAMETER temperature 0.2\n"
        "PARAMETER num_ctx 8192\n"
        "PARAMETER stop <|eot_id|>\n"
        'PARAMETER stop "<|start_header_id|>"\n'
        "TEMPLATE {{ .Prompt }}\n"
        "SYSTEM You are Mario.\n"
        "ADAPTER ./lora.gguf\n"
        "LICENSE MIT\n"
        "LICENSE Apache-2.0\n"
        "MESSAGE system Be brief.\n"
        "MESSAGE user Is Toronto in Canada?\n"
        "MESSAGE assistant yes\n"
        "REQUIRES 0.5.1\n"
    )
    assert mf.from_ == "llama3.2"
    assert mf.parameters == {"temperature": 0.2, "num_ctx": 8192,
                             "stop": ["<|eot_id|>", "<|start_header_id|>"]}
    assert mf.template == "{{ .Prompt }}"
    assert mf.system == "You are Mario."
    assert mf.adapters == ["./lora.gguf"]
    assert mf.licenses == ["MIT", "Apache-2.0"]
    assert mf.messages == [{"role": "system", "content": "Be brief."},
                           {"role": "user", "content": "Is Toronto in Canada?"},
                           {"role": "assistant", "content": "yes"}]
    assert mf.requires == "0.5.1"
    assert [i.command for i in mf.instructions] == [
        "from", "parameter", "parameter", "parameter", "parameter", "template", "system", "adapter",
        "license", "license", "message", "message", "message", "requires"]
    assert mf.instructions[1] == Instruction("parameter", "0.2", key="temperature", line=2, col=1)
    assert mf.instructions[11].key == "user" and mf.instructions[11].line == 12
    assert mf.warnings == []


def test_absent_instructions_are_none_or_empty() -> None:
    mf = parse("FROM m")
    assert (mf.template, mf.system, mf.requires, mf.draft, mf.renderer, mf.parser) == (None,) * 6
    assert mf.adapters == mf.licenses == mf.messages == [] and mf.parameters == {}


def test_newer_ollama_instructions_are_kept() -> None:
    mf = parse("FROM m\nRENDERER qwen3-coder\nPARSER qwen3-coder\nDRAFT ./draft.gguf\n")
    assert (mf.renderer, mf.parser, mf.draft) == ("qwen3-coder", "qwen3-coder", "./draft.gguf")


def test_commands_are_case_insensitive() -> None:
    mf = parse("from a\nFrOm b\nparameter top_k 5\nSystem s\ntemplate t\nmessage user hi\n")
    assert mf.from_ == "b" and mf.parameters == {"top_k": 5}
    assert mf.system == "s" and mf.template == "t" and mf.messages[0]["content"] == "hi"


def test_last_wins_and_repeated_stop_accumulates() -> None:
    mf = parse("FROM a\nFROM b\nSYSTEM one\nSYSTEM two\nTEMPLATE x\nTEMPLATE y\n"
               "PARAMETER temperature 1\nPARAMETER temperature 0.5\n"
               "PARAMETER stop a\nPARAMETER stop b\nPARAMETER stop a\nREQUIRES 0.1.0\nREQUIRES v0.2.0")
    assert (mf.from_, mf.system, mf.template) == ("b", "two", "y")
    assert mf.froms == ["a", "b"]
    assert mf.parameters == {"temperature": 0.5, "stop": ["a", "b", "a"]}
    assert mf.requires == "0.2.0"


def test_comments_blank_lines_and_indentation() -> None:
    mf = parse("# leading comment\n\n   # indented comment\n\t FROM x # not a comment\n\n"
               "  PARAMETER   seed   42  \n#PARAMETER seed 1\n")
    assert mf.from_ == "x # not a comment"
    assert mf.parameters == {"seed": 42}
    assert mf.instructions[0].line == 4 and mf.instructions[0].col == 3


def test_deprecated_parameters_are_warned_and_ignored(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="runtime.models.modelfile"):
        mf = parse("FROM m\nPARAMETER mirostat 2\nPARAMETER penalize_newline true\nPARAMETER top_k 3\n")
    assert mf.parameters == {"top_k": 3}
    assert mf.warnings == ['line 2: parameter "mirostat" is deprecated and ignored',
                           'line 3: parameter "penalize_newline" is deprecated and ignored']
    assert "mirostat" in caplog.text
    assert len(mf.instructions) == 4   # still recorded as written


def test_requires_accepts_semver_shorthands() -> None:
    for text, want in [("1", "1"), ("v1.2", "1.2"), ("0.14.0", "0.14.0"), ("1.0.0-rc.1+b5", "1.0.0-rc.1+b5")]:
        assert parse(f"FROM m\nREQUIRES {text}").requires == want


# --- quoting -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("source", "system"), [
    ('SYSTEM plain text', "plain text"),
    ('SYSTEM   padded   ', "padded"),
    ('SYSTEM "quoted"', "quoted"),
    ('SYSTEM "  keeps spaces  "', "  keeps spaces  "),
    ('SYSTEM """triple"""', "triple"),
    ('SYSTEM """has "inner" quotes"""', 'has "inner" quotes'),
    ('SYSTEM say "hi" to them', 'say "hi" to them'),
    ('SYSTEM ""', ""),
    ('SYSTEM """"""', ""),
    ('SYSTEM a"', 'a"'),
    ('SYSTEM "multi\nline\n"', "multi\nline\n"),
    ('SYSTEM """\nfirst\n\n  second\n"""', "\nfirst\n\n  second\n"),
    ('SYSTEM """a "quoted" line\nnext"""', 'a "quoted" line\nnext'),
    ('SYSTEM "a" b\nc"', 'a" b\nc'),   # Ollama: a line that does not end in " does not close it
    ('SYSTEM "x"   \t', "x"),
    ('SYSTEM tab\there', "tab\there"),
    ('SYSTEM ünïcödé ✓ 中文', "ünïcödé ✓ 中文"),
    ('SYSTEM a\u200db', "a\u200db"),   # kept, where Ollama would drop the zero-width joiner
    ('SYSTEM """{{ if .System }}""" ', "{{ if .System }}"),
    ('SYSTEM ', ""),
])
def test_quoting(source: str, system: str) -> None:
    assert parse("FROM m\n" + source).system == system
    assert parse("FROM m\n" + source + "\nLICENSE after").licenses == ["after"]


def test_crlf_line_endings() -> None:
    mf = parse('FROM m\r\nPARAMETER top_k 7\r\nSYSTEM """a\r\nb"""\r\nLICENSE x\r\n')
    assert mf.parameters == {"top_k": 7}
    assert mf.system == "a\r\nb"       # kept as written, as Ollama does
    assert mf.licenses == ["x"]
    assert mf.instructions[3].line == 5


def test_old_mac_line_endings_count_lines() -> None:
    mf = parse("FROM m\rSYSTEM s\rLICENSE l")
    assert (mf.system, mf.licenses) == ("s", ["l"])
    assert [i.line for i in mf.instructions] == [1, 2, 3]


# --- encodings ---------------------------------------------------------------------------------

TEXT = 'FROM m\nSYSTEM """héllo 世界"""\nPARAMETER stop "</s>"\n'


@pytest.mark.parametrize("data", [
    TEXT.encode("utf-8"),
    codecs.BOM_UTF8 + TEXT.encode("utf-8"),
    codecs.BOM_UTF16_LE + TEXT.encode("utf-16-le"),
    codecs.BOM_UTF16_BE + TEXT.encode("utf-16-be"),
    bytearray(TEXT.encode("utf-8")),
    "\ufeff" + TEXT,
], ids=["utf8", "utf8-bom", "utf16le-bom", "utf16be-bom", "bytearray", "str-bom"])
def test_encodings(data: str | bytes) -> None:
    mf = parse(data)
    assert mf.system == "héllo 世界" and mf.parameters == {"stop": ["</s>"]}


def test_invalid_utf8_names_line_and_column() -> None:
    err = error_of(b"FROM m\nSYSTEM h\xe9llo\n")
    assert (err.line, err.col) == (2, 9)
    assert "not valid UTF-8" in str(err)


def test_utf16_without_bom_is_explained() -> None:
    err = error_of(TEXT.encode("utf-16-le"))
    assert "byte-order mark" in str(err)


def test_truncated_utf16_is_an_error() -> None:
    err = error_of(codecs.BOM_UTF16_LE + "FROM m".encode("utf-16-le")[:-1])
    assert "not valid UTF-16" in str(err)


# --- errors with line and column ---------------------------------------------------------------

@pytest.mark.parametrize(("source", "line", "col", "message"), [
    ("FROM m\nFORM x", 2, 1, 'unknown instruction "FORM"'),
    ("FROM m\n  FR0M x", 2, 3, 'unknown instruction "FR0M"'),
    ('FROM m\n"""oops"""', 2, 1, 'unknown instruction "\\"\\"\\"oops\\"\\"\\""'),
    ("FROM m\nFROM:x", 2, 1, 'unknown instruction "FROM:x"'),
    ("FROM", 1, 5, "FROM needs a value"),
    ("FROM \nSYSTEM x", 1, 6, "FROM needs a value"),
    ("FROM m\nADAPTER", 2, 8, "ADAPTER needs a value"),
    ("FROM m\nPARAMETER", 2, 1, "PARAMETER needs a name and a value"),
    ("FROM m\nPARAMETER top_k", 2, 16, "PARAMETER top_k needs a value"),
    ("FROM m\nPARAMETER top_k   \n", 2, 19, "PARAMETER top_k needs a value"),
    ("FROM m\nPARAMETER top-k 5", 2, 11, 'invalid parameter name "top-k"'),
    ("FROM m\nPARAMETER bogus 5", 2, 11, 'unknown parameter "bogus"'),
    ("FROM m\nPARAMETER   Temperature 5", 2, 13, 'did you mean "temperature"'),
    ("FROM m\nPARAMETER num_ctx  lots", 2, 20, 'invalid value for num_ctx: "lots" is not an integer'),
    ("FROM m\nPARAMETER use_mmap maybe", 2, 20, "is not a boolean"),
    ("FROM m\nMESSAGE", 2, 1, "MESSAGE needs a role and a value"),
    ("FROM m\nMESSAGE user", 2, 13, "MESSAGE user needs a value"),
    ("FROM m\nMESSAGE tool result", 2, 9, 'MESSAGE role must be one of "system", "user" or "assistant", not "tool"'),
    ("FROM m\nMESSAGE User hi", 2, 9, 'not "User"'),
    ("FROM m\nMESSAGE us3r hi", 2, 9, 'invalid message role "us3r"'),
    ("FROM m\nREQUIRES soon", 2, 10, 'REQUIRES must be a version like 0.5.0, not "soon"'),
    ("FROM m\nREQUIRES 1.2.3.4", 2, 10, "REQUIRES must be a version"),
    ('FROM m\nSYSTEM """never closed\nstill open', 2, 8, 'unterminated """ quote'),
    ('FROM m\nTEMPLATE "open\nno close', 2, 10, 'unterminated " quote'),
    ('FROM m\nSYSTEM "a" b', 2, 8, 'unterminated " quote'),
    ('FROM m\nSYSTEM """', 2, 8, 'unterminated """ quote'),
    ('FROM m\nSYSTEM """"', 2, 8, 'unterminated """ quote'),
    ("FROM m\n\xa0SYSTEM x", 2, 1, 'unknown instruction "\\xa0SYSTEM"'),
])
def test_errors_name_line_and_column(source: str, line: int, col: int, message: str) -> None:
    err = error_of(source, path="/tmp/Modelfile")
    assert (err.line, err.col) == (line, col), str(err)
    assert message in str(err)
    assert str(err).startswith(f"/tmp/Modelfile:{line}:{col}: ")


@pytest.mark.parametrize("source", ["", "\n\n", "# only a comment\n", "SYSTEM hi\nPARAMETER top_k 1"])
def test_no_from_is_an_error(source: str) -> None:
    err = error_of(source)
    assert "no FROM line" in str(err) and err.line is None
    assert parse(source, require_from=False).from_ is None


def test_load_modelfile(tmp_path: Path) -> None:
    path = tmp_path / "Modelfile"
    path.write_bytes(codecs.BOM_UTF16_LE + "FROM ./x.gguf\n".encode("utf-16-le"))
    mf = load_modelfile(path)
    assert mf.from_ == "./x.gguf" and mf.path == str(path)
    with pytest.raises(ModelfileError, match="cannot read Modelfile"):
        load_modelfile(tmp_path / "missing")
    with pytest.raises(ModelfileError, match="cannot read Modelfile"):
        load_modelfile(tmp_path)
    (tmp_path / "Bad").write_text("FROM m\nPARAMETER nope 1\n")
    with pytest.raises(ModelfileError) as info:
        load_modelfile(tmp_path / "Bad")
    err = info.value
    assert str(err).startswith(f"{tmp_path / 'Bad'}:2:11: unknown parameter")


# --- real Modelfiles from the seeds ----------------------------------------------------------

def test_seed_qwen_modelfile_with_template_system_license() -> None:
    mf = load_modelfile(DATA / "qwen_blog.Modelfile")
    assert mf.from_ == "./models/qwen1_5-0_5b-chat-q8_0.gguf"
    assert mf.parameters == {"stop": ["<|im_start|>,<|im_end|>"]}   # one stop: Ollama does not split
    assert mf.system == ("\nYou are an AI developed by Alibaba Cloud. Your purpose is to assist users "
                         "in finding information and answering their questions.\n")
    assert mf.template.startswith("\n{{ if .System }}\n<|im_start|>system\n")
    assert mf.template.endswith("{{ .Response }}\n<|im_end|>\n")
    assert len(mf.licenses) == 1 and mf.licenses[0].startswith("\nTongyi Qianwen LICENSE AGREEMENT\n")
    assert [i.command for i in mf.instructions] == ["from", "parameter", "system", "template", "license"]
    assert [i.line for i in mf.instructions] == [4, 7, 10, 15, 32]


def test_seed_old_ollama_show_output() -> None:
    mf = load_modelfile(DATA / "ollama_show_llama2.Modelfile")
    assert mf.from_.endswith("/blobs/sha256:8934d96d3f08982e95922b2b7a2c626a1fe873d7c3b06e8e56d7bc0a1fef9246")
    assert mf.template == "[INST] <>{{ .System }}<>\n\n{{ .Prompt }} [/INST]\n"
    assert mf.parameters == {"temperature": 1.0, "top_k": 100, "top_p": 1.0,
                             "stop": ["[INST]", "[/INST]", "<>", "<>"]}
    assert mf.system.startswith("\nYou are a helpful assistant") and mf.system.endswith("mobster\n")


def test_seed_newer_ollama_show_output() -> None:
    mf = load_modelfile(DATA / "ollama_show_qwen2.Modelfile")
    assert mf.from_ == "/root/ollama/blobs/sha256-8de95da68dc485c0889c205384c24642f83ca18d089559c977ffc6a3972a71a8"
    assert mf.template == ("{{ if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}"
                           "{{ if .Prompt }}<|im_start|>user\n{{ .Prompt }}<|im_end|>\n{{ end }}"
                           "<|im_start|>assistant\n{{ .Response }}<|im_end|>\n")
    assert mf.parameters == {"stop": ["<|im_start|>", "<|im_end|>"]}
    assert "Apache License" in mf.licenses[0]


def test_seed_truncated_license_is_an_unterminated_quote() -> None:
    with pytest.raises(ModelfileError) as info:
        load_modelfile(DATA / "ollama_show_qwen2_truncated.Modelfile")
    assert (info.value.line, info.value.col) == (15, 9)
    assert 'unterminated """ quote' in str(info.value)


def test_real_show_output_is_reproduced_byte_for_byte() -> None:
    show = json.loads((DATA / "ollama_show_qwen2.5-coder.json").read_text(encoding="utf-8"))
    mf = parse(show["modelfile"])
    assert mf.template == show["template"]
    assert mf.system == show["system"]
    assert mf.licenses == [show["license"]]
    rendered = render_modelfile(name="qwen2.5-coder:0.5b", from_=mf.from_, template=show["template"],
                                system=show["system"], licenses=[show["license"]])
    assert rendered == show["modelfile"]
    assert (DATA / "ollama_show_qwen2.5-coder.Modelfile").read_text(encoding="utf-8") == rendered


# --- rendering ---------------------------------------------------------------------------------

def test_render_layout_and_order() -> None:
    text = render_modelfile(
        name="mybot:latest", from_="/models/blobs/sha256-abc",
        template="{{ .Prompt }}", system="Be nice.",
        parameters={"temperature": 0.7, "stop": ["<|im_end|>", "<|im_start|>"], "num_ctx": 4096,
                    "use_mmap": False, "top_p": 1.0},
        adapters=["/models/blobs/sha256-def"], licenses=["MIT"],
        messages=[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello there"}],
        projectors=["/models/blobs/sha256-proj"],
    )
    assert text == (
        '# Modelfile generated by "ollama show"\n'
        "# To build a new Modelfile based on this, replace FROM with:\n"
        "# FROM mybot:latest\n"
        "\n"
        "FROM /models/blobs/sha256-abc\n"
        "ADAPTER /models/blobs/sha256-def\n"
        "FROM /models/blobs/sha256-proj\n"
        "TEMPLATE {{ .Prompt }}\n"
        "SYSTEM Be nice.\n"
        "PARAMETER num_ctx 4096\n"
        "PARAMETER stop <|im_end|>\n"
        "PARAMETER stop <|im_start|>\n"
        "PARAMETER temperature 0.7\n"
        "PARAMETER top_p 1\n"
        "PARAMETER use_mmap false\n"
        "LICENSE MIT\n"
        "MESSAGE user hi\n"
        "MESSAGE assistant hello there\n"
    )
    mf = parse(text)
    assert mf.from_ == "/models/blobs/sha256-proj"   # Ollama writes projectors as later FROMs
    assert mf.parameters == {"num_ctx": 4096, "stop": ["<|im_end|>", "<|im_start|>"], "temperature": 0.7,
                             "top_p": 1.0, "use_mmap": False}


def test_render_without_name_and_empty_system() -> None:
    text = render_modelfile(name=None, from_="/b/sha256-1", system="")
    assert text == '# Modelfile generated by "ollama show"\n\nFROM /b/sha256-1\n'


def test_render_renderer_and_parser() -> None:
    text = render_modelfile(name="m", from_="/b", renderer="qwen3-coder", parser="qwen3-coder")
    assert "RENDERER qwen3-coder\nPARSER qwen3-coder\n" in text
    mf = parse(text)
    assert mf.renderer == mf.parser == "qwen3-coder"


@pytest.mark.parametrize(("value", "form"), [
    ("plain", "plain"),
    ("two words", "two words"),
    (" lead", '" lead"'),
    ("trail ", '"trail "'),
    ("multi\nline", '"multi\nline"'),
    ('multi\n"quoted"', '"""multi\n"quoted\""""'),
    ('say "hi"', 'say "hi"'),
    ("", '""'),
    ('"starts with a quote', '""starts with a quote"'),
    ('"both"', '""both""'),
    ('"', '"""""""'),
    ("\ttab", '"\ttab"'),
    ("cr\r", '"cr\r"'),
])
def test_quote_follows_ollama_and_stays_lossless(value: str, form: str) -> None:
    assert quote(value) == form
    assert parse(f"FROM m\nSYSTEM {form}\n").system == value


def test_unrepresentable_value_warns_and_uses_ollamas_form(caplog: pytest.LogCaptureFixture) -> None:
    # A line ending in """ and another ending in " cannot be written losslessly in any quoting;
    # Ollama writes such values (e.g. a license ending in """) the same way.
    value = 'first line ends with """\nsecond ends with "\nlast'
    with caplog.at_level(logging.WARNING, logger="runtime.models.modelfile"):
        form = quote(value)
    assert form == f'"""{value}"""'
    assert "cannot be written losslessly" in caplog.text


def test_modelfile_render_round_trips_instructions() -> None:
    for path in sorted(DATA.glob("*.Modelfile")):
        if "truncated" in path.name:
            continue
        mf = load_modelfile(path)
        again = parse(mf.render())
        assert [(i.command, i.key, i.args) for i in again.instructions] == \
               [(i.command, i.key, i.args) for i in mf.instructions], path.name
        assert again.parameters == mf.parameters


# --- property-style round trips ----------------------------------------------------------------

PIECES = ["a", "Z", "7", " ", "  ", "\t", "\n", "\r\n", '"', '""', '"""', "#", "{{ .Prompt }}",
          "é", "世", "\u200d", ":", "\\", "FROM x", "PARAMETER", "'", "\xa0"]


def _random_text(rng: random.Random) -> str:
    return "".join(rng.choice(PIECES) for _ in range(rng.randint(0, 10)))


GO_SPACE = " \t\n\v\f\r\x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"


def representable(value: str) -> bool:
    """Independent statement of the one limit of Modelfile syntax: there are no escapes, so a
    value with a line (before a line break, trailing blanks aside) ending in three quotes
    closes both quote styles early."""
    return all(not (ch in "\r\n" and value[:i].rstrip(GO_SPACE).endswith('"""')) for i, ch in enumerate(value))


def test_render_parse_round_trip_property(caplog: pytest.LogCaptureFixture) -> None:
    rng = random.Random(20261121)
    checked = 0
    for _ in range(1500):
        caplog.clear()
        template, system = _random_text(rng), _random_text(rng)
        licenses = [_random_text(rng) for _ in range(rng.randint(0, 2))]
        messages = [{"role": rng.choice(["system", "user", "assistant"]), "content": _random_text(rng)}
                    for _ in range(rng.randint(0, 3))]
        params = {
            "temperature": rng.choice([0.0, 0.7, 1.0, rng.random() * 2, 1e-05]),
            "num_ctx": rng.randint(1, 2 ** 20),
            "seed": rng.randint(-(2 ** 63), 2 ** 63 - 1),
            "use_mmap": rng.random() < 0.5,
            "stop": [_random_text(rng) for _ in range(rng.randint(1, 3))],
        }
        values = [template, system, *licenses, *(m["content"] for m in messages), *params["stop"]]
        with caplog.at_level(logging.WARNING, logger="runtime.models.modelfile"):
            text = render_modelfile(name="m:latest", from_="/blobs/sha256-" + "0" * 64, template=template,
                                    system=system, parameters=params, licenses=licenses, messages=messages)
        warned = "cannot be written losslessly" in caplog.text
        if not all(representable(v) for v in values):
            assert warned     # rendering says so, as it cannot do better than Ollama here
            continue
        assert not warned, text
        mf = parse(text)
        assert mf.template == template and mf.system == (system or None), text
        assert mf.licenses == licenses and mf.messages == messages, text
        assert mf.parameters == params, text
        checked += 1
    assert checked > 1000


def test_quote_is_lossless_exactly_when_representable(caplog: pytest.LogCaptureFixture) -> None:
    rng = random.Random(99)
    for _ in range(5000):
        value = _random_text(rng)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="runtime.models.modelfile"):
            form = quote(value)
        if representable(value):
            assert parse(f"FROM m\nSYSTEM {form}\nLICENSE end").system == value
            assert not caplog.text
        else:
            assert "cannot be written losslessly" in caplog.text


def test_line_and_column_tracking_matches_a_step_by_step_walk() -> None:
    from runtime.models.modelfile import _Scanner

    rng = random.Random(3)
    for _ in range(2000):
        text = "".join(rng.choice(["a", "\n", "\r", "\r\n", " ", "é"]) for _ in range(rng.randint(0, 12)))
        start, stop = sorted(rng.randint(0, len(text)) for _ in range(2))
        slow, fast = _Scanner(text, None), _Scanner(text, None)
        slow.advance_to(start), fast.advance_to(start)
        while slow.i < stop:
            slow.advance()
        fast.advance_to(stop)
        assert (fast.i, fast.line, fast.col) == (slow.i, slow.line, slow.col), (text, start, stop)


def test_parse_never_crashes_on_random_input() -> None:
    rng = random.Random(7)
    alphabet = ["FROM", "from", "PARAMETER", "SYSTEM", "MESSAGE", "user", "stop", "top_k", " ", "\t",
                "\n", "\r", '"', '"""', "#", "x", "1", "é", "\x00"]
    for _ in range(3000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 25)))
        try:
            parse(text, require_from=False)
        except ModelfileError as e:
            assert e.msg
