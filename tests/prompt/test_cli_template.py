"""``llmcrate template render`` through click's CliRunner (the real command group)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from runtime.cli import main

DATA = Path(__file__).parent / "data"


def run(*args: str) -> tuple[int, bytes, str]:
    r = CliRunner().invoke(main, ["template", "render", *args])
    return r.exit_code, r.stdout_bytes, r.stderr


def test_renders_golden_bytes_without_extra_newline() -> None:
    code, out, _ = run("--template", str(DATA / "templates" / "qwen2.5.gotmpl"),
                       "--messages", str(DATA / "messages" / "tools.json"),
                       "--tools", str(DATA / "tools-defs.json"))
    assert code == 0
    assert out == (DATA / "golden" / "qwen2.5" / "tools").read_bytes()


def test_system_option_is_the_modelfile_system(tmp_path: Path) -> None:
    msgs = tmp_path / "m.json"
    msgs.write_text(json.dumps([{"role": "user", "content": "hi"}]))
    code, out, _ = run("--template", str(DATA / "templates" / "chatml.gotmpl"),
                       "--messages", str(msgs), "--system", "Be brief.")
    assert code == 0
    assert out == b"<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"


def test_prompt_suffix_and_response() -> None:
    qwen = str(DATA / "templates" / "qwen2.5.gotmpl")
    code, out, _ = run("--template", qwen, "--prompt", "def f(", "--suffix", "return 1")
    assert (code, out) == (0, b"<|fim_prefix|>def f(<|fim_suffix|>return 1<|fim_middle|>")
    code, out, _ = run("--template", str(DATA / "templates" / "phi-3-legacy.gotmpl"),
                       "--prompt", "Hi", "--response", "Hello!")
    assert (code, out) == (0, b"<|user|>\nHi<|end|>\n<|assistant|>\nHello!")


def test_gguf_chat_template(tmp_path: Path) -> None:
    from tests.conftest import make_tiny_model
    gguf = make_tiny_model.write_tiny_gguf(
        tmp_path / "m.gguf",
        chat_template="{{ bos_token }}{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}"
                      "{% if add_generation_prompt %}<assistant>{% endif %}")
    code, out, err = run("--template", str(gguf), "--prompt", "Hi", "--system", "S")
    assert code == 0, err
    assert out == b"<|endoftext|><system>S<user>Hi<assistant>"  # bos from tokenizer.ggml


def test_gguf_without_chat_template(tmp_path: Path) -> None:
    from tests.conftest import make_tiny_model
    gguf = make_tiny_model.write_tiny_gguf(tmp_path / "m.gguf", chat_template=None)
    code, _, err = run("--template", str(gguf), "--prompt", "Hi")
    assert code != 0 and "no tokenizer.chat_template" in err


def test_template_errors_are_one_clear_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.gotmpl"
    bad.write_text("line one\n{{ if .Messages }}unclosed")
    code, out, err = run("--template", str(bad), "--prompt", "x")
    assert code == 1 and out == b""
    assert err.strip().splitlines() == ["Error: template: 2:27: unexpected EOF"]


@pytest.mark.parametrize("args,fragment", [
    ([], "exactly one of --messages or --prompt"),
    (["--suffix", "s", "--messages", "MSGS"], "--suffix needs --prompt"),
])
def test_usage_errors(args: list[str], fragment: str) -> None:
    msgs = str(DATA / "messages" / "user.json")
    code, _, err = run("--template", str(DATA / "templates" / "chatml.gotmpl"),
                       *[msgs if a == "MSGS" else a for a in args])
    assert code == 2 and fragment in err


def test_bad_messages_file(tmp_path: Path) -> None:
    f = tmp_path / "m.json"
    f.write_text('{"role": "user"}')
    code, _, err = run("--template", str(DATA / "templates" / "chatml.gotmpl"), "--messages", str(f))
    assert code == 2 and "expected a JSON array" in err
    f.write_text("[not json")
    code, _, err = run("--template", str(DATA / "templates" / "chatml.gotmpl"), "--messages", str(f))
    assert code == 2 and "--messages" in err


def test_jinja_file(tmp_path: Path) -> None:
    j = tmp_path / "chat.jinja"
    j.write_text("{% for m in messages %}{{ m.role }}={{ m.content }};{% endfor %}")
    code, out, _ = run("--template", str(j), "--messages", str(DATA / "messages" / "user.json"))
    assert (code, out) == (0, b"user=Hello, how are you?;")
