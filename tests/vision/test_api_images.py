"""Images in API requests: Ollama ``images`` and OpenAI ``image_url`` parts are checked before
any model is leased; bad ones are one clear 400 and the server stays up."""
from __future__ import annotations

import base64
from typing import Any

import pytest

from runtime.api.errors import ApiError
from runtime.api.images import decode_images, message_images, openai_content
from vision.conftest import VISION
from vision.pictures import png, webp_header


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def uri(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{b64(data)}"


def test_decode_images_checks_each():
    assert decode_images(None) == [] and decode_images([]) == []
    assert decode_images([b64(png(4, 4))]) == [png(4, 4)]
    with pytest.raises(ApiError) as e:
        decode_images([b64(png()), b64(webp_header())])
    assert e.value.status == 400
    assert e.value.message == "image 2: unsupported image format WebP; send PNG, JPEG, GIF or BMP"
    with pytest.raises(ApiError, match="image 1: not an image"):
        decode_images([b64(b"plain text, not a picture")])
    with pytest.raises(ApiError, match="image 1: invalid base64 image data \\(truncated"):
        decode_images([b64(png())[:-3]])
    with pytest.raises(ApiError, match=r"image 1: image is too large \(50\.0 MB"):
        decode_images(["A" * (50 * 4 * (1 << 20) // 3)])
    with pytest.raises(ApiError, match="too many images \\(3; at most 2"):
        decode_images([b64(png())] * 3, max_images=2)
    with pytest.raises(ApiError, match="images must be a list"):
        decode_images("abc")  # type: ignore[arg-type]


def test_message_images_in_order():
    msgs: list[Any] = [{"role": "user", "images": ["a", "b"]}, {"role": "assistant"},
                       {"role": "user", "content": "x", "images": ["c"]}]
    assert message_images(msgs) == ["a", "b", "c"]


def test_openai_parts_keep_image_positions():
    text, images = openai_content([
        {"type": "text", "text": "compare "},
        {"type": "image_url", "image_url": {"url": uri(png())}},
        {"type": "text", "text": " with "},
        {"type": "image_url", "image_url": uri(png(rgb=(0, 0, 255)), "image/jpeg")},
    ])
    assert text == "compare [img] with [img]"
    assert [base64.b64decode(i) for i in images] == [png(), png(rgb=(0, 0, 255))]


@pytest.mark.parametrize("part, message", [
    ({"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
     "image 3: https image URLs are not supported"),
    ({"type": "image_url", "image_url": {"url": uri(webp_header(), "image/webp")}},
     "image 3: unsupported image format WebP"),
    ({"type": "image_url", "image_url": {"url": "data:image/png;base64,%%%"}},
     "image 3: invalid base64 image data"),
    ({"type": "image_url", "image_url": {}}, "image 3: image_url must be a data URI string"),
    ({"type": "input_audio", "input_audio": {}}, "unsupported content part type 'input_audio'"),
    ({"type": "text", "text": 5}, "text must be a string"),
    ("text", "invalid message format"),
])
def test_openai_bad_parts(part, message):
    with pytest.raises(ApiError) as e:
        openai_content([part], first_index=2)
    assert e.value.status == 400 and message in e.value.message


def test_openai_client_gets_clear_400s(live_server, vision_store):
    openai = pytest.importorskip("openai")
    url = live_server(store=vision_store)
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)

    def ask(image_url: str) -> Any:
        return client.chat.completions.create(model=VISION, messages=[{"role": "user", "content": [
            {"type": "text", "text": "what is this?"},
            {"type": "image_url", "image_url": {"url": image_url}}]}])

    for bad, message in [("https://example.com/cat.png", "https image URLs are not supported"),
                         (uri(b"GIF89a"), "corrupt image: truncated GIF header"),
                         (uri(webp_header(), "image/webp"), "unsupported image format WebP"),
                         (uri(png())[:-5], "truncated")]:
        with pytest.raises(openai.BadRequestError) as e:
            ask(bad)
        assert message in str(e.value)
        assert "/tmp" not in str(e.value)
    # the server is still up and answers text-only requests
    reply = client.chat.completions.create(model=VISION, max_tokens=3,
                                           messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content is not None
