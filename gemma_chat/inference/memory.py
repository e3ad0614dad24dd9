"""What a model needs in RAM and which tiers fit: pure arithmetic over GGUF header facts.

Estimates are compared with free memory *before* loading: with mmap, the weights sit in the page
cache and `available` barely drops after a load, so measuring afterwards would say every model fits.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from .gguf import GGUFInfo

# llama.cpp allocates its KV cache in f16 and, as the worker leaves swa_full=True (exact prefix
# reuse, see backends/llama_runner.py), for every layer at the full n_ctx (sliding-window layers
# included) — once per slot: each slot is its own sequence with its own n_ctx.
KV_BYTES_PER_VALUE = 2
LOGITS_BYTES_PER_VALUE = 4  # one f32 row of logits per slot per step
# llama-cpp-python's default micro-batch; prefill works on this many tokens at once.
N_UBATCH = 512
# Runtime, tokenizer caches, Python and llama-cpp-python's own buffers.
RUNTIME_OVERHEAD_BYTES = 400_000_000


@dataclass(frozen=True)
class MemoryEstimate:
    n_ctx: int
    weights_bytes: int
    kv_cache_bytes: int
    compute_bytes: int
    overhead_bytes: int = RUNTIME_OVERHEAD_BYTES
    slots: int = 1  # sequences decoded together, each with its own n_ctx of KV cache
    prompt_cache_bytes: int = 0  # host RAM for evicted conversations' KV state

    @property
    def total_bytes(self) -> int:
        return (
            self.weights_bytes + self.kv_cache_bytes + self.compute_bytes + self.overhead_bytes
            + self.prompt_cache_bytes
        )


def estimate_model_bytes(info: GGUFInfo, n_ctx: int, slots: int = 1, prompt_cache_bytes: int = 0) -> MemoryEstimate:
    """RAM one loaded model needs at `n_ctx` per slot, with `slots` sequences decoded together.

    Calibrated on measured numbers: Gemma 3 12B Q8_0 at n_ctx 4096 ≈ 14.8 GB in all,
    its KV cache 1.5 GiB; Gemma 3 1B's KV cache ≈ 104 MiB (one slot).
    """
    kv_per_slot = info.block_count * n_ctx * info.head_count_kv * (info.key_length + info.value_length) * KV_BYTES_PER_VALUE
    # Without flash attention the largest live tensors during prefill are one micro-batch's
    # attention scores and their softmax, in f32 (a micro-batch attends within one slot's n_ctx).
    # The graph reserves more (logits for a whole micro-batch), but only each slot's last token's
    # logits are ever computed: one row per slot.
    compute = 2 * N_UBATCH * n_ctx * info.head_count * 4 + slots * info.vocab_size * LOGITS_BYTES_PER_VALUE
    return MemoryEstimate(
        n_ctx=n_ctx, weights_bytes=info.file_size, kv_cache_bytes=kv_per_slot * slots, compute_bytes=compute,
        slots=slots, prompt_cache_bytes=prompt_cache_bytes,
    )


def available_bytes(memory_margin_bytes: int) -> int:
    """RAM free for models right now: the OS's `available` less the configured safety margin."""
    import psutil

    return max(0, psutil.virtual_memory().available - memory_margin_bytes)


@dataclass(frozen=True)
class ModelRequest:
    """One tier asking for memory; `path` lets two tiers on the same file share mapped weights."""

    tier: str
    label: str
    estimate: MemoryEstimate
    path: Path | None = None
    # The same model with fewer slots, most first: taken when `estimate` does not fit.
    fewer_slots: tuple[MemoryEstimate, ...] = ()


@dataclass(frozen=True)
class ModelPlan:
    tier: str
    label: str
    fits: bool
    bytes_needed: int  # what this tier adds, after weights shared with an earlier tier
    bytes_available: int  # what was left for it after the earlier tiers
    reason: str
    slots: int = 1  # what it starts with (fewer than asked when only fewer fit)


def plan_models(requests: Sequence[ModelRequest], available: int) -> list[ModelPlan]:
    """Decide, in the order given (mini first), which models fit in `available` bytes.

    Each model that fits takes its share before the next is considered, so a big pro model
    never pushes out the small one users rely on.
    """
    left = available
    mapped: set[Path] = set()
    decided: list[tuple[ModelRequest, MemoryEstimate, int, int, bool]] = []
    for request in requests:
        shared = request.path is not None and request.path in mapped
        # Two mmaps of one file share page-cache pages: the weights count once.
        for estimate in (request.estimate, *request.fewer_slots):
            needed = estimate.total_bytes - (estimate.weights_bytes if shared else 0)
            if needed <= left:
                break
        # (when nothing fits, `estimate` is the fewest slots: the least it would need)
        fits = needed <= left
        decided.append((request, estimate, needed, left, fits))
        if fits:
            left -= needed
            if request.path is not None:
                mapped.add(request.path)

    offered = [request.label for request, _, _, _, fits in decided if fits]
    plans = []
    for request, estimate, needed, had, fits in decided:
        numbers = f"{request.label} needs ≈{format_bytes(needed)}{_slots_note(request, estimate, fits)}; {format_bytes(had)} available"
        if fits:
            reason = numbers
        elif offered:
            reason = f"{numbers} — only {' and '.join(offered)} {'is' if len(offered) == 1 else 'are'} offered"
        else:
            reason = f"{numbers} — no model can be offered"
        plans.append(ModelPlan(request.tier, request.label, fits, needed, had, reason, slots=estimate.slots))
    return plans


def _slots_note(request: ModelRequest, chosen: MemoryEstimate, fits: bool) -> str:
    asked = request.estimate.slots
    if not fits:
        return f" even with {chosen.slots} slot{'s' if chosen.slots > 1 else ''}" if chosen.slots < asked else ""
    if chosen.slots < asked:
        return f" with {chosen.slots} slot{'s' if chosen.slots > 1 else ''} (only that fits; {asked} asked)"
    if asked > 1:
        return f" with {asked} slots"
    return ""


def format_bytes(count: int) -> str:
    """Decimal units, one decimal for GB, as disk and RAM sizes are usually quoted: 14.8 GB, 253 MB."""
    if count >= 999_500_000:  # thresholds at rounding points: never "1000 MB"
        return f"{count / 1e9:.1f} GB"
    if count >= 999_500:
        return f"{count / 1e6:.0f} MB"
    if count >= 1_000:
        return f"{count / 1e3:.0f} kB"
    return f"{count} B"
