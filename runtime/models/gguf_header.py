"""A small streaming reader of a GGUF header: metadata KVs and tensor infos, no weights.

Why not ``gguf.GGUFReader``: it decodes every array (a 49k-token vocabulary and as many merges)
into numpy objects on every read, 8-12 s for a 98 MB model (issue 11). This reader walks the
header with ``struct`` over a memory map and *skips* arrays longer than ``max_array`` (their
length is kept), so a header read costs milliseconds; ``max_array=None`` decodes everything
(``/api/show`` with ``verbose``).

Format (GGUF v2/v3, little-endian): magic, version u32, tensor count u64, KV count u64, KVs
(key string, value type u32, value), tensor infos (name, n_dims u32, dims u64..., type u32,
offset u64), then the tensor data at the next multiple of ``general.alignment`` (default 32).
Strings are a u64 byte length and UTF-8 bytes.
"""
from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass, field
from typing import Any, Callable

__all__ = ["GGML_TYPES", "HeaderError", "RawHeader", "SkippedArray", "TensorInfo", "read_header"]

# value type id -> struct format of one item (8: string, 9: array are handled apart)
_SCALARS: dict[int, str] = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f",
                            7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9

#: ggml tensor type id -> (name, elements per block, bytes per block) (ggml's type traits)
GGML_TYPES: dict[int, tuple[str, int, int]] = {
    0: ("F32", 1, 4), 1: ("F16", 1, 2), 2: ("Q4_0", 32, 18), 3: ("Q4_1", 32, 20),
    6: ("Q5_0", 32, 22), 7: ("Q5_1", 32, 24), 8: ("Q8_0", 32, 34), 9: ("Q8_1", 32, 36),
    10: ("Q2_K", 256, 84), 11: ("Q3_K", 256, 110), 12: ("Q4_K", 256, 144),
    13: ("Q5_K", 256, 176), 14: ("Q6_K", 256, 210), 15: ("Q8_K", 256, 292),
    16: ("IQ2_XXS", 256, 66), 17: ("IQ2_XS", 256, 74), 18: ("IQ3_XXS", 256, 98),
    19: ("IQ1_S", 256, 50), 20: ("IQ4_NL", 32, 18), 21: ("IQ3_S", 256, 110),
    22: ("IQ2_S", 256, 82), 23: ("IQ4_XS", 256, 136), 24: ("I8", 1, 1), 25: ("I16", 1, 2),
    26: ("I32", 1, 4), 27: ("I64", 1, 8), 28: ("F64", 1, 8), 29: ("IQ1_M", 256, 56),
    30: ("BF16", 1, 2), 34: ("TQ1_0", 256, 54), 35: ("TQ2_0", 256, 66), 39: ("MXFP4", 32, 17),
    40: ("NVFP4", 64, 36), 41: ("Q1_0", 128, 18),
}


class HeaderError(ValueError):
    """The bytes are not a well-formed GGUF header (the caller wraps it in GGUFError)."""


