"""gemma_chat.inference.gguf: header facts from real and synthetic GGUF files, and clear errors for bad ones."""

from __future__ import annotations

import os
import struct
import time
from pathlib import Path

import pytest

from gemma_chat.errors import ModelFileError
from gemma_chat.inference.gguf import quantization_name, read_gguf_info
from tests.gguf_fixtures import gemma3_metadata, gguf_header_bytes, write_gguf



def test_reads_the_real_270m_model_quickly(bundled_gguf):
    started = time.perf_counter()
    info = read_gguf_info(bundled_gguf)
    elapsed = time.perf_counter() - started

    assert (info.architecture, info.name) == ("gemma3", "Gemma 3 270m")
    assert (info.file_type, info.quantization) == (15, "Q4_K_M")
    assert (info.block_count, info.embedding_length, info.context_length) == (18, 640, 32768)
    assert (info.head_count, info.head_count_kv, info.key_length, info.value_length) == (4, 1, 256, 256)
    assert info.vocab_size == 262144
    assert info.has_chat_template is False
    assert info.file_size == 253_113_024
    assert elapsed < 0.5, f"reading the header took {elapsed:.2f} s"


def test_reads_a_synthetic_12b_header(tmp_path):
    path = write_gguf(tmp_path / "12b.gguf", gemma3_metadata(tokens=["<pad>", "<eos>", "<bos>"]))
    info = read_gguf_info(path)
    assert (info.architecture, info.name, info.quantization) == ("gemma3", "Gemma 3 12B It", "Q8_0")
    assert (info.block_count, info.head_count, info.head_count_kv, info.key_length) == (48, 16, 8, 256)
    assert info.vocab_size == 3
    assert info.has_chat_template is True
    assert info.file_size == path.stat().st_size


def test_a_sparse_200_gb_file_reads_as_fast_as_a_small_one(tmp_path):
    path = write_gguf(tmp_path / "huge.gguf", gemma3_metadata(), size=200 * 10**9)
    started = time.perf_counter()
    info = read_gguf_info(path)
    assert time.perf_counter() - started < 0.5
    assert info.file_size == 200 * 10**9
    assert info.quantization == "Q8_0"


def test_head_dimensions_fall_back_to_embedding_over_heads(tmp_path):
    metadata = gemma3_metadata(embedding_length=2048, head_count=8)
    del metadata["gemma3.attention.key_length"], metadata["gemma3.attention.value_length"]
    del metadata["gemma3.attention.head_count_kv"]
    info = read_gguf_info(write_gguf(tmp_path / "m.gguf", metadata))
    assert (info.key_length, info.value_length, info.head_count_kv) == (256, 256, 8)


def test_per_layer_head_counts_use_the_largest(tmp_path):
    metadata = gemma3_metadata()
    metadata["gemma3.attention.head_count_kv"] = [2, 4, 8, 4]
    assert read_gguf_info(write_gguf(tmp_path / "m.gguf", metadata)).head_count_kv == 8


@pytest.mark.parametrize(
    ("file_type", "name"),
    [
        (0, "F32"),
        (1, "F16"),
        (2, "Q4_0"),
        (7, "Q8_0"),
        (10, "Q2_K"),
        (15, "Q4_K_M"),
        (18, "Q6_K"),
        (32, "BF16"),
        (99, "type 99"),
        (None, "unknown"),
    ],
)
def test_quantization_names(tmp_path, file_type, name):
    assert quantization_name(file_type) == name
    metadata = gemma3_metadata()
    if file_type is None:
        del metadata["general.file_type"]
    else:
        metadata["general.file_type"] = file_type
    info = read_gguf_info(write_gguf(tmp_path / "m.gguf", metadata))
    assert (info.file_type, info.quantization) == (file_type, name)


def test_gguf_version_2_is_read(tmp_path):
    path = tmp_path / "v2.gguf"
    path.write_bytes(gguf_header_bytes(gemma3_metadata(), version=2))
    assert read_gguf_info(path).architecture == "gemma3"


# --- files that are not usable GGUF models --------------------------------------------------


def _error(path: Path) -> str:
    with pytest.raises(ModelFileError) as caught:
        read_gguf_info(path)
    assert path.name in caught.value.message or str(path) in caught.value.message
    return caught.value.message


def test_a_missing_file(tmp_path):
    assert "not found" in _error(tmp_path / "nope.gguf")


def test_a_directory(tmp_path):
    (tmp_path / "dir.gguf").mkdir()
    assert "directory" in _error(tmp_path / "dir.gguf")


def test_an_empty_file(tmp_path):
    (tmp_path / "empty.gguf").write_bytes(b"")
    assert "not a valid GGUF file" in _error(tmp_path / "empty.gguf")


def test_a_text_file(tmp_path):
    (tmp_path / "notes.gguf").write_text("These are not the weights you are looking for.\n" * 10)
    assert "GGUF magic" in _error(tmp_path / "notes.gguf")


@pytest.mark.parametrize("keep", [30, 100, 0.5, 0.9])
def test_a_truncated_header(tmp_path, keep):
    header = gguf_header_bytes(gemma3_metadata())
    cut = keep if isinstance(keep, int) else int(len(header) * keep)
    (tmp_path / "cut.gguf").write_bytes(header[:cut])
    assert "truncated" in _error(tmp_path / "cut.gguf")


def test_an_absurd_count_fails_fast_instead_of_looping(tmp_path):
    path = tmp_path / "absurd.gguf"
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, 2**60) + b"\0" * 64)
    started = time.perf_counter()
    assert "runs past the end" in _error(path)
    assert time.perf_counter() - started < 0.1


def test_an_unknown_version(tmp_path):
    path = tmp_path / "v9.gguf"
    path.write_bytes(gguf_header_bytes(gemma3_metadata(), version=9))
    assert "version 9" in _error(path)


def test_a_header_without_architecture(tmp_path):
    metadata = gemma3_metadata()
    del metadata["general.architecture"]
    assert "architecture" in _error(write_gguf(tmp_path / "noarch.gguf", metadata))


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read any file")
def test_an_unreadable_file(tmp_path):
    path = write_gguf(tmp_path / "locked.gguf", gemma3_metadata())
    path.chmod(0)
    assert "Cannot read" in _error(path)
