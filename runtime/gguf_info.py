"""Facts from a GGUF file's header, read with the ``gguf`` package (no weights are loaded).

Used by ``create`` (config blob: family, parameter size, quantization) and ``show``
(``model_info``). The file is memory-mapped; only the header pages are touched.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import GGUFError

logger = logging.getLogger(__name__)

GGUF_MAGIC = b"GGUF"

#: general.file_type -> Ollama's quantization names (llama.cpp's LLAMA_FTYPE_* numbering)
FILE_TYPES: dict[int, str] = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K",
    11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S",
    17: "Q5_K_M", 18: "Q6_K", 19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S", 22: "IQ3_XS",
    23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL", 26: "IQ3_S", 27: "IQ3_M", 28: "IQ2_S",
    29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M", 32: "BF16", 36: "TQ1_0", 37: "TQ2_0", 38: "MXFP4",
}

#: array keys whose (large) contents `show` hides unless verbose, as Ollama does
BULKY_KEYS = ("tokenizer.ggml.tokens", "tokenizer.ggml.token_type", "tokenizer.ggml.merges",
              "tokenizer.ggml.scores")


def human_number(n: int) -> str:
    """Ollama's format.HumanNumber: 8.0B -> "8B", 494_032_768 -> "494.03M"."""
    if n >= 1_000_000_000:
        v = n / 1_000_000_000
        return f"{v:.0f}B" if v == math.floor(v) else f"{v:.1f}B"
    if n >= 1_000_000:
        v = n / 1_000_000
        return f"{v:.0f}M" if v == math.floor(v) else f"{v:.2f}M"
    if n >= 1_000:
        return f"{n / 1_000:.0f}K"
    return str(n)


@dataclass
class GGUFInfo:
    path: Path
    architecture: str
    file_type: str
    parameter_count: int
    kv: dict[str, Any] = field(repr=False)
    tensor_count: int = 0

    @property
    def parameter_size(self) -> str:
        return human_number(self.parameter_count)

    @property
    def context_length(self) -> int | None:
        v = self.kv.get(f"{self.architecture}.context_length")
        return int(v) if isinstance(v, (int, float)) else None

    @property
    def chat_template(self) -> str | None:
        v = self.kv.get("tokenizer.chat_template")
        return v if isinstance(v, str) else None

    def token(self, key: str) -> str | None:
        """The text of a special token by key suffix, e.g. ``token("eos")``."""
        idx = self.kv.get(f"tokenizer.ggml.{key}_token_id")
        tokens = self.kv.get("tokenizer.ggml.tokens")
        if isinstance(idx, int) and isinstance(tokens, list) and 0 <= idx < len(tokens):
            return str(tokens[idx])
        return None

    def model_info(self, *, verbose: bool = False) -> dict[str, Any]:
        """The ``model_info`` map of ``/api/show``: every KV, bulky arrays nulled unless verbose."""
        out: dict[str, Any] = {}
        for k, v in sorted(self.kv.items()):
            if k.startswith("GGUF."):
                continue
            if not verbose and (k in BULKY_KEYS or k == "tokenizer.chat_template"):
                if k == "tokenizer.chat_template":
                    continue
                out[k] = None
                continue
            out[k] = v
        out.setdefault("general.parameter_count", self.parameter_count)
        return out


def check_magic(path: Path) -> None:
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except FileNotFoundError:
        raise GGUFError(str(path), "file does not exist") from None
    except IsADirectoryError:
        raise GGUFError(str(path), "is a directory (safetensors folders are not supported; "
                                   "convert to GGUF first)") from None
    except OSError as e:
        raise GGUFError(str(path), e.strerror or str(e)) from e
    if len(head) < 8:
        raise GGUFError(str(path), "file is too short to be GGUF")
    if head[:4] != GGUF_MAGIC:
        raise GGUFError(str(path), f"bad magic {head[:4]!r} (expected b'GGUF')")


def read_gguf_info(path: str | Path) -> GGUFInfo:
    """Read the header of ``path``; GGUFError for anything that is not a complete GGUF."""
    from gguf import GGUFReader  # imported lazily: numpy-heavy

    p = Path(path)
    check_magic(p)
    try:
        reader = GGUFReader(str(p), "r")
    except Exception as e:  # the gguf package raises ValueError/IndexError/... on bad files
        raise GGUFError(str(p), f"cannot parse header ({type(e).__name__}: {e})") from e
    kv: dict[str, Any] = {}
    for key, fld in reader.fields.items():
        try:
            kv[key] = fld.contents()
        except Exception:  # a field type the reader cannot decode: keep going
            logger.debug("cannot decode GGUF field %s", key)
    size = p.stat().st_size
    params = 0
    for t in reader.tensors:
        params += int(t.n_elements)
        end = int(t.data_offset) + int(t.n_bytes)
        if end > size:
            raise GGUFError(str(p), f"truncated: tensor {t.name} ends at byte {end}, "
                                    f"file has {size}")
    if isinstance(kv.get("general.parameter_count"), int):
        params = kv["general.parameter_count"]
    arch = kv.get("general.architecture")
    if not isinstance(arch, str):
        if isinstance(kv.get("split.no"), int) and kv["split.no"] > 0:
            arch = ""  # a later shard of a split GGUF: the first shard carries the metadata
        else:
            raise GGUFError(str(p), "general.architecture is missing")
    ft = kv.get("general.file_type")
    file_type = FILE_TYPES.get(ft, "unknown") if isinstance(ft, int) else _guess_file_type(reader)
    return GGUFInfo(path=p, architecture=arch, file_type=file_type, parameter_count=params,
                    kv=kv, tensor_count=len(reader.tensors))


def _guess_file_type(reader: Any) -> str:
    counts: dict[str, int] = {}
    for t in reader.tensors:
        name = getattr(t.tensor_type, "name", str(t.tensor_type))
        counts[name] = counts.get(name, 0) + int(t.n_elements)
    return max(counts, key=lambda k: counts[k]) if counts else "unknown"
