"""Image paths in ``llmcrate run`` prompts, as ``ollama run`` finds them (``extractFileData``).

With a vision model, a prompt like ``what is in ./cat.png`` names an image: every path that
starts with ``/``, ``./``, ``../`` or ``~/`` and ends in an image extension is read, checked
(:func:`runtime.serve.vision.check_image`), sent base64 in ``images``, and removed from the text.
Paths that do not exist stay text (the prompt may just mention a file); one that exists but is
not a usable image is an error, and nothing is sent.
"""
from __future__ import annotations

import base64
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from runtime.errors import ImageError
from runtime.serve.vision import MAX_IMAGE_BYTES, check_image

# Ollama's pattern, plus ../ and ~/ and the formats llama.cpp decodes (webp is refused with a
# clear message by check_image): a path, possibly with escaped spaces, ending in an extension.
_PATH = re.compile(r"(?:[a-zA-Z]:)?(?:\./|\.\./|~/|/|\\)[\S\\ ]+?\.(?i:jpg|jpeg|png|gif|bmp|webp)\b")
_UNESCAPE = [("\\ ", " "), ("\\(", "("), ("\\)", ")"), ("\\[", "["), ("\\]", "]"), ("\\{", "{"),
             ("\\}", "}"), ("\\$", "$"), ("\\&", "&"), ("\\;", ";"), ("\\'", "'"), ("\\\\", "\\"),
             ("\\*", "*"), ("\\?", "?"), ("%20", " ")]


@dataclass
class PromptImages:
    text: str                                         # the prompt without the image paths
    images: list[str] = field(default_factory=list)   # base64, in the order they appear
    paths: list[str] = field(default_factory=list)    # what was read, for "Added image '…'"


def _unescape(path: str) -> str:
    for a, b in _UNESCAPE:
        path = path.replace(a, b)
    return path


def extract_images(prompt: str, *, max_bytes: int = MAX_IMAGE_BYTES) -> PromptImages:
    """Find image paths in ``prompt``, read them, and drop them from the text.

    Raises:
        ImageError: a named file exists but cannot be read, is too large, or is not a PNG, JPEG,
            GIF or BMP image (the message names the file).
    """
    out = PromptImages(text=prompt)
    for raw in _PATH.findall(prompt):
        path = _unescape(raw)
        full = Path(os.path.expanduser(path))
        if not full.is_file():
            continue
        try:
            if full.stat().st_size > max_bytes:
                raise ImageError(f"{path}: image is too large ({full.stat().st_size / (1 << 20):.1f}"
                                 f" MB; the limit is {max_bytes / (1 << 20):.1f} MB)")
            data = full.read_bytes()
        except OSError as e:
            raise ImageError(f"{path}: cannot read the image: {e.strerror or e}") from None
        try:
            check_image(data, max_bytes=max_bytes)
        except ImageError as e:
            raise ImageError(f"{path}: {e.reason}") from None
        out.images.append(base64.b64encode(data).decode("ascii"))
        out.paths.append(path)
        for form in (f"'{path}'", f"'{raw}'", f'"{path}"', f'"{raw}"', raw):
            out.text = out.text.replace(form, "")
    out.text = out.text.strip()
    return out
