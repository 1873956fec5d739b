"""/api/create refuses bad input with 400 and writes nothing."""
from __future__ import annotations

from runtime.models.store import MEDIA_MODEL


def test_api_create_with_a_broken_template_is_400(live_server, tiny_store) -> None:
    import httpx

    url = live_server()
    blob = tiny_store.resolve("tiny").layers_of(MEDIA_MODEL)[0].digest
    r = httpx.post(f"{url}/api/create", json={"model": "broken", "files": {"t.gguf": blob},
                                              "template": "{{ if .Prompt }}", "stream": False})
    assert r.status_code == 400 and "template" in r.json()["error"]
    assert not tiny_store.exists("broken")


def test_legacy_modelfile_create(live_server, tiny_store) -> None:
    """Older clients and scripts send {"name", "modelfile"}: FROM a model, or FROM the blob path
    `show --modelfile` prints, works; a FROM path outside the store is refused clearly."""
    import httpx
    import ollama

    url = live_server()
    r = httpx.post(f"{url}/api/create", json={
        "name": "legacy", "stream": False,
        "modelfile": 'FROM tiny\nSYSTEM """legacy system"""\nPARAMETER temperature 0.3\n'})
    assert r.status_code == 200 and r.json()["status"] == "success", r.text
    shown = ollama.Client(host=url).show("legacy")
    assert 'SYSTEM "legacy system"' in shown.modelfile or "SYSTEM legacy system" in shown.modelfile
    assert "temperature" in shown.parameters

    # the Modelfile `show` prints names the weights by their blob path: it creates a copy
    r = httpx.post(f"{url}/api/create", json={"name": "again", "stream": False,
                                              "modelfile": shown.modelfile})
    assert r.status_code == 200, r.text
    again = tiny_store.resolve("again")
    assert again.layers_of(MEDIA_MODEL)[0].digest == \
        tiny_store.resolve("tiny").layers_of(MEDIA_MODEL)[0].digest

    r = httpx.post(f"{url}/api/create", json={"name": "x", "stream": False,
                                              "modelfile": "FROM /etc/passwd\n"})
    assert r.status_code == 400 and "does not read files by path" in r.json()["error"]
    r = httpx.post(f"{url}/api/create", json={"name": "x", "stream": False,
                                              "modelfile": "FROM tiny\nPARAMETER nope 1\n"})
    assert r.status_code == 400 and "2:" in r.json()["error"]
    assert not tiny_store.exists("x")


def test_legacy_modelfile_adapter_is_honoured_or_refused(live_server, tiny_store) -> None:
    """ADAPTER in a legacy Modelfile follows FROM's rules: a blob is kept as an adapter layer,
    anything else is a 400 (it was dropped silently)."""
    import httpx

    from runtime.models.store import MEDIA_ADAPTER

    url = live_server()
    digest = tiny_store.resolve("tiny").layers_of(MEDIA_MODEL)[0].digest
    blob_path = tiny_store.blob_path(digest)
    for name, line in (("by-digest", f"ADAPTER @{digest}"), ("by-path", f"ADAPTER {blob_path}")):
        r = httpx.post(f"{url}/api/create", json={"name": name, "stream": False,
                                                  "modelfile": f"FROM tiny\n{line}\n"})
        assert r.status_code == 200, r.text
        assert [a.digest for a in tiny_store.resolve(name).layers_of(MEDIA_ADAPTER)] == [digest]
    for line, says in (("ADAPTER lora-name", "name an uploaded blob"),
                       ("ADAPTER /etc/passwd", "does not read files by path"),
                       ("ADAPTER ./lora.gguf", "does not read files by path")):
        r = httpx.post(f"{url}/api/create", json={"name": "x", "stream": False,
                                                  "modelfile": f"FROM tiny\n{line}\n"})
        assert r.status_code == 400 and says in r.json()["error"], r.text
    assert not tiny_store.exists("x")
