"""Fetches each tier's GGUF file from the Hugging Face Hub into models_dir: plan, download, resume, verify.

Owns the table of default sources per tier and every check around a download: room on disk, size,
sha256, GGUF quantization. Raises DownloadError with one line a user can act on and never prints;
progress goes through the tqdm class the caller passes (silent by default).

Why not `hf_hub_download`: in huggingface_hub 2.x it writes to a process-unique temporary file and
deletes it on failure, so an interrupted 12 GB download starts again from zero. We keep our own
`<file>.<etag>.part` next to the destination and hand it to `http_get`, which sends `Range` to resume
(across runs here, within a run by its own retries) and checks the byte count.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..config import Settings, TierSettings
from ..errors import DownloadError, ModelFileError
from .gguf import QUANTIZATION_NAMES, read_gguf_info


@dataclass(frozen=True)
class ModelSource:
    repo_id: str
    filename: str
    size: int | None = None  # bytes, when checked ahead of the hub
    sha256: str | None = None


DEFAULT_SOURCES = {
    "mini": ModelSource("ggml-org/gemma-3-1b-it-GGUF", "gemma-3-1b-it-Q8_0.gguf"),
    "pro": ModelSource("unsloth/gemma-3-12b-it-GGUF", "gemma-3-12b-it-Q8_0.gguf", size=12_510_212_576),
}

# Files whose size (and digest) were checked by hand; a --repo/--file pick is held to them too.
KNOWN_FILES = [
    DEFAULT_SOURCES["pro"],
    ModelSource(
        "ggml-org/gemma-3-1b-it-GGUF",
        "gemma-3-1b-it-Q4_K_M.gguf",
        size=806_058_240,
        sha256="8ccc5cd1f1b3602548715ae25a66ed73fd5dc68a210412eea643eb20eb75a135",
    ),
]

_HASH_BLOCK = 8 * 1024 * 1024
_SHA256 = re.compile(r"[0-9a-f]{64}")


def source_for(tier: str, repo_id: str | None = None, filename: str | None = None) -> ModelSource:
    """The tier's default source, or another repo/file (e.g. a different quantization) in its place."""
    default = DEFAULT_SOURCES.get(tier)
    if default is None and not (repo_id and filename):
        raise DownloadError(f"No default download for tier {tier!r}; name one with --repo and --file.")
    repo_id = repo_id or default.repo_id
    filename = filename or default.filename
    for known in KNOWN_FILES:
        if (known.repo_id, known.filename) == (repo_id, filename):
            return known
    return ModelSource(repo_id, filename)


@dataclass(frozen=True)
class DownloadPlan:
    tier: TierSettings
    source: ModelSource
    destination: Path
    url: str  # the hub's resolve URL, for messages
    state: str  # "present" (verified before), "check" (exists, to verify), "resume", "download"
    size: int | None = None  # expected bytes: known ahead, else the hub's
    sha256: str | None = None  # expected digest: known ahead, else the hub's LFS etag
    etag: str | None = None
    download_url: str | None = None  # where the bytes are served (a CDN after the hub's redirect)
    partial_bytes: int = 0
    free_bytes: int | None = None
    hub_note: str = ""  # why the hub's metadata is missing (dry run against an unreachable hub)

    @property
    def bytes_to_fetch(self) -> int | None:
        if self.state in ("present", "check"):
            return 0
        return None if self.size is None else self.size - self.partial_bytes

    @property
    def has_room(self) -> bool | None:
        need = self.bytes_to_fetch
        if need is None or self.free_bytes is None:
            return None
        return self.free_bytes >= need


@dataclass(frozen=True)
class DownloadResult:
    tier: str
    path: Path
    fetched_bytes: int  # 0 when the file was already present
    resumed_from: int
    quantization: str

    @property
    def message(self) -> str:
        if self.fetched_bytes == 0 and self.resumed_from == 0:
            return f"{self.tier}: already present, verified ({self.quantization}): {self.path}"
        resumed = f", resumed at {_size(self.resumed_from)}" if self.resumed_from else ""
        fetched = _size(self.fetched_bytes)
        return f"{self.tier}: downloaded {fetched}{resumed}, verified ({self.quantization}): {self.path}"


