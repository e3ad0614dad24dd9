"""Session fixtures for tests that need real GGUF files: the bundled 270M and a copy with a chat template.

Both are written once into the shared model cache (MODEL_CACHE in conftest.py) and reused by later runs.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gemma_chat.inference.gguf import read_gguf_info
from gemma_chat.inference.model_files import ensure_bundled_model
from tests.conftest import MODEL_CACHE, demo_settings
from tests.gguf_fixtures import GEMMA3_CHAT_TEMPLATE, copy_with_metadata

TEMPLATED_FILE_NAME = "gemma-3-270m-with-chat-template.gguf"


@pytest.fixture(scope="session")
def bundled_gguf(tmp_path_factory) -> Path:
    """The real Gemma 3 270M base model (Q4_K_M, no chat template), assembled into the cache once."""
    MODEL_CACHE.mkdir(parents=True, exist_ok=True)
    return ensure_bundled_model(demo_settings(tmp_path_factory.mktemp("bundled-data")))


@pytest.fixture(scope="session")
def templated_gguf(bundled_gguf: Path) -> Path:
    """The same 270M weights with Gemma 3's chat template in the header, to drive the template path."""
    target = MODEL_CACHE / TEMPLATED_FILE_NAME
    if target.is_file() and target.stat().st_size > bundled_gguf.stat().st_size:
        if read_gguf_info(target).has_chat_template:
            return target
    return copy_with_metadata(bundled_gguf, target, {"tokenizer.chat_template": GEMMA3_CHAT_TEMPLATE})
