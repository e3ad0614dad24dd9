"""gemma_chat.inference.memory: estimates against measured numbers, and which tiers fit."""

from __future__ import annotations

from pathlib import Path

import pytest

from gemma_chat.inference.gguf import GGUFInfo
from gemma_chat.inference.memory import ModelRequest, estimate_model_bytes, format_bytes, plan_models

GiB, MiB = 1024**3, 1024**2


def gemma3(name: str, file_size: int, layers: int, heads: int, kv_heads: int, embedding: int) -> GGUFInfo:
    return GGUFInfo(
        path=Path(f"/models/{name}.gguf"), architecture="gemma3", name=name, file_type=7, quantization="Q8_0",
        block_count=layers, context_length=131072, embedding_length=embedding, head_count=heads,
        head_count_kv=kv_heads, key_length=256, value_length=256, vocab_size=262144, has_chat_template=True,
        file_size=file_size,
    )  # fmt: skip


GEMMA_12B_Q8 = gemma3("Gemma 3 12B Q8_0", 12_510_212_576, layers=48, heads=16, kv_heads=8, embedding=3840)
GEMMA_1B_Q8 = gemma3("Gemma 3 1B", 1_069_306_176, layers=26, heads=4, kv_heads=1, embedding=1152)
GEMMA_1B_Q4 = gemma3("Gemma 3 1B Q4_K_M", 806_058_240, layers=26, heads=4, kv_heads=1, embedding=1152)
GEMMA_270M = gemma3("Gemma 3 270M", 253_113_024, layers=18, heads=4, kv_heads=1, embedding=640)


@pytest.mark.parametrize(
    ("info", "n_ctx", "kv_cache", "total"),
    [
        # FIELD_NOTES: 12B KV ≈ 1.5 GiB at 4096 and 3 GiB at 8192; 12B Q8_0 at 4096 ≈ 14.8 GB in all.
        (GEMMA_12B_Q8, 4096, 1.5 * GiB, "14.8 GB"),
        (GEMMA_12B_Q8, 8192, 3 * GiB, "16.7 GB"),
        # FIELD_NOTES: 1B KV ≈ 104 MiB at 4096.
        (GEMMA_1B_Q8, 4096, 104 * MiB, "1.6 GB"),
        (GEMMA_1B_Q4, 4096, 104 * MiB, "1.4 GB"),
        (GEMMA_270M, 4096, 72 * MiB, "797 MB"),  # one slot: its row of logits (1 MiB) included
        (GEMMA_270M, 1024, 18 * MiB, "690 MB"),
    ],
)
def test_estimates_match_measured_numbers(info, n_ctx, kv_cache, total):
    estimate = estimate_model_bytes(info, n_ctx)
    assert estimate.kv_cache_bytes == kv_cache
    assert estimate.weights_bytes == info.file_size
    assert format_bytes(estimate.total_bytes) == total
    assert estimate.total_bytes == (
        estimate.weights_bytes + estimate.kv_cache_bytes + estimate.compute_bytes + estimate.overhead_bytes
    )


def test_the_estimate_grows_with_context():
    sizes = [estimate_model_bytes(GEMMA_12B_Q8, n).total_bytes for n in (1024, 2048, 4096, 8192)]
    assert sizes == sorted(sizes) and len(set(sizes)) == 4


def requests(*infos: GGUFInfo, n_ctx: int = 4096) -> list[ModelRequest]:
    tiers = ["mini", "pro", "max"]
    return [
        ModelRequest(tier, info.name, estimate_model_bytes(info, n_ctx), info.path) for tier, info in zip(tiers, infos)
    ]


GB = 10**9