def plan_download(
    settings: Settings,
    tier_name: str,
    *,
    source: ModelSource | None = None,
    token: str | None = None,
    endpoint: str | None = None,
    allow_offline: bool = False,
) -> DownloadPlan:
    """What would be fetched, from where, how big, to where, and whether the disk has room.

    Asks the hub (one HEAD request) unless the destination was verified before. With
    `allow_offline` (dry runs) an unreachable hub leaves a note instead of raising.
    """
    from huggingface_hub import hf_hub_url

    tier = settings.tier(tier_name)
    source = source or source_for(tier_name)
    _check_name_quantization(tier, source)
    destination = tier.model_path(settings.models_dir)
    try:
        url = hf_hub_url(source.repo_id, source.filename, endpoint=endpoint)
    except ValueError as exc:  # huggingface_hub validates repo ids: "a/b/c", "..", spaces
        raise DownloadError(f"Invalid --repo or --file ({source.repo_id} / {source.filename}): {exc}") from None
    free = _free_bytes(destination.parent)

    record = _read_record(destination)
    if record is not None and _record_matches(record, source):
        return DownloadPlan(tier, source, destination, url, "present", size=record["size"],
                            sha256=record.get("sha256"), free_bytes=free)

    try:
        metadata = _hub_metadata(url, source, token=token, endpoint=endpoint)
    except _Unreachable as exc:
        if not allow_offline:
            raise DownloadError(str(exc)) from None
        return DownloadPlan(tier, source, destination, url, "check" if destination.exists() else "download",
                            size=source.size, sha256=source.sha256, free_bytes=free, hub_note=str(exc))

    size = _agree("size", source, source.size, metadata.size)
    sha256 = _agree("sha256", source, source.sha256, _sha256_of_etag(metadata.etag))
    partial = _partial_path(destination, metadata.etag)
    partial_bytes = partial.stat().st_size if partial.exists() else 0
    if size is not None and partial_bytes > size:
        partial_bytes = 0  # longer than the file: not a prefix of it, start again
    if destination.exists():
        state = "check"
    else:
        state = "resume" if partial_bytes else "download"
    return DownloadPlan(tier, source, destination, url, state, size=size, sha256=sha256, etag=metadata.etag,
                        download_url=metadata.download_url, partial_bytes=partial_bytes, free_bytes=free)


def download_model(plan: DownloadPlan, *, token: str | None = None, tqdm_class: Any = None) -> DownloadResult:
    """Carry out a plan: fetch (or resume) into a `.part` file, verify it, then move it into place.

    A file verified before is not fetched again; an existing file that does not match the source
    is never overwritten.
    """
    from huggingface_hub.utils import silent_tqdm

    tqdm_class = tqdm_class or silent_tqdm
    tier_name = plan.tier.name
    if plan.state == "present":
        quantization = _check_quantization(plan.destination, plan.tier, plan.source)
        return DownloadResult(tier_name, plan.destination, 0, 0, quantization)
    if plan.hub_note:
        raise DownloadError(plan.hub_note)

    if plan.state == "check":
        try:
            _verify(plan.destination, plan, tqdm_class, what=f"the existing {plan.destination}")
        except DownloadError as exc:
            # Someone else's file, or a corrupt one: never overwrite it without being asked.
            raise DownloadError(f"{exc} Move or delete it to download again.") from None
        quantization = _check_quantization(plan.destination, plan.tier, plan.source)
        _write_record(plan.destination, plan)
        return DownloadResult(tier_name, plan.destination, 0, 0, quantization)

    if plan.has_room is False:
        raise DownloadError(
            f"Not enough disk space for {plan.source.filename} in {_existing_dir(plan.destination.parent)}: "
            f"needs {_size(plan.bytes_to_fetch)}, {_size(plan.free_bytes)} free."
        )
    partial = _partial_path(plan.destination, plan.etag)
    _fetch(plan, partial, token=token, tqdm_class=tqdm_class)
    fetched = partial.stat().st_size - plan.partial_bytes

    try:
        _verify(partial, plan, tqdm_class, what="the download")
    except DownloadError:
        partial.unlink(missing_ok=True)  # wrong bytes cannot be resumed from
        raise
    try:
        quantization = _check_quantization(partial, plan.tier, plan.source)
    except DownloadError as exc:
        # A file the tier refuses would only take up disk space; the message names the fix.
        partial.unlink(missing_ok=True)
        raise DownloadError(f"{exc} The download was deleted.") from None
    os.replace(partial, plan.destination)
    _write_record(plan.destination, plan)
    return DownloadResult(tier_name, plan.destination, fetched, plan.partial_bytes, quantization)


