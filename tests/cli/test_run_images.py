"""``llmcrate run`` with a vision model: image paths in the prompt are read, checked and sent
base64 as ``images`` (as ``ollama run`` does), and kept in the session for /save."""
from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path
from typing import Callable

import httpx
import pytest

from cli.conftest import LLMCRATE, LiveServer, Terminal
from runtime.cli.images import extract_images
from runtime.errors import ImageError
from tests.vision.pictures import png, webp_header

Start = Callable[..., Terminal]
# The server answers this until the engine runner evaluates images (runtime.serve.vision); the
# request got there with its images either way.
NOT_WIRED = "image input is not supported by llmcrate yet"


def test_extract_images(tmp_path: Path):
    (tmp_path / "red.png").write_bytes(png())
    (tmp_path / "my cat.jpg").write_bytes(png(rgb=(1, 2, 3)))   # content decides, not the name
    (tmp_path / "notes.png").write_text("not a picture")
    (tmp_path / "pic.webp").write_bytes(webp_header())
    red = tmp_path / "red.png"
    found = extract_images(f"what is in {red}? and '{tmp_path}/my cat.jpg' too")
    assert found.text == "what is in ? and  too"
    assert [base64.b64decode(i) for i in found.images] == [png(), png(rgb=(1, 2, 3))]
    assert found.paths == [str(red), f"{tmp_path}/my cat.jpg"]
    escaped = extract_images(f"see {tmp_path}/my\\ cat.jpg")
    assert escaped.paths == [f"{tmp_path}/my cat.jpg"] and escaped.text == "see"
    missing = extract_images(f"a file {tmp_path}/nope.png is only mentioned")
    assert missing.images == [] and missing.text == f"a file {tmp_path}/nope.png is only mentioned"
    assert extract_images("no paths here").text == "no paths here"
    with pytest.raises(ImageError, match=r"notes.png: not an image \(expected PNG, JPEG"):
        extract_images(f"read {tmp_path}/notes.png")
    with pytest.raises(ImageError, match=r"pic.webp: unsupported image format WebP"):
        extract_images(f"read {tmp_path}/pic.webp")
    with pytest.raises(ImageError, match=r"red.png: image is too large"):
        extract_images(f"read {red}", max_bytes=10)


@pytest.fixture(scope="module")
def eyes(live_server: LiveServer, tiny_vision: tuple[Path, Path],
         tmp_path_factory: pytest.TempPathFactory) -> str:
    """``eyes``: the tiny vision model, created through the live server with two FROM lines."""
    d = tmp_path_factory.mktemp("eyes")
    model, mmproj = tiny_vision
    (d / "Modelfile").write_text(f"FROM {model}\nFROM {mmproj}\n")
    r = subprocess.run([*LLMCRATE, "create", "eyes", "-f", str(d / "Modelfile")],
                       env=live_server.env(d), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return "eyes"


def _run(live_server: LiveServer, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*LLMCRATE, "run", *args], env=live_server.env(cwd), cwd=cwd,
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


def test_one_shot_reads_the_image(live_server: LiveServer, eyes: str, tmp_path: Path):
    (tmp_path / "red.png").write_bytes(png())
    r = _run(live_server, tmp_path, eyes, "what is in ./red.png")
    assert "Added image './red.png'" in r.stderr
    assert r.returncode == 0 or NOT_WIRED in r.stderr, r.stderr


def test_one_shot_answers_about_the_image(live_server: LiveServer, eyes: str, tmp_path: Path):
    (tmp_path / "red.png").write_bytes(png())
    r = _run(live_server, tmp_path, eyes, "what is in ./red.png")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip()


def test_bad_or_missing_files(live_server: LiveServer, eyes: str, tmp_path: Path):
    (tmp_path / "notes.png").write_text("hello")
    r = _run(live_server, tmp_path, eyes, "what is in ./notes.png")
    assert r.returncode == 1
    assert r.stderr.strip().splitlines()[-1].endswith("./notes.png: not an image (expected PNG, "
                                                      "JPEG, GIF or BMP data)")
    # a path that does not exist is just text; a text model never reads paths
    (tmp_path / "red.png").write_bytes(png())
    for model, prompt in ((eyes, "describe ./missing.png"), ("tiny", "describe ./red.png")):
        r = _run(live_server, tmp_path, model, prompt)
        assert r.returncode == 0, r.stderr
        assert "Added image" not in r.stderr


def test_repl_keeps_images_in_the_session(terminal: Start, live_server: LiveServer, eyes: str,
                                          tmp_path: Path):
    (tmp_path / "red.png").write_bytes(png())
    (tmp_path / "bad.png").write_text("nope")
    t = terminal("run", eyes)
    t.expect(">>> ")
    t.send(f"is {tmp_path}/bad.png red?\n")
    t.expect("Couldn't process image: ")
    t.expect("bad.png: not an image")
    t.send(f"describe {tmp_path}/red.png please\n")
    t.expect(f"Added image '{tmp_path}/red.png'")
    t.expect(">>> ")
    t.send("/save eyes-session\n")
    t.expect("Created new model 'eyes-session'")
    t.send("/bye\n")
    assert t.wait() == 0
    shown = httpx.post(f"{live_server.url}/api/show", json={"model": "eyes-session"},
                       timeout=10).json()
    first = shown["messages"][0]
    assert first["role"] == "user" and first["content"] == "describe  please"
    assert [base64.b64decode(i) for i in first["images"]] == [png()]
    assert "vision" in shown["capabilities"]
    # the saved session starts with its messages, images included (server side)
    t2 = terminal("run", "eyes-session")
    t2.expect(">>> describe  please")
    t2.send("/bye\n")
    assert t2.wait() == 0
    assert json.dumps(shown["messages"]).count("iVBOR") == 1