class SkippedArray(list):
    """An array that was not decoded: empty (JSON ``[]``), with its real ``length``."""

    def __init__(self, length: int, item_type: int, offset: int) -> None:
        super().__init__()
        self.length = length
        self.item_type = item_type
        self.offset = offset       # of the first item, to read single items later


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]
    type_id: int
    offset: int                    # absolute, in the file

    @property
    def n_elements(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def type_name(self) -> str:
        return GGML_TYPES.get(self.type_id, (f"type{self.type_id}", 0, 0))[0]

    @property
    def n_bytes(self) -> int | None:
        """Size of the data, or None for a type this reader does not know."""
        t = GGML_TYPES.get(self.type_id)
        if t is None:
            return None
        return self.n_elements // t[1] * t[2]


@dataclass
class RawHeader:
    version: int
    kv: dict[str, Any]
    tensors: list[TensorInfo] = field(default_factory=list)
    data_offset: int = 0
    special_tokens: dict[str, str] = field(default_factory=dict)


class _Cursor:
    def __init__(self, buf: Any) -> None:
        self.buf = buf
        self.pos = 0
        self.size = len(buf)

    def need(self, n: int) -> None:
        if n < 0 or self.pos + n > self.size:
            raise HeaderError(f"header ends early (needs {n} bytes at offset {self.pos}, "
                              f"file has {self.size})")

    def unpack(self, fmt: str, n: int) -> Any:
        self.need(n)
        v = struct.unpack_from(fmt, self.buf, self.pos)[0]
        self.pos += n
        return v

    def string(self) -> str:
        n = self.unpack("<Q", 8)
        self.need(n)
        raw = self.buf[self.pos:self.pos + n]
        self.pos += n
        return bytes(raw).decode("utf-8", errors="replace")

    def skip_strings(self, count: int) -> None:
        buf, pos, size = self.buf, self.pos, self.size
        unpack = struct.unpack_from
        for _ in range(count):
            if pos + 8 > size:
                raise HeaderError(f"header ends early in a string array at offset {pos}")
            pos += 8 + unpack("<Q", buf, pos)[0]
        if pos > size:
            raise HeaderError(f"header ends early in a string array at offset {pos}")
        self.pos = pos


def _item_size(item_type: int) -> int:
    return struct.calcsize(_SCALARS[item_type])


def _read_value(cur: _Cursor, vtype: int, max_array: int | None) -> Any:
    if vtype in _SCALARS:
        fmt = _SCALARS[vtype]
        return cur.unpack(fmt, struct.calcsize(fmt))
    if vtype == _STRING:
        return cur.string()
    if vtype != _ARRAY:
        raise HeaderError(f"unknown value type {vtype} at offset {cur.pos}")
    itype = cur.unpack("<I", 4)
    count = cur.unpack("<Q", 8)
    start = cur.pos
    if itype in _SCALARS:
        isize = _item_size(itype)
        cur.need(count * isize)
        if max_array is not None and count > max_array:
            cur.pos += count * isize
            return SkippedArray(count, itype, start)
        fmt = "<" + str(count) + _SCALARS[itype][1:]
        values = list(struct.unpack_from(fmt, cur.buf, cur.pos))
        cur.pos += count * isize
        return values
    if itype == _STRING:
        if count > cur.size:   # each string takes at least 8 bytes: a bogus count
            raise HeaderError(f"array of {count} strings cannot fit at offset {start}")
        if max_array is not None and count > max_array:
            cur.skip_strings(count)
            return SkippedArray(count, itype, start)
        return [cur.string() for _ in range(count)]
    if itype == _ARRAY:        # nested arrays: decoded (rare and small)
        if count > cur.size:
            raise HeaderError(f"array of {count} arrays cannot fit at offset {start}")
        return [_read_value(cur, _ARRAY, max_array) for _ in range(count)]
    raise HeaderError(f"unknown array item type {itype} at offset {start}")


def read_strings_at(buf: Any, arr: SkippedArray, wanted: set[int]) -> dict[int, str]:
    """Items ``wanted`` of a skipped string array (one walk, stopping at the largest index)."""
    out: dict[int, str] = {}
    if not wanted or arr.item_type != _STRING:
        return out
    last = max(wanted)
    cur = _Cursor(buf)
    cur.pos = arr.offset
    for i in range(min(last + 1, arr.length)):
        if i in wanted:
            out[i] = cur.string()
        else:
            cur.skip_strings(1)
    return out


def _special_tokens(buf: Any, kv: dict[str, Any]) -> dict[str, str]:
    """``tokenizer.ggml.<x>_token_id`` -> token text, for x in bos/eos/eot/…, read even when
    the vocabulary itself was skipped."""
    ids: dict[str, int] = {}
    for k, v in kv.items():
        if k.startswith("tokenizer.ggml.") and k.endswith("_token_id") and isinstance(v, int) \
                and not isinstance(v, bool):
            ids[k[len("tokenizer.ggml."):-len("_token_id")]] = v
    tokens = kv.get("tokenizer.ggml.tokens")
    if not ids or not isinstance(tokens, list):
        return {}
    if isinstance(tokens, SkippedArray):
        texts = read_strings_at(buf, tokens, {i for i in ids.values() if 0 <= i < tokens.length})
    else:
        texts = {i: str(tokens[i]) for i in ids.values() if 0 <= i < len(tokens)}
    return {name: texts[i] for name, i in ids.items() if i in texts}


def read_header(path: str, *, max_array: int | None = 1024,
                on_key: Callable[[str], None] | None = None) -> RawHeader:
    """Parse the header of the GGUF at ``path``. HeaderError when malformed; OSError as is.

    Args:
        path: the file.
        max_array: arrays with more items are skipped (a :class:`SkippedArray`); None: decode all.
        on_key: called with each key as it is read (tests, debugging).
    """
    with open(path, "rb") as f:
        try:
            mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except ValueError:  # an empty file cannot be mapped
            raise HeaderError("file is empty") from None
    try:
        return _parse(mm, max_array, on_key)
    except (struct.error, OverflowError, MemoryError) as e:
        raise HeaderError(f"malformed header ({e})") from None
    finally:
        mm.close()


def _parse(buf: Any, max_array: int | None, on_key: Callable[[str], None] | None) -> RawHeader:
    cur = _Cursor(buf)
    if cur.size < 8 or bytes(buf[:4]) != b"GGUF":
        raise HeaderError("bad magic (expected b'GGUF')")
    cur.pos = 4
    version = cur.unpack("<I", 4)
    if version not in (2, 3):
        raise HeaderError(f"GGUF version {version} is not supported (2 and 3 are)")
    n_tensors = cur.unpack("<Q", 8)
    n_kv = cur.unpack("<Q", 8)
    if n_kv > cur.size or n_tensors > cur.size:
        raise HeaderError(f"implausible counts ({n_kv} KVs, {n_tensors} tensors)")
    kv: dict[str, Any] = {}
    for _ in range(n_kv):
        key = cur.string()
        vtype = cur.unpack("<I", 4)
        kv[key] = _read_value(cur, vtype, max_array)
        if on_key is not None:
            on_key(key)
    tensors: list[TensorInfo] = []
    for _ in range(n_tensors):
        name = cur.string()
        n_dims = cur.unpack("<I", 4)
        if n_dims > 8:
            raise HeaderError(f"tensor {name} has {n_dims} dimensions")
        shape = tuple(cur.unpack("<Q", 8) for _ in range(n_dims))
        type_id = cur.unpack("<I", 4)
        offset = cur.unpack("<Q", 8)
        tensors.append(TensorInfo(name, shape, type_id, offset))
    align = kv.get("general.alignment", 32)
    if not isinstance(align, int) or isinstance(align, bool) or align <= 0:
        align = 32
    data = cur.pos + (-cur.pos) % align
    tensors = [TensorInfo(t.name, t.shape, t.type_id, data + t.offset) for t in tensors]
    return RawHeader(version=version, kv=kv, tensors=tensors, data_offset=data,
                     special_tokens=_special_tokens(buf, kv))
