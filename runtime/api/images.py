"""Images in API requests: Ollama's base64 ``images`` and OpenAI's ``image_url`` content parts.

Every check that needs no model runs here, in the API process, before a model is leased: bad
base64, not an image, an unsupported format (WebP, TIFF, HEIC …), over 20 MB or too many pixels
all answer 400 with a message that names the image (``image 2: …``). What passes is handed on
as bytes (:func:`decode_images`) to the runner, whose :class:`runtime.serve.vision.VisionContext`
decodes the pixels.

The ``[img-N]`` tags the prompt builder writes index :func:`runtime.api.prompting.chat_images`
/ ``generate_images``; decode that list with :func:`decode_images` and hand it with the prompt
to the runner, which splits the prompt with :func:`runtime.serve.vision.split_image_tags`.
"""
from __future__ import annotations

from typing import Any, Sequence

from runtime.api.errors import ApiError
from runtime.errors import ImageError
from runtime.serve.vision import (
    MAX_IMAGE_BYTES,
    check_image,
    decode_base64_image,
    parse_data_uri,
)

#: Images one request may carry (Ollama has no limit; each costs an encode and its tokens).
MAX_IMAGES = 32


def decode_images(images: Sequence[Any] | None, *, max_bytes: int = MAX_IMAGE_BYTES,
                  max_images: int = MAX_IMAGES) -> list[bytes]:
    """Ollama ``images`` (base64 strings) -> checked image bytes, in order.

    Raises:
        ApiError: 400 for the first bad image ("image 2: unsupported image format WebP; …"),
            or more than ``max_images``.
    """
    if not images:
        return []
    if not isinstance(images, (list, tuple)):
        raise ApiError(400, "images must be a list of base64 strings")
    if len(images) > max_images:
        raise ApiError(400, f"too many images ({len(images)}; at most {max_images} a request)")
    out = []
    for i, text in enumerate(images):
        try:
            data = decode_base64_image(text, index=i, max_bytes=max_bytes)
            check_image(data, index=i, max_bytes=max_bytes)
        except ImageError as e:
            raise ApiError(400, str(e)) from None
        out.append(data)
    return out


def message_images(messages: Sequence[Any]) -> list[Any]:
    """Every image of ``messages`` (dicts or :class:`~runtime.api.schemas.Message`), in order."""
    out: list[Any] = []
    for m in messages:
        imgs = m.get("images") if isinstance(m, dict) else getattr(m, "images", None)
        out.extend(imgs or [])
    return out


def openai_content(parts: list[Any], *, first_index: int = 0) -> tuple[str, list[str]]:
    """OpenAI content parts -> (text, base64 images) for one Ollama-style message.

    Text parts are joined; each ``image_url`` part (a ``data:image/…;base64,`` URI, as Ollama
    accepts; http(s) URLs are refused, the server fetches nothing) leaves an ``[img]`` where it
    stood, so the prompt builder puts the image's tag at the same place among the text.

    Args:
        parts: the message's ``content`` list.
        first_index: images already seen in earlier messages (for "image N" in errors).

    Raises:
        ApiError: 400 for an unknown part type, a malformed part, or a bad image.
    """
    text: list[str] = []
    images: list[str] = []
    for part in parts:
        if not isinstance(part, dict):
            raise ApiError(400, "invalid message format")
        kind = part.get("type")
        if kind == "text":
            value = part.get("text", "")
            if not isinstance(value, str):
                raise ApiError(400, "invalid message format: text must be a string")
            text.append(value)
        elif kind == "image_url":
            url = part.get("image_url")
            url = url.get("url") if isinstance(url, dict) else url
            index = first_index + len(images)
            try:
                data = parse_data_uri(url, index=index)
                check_image(data, index=index)
            except ImageError as e:
                raise ApiError(400, str(e)) from None
            images.append(str(url).split(",", 1)[1].strip())
            text.append("[img]")
        else:
            raise ApiError(400, f"invalid message format: unsupported content part type {kind!r}")
    return "".join(text), images
