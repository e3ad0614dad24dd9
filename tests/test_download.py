"""scripts/download_models.py and gemma_chat.inference.download against a local stand-in for the Hugging Face Hub.

The fake hub answers like the real one (huggingface_hub 2.x reads exactly these headers): HEAD on
/{repo}/resolve/main/{file} gives 302 + X-Repo-Commit, X-Linked-Etag (sha256), X-Linked-Size and a
Location on another origin (the "CDN", a second port), which serves the bytes with Range support.
"""

from __future__ import annotations

import errno
import hashlib
import os
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import pytest

from gemma_chat.inference import download
from gemma_chat.config import load_settings
from gemma_chat.inference.download import ModelSource, download_model, plan_download
from gemma_chat.errors import DownloadError
from tests.gguf_fixtures import gemma3_metadata, gguf_header_bytes

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "download_models.py"
MINI_REPO, MINI_FILE = "ggml-org/gemma-3-1b-it-GGUF", "gemma-3-1b-it-Q8_0.gguf"
PRO_REPO, PRO_FILE = "unsloth/gemma-3-12b-it-GGUF", "gemma-3-12b-it-Q8_0.gguf"
CHUNK = 10 * 1024 * 1024  # huggingface_hub writes in chunks of this size: a resume starts at a multiple of it


def model_bytes(file_type: int = 7, size: int = 64 * 1024) -> bytes:
    """A valid GGUF header padded with a non-constant pattern, so a checksum means something."""
    header = gguf_header_bytes(gemma3_metadata(file_type=file_type))
    pattern = bytes(range(256)) * (size // 256 + 1)
    return header + pattern[: size - len(header)]


@dataclass
class Served:
    data: bytes
    claimed_size: int | None = None  # X-Linked-Size, when it should lie
    claimed_sha256: str | None = None


@dataclass
class FakeHub:
    files: dict[tuple[str, str], Served] = field(default_factory=dict)
    requests: list[dict] = field(default_factory=list)
    error: tuple[int, str, str] | None = None  # (status, X-Error-Code, X-Error-Message) for every HEAD
    drop_after: int | None = None  # the next CDN GET sends this many bytes, then hangs up
    fail_status: int | None = None  # CDN GETs after a drop answer this status
    url: str = ""
    cdn_url: str = ""

    def add(self, repo: str, filename: str, data: bytes, **kwargs) -> Served:
        self.files[(repo, filename)] = served = Served(data, **kwargs)
        return served

    def gets(self) -> list[dict]:
        return [r for r in self.requests if r["method"] == "GET"]


def _handler(hub: FakeHub, role: str):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # keep pytest output clean
            pass

        def _record(self):
            hub.requests.append({"role": role, "method": self.command, "path": self.path,
                                 "range": self.headers.get("Range"), "auth": self.headers.get("Authorization")})

        def do_HEAD(self):
            self._record()
            self._hub() if role == "hub" else self.send_error(405)

        def do_GET(self):
            self._record()
            self._cdn() if role == "cdn" else self.send_error(405)

        def _hub(self):
            parts = self.path.lstrip("/").split("/")
            if hub.error:
                status, code, message = hub.error
                self.send_response(status)
                self.send_header("X-Error-Code", code)
                self.send_header("X-Error-Message", message)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            key = ("/".join(parts[:2]), "/".join(parts[4:]))
            if len(parts) < 5 or parts[2] != "resolve" or key not in hub.files:
                self.send_response(404)
                self.send_header("X-Error-Code", "EntryNotFound")
                self.send_header("X-Repo-Commit", "a" * 40)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            served = hub.files[key]
            sha = hashlib.sha256(served.data).hexdigest()
            self.send_response(302)
            self.send_header("Location", f"{hub.cdn_url}/blobs/{key[0]}/{key[1]}")
            self.send_header("X-Repo-Commit", "c" * 40)
            self.send_header("ETag", '"' + hashlib.sha1(served.data).hexdigest() + '"')  # the LFS pointer's
            self.send_header("X-Linked-Etag", f'"{served.claimed_sha256 or sha}"')
            self.send_header("X-Linked-Size", str(served.claimed_size or len(served.data)))
            self.send_header("Content-Length", "0")
            self.end_headers()

        def _cdn(self):
            path = self.path.removeprefix("/blobs/")
            repo, filename = "/".join(path.split("/")[:2]), "/".join(path.split("/")[2:])
            if (repo, filename) not in hub.files:
                self.send_error(404)
                return
            data = hub.files[(repo, filename)].data
            if hub.fail_status and hub.drop_after is None:
                self.send_error(hub.fail_status)
                return
            start = 0
            if self.headers.get("Range"):
                start = int(self.headers["Range"].removeprefix("bytes=").split("-")[0])
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            else:
                self.send_response(200)
            self.send_header("Content-Length", str(len(data) - start))
            self.end_headers()
            if hub.drop_after is not None:
                # Promise the whole body, send part of it and hang up: a dropped connection mid-download.
                self.wfile.write(data[start : start + hub.drop_after])
                self.wfile.flush()
                hub.drop_after = None
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            self.wfile.write(data[start:])

    return Handler


@pytest.fixture
def hub():
    state = FakeHub()
    servers = []
    for role in ("hub", "cdn"):
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state, role))
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(server)
        setattr(state, "url" if role == "hub" else "cdn_url", f"http://127.0.0.1:{server.server_address[1]}")
    yield state
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def models_dir(tmp_path: Path) -> Path:
    return tmp_path / "models"


