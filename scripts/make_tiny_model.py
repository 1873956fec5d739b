#!/usr/bin/env python3
"""Write a small but real GGUF model that llama-cpp-python loads and generates from.

A llama-architecture model with random weights, a byte-level BPE ("gpt2") tokenizer with
ChatML special tokens and a ``tokenizer.chat_template``. The default is a few hundred KB;
``--size`` grows the feed-forward width until the file reaches the requested size (for
benchmarks), streaming tensors to disk so memory stays flat.

``--vision DIR`` writes a tiny vision model instead: ``DIR/model.gguf`` (the language model)
and ``DIR/mmproj.gguf``, a LLaVA-style projector (a CLIP ViT plus a two-layer MLP,
``clip.projector_type = mlp``, random weights) whose output width matches the language model's
embedding width, so llama.cpp's ``mtmd`` loads the pair and decodes images into it.

    python scripts/make_tiny_model.py OUT.gguf [--size 2G] [--seed 0] [--name tiny]
    python scripts/make_tiny_model.py --vision DIR [--seed 0]
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import numpy as np

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
# A handful of merges so the BPE path is exercised (merged tokens are added to the vocab).
MERGES = [("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("i", "n"), ("Ġ", "a"), ("e", "r"),
          ("o", "n"), ("Ġ", "s"), ("r", "e"), ("Ġ", "w")]


def _bytes_to_unicode() -> list[str]:
    """GPT-2's reversible byte -> printable unicode mapping, in byte order."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    mapping: dict[int, int] = {b: b for b in printable}
    n = 0
    for b in range(256):
        if b not in mapping:
            mapping[b] = 256 + n
            n += 1
    return [chr(mapping[b]) for b in range(256)]


def parse_size(text: str) -> int:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmMgG]?)i?[bB]?\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"invalid size {text!r} (e.g. 300K, 64M, 2G)")
    mult = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[m.group(2).lower()]
    return int(float(m.group(1)) * mult)


