"""``llmcrate run`` against a live ``llmcrate serve``: one-shot, piped stdin, and the interactive
REPL driven through a pseudo-terminal (/set, /show, /clear, /load, /save, \"\"\", Ctrl-C, Ctrl-D)."""
from __future__ import annotations

import re
import socket
import subprocess
import time
from pathlib import Path
from typing import Callable

import httpx

from cli.conftest import LLMCRATE, LiveServer, Terminal

Start = Callable[..., Terminal]


def _llmcrate(args: list[str], env: dict[str, str], *, stdin: str | None = None,
              timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*LLMCRATE, *args], env=env, input=stdin if stdin is not None else "",
                          capture_output=True, text=True, timeout=timeout)


def test_one_shot_prompt_prints_reply_and_verbose_stats(live_server: LiveServer, tmp_path: Path) -> None:
    r = _llmcrate(["run", "tiny", "Hello", "there", "--verbose"], live_server.env(tmp_path))
    assert r.returncode == 0, r.stderr
    assert r.stdout.endswith("\n\n") and r.stdout.strip()
    for label in ("total duration:", "load duration:", "prompt eval count:", "prompt eval rate:",
                  "eval count:", "eval duration:", "eval rate:"):
        assert label in r.stderr
    # the reply is the model's: the same request through the API (greedy? no: default sampling)
    # cannot be compared, but the token count the stats report matches a real generation
    assert " token(s)" in r.stderr


