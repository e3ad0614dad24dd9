"""Reads a GGUF file's header key/values — architecture, sizes, quantization — without touching weights.

Pure Python, so `models` and `memory` can describe a model (and say whether it fits) before
llama.cpp is imported. Parsing stops at the end of the key/value section: tensor data is never read,
so a sparse file with a valid header but zeroed data reads as fast as a real one.
Format: https://github.com/ggml-org/ggml/blob/master/docs/gguf.md
"""

from __future__ import annotations

import mmap
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ModelFileError

GGUF_MAGIC = b"GGUF"

# general.file_type values (llama_ftype) for the quantizations this app meets.
QUANTIZATION_NAMES = {
    0: "F32",
    1: "F16",
    2: "Q4_0",
    3: "Q4_1",
    7: "Q8_0",
    8: "Q5_0",
    9: "Q5_1",
    10: "Q2_K",
    11: "Q3_K_S",
    12: "Q3_K_M",
    13: "Q3_K_L",
    14: "Q4_K_S",
    15: "Q4_K_M",
    16: "Q5_K_S",
    17: "Q5_K_M",
    18: "Q6_K",
    32: "BF16",
}

# GGUF value types: code -> struct format (scalars). 8 = string, 9 = array.
_SCALAR_FORMATS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_STRING, _ARRAY = 8, 9
# Small numeric arrays are kept (some architectures store head counts per layer); big ones
# (the tokenizer's scores and token types) are skipped, not decoded.
_MAX_KEPT_ARRAY = 4096


def quantization_name(file_type: int | None) -> str:
    if file_type is None:
        return "unknown"
    return QUANTIZATION_NAMES.get(file_type, f"type {file_type}")


@dataclass(frozen=True)
class GGUFInfo:
    path: Path
    architecture: str
    name: str
    file_type: int | None  # None when the file does not say
    quantization: str
    block_count: int
    context_length: int
    embedding_length: int
    head_count: int
    head_count_kv: int
    key_length: int
    value_length: int
    vocab_size: int  # 0 when the file has no token list
    has_chat_template: bool
    file_size: int


class _Header:
    """A little-endian (or big-endian) cursor over the mapped file; every overrun is a truncation."""

    def __init__(self, data: mmap.mmap | bytes, path: Path):
        self.data = data
        self.path = path
        self.pos = 0
        self.order = "<"
        self.wide = True  # GGUF v1 used 32-bit lengths and counts; v2+ use 64-bit

    def _fail(self, what: str) -> ModelFileError:
        return ModelFileError(
            f"{self.path.name} is not a valid GGUF file: {what}.",
            detail=f"{self.path}: {what} at byte {self.pos}",
        )

    def unpack(self, fmt: str) -> Any:
        fmt = self.order + fmt
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.data):
            raise self._fail("the header is truncated or corrupt")
        (value,) = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return value

    def count(self, what: str) -> int:
        value = self.unpack("Q" if self.wide else "I")
        # Every element takes at least one byte, so a count beyond the file is corruption,
        # not a reason to loop for minutes.
        if value > len(self.data) - self.pos:
            raise self._fail(f"the header is truncated or corrupt ({what} {value} runs past the end of the file)")
        return value

    def skip(self, size: int) -> None:
        if self.pos + size > len(self.data):
            raise self._fail("the header is truncated or corrupt")
        self.pos += size

    def string(self) -> str:
        length = self.count("string length")
        raw = self.data[self.pos : self.pos + length]
        self.pos += length
        return bytes(raw).decode("utf-8", errors="replace")

    def skip_strings(self, count: int) -> None:
        # The tokenizer's vocabulary is ~262k strings: a tight loop keeps the whole read near 50 ms.
        if not self.wide:
            for _ in range(count):
                self.skip(self.count("string length"))
            return
        length_at = struct.Struct(self.order + "Q").unpack_from
        data, pos = self.data, self.pos
        try:
            for _ in range(count):
                pos += 8 + length_at(data, pos)[0]
        except struct.error:
            raise self._fail("the header is truncated or corrupt") from None
        if pos > len(data):
            raise self._fail("the header is truncated or corrupt")
        self.pos = pos

    def value(self, kind: int) -> Any:
        """Read a value of `kind`; a large array comes back as its length wrapped in `_Skipped`."""
        if kind in _SCALAR_FORMATS:
            return self.unpack(_SCALAR_FORMATS[kind])
        if kind == _STRING:
            return self.string()
        if kind == _ARRAY:
            item_kind = self.unpack("I")
            length = self.count("array length")
            if item_kind in _SCALAR_FORMATS:
                item_size = struct.calcsize(_SCALAR_FORMATS[item_kind])
                if length <= _MAX_KEPT_ARRAY:
                    return tuple(self.unpack(_SCALAR_FORMATS[item_kind]) for _ in range(length))
                self.skip(item_size * length)
                return _Skipped(length)
            if item_kind == _STRING:
                self.skip_strings(length)
                return _Skipped(length)
            if item_kind == _ARRAY:
                for _ in range(length):
                    self.value(_ARRAY)
                return _Skipped(length)
            raise self._fail(f"unknown array item type {item_kind}")
        raise self._fail(f"unknown value type {kind}")