def write_tiny_gguf(path: str | Path, *, size: int | None = None, seed: int = 0,
                    name: str = "tiny", n_embd: int = 64, n_layer: int = 2, n_head: int = 4,
                    n_head_kv: int = 2, context_length: int = 2048,
                    chat_template: str | None = CHATML_TEMPLATE, add_bos: bool = False,
                    split_max_tensors: int = 0, duplicate_token: bool = False) -> Path:
    """Write the model to ``path`` and return it. ``size`` (bytes) is a lower bound.

    ``duplicate_token`` writes one token string twice: a crafted file that llama.cpp's vocab
    loader aborts on (GGML_ASSERT), for crash-containment tests.

    With ``split_max_tensors`` the model is written as llama.cpp split files
    (``<stem>-00001-of-0000N.gguf`` …) and the first shard's path is returned."""
    import gguf

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tokens = _bytes_to_unicode()
    merges = [f"{a} {b}" for a, b in MERGES]
    tokens += [a + b for a, b in MERGES]
    n_normal = len(tokens)
    if duplicate_token:
        tokens[n_normal - 1] = tokens[0]
    tokens += SPECIAL_TOKENS
    types = [int(gguf.TokenType.NORMAL)] * n_normal + [int(gguf.TokenType.CONTROL)] * len(SPECIAL_TOKENS)
    n_vocab = len(tokens)
    head_dim = n_embd // n_head
    n_embd_kv = head_dim * n_head_kv

    n_ff = 128
    if size is not None:
        # bytes that do not depend on n_ff: embeddings + output + attention, float32
        fixed = 4 * (2 * n_vocab * n_embd + n_layer * (2 * n_embd * n_embd + 2 * n_embd * n_embd_kv))
        per_ff = 4 * n_layer * 3 * n_embd
        n_ff = max(128, -(-(size - fixed) // per_ff))

    w = gguf.GGUFWriter(str(path), "llama", split_max_tensors=split_max_tensors)
    w.add_name(name)
    w.add_type(gguf.GGUFType.MODEL)
    w.add_file_type(int(gguf.LlamaFileType.ALL_F32))
    w.add_context_length(context_length)
    w.add_embedding_length(n_embd)
    w.add_block_count(n_layer)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head_kv)
    w.add_rope_dimension_count(head_dim)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(n_vocab)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(tokens.index("<|endoftext|>"))
    w.add_eos_token_id(tokens.index("<|im_end|>"))
    w.add_pad_token_id(tokens.index("<|endoftext|>"))
    w.add_add_bos_token(add_bos)
    if chat_template:
        w.add_chat_template(chat_template)

    shapes: list[tuple[str, tuple[int, ...]]] = [("token_embd.weight", (n_vocab, n_embd))]
    for i in range(n_layer):
        shapes += [
            (f"blk.{i}.attn_norm.weight", (n_embd,)),
            (f"blk.{i}.attn_q.weight", (n_embd, n_embd)),
            (f"blk.{i}.attn_k.weight", (n_embd_kv, n_embd)),
            (f"blk.{i}.attn_v.weight", (n_embd_kv, n_embd)),
            (f"blk.{i}.attn_output.weight", (n_embd, n_embd)),
            (f"blk.{i}.ffn_norm.weight", (n_embd,)),
            (f"blk.{i}.ffn_gate.weight", (n_ff, n_embd)),
            (f"blk.{i}.ffn_up.weight", (n_ff, n_embd)),
            (f"blk.{i}.ffn_down.weight", (n_embd, n_ff)),
        ]
    shapes += [("output_norm.weight", (n_embd,)), ("output.weight", (n_vocab, n_embd))]
    for tname, shape in shapes:
        w.add_tensor_info(tname, shape, np.dtype(np.float32), int(np.prod(shape)) * 4)

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    rng = np.random.default_rng(seed)
    # Random weights would mostly pick raw bytes that are not valid UTF-8 on their own, so
    # the output rows of printable ASCII (and merged) tokens get a much larger norm: greedy
    # sampling then emits readable text, and the end-of-turn token stays rare.
    printable = np.zeros(n_vocab, dtype=bool)
    byte_chars = _bytes_to_unicode()
    for b in range(0x20, 0x7F):
        printable[tokens.index(byte_chars[b])] = True
    printable[256:n_normal] = True
    for tname, shape in shapes:
        if len(shape) == 1:
            w.write_tensor_data(np.ones(shape, dtype=np.float32))
            continue
        data = _random(rng, shape)
        if tname == "output.weight":
            data[~printable] *= 0.01
            data[printable] *= 10.0
        w.write_tensor_data(data)
    w.close()
    if split_max_tensors:
        shards = sorted(path.parent.glob(f"{path.stem}-*-of-*.gguf"))
        return shards[0] if shards else path
    return path


def write_tiny_mmproj(path: str | Path, *, text_n_embd: int = 64, seed: int = 0,
                      image_size: int = 32, patch_size: int = 8, n_embd: int = 32,
                      n_head: int = 2, n_ff: int = 48, n_layer: int = 2) -> Path:
    """Write a LLaVA-1.5-style projector GGUF (``general.architecture = clip``) to ``path``.

    The layout is what llama.cpp's ``clip.cpp`` reads for ``projector_type = mlp``: a patch
    embedding convolution, a class embedding, position embeddings, ``n_layer`` pre-norm ViT
    blocks (llava uses all but the last one) and ``mm.0``/``mm.2``, the MLP into the language
    model's embedding width (``text_n_embd``). An image becomes ``(image_size/patch_size)**2``
    embeddings (16 with the defaults)."""
    import gguf

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n_patches = (image_size // patch_size) ** 2
    w = gguf.GGUFWriter(str(path), "clip")
    w.add_name("tiny-mmproj")
    w.add_type("mmproj")
    w.add_file_type(int(gguf.LlamaFileType.ALL_F32))
    w.add_string("clip.projector_type", "mlp")
    w.add_bool("clip.has_vision_encoder", True)
    w.add_bool("clip.has_audio_encoder", False)
    w.add_bool("clip.use_gelu", True)
    w.add_uint32("clip.vision.image_size", image_size)
    w.add_uint32("clip.vision.patch_size", patch_size)
    w.add_uint32("clip.vision.embedding_length", n_embd)
    w.add_uint32("clip.vision.feed_forward_length", n_ff)
    w.add_uint32("clip.vision.block_count", n_layer)
    w.add_uint32("clip.vision.projection_dim", text_n_embd)
    w.add_uint32("clip.vision.attention.head_count", n_head)
    w.add_float32("clip.vision.attention.layer_norm_epsilon", 1e-6)
    w.add_array("clip.vision.image_mean", [0.5, 0.5, 0.5])
    w.add_array("clip.vision.image_std", [0.5, 0.5, 0.5])

    # numpy shapes are ggml's ne reversed: the conv kernel is (out, in, kh, kw)
    tensors: list[tuple[str, tuple[int, ...]]] = [
        ("v.patch_embd.weight", (n_embd, 3, patch_size, patch_size)),
        ("v.class_embd", (n_embd,)),
        ("v.position_embd.weight", (n_patches + 1, n_embd)),
        ("v.pre_ln.weight", (n_embd,)), ("v.pre_ln.bias", (n_embd,)),
    ]
    for i in range(n_layer):
        for t in ("attn_q", "attn_k", "attn_v", "attn_out"):
            tensors += [(f"v.blk.{i}.{t}.weight", (n_embd, n_embd)), (f"v.blk.{i}.{t}.bias", (n_embd,))]
        tensors += [
            (f"v.blk.{i}.ln1.weight", (n_embd,)), (f"v.blk.{i}.ln1.bias", (n_embd,)),
            (f"v.blk.{i}.ln2.weight", (n_embd,)), (f"v.blk.{i}.ln2.bias", (n_embd,)),
            (f"v.blk.{i}.ffn_up.weight", (n_ff, n_embd)), (f"v.blk.{i}.ffn_up.bias", (n_ff,)),
            (f"v.blk.{i}.ffn_down.weight", (n_embd, n_ff)), (f"v.blk.{i}.ffn_down.bias", (n_embd,)),
        ]
    tensors += [
        ("mm.0.weight", (text_n_embd, n_embd)), ("mm.0.bias", (text_n_embd,)),
        ("mm.2.weight", (text_n_embd, text_n_embd)), ("mm.2.bias", (text_n_embd,)),
    ]
    rng = np.random.default_rng(seed + 1)
    for tname, shape in tensors:
        if tname.endswith(("ln1.weight", "ln2.weight", "pre_ln.weight")):
            data = np.ones(shape, dtype=np.float32)
        elif tname.endswith(".bias"):
            data = np.zeros(shape, dtype=np.float32)
        else:
            # larger than the language model's weights so that different pictures give
            # clearly different embeddings (and so different answers)
            data = (rng.standard_normal(shape, dtype=np.float32) * 0.5).astype(np.float32)
        w.add_tensor(tname, data)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def write_tiny_vision(folder: str | Path, *, seed: int = 0, name: str = "tiny-vision") -> tuple[Path, Path]:
    """Write ``folder/model.gguf`` and its matching ``folder/mmproj.gguf``; return both paths."""
    folder = Path(folder)
    n_embd = 64
    model = write_tiny_gguf(folder / "model.gguf", seed=seed, name=name, n_embd=n_embd)
    mmproj = write_tiny_mmproj(folder / "mmproj.gguf", text_n_embd=n_embd, seed=seed)
    return model, mmproj


def _random(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return (rng.standard_normal(shape, dtype=np.float32) * 0.08).astype(np.float32)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", type=Path, nargs="?", help="output .gguf path")
    p.add_argument("--vision", type=Path, metavar="DIR", default=None,
                   help="write DIR/model.gguf and DIR/mmproj.gguf (a tiny vision model)")
    p.add_argument("--size", type=parse_size, default=None, help="minimum file size, e.g. 2G")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--name", default="tiny")
    p.add_argument("--no-chat-template", action="store_true")
    a = p.parse_args(argv)
    if a.vision is not None:
        for out in write_tiny_vision(a.vision, seed=a.seed, name=a.name):
            print(f"{out} {out.stat().st_size} bytes", file=sys.stderr)
        return 0
    if a.out is None:
        p.error("give OUT.gguf or --vision DIR")
    out = write_tiny_gguf(a.out, size=a.size, seed=a.seed, name=a.name,
                          chat_template=None if a.no_chat_template else CHATML_TEMPLATE)
    print(f"{out} {out.stat().st_size} bytes", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
