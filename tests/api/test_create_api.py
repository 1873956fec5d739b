"""/api/create refuses bad input with 400 and writes nothing."""
from __future__ import annotations

from runtime.store import MEDIA_MODEL


def test_api_create_with_a_broken_template_is_400(live_server, tiny_store) -> None:
    import httpx

    url = live_server()
    blob = tiny_store.resolve("tiny").layers_of(MEDIA_MODEL)[0].digest
    r = httpx.post(f"{url}/api/create", json={"model": "broken", "files": {"t.gguf": blob},
                                              "template": "{{ if .Prompt }}", "stream": False})
    assert r.status_code == 400 and "template" in r.json()["error"]
    assert not tiny_store.exists("broken")