@dataclass(frozen=True)
class _Skipped:
    """Stands in for an array too big to keep; its length is still useful (vocabulary size)."""

    length: int


def read_gguf_metadata(path: str | Path) -> dict[str, Any]:
    """Every header key/value; large arrays appear as `_Skipped(length)`.

    Raises ModelFileError for a missing, unreadable, non-GGUF or truncated file.
    """
    path = Path(path)
    try:
        with open(path, "rb") as file:
            size = os.fstat(file.fileno()).st_size
            if size < 24:
                raise ModelFileError(
                    f"{path.name} is not a valid GGUF file: it is only {size} bytes.", detail=str(path)
                )
            # A read-only map pages in only the header bytes we touch, whatever the file's size.
            with mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
                return _parse(_Header(data, path))
    except FileNotFoundError:
        raise ModelFileError(f"Model file not found: {path}.", detail=str(path)) from None
    except IsADirectoryError:
        raise ModelFileError(f"{path} is a directory, not a GGUF file.", detail=str(path)) from None
    except (OSError, ValueError) as exc:
        raise ModelFileError(f"Cannot read model file {path}: {exc}.", detail=repr(exc)) from None


def _parse(header: _Header) -> dict[str, Any]:
    if header.data[:4] != GGUF_MAGIC:
        raise header._fail("it does not start with the GGUF magic bytes")
    header.pos = 4
    version = header.unpack("I")
    if version > 0xFFFF:  # a big-endian file reads as a huge little-endian version
        header.order = ">"
        version = struct.unpack(">I", struct.pack("<I", version))[0]
    if version not in (1, 2, 3):
        raise header._fail(f"unsupported GGUF version {version}")
    header.wide = version >= 2
    header.count("tensor count")
    kv_count = header.count("key/value count")
    metadata: dict[str, Any] = {"GGUF.version": version}
    for _ in range(kv_count):
        key = header.string()
        kind = header.unpack("I")
        metadata[key] = header.value(kind)
    return metadata


def _int(metadata: dict[str, Any], key: str, default: int = 0) -> int:
    value = metadata.get(key, default)
    if isinstance(value, tuple):  # per-layer values: the largest one bounds memory
        value = max(value, default=default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return default
    return int(value)


def read_gguf_info(path: str | Path) -> GGUFInfo:
    """The facts about a GGUF model that the app needs to label it and to plan memory."""
    path = Path(path)
    metadata = read_gguf_metadata(path)
    arch = metadata.get("general.architecture")
    if not isinstance(arch, str) or not arch:
        raise ModelFileError(f"{path.name} is not a usable model: its header names no architecture.", detail=str(path))
    file_type = metadata.get("general.file_type")
    file_type = int(file_type) if isinstance(file_type, int) and not isinstance(file_type, bool) else None
    embedding = _int(metadata, f"{arch}.embedding_length")
    heads = _int(metadata, f"{arch}.attention.head_count")
    head_dim = embedding // heads if heads else 0
    tokens = metadata.get("tokenizer.ggml.tokens")
    vocab = tokens.length if isinstance(tokens, _Skipped) else len(tokens) if isinstance(tokens, tuple) else 0
    name = metadata.get("general.name")
    return GGUFInfo(
        path=path,
        architecture=arch,
        name=name if isinstance(name, str) else path.stem,
        file_type=file_type,
        quantization=quantization_name(file_type),
        block_count=_int(metadata, f"{arch}.block_count"),
        context_length=_int(metadata, f"{arch}.context_length"),
        embedding_length=embedding,
        head_count=heads,
        head_count_kv=_int(metadata, f"{arch}.attention.head_count_kv", heads),
        key_length=_int(metadata, f"{arch}.attention.key_length", head_dim),
        value_length=_int(metadata, f"{arch}.attention.value_length", head_dim),
        vocab_size=vocab or _int(metadata, f"{arch}.vocab_size"),
        has_chat_template=isinstance(metadata.get("tokenizer.chat_template"), str),
        file_size=path.stat().st_size,
    )
