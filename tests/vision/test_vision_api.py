"""Images through the official ``ollama`` and ``openai`` clients against a live server."""
from __future__ import annotations

import base64

import pytest

from vision.conftest import VISION
from vision.pictures import png, webp_header


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_text_model_refuses_images(live_server, vision_store):
    import ollama

    client = ollama.Client(host=live_server(store=vision_store))
    with pytest.raises(ollama.ResponseError) as e:
        client.chat(model="tiny", messages=[{"role": "user", "content": "hi",
                                             "images": [b64(png())]}])
    assert e.value.status_code == 400 and "does not support vision" in str(e.value)
    with pytest.raises(ollama.ResponseError, match="does not support vision"):
        client.generate(model="tiny", prompt="hi", images=[b64(png())])


def test_ollama_chat_and_generate_with_images(live_server, vision_store):
    import ollama

    client = ollama.Client(host=live_server(store=vision_store))
    opts = {"num_predict": 4, "temperature": 0}
    r = client.chat(model=VISION, options=opts, messages=[
        {"role": "user", "content": "what is this?", "images": [b64(png())]},
        {"role": "assistant", "content": "a square"},
        {"role": "user", "content": "and this [img] next to the first?",
         "images": [b64(png(rgb=(0, 0, 255)))]}])
    assert r.message.content and r.prompt_eval_count > 32     # two images of 16 embeddings
    g = client.generate(model=VISION, prompt="describe", images=[b64(png())], options=opts)
    assert g.response and g.prompt_eval_count > 16


def test_openai_image_url_part(live_server, vision_store):
    import openai

    client = openai.OpenAI(base_url=f"{live_server(store=vision_store)}/v1", api_key="x",
                           max_retries=0)
    r = client.chat.completions.create(model=VISION, max_tokens=4, temperature=0, messages=[
        {"role": "user", "content": [
            {"type": "text", "text": "what is in"},
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{b64(png())}"}}]}])
    assert r.choices[0].message.content and r.usage.prompt_tokens > 16


def test_bad_images_are_400_and_the_server_stays_up(live_server, vision_store):
    import httpx
    import ollama

    url = live_server(store=vision_store)
    # raw HTTP: the ollama client refuses some of these itself before sending
    for bad, message in [(b64(b"just text"), "image 1: not an image"),
                         (b64(webp_header()), "unsupported image format WebP"),
                         (b64(png())[:-2], "truncated"),
                         ("A" * (50 << 20), "image is too large")]:
        for path, body in [("/api/chat", {"messages": [{"role": "user", "content": "x",
                                                        "images": [bad]}]}),
                           ("/api/generate", {"prompt": "x", "images": [bad]})]:
            r = httpx.post(url + path, json={"model": VISION, "stream": False, **body},
                           timeout=60)
            assert r.status_code == 400 and message in r.json()["error"], (path, r.text[:200])
    client = ollama.Client(host=url)
    assert client.chat(model=VISION, options={"num_predict": 2},
                       messages=[{"role": "user", "content": "hi"}]).message is not None


@pytest.mark.parametrize(("image_encode", "how"), [("thread", "on a thread"), ("inline", "inline")])
def test_image_prompts_beside_a_generating_stream(live_server, vision_store, caplog,
                                                  image_encode: str, how: str):
    """Two slots of one runner: a text stream generates while image prompts are encoded (on
    the runner's encoder thread, or between two steps) and answered; every answer equals its
    greedy answer alone."""
    import logging
    from concurrent.futures import ThreadPoolExecutor

    import ollama

    caplog.set_level(logging.INFO, logger="runtime.serve.runner")
    client = ollama.Client(host=live_server(store=vision_store, num_parallel=2,
                                            image_encode=image_encode))
    greedy = {"temperature": 0, "seed": 1}
    pictures = [png(rgb=(255, 0, 0)), png(rgb=(0, 0, 255)), png(rgb=(0, 255, 0))]

    def text() -> str:
        return client.generate(model=VISION, prompt="count on", raw=True,
                               options={**greedy, "num_predict": 1000}).response

    def picture(i: int) -> str:
        return client.generate(model=VISION, prompt="describe", images=[b64(pictures[i])],
                               options={**greedy, "num_predict": 8}).response

    alone_text = text()
    alone = [picture(i) for i in range(3)]
    with ThreadPoolExecutor(2) as pool:
        long_run = pool.submit(text)
        together = [picture(i) for i in range(3)]   # one after another, beside the long run
        assert long_run.result() == alone_text
    assert together == alone
    assert any(f"images encoded {how}" in r.getMessage() for r in caplog.records)