@pytest.fixture
def dl_settings(models_dir: Path, tmp_path: Path, monkeypatch):
    """Settings for in-process calls; huggingface_hub read HF_HOME at import, so point its paths here."""
    from huggingface_hub import constants

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "hf_home" / "token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(tmp_path / "hf_home" / "stored_tokens"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)  # as the script sets it
    return load_settings(env={}, models_dir=models_dir)


def run_script(hub: FakeHub, tmp_path: Path, *args: str, endpoint: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("GEMMA_CHAT_", "HF_")) and k != "HUGGING_FACE_HUB_TOKEN"}
    env.update(HF_ENDPOINT=endpoint or hub.url, HF_HOME=str(tmp_path / "hf_home"))
    return subprocess.run([sys.executable, str(SCRIPT), "--models-dir", str(tmp_path / "models"), *args],
                          check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment.lower() in lines[0].lower(), lines[0]


# --- through the script, as a user runs it -----------------------------------------------------


def test_downloads_verifies_and_second_run_fetches_nothing(hub, tmp_path, models_dir):
    data = hub.add(MINI_REPO, MINI_FILE, model_bytes()).data

    first = run_script(hub, tmp_path, "--tier", "mini", "--token", "hf_secret")

    assert first.returncode == 0, first.stderr
    assert "downloaded" in first.stdout and "verified (Q8_0)" in first.stdout
    assert (models_dir / MINI_FILE).read_bytes() == data
    head, get = hub.requests
    assert (head["role"], head["method"], head["auth"]) == ("hub", "HEAD", "Bearer hf_secret")
    assert (get["role"], get["range"], get["auth"]) == ("cdn", None, None)  # the token never leaves the hub
    assert sorted(p.name for p in models_dir.iterdir()) == [MINI_FILE, MINI_FILE + ".verified.json"]

    hub.requests.clear()
    second = run_script(hub, tmp_path, "--tier", "mini")

    assert second.returncode == 0, second.stderr
    assert "already present, verified" in second.stdout
    assert hub.requests == []


def test_gated_repo_says_to_accept_the_licence(hub, tmp_path, models_dir):
    hub.error = (401, "GatedRepo", "Access to model google/gemma-3-1b-it-qat is restricted.")

    result = run_script(hub, tmp_path, "--tier", "mini")

    assert_one_line_error(result, "accept the licence", "--token", "HF_TOKEN", MINI_REPO)
    assert not models_dir.exists() or not any(models_dir.iterdir())


def test_forbidden_with_token_says_the_same(hub, tmp_path):
    hub.error = (403, "GatedRepo", "You need to agree to share your contact information.")

    result = run_script(hub, tmp_path, "--tier", "mini", "--token", "hf_not_accepted")

    assert_one_line_error(result, "HTTP 403", "accept the licence")


def test_missing_file_is_not_found(hub, tmp_path):
    hub.add(MINI_REPO, "other.gguf", model_bytes())

    result = run_script(hub, tmp_path, "--tier", "mini", "--file", "gemma-3-1b-it-Q2_K.gguf")

    assert_one_line_error(result, "gemma-3-1b-it-Q2_K.gguf", "not found", "HTTP 404")


def test_dry_run_prints_the_plan_and_downloads_nothing(hub, tmp_path, models_dir):
    data = hub.add(MINI_REPO, MINI_FILE, model_bytes()).data

    result = run_script(hub, tmp_path, "--tier", "mini", "--dry-run")

    assert result.returncode == 0, result.stderr
    assert f"{MINI_REPO} / {MINI_FILE}" in result.stdout
    assert f"{len(data):,} bytes" in result.stdout
    assert str(models_dir / MINI_FILE) in result.stdout
    assert "enough room" in result.stdout
    assert hub.gets() == []
    assert not models_dir.exists()


def test_size_mismatch_is_an_error_and_leaves_no_file(hub, tmp_path, models_dir):
    data = model_bytes()
    hub.add(MINI_REPO, MINI_FILE, data, claimed_size=len(data) + 100)

    result = run_script(hub, tmp_path, "--tier", "mini")

    assert_one_line_error(result, "size mismatch")
    assert not (models_dir / MINI_FILE).exists()
    assert list(models_dir.glob("*.part")) == []


def test_unreachable_hub(tmp_path):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"

    failed = run_script(FakeHub(), tmp_path, "--tier", "mini", endpoint=closed)
    dry = run_script(FakeHub(), tmp_path, "--tier", "pro", "--dry-run", endpoint=closed)

    assert_one_line_error(failed, "cannot reach the hugging face hub")
    assert dry.returncode == 0 and "Cannot reach" in dry.stdout
    assert "12,510,212,576 bytes" in dry.stdout  # the size known ahead still shows


def test_usage_errors_exit_2_without_traceback(tmp_path):
    result = run_script(FakeHub(), tmp_path, "--tier", "all", "--file", "x.gguf", endpoint="http://127.0.0.1:9")

    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "single --tier" in result.stderr


# --- through the library -----------------------------------------------------------------------


def test_resumes_after_an_interrupted_run_with_a_range_request(hub, dl_settings, models_dir):
    data = hub.add(MINI_REPO, MINI_FILE, model_bytes(size=12 * 1024 * 1024)).data
    hub.drop_after, hub.fail_status = CHUNK + 512 * 1024, 503  # hang up mid-file, then refuse the retry

    plan = plan_download(dl_settings, "mini", endpoint=hub.url)
    with pytest.raises(DownloadError, match="run again to resume"):
        download_model(plan)
    (partial,) = models_dir.glob("*.part")
    kept = partial.stat().st_size
    assert 0 < kept < len(data) and not (models_dir / MINI_FILE).exists()

    hub.fail_status = None
    hub.requests.clear()
    plan = plan_download(dl_settings, "mini", endpoint=hub.url)
    result = download_model(plan)

    assert plan.state == "resume" and plan.partial_bytes == kept
    assert [g["range"] for g in hub.gets()] == [f"bytes={kept}-"]
    assert (result.resumed_from, result.fetched_bytes) == (kept, len(data) - kept)
    assert (models_dir / MINI_FILE).read_bytes() == data
    assert list(models_dir.glob("*.part")) == []


def test_a_dropped_connection_is_resumed_within_the_same_run(hub, dl_settings, models_dir):
    data = hub.add(MINI_REPO, MINI_FILE, model_bytes(size=12 * 1024 * 1024)).data
    hub.drop_after = CHUNK + 512 * 1024

    download_model(plan_download(dl_settings, "mini", endpoint=hub.url))

    assert [g["range"] for g in hub.gets()] == [None, f"bytes={CHUNK}-"]
    assert (models_dir / MINI_FILE).read_bytes() == data


def test_known_size_that_differs_from_the_hub_stops_before_fetching(hub, dl_settings):
    hub.add(PRO_REPO, PRO_FILE, model_bytes())  # DEFAULT_SOURCES knows the real 12,510,212,576 bytes

    with pytest.raises(DownloadError, match="size mismatch.*expected 12510212576"):
        plan_download(dl_settings, "pro", endpoint=hub.url)
    assert hub.gets() == []


def test_checksum_mismatch_deletes_the_download(hub, dl_settings, models_dir):
    hub.add(MINI_REPO, MINI_FILE, model_bytes(), claimed_sha256=hashlib.sha256(b"other").hexdigest())

    with pytest.raises(DownloadError, match="Checksum mismatch"):
        download_model(plan_download(dl_settings, "mini", endpoint=hub.url))
    assert list(models_dir.iterdir()) == []


def test_wrong_quantization_is_refused_after_download(hub, dl_settings, models_dir):
    # Named like a Q8_0 file, but the header says Q4_K_M (file_type 15): only the real check catches it.
    source = ModelSource(PRO_REPO, "gemma-3-12b-it-Q8_0-requant.gguf")
    hub.add(PRO_REPO, source.filename, model_bytes(file_type=15))

    with pytest.raises(DownloadError, match="is Q4_K_M, but tier pro requires Q8_0"):
        download_model(plan_download(dl_settings, "pro", source=source, endpoint=hub.url))
    assert list(models_dir.iterdir()) == []


def test_a_file_named_with_the_wrong_quantization_is_refused_before_asking(hub, dl_settings):
    source = download.source_for("pro", filename="gemma-3-12b-it-Q4_K_M.gguf")

    with pytest.raises(DownloadError, match="requires Q8_0, but gemma-3-12b-it-Q4_K_M.gguf is Q4_K_M"):
        plan_download(dl_settings, "pro", source=source, endpoint=hub.url)
    assert hub.requests == []


def test_not_enough_disk_space_stops_before_fetching(hub, dl_settings, models_dir, monkeypatch):
    hub.add(MINI_REPO, MINI_FILE, model_bytes())
    monkeypatch.setattr(download.shutil, "disk_usage", lambda path: SimpleNamespace(total=10**9, used=10**9, free=1000))

    plan = plan_download(dl_settings, "mini", endpoint=hub.url)
    with pytest.raises(DownloadError, match="Not enough disk space"):
        download_model(plan)
    assert plan.has_room is False and hub.gets() == []


def test_an_existing_file_that_differs_is_never_overwritten(hub, dl_settings, models_dir):
    hub.add(MINI_REPO, MINI_FILE, model_bytes())
    models_dir.mkdir()
    (models_dir / MINI_FILE).write_bytes(b"my own model")

    with pytest.raises(DownloadError, match="Move or delete it"):
        download_model(plan_download(dl_settings, "mini", endpoint=hub.url))
    assert (models_dir / MINI_FILE).read_bytes() == b"my own model"
    assert hub.gets() == []


def test_an_existing_matching_file_is_verified_not_fetched(hub, dl_settings, models_dir):
    data = hub.add(MINI_REPO, MINI_FILE, model_bytes()).data
    models_dir.mkdir()
    (models_dir / MINI_FILE).write_bytes(data)  # copied by hand: no record of a verification yet

    result = download_model(plan_download(dl_settings, "mini", endpoint=hub.url))

    assert "already present, verified" in result.message
    assert hub.gets() == []


def test_disk_full_mid_download_keeps_the_part_for_a_resume(hub, dl_settings, models_dir, monkeypatch):
    from huggingface_hub import file_download

    hub.add(MINI_REPO, MINI_FILE, model_bytes())

    def fill_disk(url, file, **kwargs):
        file.write(b"GGUF")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(file_download, "http_get", fill_disk)
    with pytest.raises(DownloadError, match="Disk full.*run again to resume"):
        download_model(plan_download(dl_settings, "mini", endpoint=hub.url))
    (partial,) = models_dir.glob("*.part")
    assert partial.read_bytes() == b"GGUF" and not (models_dir / MINI_FILE).exists()


def test_rejected_token(hub, tmp_path):
    hub.error = (401, "", "Invalid credentials in Authorization header")

    result = run_script(hub, tmp_path, "--tier", "mini", "--token", "hf_typo")

    assert_one_line_error(result, "rejected the token")


def test_bad_config_file_exits_2(tmp_path):
    (tmp_path / "bad.toml").write_text("models_dir = [", encoding="utf-8")

    result = run_script(FakeHub(), tmp_path, "--config", str(tmp_path / "bad.toml"), endpoint="http://127.0.0.1:9")

    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "not valid TOML" in result.stderr