def describe_plan(plan: DownloadPlan) -> str:
    """A few lines for a dry run: what, from where, how big, where to, and whether it fits."""
    size = f"{_size(plan.size)}, {plan.size:,} bytes" if plan.size is not None else "size unknown"
    lines = [f"{plan.tier.name}: {plan.source.repo_id} / {plan.source.filename} ({size})",
             f"  from: {plan.url}", f"  to:   {plan.destination}"]
    if plan.tier.required_quantization:
        lines.append(f"  requires quantization {plan.tier.required_quantization}")
    if plan.hub_note:
        lines.append(f"  hub:  {plan.hub_note}")
    action = {
        "present": "already present, verified: nothing to fetch",
        "check": "file exists: it will be verified, not fetched",
        "resume": f"resume: {_size(plan.partial_bytes)} already downloaded, {_size(plan.bytes_to_fetch)} to fetch",
        "download": f"download {_size(plan.size) if plan.size is not None else 'a file of unknown size'}",
    }[plan.state]
    lines.append(f"  plan: {action}")
    if plan.free_bytes is not None and plan.state in ("resume", "download"):
        room = {True: "enough room", False: "NOT ENOUGH ROOM", None: "room unknown"}[plan.has_room]
        lines.append(f"  disk: {_size(plan.free_bytes)} free, {room}")
    return "\n".join(lines)


# --- the hub -------------------------------------------------------------------------------


class _Unreachable(Exception):
    """The hub could not be asked at all (network down, offline mode): a dry run can go on without it."""


@dataclass(frozen=True)
class _Metadata:
    size: int | None
    etag: str | None
    download_url: str


def _hub_metadata(url: str, source: ModelSource, *, token: str | None, endpoint: str | None) -> _Metadata:
    from huggingface_hub import get_hf_file_metadata

    import httpx2

    try:
        metadata = get_hf_file_metadata(url, token=token, endpoint=endpoint)
    except (httpx2.HTTPError, OSError) as exc:  # every hub answer and network failure is one of these
        raise _hub_error(exc, source, url) from None
    if metadata.commit_hash is None or metadata.etag is None:
        raise DownloadError(
            f"{url} answered without the Hugging Face Hub's headers (X-Repo-Commit, ETag): "
            "check HF_ENDPOINT, proxy or firewall settings."
        )
    return _Metadata(metadata.size, metadata.etag, metadata.location or url)


def _hub_error(exc: Exception, source: ModelSource, url: str) -> Exception:
    """One actionable line for each way the hub can say no; `_Unreachable` when it said nothing."""
    import httpx2
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        OfflineModeIsEnabled,
        RemoteEntryNotFoundError,
        RepositoryNotFoundError,
    )

    repo, name = source.repo_id, source.filename
    if isinstance(exc, OfflineModeIsEnabled):
        return _Unreachable("HF_HUB_OFFLINE is set, so the hub cannot be asked: unset it to download.")
    if isinstance(exc, HfHubHTTPError):
        status = exc.response.status_code if exc.response is not None else 0
        if status == 401 and "Invalid credentials" in (exc.server_message or str(exc)):
            return DownloadError("The hub rejected the token (HTTP 401): check --token or HF_TOKEN.")
        # The hub answers 401 for gated, private and missing repos alike when no token is sent.
        if isinstance(exc, GatedRepoError) or status in (401, 403):
            return DownloadError(
                f"Access to {repo} was refused (HTTP {status}): it is gated or private. Accept the licence "
                f"on https://huggingface.co/{repo} and pass --token or set HF_TOKEN."
            )
        if isinstance(exc, RemoteEntryNotFoundError):
            return DownloadError(f"{name} was not found in {repo} (HTTP 404): check --repo and --file.")
        if isinstance(exc, RepositoryNotFoundError) or status == 404:
            return DownloadError(f"{repo} / {name} was not found on the hub (HTTP {status}): check --repo and --file.")
        return DownloadError(f"The hub answered HTTP {status} for {url}: try again later.")
    if isinstance(exc, httpx2.HTTPError):  # connection refused, DNS, timeout, TLS
        reason = str(exc) or type(exc).__name__
        return _Unreachable(f"Cannot reach the Hugging Face Hub ({urlsplit(url).netloc}): {reason}. "
                            "Check the network connection (or HF_ENDPOINT).")
    return DownloadError(f"Cannot get {repo} / {name} from the hub: {exc}")