def test_piped_stdin_is_the_prompt(live_server: LiveServer, tmp_path: Path) -> None:
    env = live_server.env(tmp_path)
    r = _llmcrate(["run", "tiny", "--nowordwrap"], env, stdin="Tell me a story\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip()
    # stdin and the argument are joined, stdin first, like ollama
    r2 = _llmcrate(["run", "tiny", "continue"], env, stdin="Once upon a time")
    assert r2.returncode == 0 and r2.stdout.strip()


def test_unknown_model_fails_with_hint(live_server: LiveServer, tmp_path: Path) -> None:
    r = _llmcrate(["run", "nope", "hi"], live_server.env(tmp_path))
    assert r.returncode == 1
    assert 'model "nope" not found' in r.stderr and "llmcrate pull nope" in r.stderr


def test_no_server_says_how_to_start_one(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {"OLLAMA_HOST": f"127.0.0.1:{port}", "HOME": str(tmp_path), "PATH": "/usr/bin:/bin",
           "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    r = _llmcrate(["run", "tiny", "hi"], env, timeout=30)
    assert r.returncode == 1
    assert f"could not connect to llmcrate server at 127.0.0.1:{port}" in r.stderr
    assert "llmcrate serve" in r.stderr
    assert r.stdout == ""


def test_bad_flags_are_one_clear_error(live_server: LiveServer, tmp_path: Path) -> None:
    r = _llmcrate(["run", "tiny", "hi", "--keepalive", "soon"], live_server.env(tmp_path))
    assert r.returncode == 1 and 'invalid duration "soon"' in r.stderr
    r = _llmcrate(["run", "tiny", "hi", "--format", "yaml"], live_server.env(tmp_path))
    assert r.returncode == 1 and "--format" in r.stderr


def test_repl_set_show_and_chat(terminal: Start) -> None:
    t = terminal("run", "tiny")
    t.expect(">>> ")
    t.send("/set parameter num_predict 8\n")
    t.expect("Set parameter 'num_predict' to '8'")
    t.send("/set parameter bogus 1\n")
    t.expect("Couldn't set parameter")
    t.send("/set parameter seed forty\n")
    t.expect("invalid")
    t.send("/set system You are a terse assistant.\n")
    t.expect("Set system message.")
    t.send("/show system\n")
    t.expect("You are a terse assistant.")
    t.send("/show parameters\n")
    t.expect("Model defined parameters:")
    t.expect("User defined parameters:")
    t.expect("num_predict")
    t.send("/show info\n")
    t.expect("architecture")
    t.expect("llama")
    t.send("/show template\n")
    t.expect(">>> ")
    t.send("/show license\n")
    t.expect("No license was specified for this model.")
    t.send("/show bogus\n")
    t.expect("Unknown command '/show bogus'")
    t.send("/frobnicate\n")
    t.expect("Unknown command '/frobnicate'. Type /? for help")
    t.send("/?\n")
    t.expect("/bye            Exit")
    t.send("/set verbose\n")
    t.expect("Set 'verbose' mode.")
    t.send("Hello there\n")
    t.expect("eval count:")
    t.expect("eval rate:")
    t.expect(">>> ")
    t.send("/set format json\n")
    t.expect("Set format to 'json' mode.")
    t.send("/set noformat\n")
    t.expect("Disabled format.")
    t.send("/clear\n")
    t.expect("Cleared session context")
    t.send("/bye\n")
    assert t.wait() == 0


def test_repl_multiline_input(terminal: Start, live_server: LiveServer) -> None:
    # Every line is typed only once its prompt is on screen, as a person would: typed ahead,
    # it reaches the terminal while readline has it in cooked mode (a Ctrl-D there is no EOF
    # for readline, and the session waited for input forever under load).
    t = terminal("run", "tiny")
    t.expect(">>> ")
    t.send("/set parameter num_predict 4\n")
    t.expect("Set parameter")
    t.expect(">>> ")
    t.send('"""first line\n')
    t.expect("... ")
    t.send("second line\n")
    t.expect("... ")
    t.send('third line"""\n')
    t.expect(">>> ", timeout=120)  # the reply came and the prompt is back
    t.send("/set system \"\"\"You answer\n")
    t.expect("... ")
    t.send('in one word."""\n')
    t.expect("Set system message.")
    t.expect(">>> ")
    t.send("/show system\n")
    t.expect("You answer\nin one word.")
    t.expect(">>> ")
    t.send("\x04")          # Ctrl-D exits like /bye
    assert t.wait() == 0


def test_repl_ctrl_c_at_prompt_and_ctrl_d(terminal: Start) -> None:
    t = terminal("run", "tiny")
    t.expect(">>> ")
    for _ in range(10):
        t.send("\x03")
        try:
            t.expect("Use Ctrl + d or /bye to exit.", timeout=5)
            break
        except AssertionError:
            # CPython's readline loses a SIGINT that lands between two of its select() calls
            # (the flag is set, nobody looks); a person presses Ctrl-C again, and so do we
            continue
    else:
        raise AssertionError("Ctrl-C at the prompt never answered")
    t.expect(">>> ")
    t.send("\x04")
    assert t.wait() == 0


def test_repl_ctrl_c_stops_a_reply(terminal: Start, live_server: LiveServer) -> None:
    t = terminal("run", "tiny")
    t.expect(">>> ")
    # a reply that would run for a long time: no token limit, a big context
    t.send("/set parameter num_ctx 32768\n")
    t.expect("Set parameter")
    t.send("/set parameter num_predict 30000\n")
    t.expect("Set parameter")
    t.send("Write forever\n")
    start = len(t.raw)
    deadline = time.monotonic() + 60
    while len(t.raw) - start < 50 and time.monotonic() < deadline:   # wait for streaming output
        t._read(0.1)
    assert len(t.raw) - start >= 50, "no reply streamed"
    t.pos = len(t.raw)
    t.send("\x03")
    t.expect(">>> ", timeout=60)
    # the server stopped generating too: its runner logged the cancellation, far short of the
    # 30000 tokens asked for, and the only slot (NUM_PARALLEL=1) answers the next request
    log = live_server.models.parent / "server.log"
    deadline = time.monotonic() + 60            # the log crosses a pipe: a bound on waiting
    while not (found := _cancellations(log)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert found and all(generated < 30000 for generated in found), log.read_text()[-2000:]
    t.send("/set parameter num_predict 4\n")
    t.expect("Set parameter")
    t.send("Hi\n")
    t.expect(">>> ", timeout=120)
    t.send("/bye\n")
    assert t.wait() == 0
    ps = httpx.get(f"{live_server.url}/api/ps", timeout=10).json()["models"]
    assert [m["name"] for m in ps] == ["tiny:latest"]


def _cancellations(log: Path) -> list[int]:
    """Tokens generated by each request the runner logged as cancelled."""
    return [int(m.group(1)) for m in
            re.finditer(r"cancelled after \d+ of \d+ prompt tokens, (\d+) generated", log.read_text())]


def test_repl_load_and_save(terminal: Start, live_server: LiveServer) -> None:
    t = terminal("run", "tiny")
    t.expect(">>> ")
    t.send("/load nope\n")
    t.expect("Couldn't find model 'nope'")
    t.send("/set system Saved system prompt.\n")
    t.expect("Set system message.")
    t.send("/set parameter temperature 0.25\n")
    t.expect("Set parameter")
    t.send("/save tiny-saved\n")
    t.expect("Created new model 'tiny-saved'")
    t.send("/save Bad/Name/x/y/z\n")
    t.expect("error:")
    t.send("/load tiny-saved\n")
    t.expect("Loading model 'tiny-saved'")
    t.expect(">>> ")
    t.send("/bye\n")
    assert t.wait() == 0
    shown = httpx.post(f"{live_server.url}/api/show", json={"model": "tiny-saved"}, timeout=10).json()
    assert shown["system"] == "Saved system prompt."
    assert "temperature" in shown["parameters"] and "0.25" in shown["parameters"]
