"""Bundle spec validation: good specs parse, every bad key is named in the error."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from bundler.spec import PORTABLE_CPU_CMAKE, load_spec, parse_spec
from runtime.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
PY = f"{sys.version_info[0]}.{sys.version_info[1]}"


def _spec(tmp_path: Path, **over: Any) -> dict[str, Any]:
    (tmp_path / "Modelfile").write_text("FROM ./x.gguf\n")
    base: dict[str, Any] = {"name": "demo", "version": "1.0",
                            "models": [{"name": "qwen2.5:0.5b"}, {"modelfile": "./Modelfile", "as": "bot"}]}
    base.update(over)
    return base


def test_full_spec(tmp_path: Path) -> None:
    s = parse_spec(_spec(tmp_path, runtimes={"cuda12": {"index": "https://example.org/cu124", "cuda": "12.4"},
                                             "rocm6": {"build": {"cmake_args": "-DGGML_HIP=on"}, "gfx": ["gfx1100"]}},
                         python=["3.12", "3.10"], created="2026-01-02T03:04:05Z",
                         service={"host": "0.0.0.0:8080", "keep_alive": "24h", "num_parallel": 2,
                                  "env": {"OLLAMA_ORIGINS": "*"}}),
                   base_dir=tmp_path, env={})
    assert [m.target for m in s.models] == ["registry.ollama.ai/library/qwen2.5:0.5b",
                                            "registry.ollama.ai/library/bot:latest"]
    assert s.models[1].modelfile == tmp_path / "Modelfile"
    assert [(r.name, r.kind) for r in s.runtimes] == [("cpu", "build"), ("cuda12", "index"), ("rocm6", "build")]
    assert s.runtimes[0].cmake_args == PORTABLE_CPU_CMAKE
    assert s.runtimes[1].facts == {"cuda": "12.4"} and s.runtimes[2].facts == {"gfx": ["gfx1100"]}
    assert s.python == ("3.10", "3.12")
    assert s.created == 1767323045
    assert s.top == "demo-1.0" and s.arch == "x86_64"
    assert s.service.env == {"OLLAMA_ORIGINS": "*"}


def test_created_defaults_to_source_date_epoch(tmp_path: Path) -> None:
    assert parse_spec(_spec(tmp_path), base_dir=tmp_path, env={"SOURCE_DATE_EPOCH": "1700000000"}).created == 1700000000
    assert parse_spec(_spec(tmp_path), base_dir=tmp_path, env={}).created == 0


@pytest.mark.parametrize("over,key,msg", [
    ({"colour": "red"}, "colour", "unknown key"),
    ({"name": "my bundle"}, "name", "letters, digits"),
    ({"models": []}, "models", "non-empty list"),
    ({"models": [{"name": "a", "tag": "x"}]}, "models[0].tag", "unknown key"),
    ({"models": [{"name": "a", "modelfile": "b"}]}, "models[0]", "exactly one"),
    ({"models": [{"modelfile": "./Modelfile"}]}, "models[0].as", "needs a name"),
    ({"models": [{"modelfile": "./nope"}]}, "models[0].modelfile", "no such file"),
    ({"models": [{"name": "bad name!"}]}, "models[0].name", "invalid model name"),
    ({"models": [{"name": "a", "insecure": "yes"}]}, "models[0].insecure", "true or false"),
    ({"models": ["a", {"name": "b", "as": "a"}]}, "models[1]", "already models[0]"),
    ({"runtimes": {"vulkan": {}}}, "runtimes.vulkan", "cpu, cuda<N> or rocm<N>"),
    ({"runtimes": {"cuda12": {"wheel": "x.whl", "index": "https://x"}}}, "runtimes.cuda12", "choose one"),
    ({"runtimes": {"cuda12": {"build": {}}}}, "runtimes.cuda12.build.cmake_args", "CMake flags"),
    ({"runtimes": {"cpu": {"wheel": "missing.whl"}}}, "runtimes.cpu.wheel", "no such wheel"),
    ({"runtimes": {"cpu": {"bulid": {}}}}, "runtimes.cpu.bulid", "unknown key"),
    ({"runtimes": {"cuda12": {"index": "ftp://x"}}}, "runtimes.cuda12.index", "URL"),
    ({"python": ["3.8"]}, "python[0]", "3.9 or newer"),
    ({"python": ["3.11", "three"]}, "python[1]", "3.9 or newer"),
    ({"platform": "win_amd64"}, "platform", "manylinux"),
    ({"wheels": {"source": "conda"}}, "wheels.source", "download"),
    ({"wheels": {"source": "installed"}, "python": ["3.9", PY]}, "wheels.source", "this interpreter"),
    ({"service": {"port": 1}}, "service.port", "unknown key"),
    ({"service": {"keep_alive": "forever"}}, "service.keep_alive", "invalid duration"),
    ({"service": {"host": "http://x:99999"}}, "service.host", "port"),
    ({"service": {"num_parallel": 0}}, "service.num_parallel", ">= 1"),
    ({"service": {"env": {"lower": "x"}}}, "service.env.lower", "upper-case"),
    ({"created": "yesterday"}, "created", "invalid date"),
])
def test_bad_specs_name_the_key(tmp_path: Path, over: dict[str, Any], key: str, msg: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_spec(_spec(tmp_path, **over), base_dir=tmp_path, source="s.yaml", env={})
    assert e.value.key == f"s.yaml: {key}"
    assert msg in str(e.value)


def test_missing_required_and_yaml_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="version: is required"):
        parse_spec({"name": "x", "models": ["a"]}, base_dir=tmp_path, env={})
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match=r"not valid YAML \(line"):
        load_spec(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        load_spec(tmp_path / "absent.yaml")


def test_example_specs_are_valid() -> None:
    for f in sorted((ROOT / "examples" / "bundles").glob("*.yaml")):
        spec = load_spec(f, env={})
        assert spec.models and spec.runtimes[0].name == "cpu", f
