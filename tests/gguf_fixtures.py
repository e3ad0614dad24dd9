"""Writes minimal valid GGUF headers for tests: metadata only, optionally padded to a sparse file."""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Any

_UINT32, _INT32, _FLOAT32, _BOOL, _STRING, _ARRAY, _UINT64 = 4, 5, 6, 7, 8, 9, 10


def _string(text: str) -> bytes:
    raw = text.encode("utf-8")
    return struct.pack("<Q", len(raw)) + raw


def _value(value: Any) -> tuple[int, bytes]:
    if isinstance(value, bool):
        return _BOOL, struct.pack("<?", value)
    if isinstance(value, int):
        return (_UINT32, struct.pack("<I", value)) if 0 <= value < 2**32 else (_UINT64, struct.pack("<Q", value))
    if isinstance(value, float):
        return _FLOAT32, struct.pack("<f", value)
    if isinstance(value, str):
        return _STRING, _string(value)
    if isinstance(value, (list, tuple)):
        items = [_value(item) for item in value]
        kind = items[0][0] if items else _INT32
        return _ARRAY, struct.pack("<IQ", kind, len(items)) + b"".join(raw for _, raw in items)
    raise TypeError(f"cannot encode {value!r}")


def gguf_header_bytes(metadata: dict[str, Any], *, tensor_count: int = 0, version: int = 3) -> bytes:
    parts = [b"GGUF", struct.pack("<IQQ", version, tensor_count, len(metadata))]
    for key, value in metadata.items():
        kind, raw = _value(value)
        parts += [_string(key), struct.pack("<I", kind), raw]
    return b"".join(parts)


def gemma3_metadata(
    *,
    name: str = "Gemma 3 12B It",
    file_type: int = 7,
    block_count: int = 48,
    embedding_length: int = 3840,
    head_count: int = 16,
    head_count_kv: int = 8,
    head_dim: int = 256,
    chat_template: str | None = "{{ bos_token }}{% for m in messages %}{{ m['content'] }}{% endfor %}",
    tokens: list[str] | None = None,
) -> dict[str, Any]:
    """Header values shaped like a real Gemma 3 GGUF (defaults: the 12B)."""
    metadata: dict[str, Any] = {
        "general.architecture": "gemma3",
        "general.name": name,
        "general.file_type": file_type,
        "gemma3.context_length": 131072,
        "gemma3.block_count": block_count,
        "gemma3.embedding_length": embedding_length,
        "gemma3.attention.head_count": head_count,
        "gemma3.attention.head_count_kv": head_count_kv,
        "gemma3.attention.key_length": head_dim,
        "gemma3.attention.value_length": head_dim,
        "gemma3.attention.sliding_window": 1024,
    }
    if tokens is not None:
        metadata["tokenizer.ggml.tokens"] = tokens
    if chat_template is not None:
        metadata["tokenizer.chat_template"] = chat_template
    return metadata


def write_gguf(path: Path, metadata: dict[str, Any], *, size: int | None = None) -> Path:
    """Write a GGUF header; with `size`, extend the file sparsely (zeros, no disk used) to that many bytes."""
    path.write_bytes(gguf_header_bytes(metadata))
    if size is not None:
        os.truncate(path, size)
    return path


def copy_with_metadata(source: Path, target: Path, extra: dict[str, Any]) -> Path:
    """Copy a real GGUF model, adding header keys (e.g. a chat template); weights are copied as they are.

    Tensor offsets are relative to the data section, so only the header grows and the data
    section is re-aligned. Written under a temporary name, then renamed.
    """
    import mmap
    import shutil

    from gemma_chat.inference.gguf import _Header, _parse

    with open(source, "rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
        header = _Header(data, source)
        metadata = _parse(header)  # leaves header.pos at the end of the key/values
        kv_end = header.pos
        tensor_count = struct.unpack_from("<Q", data, 8)[0]
        for _ in range(tensor_count):
            header.skip(header.count("name length"))
            n_dims = header.unpack("I")
            header.skip(8 * n_dims + 4 + 8)  # dims, type, offset
        infos_end = header.pos
        alignment = int(metadata.get("general.alignment", 32))
        data_start = -(-infos_end // alignment) * alignment

        added = gguf_header_bytes(extra)[24:]  # just the key/value records
        new_header = (
            b"GGUF"
            + struct.pack("<IQQ", metadata["GGUF.version"], tensor_count, len(metadata) - 1 + len(extra))
            + data[24:kv_end]
            + added
            + data[kv_end:infos_end]
        )
        new_header += b"\0" * (-len(new_header) % alignment)
        partial = target.with_name(target.name + ".part")
        with open(partial, "wb") as out:
            out.write(new_header)
            file.seek(data_start)
            shutil.copyfileobj(file, out, 16 * 1024 * 1024)
    os.replace(partial, target)
    return target


# Gemma 3's chat template (text only), as in the instruction-tuned GGUFs.
GEMMA3_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{%- if messages[0]['role'] == 'system' -%}"
    "{%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}"
    "{%- set loop_messages = messages[1:] -%}"
    "{%- else -%}"
    "{%- set first_user_prefix = '' -%}"
    "{%- set loop_messages = messages -%}"
    "{%- endif -%}"
    "{%- for message in loop_messages -%}"
    "{%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{%- endif -%}"
    "{%- if message['role'] == 'assistant' -%}{%- set role = 'model' -%}"
    "{%- else -%}{%- set role = message['role'] -%}{%- endif -%}"
    "{{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else '') }}"
    "{{ message['content'] | trim }}"
    "{{ '<end_of_turn>\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<start_of_turn>model\n' }}{%- endif -%}"
)
