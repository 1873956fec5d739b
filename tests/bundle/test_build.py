"""Building: what gets pulled, what a bundle holds, bad input, and the ``llmcrate bundle`` commands."""
from __future__ import annotations

import json
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from bundler.pack import build_bundle, ensure_model, parse_size
from bundler.spec import load_spec, parse_spec
from runtime.cli import main
from runtime.errors import BundleError, ModelNotFound
from runtime.models.store import Store
from tests.bundle.conftest import PY, Built
from tests.fakes import FakeHub, FakeRegistry


def test_bundle_contents(built: Built) -> None:
    with tarfile.open(built.tar) as tf:
        names = [m.name.split("/", 1)[1] for m in tf.getmembers()]
        first = tf.getmembers()[0]
        modes = {m.name.split("/", 1)[1]: m.mode for m in tf.getmembers()}
    assert names[0] == "bundle.json" and first.name == "demo-1.0/bundle.json"
    assert set(names[1:]) == set(built.bundle.files)
    for script in ("install.sh", "start.sh", "uninstall.sh"):
        assert modes[script] == 0o755
    wheels = {n.split("/")[1].split("-")[0] for n in names if n.startswith("wheels/")}
    assert {"llmcrate", "llama_cpp_python", "pip", "fastapi", "uvicorn", "click", "jinja2", "numpy"} <= wheels
    assert "pytest" not in wheels and "huggingface_hub" not in wheels  # only what the target needs
    assert built.bundle.pip == {PY: next(n.split("/")[1] for n in names if n.startswith("wheels/pip-"))}
    libs = {n.split("/")[-1] for n in names if n.startswith("runtimes/cpu/")}
    assert {"libllama.so", "libggml.so", "libggml-base.so", "libllama.so.0"} <= libs
    assert not any(n.count(".") > 2 and n.startswith("libllama.so.0.") for n in libs)  # no third copy
    assert any(n.startswith("LICENSES/models/tiny_latest/") for n in names)
    assert any(n.startswith("LICENSES/wheels/llama_cpp_python/") for n in names)
    models = built.bundle.models
    assert set(models) == {"tiny:latest", "tinybot:latest"}
    assert models["tiny:latest"].manifest == "models/manifests/registry.ollama.ai/library/tiny/latest"
    # the registry model's manifest is carried byte for byte (its digest is the model ID)
    assert models["tiny:latest"].digest == built.store.resolve(built.registry_name).digest
    assert built.bundle.runtimes["cpu"]["source"] == "installed package"
    assert built.bundle.python == [PY] and built.bundle.arch == "x86_64"


def test_llmcrate_wheel_carries_templates_and_entry_point(built: Built, tmp_path: Path) -> None:
    with tarfile.open(built.tar) as tf:
        member = tf.getmember(f"demo-1.0/wheels/{built.bundle.llmcrate_wheel}")
        data = tf.extractfile(member).read()  # type: ignore[union-attr]
    (tmp_path / "w.whl").write_bytes(data)
    with zipfile.ZipFile(tmp_path / "w.whl") as zf:
        names = zf.namelist()
        eps = zf.read("llmcrate-0.1.0.dist-info/entry_points.txt").decode()
        record = zf.read("llmcrate-0.1.0.dist-info/RECORD").decode()
    assert "bundler/templates/install.sh" in names and "runtime/bundle/verify.py" in names
    assert "llmcrate = runtime.cli:main" in eps
    assert all(n in record for n in names)


def test_missing_model_fails_cleanly(fake_registry: FakeRegistry, tmp_path: Path) -> None:
    spec = parse_spec({"name": "x", "version": "1", "python": [PY], "wheels": {"source": "installed"},
                       "runtimes": {"cpu": {"installed": True}},
                       "models": [{"name": f"{fake_registry.host}/library/nope:latest", "insecure": True}]},
                      base_dir=tmp_path, env={})
    with pytest.raises(ModelNotFound, match="nope"):
        build_bundle(spec, store=Store(tmp_path / "store"), out=tmp_path)
    assert list(tmp_path.glob("*.tar*")) == [] and not list(tmp_path.glob(".*partial"))