def _fetch(plan: DownloadPlan, partial: Path, *, token: str | None, tqdm_class: Any) -> None:
    import httpx2
    from huggingface_hub.errors import HfHubHTTPError
    from huggingface_hub.file_download import http_get
    from huggingface_hub.utils import build_hf_headers

    partial.parent.mkdir(parents=True, exist_ok=True)
    for stale in partial.parent.glob(f"{plan.destination.name}.*.part"):
        if stale != partial:  # a part of an older upload of the file: its bytes cannot be resumed
            stale.unlink(missing_ok=True)
    headers = build_hf_headers(token=token)
    if urlsplit(plan.download_url).netloc != urlsplit(plan.url).netloc:
        headers.pop("authorization", None)  # a signed CDN URL needs no token, and must not see it

    # r+b, not ab: http_get seeks back and truncates if the server ignores Range and sends it all.
    mode = "r+b" if partial.exists() else "wb"
    try:
        with open(partial, mode) as file:
            file.seek(plan.partial_bytes)
            file.truncate()
            http_get(plan.download_url, file, resume_size=plan.partial_bytes, headers=headers,
                     expected_size=plan.size, displayed_filename=plan.source.filename, tqdm_class=tqdm_class)
    except OSError as exc:
        kept = partial.stat().st_size if partial.exists() else 0
        if exc.errno == errno.ENOSPC:
            raise DownloadError(
                f"Disk full while downloading {plan.source.filename} ({_size(kept)} kept in {partial.name}): "
                "free some space and run again to resume."
            ) from None
        if isinstance(exc, HfHubHTTPError):
            raise DownloadError(
                f"Download of {plan.source.filename} failed: the server answered HTTP "
                f"{exc.response.status_code}; {_size(kept)} kept, run again to resume."
            ) from None
        if "Consistency check failed" in str(exc):  # http_get: byte count differs from the expected size
            partial.unlink(missing_ok=True)
            raise DownloadError(
                f"Size mismatch for {plan.source.filename}: the server sent {_size(kept)} "
                f"but {_size(plan.size)} ({plan.size} bytes) were expected; the download was deleted."
            ) from None
        raise DownloadError(f"Cannot write {partial}: {exc.strerror or exc}.") from None
    except httpx2.HTTPError as exc:  # http_get gave up after its own retries
        kept = partial.stat().st_size if partial.exists() else 0
        raise DownloadError(
            f"Connection lost while downloading {plan.source.filename} ({str(exc) or type(exc).__name__}); "
            f"{_size(kept)} kept, run again to resume."
        ) from None


# --- checks --------------------------------------------------------------------------------


def _agree(what: str, source: ModelSource, known: Any, hub: Any) -> Any:
    """The value checked ahead wins, but a hub that disagrees means the file changed: stop before fetching."""
    if known is not None and hub is not None and known != hub:
        raise DownloadError(
            f"{what} mismatch for {source.repo_id} / {source.filename}: the hub reports {hub}, "
            f"expected {known}; the file changed upstream."
        )
    return known if known is not None else hub


def _sha256_of_etag(etag: str | None) -> str | None:
    # For LFS (and Xet) files the hub's linked ETag is the file's sha256; small git files carry a sha1.
    return etag.lower() if etag and _SHA256.fullmatch(etag.lower()) else None