@pytest.mark.parametrize(
    ("available", "fits"),
    [
        (20 * GB, [True, True]),  # both: 1.6 + 14.8
        (16.5 * GB, [True, True]),
        (16.3 * GB, [True, False]),  # 12B alone would fit, but mini takes its share first
        (9.1 * GB, [True, False]),
        (1 * GB, [False, False]),
    ],
)
def test_plan_takes_tiers_in_order(available, fits):
    plans = plan_models(requests(GEMMA_1B_Q8, GEMMA_12B_Q8), int(available))
    assert [plan.fits for plan in plans] == fits
    assert plans[0].bytes_available == int(available)
    assert plans[1].bytes_available == int(available) - (plans[0].bytes_needed if fits[0] else 0)


def test_reasons_give_the_numbers_and_what_is_offered():
    mini, pro = plan_models(requests(GEMMA_1B_Q8, GEMMA_12B_Q8), int(10.7 * GB))
    assert mini.reason == "Gemma 3 1B needs ≈1.6 GB; 10.7 GB available"
    assert pro.reason == "Gemma 3 12B Q8_0 needs ≈14.8 GB; 9.1 GB available — only Gemma 3 1B is offered"


def test_when_nothing_fits_the_reason_says_so():
    plans = plan_models(requests(GEMMA_1B_Q8, GEMMA_12B_Q8), 500_000_000)
    assert all(plan.reason.endswith("— no model can be offered") for plan in plans)


def test_two_tiers_on_one_file_count_its_weights_once():
    same = requests(GEMMA_270M, GEMMA_270M)
    mini, pro = plan_models(same, 10 * GB)
    assert mini.bytes_needed - pro.bytes_needed == GEMMA_270M.file_size


@pytest.mark.parametrize(
    ("count", "text"),
    [(0, "0 B"), (999, "999 B"), (1_500, "2 kB"), (253_113_024, "253 MB"), (999_999_999, "1.0 GB"), (999_499, "999 kB"),
     (1_000_000_000, "1.0 GB"), (14_789_260_768, "14.8 GB"), (200 * GB, "200.0 GB")],
)  # fmt: skip
def test_format_bytes(count, text):
    assert format_bytes(count) == text


# --- slots -----------------------------------------------------------------------------------


def slot_request(info: GGUFInfo, most: int, n_ctx: int = 4096, tier: str = "pro") -> ModelRequest:
    options = [estimate_model_bytes(info, n_ctx, slots) for slots in range(most, 0, -1)]
    return ModelRequest(tier, info.name, options[0], info.path, tuple(options[1:]))


def test_every_slot_counts_its_kv_cache_and_logits():
    one, four = estimate_model_bytes(GEMMA_12B_Q8, 4096, 1), estimate_model_bytes(GEMMA_12B_Q8, 4096, 4)
    assert four.kv_cache_bytes == 4 * one.kv_cache_bytes == 6 * GiB  # 1.5 GiB per sequence with the full SWA cache
    assert four.compute_bytes - one.compute_bytes == 3 * GEMMA_12B_Q8.vocab_size * 4
    assert four.total_bytes - one.total_bytes == 3 * 1.5 * GiB + 3 * GEMMA_12B_Q8.vocab_size * 4


def test_a_model_that_fits_one_slot_but_not_four_starts_with_what_fits_and_says_so():
    one = estimate_model_bytes(GEMMA_12B_Q8, 4096, 1).total_bytes
    (plan,) = plan_models([slot_request(GEMMA_12B_Q8, 4)], one + GiB)  # room for 1 slot, not 2
    assert plan.fits and plan.slots == 1 and plan.bytes_needed == one
    assert "with 1 slot (only that fits; 4 asked)" in plan.reason


def test_auto_takes_the_most_slots_that_fit():
    (plan,) = plan_models([slot_request(GEMMA_1B_Q8, 4, tier="mini")], 20 * GB)
    assert plan.fits and plan.slots == 4 and "with 4 slots" in plan.reason
    (none,) = plan_models([slot_request(GEMMA_12B_Q8, 4)], 5 * GB)
    assert not none.fits and "no model can be offered" in none.reason