def test_corrupt_store_blob_aborts_and_leaves_nothing(built: Built, tmp_path: Path) -> None:
    import shutil
    store_dir = tmp_path / "store"
    shutil.copytree(built.store.root, store_dir)
    store = Store(store_dir)
    blob = store.blob_path(store.resolve(built.registry_name).layers[0].digest)
    data = bytearray(blob.read_bytes())
    data[1000] ^= 0xFF
    blob.write_bytes(bytes(data))
    from runtime.errors import DigestMismatch
    with pytest.raises(DigestMismatch, match="models/blobs/"):
        build_bundle(load_spec(built.spec, env={}), store=store, out=tmp_path / "out.tar")
    assert not (tmp_path / "out.tar").exists() and not list(tmp_path.glob(".out.tar*"))


@pytest.fixture
def hub(tmp_path: Path, tiny_gguf: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    with FakeHub(tmp_path / "hub") as h:
        h.add_repo("someone/Tiny-GGUF", {"Tiny-Q8_0.gguf": tiny_gguf}, license="mit")
        monkeypatch.setenv("HF_ENDPOINT", h.base_url)
        yield h


def test_hf_model_pulled_once_under_its_target_name(hub: FakeHub, tmp_path: Path) -> None:
    spec = parse_spec({"name": "x", "version": "1",
                       "models": [{"name": "hf.co/someone/Tiny-GGUF:Q8_0", "as": "tiny-hf:latest"}]},
                      base_dir=tmp_path, env={})
    store = Store(tmp_path / "store")
    first = ensure_model(store, spec.models[0], spec=spec)
    assert store.resolve("tiny-hf:latest").digest == first.digest
    hub.stop()  # the second build finds it in the store: no network
    assert ensure_model(store, spec.models[0], spec=spec).digest == first.digest


def test_parse_size() -> None:
    assert parse_size("4G") == 4 << 30 and parse_size("700M") == 700 << 20 and parse_size("1.5GiB") == 3 << 29
    with pytest.raises(BundleError):
        parse_size("12 apples")
    with pytest.raises(BundleError, match="too small"):
        parse_size("10K")


def test_cli_build_inspect_verify(built: Built, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_MODELS", str(built.store.root))
    runner = CliRunner()
    # "-o NEWDIR/": a trailing slash means a folder, created when missing (as with cp)
    r = runner.invoke(main, ["bundle", "build", str(built.spec), "-o", f"{tmp_path / 'new'}/",
                             "--compress", "gz"])
    assert r.exit_code == 0, r.output
    out = tmp_path / "new" / "demo-1.0.tar.gz"
    assert out.is_file() and str(out) in r.output
    r = runner.invoke(main, ["bundle", "inspect", str(out)])
    assert r.exit_code == 0 and "tinybot:latest" in r.output and "cpu (installed package)" in r.output
    r = runner.invoke(main, ["bundle", "verify", str(out)])
    assert r.exit_code == 0 and "2 model(s) verified" in r.output
    out.write_bytes(out.read_bytes()[:-5000])
    r = runner.invoke(main, ["bundle", "verify", str(out)])
    assert r.exit_code == 1 and r.output.startswith("Error: ")


def test_inspect_of_a_folder_without_bundle_json_is_one_line(tmp_path: Path) -> None:
    r = CliRunner().invoke(main, ["bundle", "inspect", str(tmp_path)])
    assert r.exit_code == 1
    assert r.output == f"Error: {tmp_path}: no bundle.json in this folder (not a llmcrate bundle?)\n"
    r = CliRunner().invoke(main, ["bundle", "inspect", str(tmp_path / "nope.tar")])
    assert r.exit_code == 1 and r.output.startswith("Error: ") and len(r.output.splitlines()) == 1


def test_cli_reports_spec_errors(tmp_path: Path) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text(yaml.safe_dump({"name": "x", "version": "1", "models": ["a"], "runtime": {}}))
    r = CliRunner().invoke(main, ["bundle", "build", str(spec)])
    assert r.exit_code == 1
    assert f"Error: {spec}: runtime: unknown key" in r.output


def test_inspect_reads_only_bundle_json(built: Built, tmp_path: Path) -> None:
    # a bundle cut right after bundle.json still inspects (and fails verify)
    with tarfile.open(built.tar) as tf:
        second = tf.getmembers()[1]
    cut = tmp_path / "cut.tar"
    cut.write_bytes(built.tar.read_bytes()[:second.offset])
    r = CliRunner().invoke(main, ["bundle", "inspect", str(cut), "--files"])
    assert r.exit_code == 0 and "models/blobs/sha256-" in r.output
    assert json.loads(json.dumps(built.bundle.to_json()))["name"] == "demo"
    r = CliRunner().invoke(main, ["bundle", "verify", str(cut)])
    assert r.exit_code == 1 and "truncated" in r.output


def test_trusting_the_store_gives_the_same_bytes(built: Built, tmp_path: Path) -> None:
    """--trust-store copies blobs in the kernel; same bytes, and a corrupt blob still fails verify."""
    from runtime.bundle.verify import verify_bundle
    from runtime.errors import DigestMismatch
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    from tests.bundle.test_verify import _tree_digest
    spec = load_spec(built.spec, env={})
    before = _tree_digest()
    fast = build_bundle(spec, store=built.store, out=tmp_path / "a", rehash=False)
    slow = build_bundle(spec, store=built.store, out=tmp_path / "b")
    if _tree_digest() == before:  # else another edit landed between the builds (llmcrate wheel differs)
        assert fast.paths[0].read_bytes() == slow.paths[0].read_bytes()
    assert verify_bundle(fast.paths[0]).files == len(built.bundle.files)
    import shutil
    shutil.copytree(built.store.root, tmp_path / "store")
    store = Store(tmp_path / "store")
    blob = store.blob_path(store.resolve(built.registry_name).layers[0].digest)
    data = bytearray(blob.read_bytes())
    data[5000] ^= 0x01
    blob.write_bytes(bytes(data))
    bad = build_bundle(spec, store=store, out=tmp_path / "bad.tar", rehash=False)
    with pytest.raises(DigestMismatch):
        verify_bundle(bad.paths[0])


def test_download_mode_offline_from_a_local_wheelhouse(built: Built, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """wheels.source: download runs ``pip download`` per target Python; here against a local
    wheelhouse with --no-index (the same code path as an index, without the network)."""
    import subprocess
    house = tmp_path / "house"
    house.mkdir()
    subprocess.run(["tar", "-xf", str(built.tar), "-C", str(house), "--strip-components=2", "demo-1.0/wheels"],
                   check=True)
    llama = next(house.glob("llama_cpp_python-*.whl"))
    spec = yaml.safe_load(built.spec.read_text())
    spec["runtimes"] = {"cpu": {"wheel": str(llama)}}
    spec["wheels"] = {"source": "download", "offline": True, "find_links": [str(house)]}
    spec["platform"] = "manylinux_2_28_x86_64"  # the repacked numpy needs glibc 2.27
    path = built.spec.with_name("download.yaml")
    path.write_text(yaml.safe_dump(spec))
    res = build_bundle(load_spec(path, env={}), store=built.store, out=tmp_path / "d.tar")
    wheels = {k.split("/")[1] for k in res.bundle.files if k.startswith("wheels/")}
    assert wheels == {k.split("/")[1] for k in built.bundle.files if k.startswith("wheels/")}
    assert res.bundle.runtimes["cpu"]["source"] == "wheel"
    # a requirement the wheelhouse cannot satisfy fails with pip's reason
    for w in house.glob("click-*.whl"):
        w.unlink()
    monkeypatch.setenv("LLMCRATE_CACHE", str(tmp_path / "fresh-cache"))
    with pytest.raises(BundleError, match="pip download failed"):
        build_bundle(load_spec(path, env={}), store=built.store, out=tmp_path / "e.tar")


def test_cpu_wheel_must_install_on_every_target_python(built: Built, tmp_path: Path) -> None:
    import shutil
    spec = yaml.safe_load(built.spec.read_text())
    house = tmp_path / "house"
    house.mkdir()
    import subprocess
    subprocess.run(["tar", "-xf", str(built.tar), "-C", str(house), "--strip-components=2", "demo-1.0/wheels"],
                   check=True)
    llama = next(house.glob("llama_cpp_python-*.whl"))
    only312 = tmp_path / llama.name.replace("py3-none", "cp312-cp312")  # a copy tagged for 3.12 only
    shutil.copyfile(llama, only312)
    spec["runtimes"] = {"cpu": {"wheel": str(only312)}}
    path = built.spec.with_name("cp312.yaml")
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(BundleError, match=r"runtimes.cpu: .* does not install on Python 3\.\d+"):
        build_bundle(load_spec(path, env={}), store=built.store, out=tmp_path / "x.tar")


def test_a_backend_dl_wheel_brings_its_cpu_variants(tmp_path):
    """A GGML_BACKEND_DL build (the portable cpu runtime) keeps each CPU variant in
    bin/libggml-cpu-<arch>.so: without them the runtime has no backend at all."""
    import zipfile

    from bundler.spec import RuntimeSpec
    from bundler.wheels import runtime_libs

    wheel = tmp_path / "llama_cpp_python-0.3.36-py3-none-linux_x86_64.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for name in ("llama_cpp/lib/libllama.so", "llama_cpp/lib/libggml.so",
                     "llama_cpp/lib/libggml-base.so", "bin/libggml-cpu-haswell.so",
                     "bin/libggml-cpu-x64.so", "bin/llama-cli", "lib/libllama-common.so",
                     "llama_cpp/__init__.py"):
            zf.writestr(name, b"\x7fELF" + name.encode())
    names = [f.name for f in runtime_libs(RuntimeSpec("cpu", "wheel", wheel=wheel), wheel)]
    assert names == ["libggml-base.so", "libggml-cpu-haswell.so", "libggml-cpu-x64.so",
                     "libggml.so", "libllama.so"]


def test_build_reports_byte_progress(tmp_path, fake_registry, monkeypatch):
    """`bundle build` draws a progress bar from these events while the tar is written."""
    from bundler.pack import build_bundle
    from bundler.spec import load_spec
    from runtime.models.store import Store
    from runtime.progress import ProgressEvent
    from tests.bundle.conftest import write_demo_spec

    monkeypatch.setenv("LLMCRATE_CACHE", str(tmp_path / "cache"))
    spec = write_demo_spec(tmp_path / "spec", fake_registry.host)
    events: list[ProgressEvent] = []
    build_bundle(load_spec(spec, env={}), store=Store(tmp_path / "store"), out=tmp_path / "o.tar",
                 events=events.append)
    assert events, "no progress events"
    done = [e.completed for e in events]
    assert done == sorted(done) and done[-1] == events[-1].total > 100_000
    assert {e.digest for e in events} == {"o.tar"}


def test_vision_models_carry_their_projector(tmp_path, fake_registry, tiny_vision, monkeypatch):
    """A Modelfile vision model (FROM model + FROM mmproj) and a registry model with Ollama's
    projector layer: the bundle holds every layer of both, and verifies."""
    from runtime.bundle.verify import verify_bundle
    from runtime.models.store import MEDIA_PROJECTOR

    monkeypatch.setenv("LLMCRATE_CACHE", str(tmp_path / "cache"))
    model, mmproj = tiny_vision
    fake_registry.add_model("library/tinyvl:latest", model, extra=[("projector", mmproj)])
    folder = tmp_path / "spec"
    folder.mkdir()
    (folder / "Modelfile").write_text(f"FROM {model}\nFROM {mmproj}\nSYSTEM look closely\n")
    (folder / "Modelfile.vl").write_text("FROM tinyvl:latest\nSYSTEM describe\n")
    spec = folder / "v.yaml"
    spec.write_text(yaml.safe_dump({
        "name": "vision", "version": "1",
        "models": [{"modelfile": "./Modelfile", "as": "eyes:latest"},
                   {"name": f"{fake_registry.host}/library/tinyvl:latest", "insecure": True,
                    "as": "tinyvl:latest"},
                   {"modelfile": "./Modelfile.vl", "as": "describer:latest"}],
        "runtimes": {"cpu": {"installed": True}}, "python": [PY],
        "wheels": {"source": "installed"}}))
    store = Store(tmp_path / "store")
    result = build_bundle(load_spec(spec, env={}), store=store, out=tmp_path / "v.tar")
    files = set(result.bundle.files)
    with tarfile.open(result.paths[0]) as tf:
        for name in ("eyes:latest", "tinyvl:latest", "describer:latest"):
            rel = result.bundle.models[name].manifest
            manifest = json.loads(tf.extractfile(f"vision-1/{rel}").read())  # type: ignore[union-attr]
            kinds = [x["mediaType"] for x in manifest["layers"]]
            assert kinds.count(MEDIA_PROJECTOR) == 1, name
            for layer in [manifest["config"], *manifest["layers"]]:
                assert "models/blobs/" + layer["digest"].replace(":", "-", 1) in files
    verify_bundle(result.paths[0])