def _verify(path: Path, plan: DownloadPlan, tqdm_class: Any, *, what: str) -> None:
    actual = path.stat().st_size
    if plan.size is not None and actual != plan.size:
        raise DownloadError(
            f"Size mismatch: {what} has {actual} bytes, {plan.source.repo_id} / {plan.source.filename} "
            f"has {plan.size}."
        )
    if plan.sha256 is not None:
        digest = _sha256_file(path, tqdm_class, plan.source.filename)
        if digest != plan.sha256:
            raise DownloadError(
                f"Checksum mismatch: {what} has sha256 {digest[:12]}…, "
                f"{plan.source.repo_id} / {plan.source.filename} has {plan.sha256[:12]}…."
            )


def _sha256_file(path: Path, tqdm_class: Any, label: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file, tqdm_class(total=path.stat().st_size, unit="B", unit_scale=True,
                                              desc=f"checking sha256 of {label}", disable=None) as bar:
        while block := file.read(_HASH_BLOCK):
            digest.update(block)
            bar.update(len(block))
    return digest.hexdigest()


def _check_name_quantization(tier: TierSettings, source: ModelSource) -> None:
    """Refuse before fetching gigabytes when the file name already says the wrong quantization."""
    required = tier.required_quantization.upper()
    name = source.filename.upper()
    if not required or required in name:
        return
    named = [q for q in QUANTIZATION_NAMES.values() if re.search(rf"(?<![A-Z0-9]){q}(?![A-Z0-9_])", name)]
    if named:
        raise DownloadError(
            f"Tier {tier.name} requires {tier.required_quantization}, but {source.filename} is {named[0]}: "
            f"pick a {tier.required_quantization} file with --file."
        )


def _check_quantization(path: Path, tier: TierSettings, source: ModelSource) -> str:
    try:
        info = read_gguf_info(path)
    except ModelFileError as exc:
        raise DownloadError(f"{source.filename} is not a usable model: {exc}") from None
    required = tier.required_quantization
    if required and info.quantization.upper() != required.upper():
        raise DownloadError(
            f"{source.repo_id} / {source.filename} is {info.quantization}, but tier {tier.name} requires "
            f"{required}: pick a {required} file with --file."
        )
    return info.quantization


# --- files ---------------------------------------------------------------------------------


def _partial_path(destination: Path, etag: str | None) -> Path:
    # The etag in the name ties the bytes to one upload of the file: a new upload never resumes old bytes.
    tag = re.sub(r"[^0-9A-Za-z]", "", etag or "")[:16] or "unknown"
    return destination.with_name(f"{destination.name}.{tag}.part")


def _record_path(destination: Path) -> Path:
    return destination.with_name(destination.name + ".verified.json")


def _write_record(destination: Path, plan: DownloadPlan) -> None:
    """Remember that this exact file (size, mtime) was verified, so a re-run need not hash 12 GB again."""
    stat = destination.stat()
    record = {"repo_id": plan.source.repo_id, "filename": plan.source.filename, "size": stat.st_size,
              "mtime_ns": stat.st_mtime_ns, "sha256": plan.sha256}
    _record_path(destination).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")


def _read_record(destination: Path) -> dict[str, Any] | None:
    try:
        record = json.loads(_record_path(destination).read_text(encoding="utf-8"))
        stat = destination.stat()
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("size") != stat.st_size or record.get("mtime_ns") != stat.st_mtime_ns:
        return None  # the file was replaced or touched since it was verified
    return record


def _record_matches(record: dict[str, Any], source: ModelSource) -> bool:
    return (
        (record.get("repo_id"), record.get("filename")) == (source.repo_id, source.filename)
        and (source.size is None or record.get("size") == source.size)
        and (source.sha256 is None or record.get("sha256") == source.sha256)
    )


def _existing_dir(path: Path) -> Path:
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


def _free_bytes(directory: Path) -> int | None:
    try:
        return shutil.disk_usage(_existing_dir(directory)).free
    except OSError:
        return None


def _size(n: int | None) -> str:
    if n is None:
        return "an unknown size"
    if n < 1024:
        return f"{n} B"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        n /= 1024
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}"
    return f"{n} B"
