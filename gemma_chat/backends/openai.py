"""A tier served by any OpenAI-compatible server (llama-server, vLLM, Ollama, llama_cpp.server) over HTTP.

Owns the streamed request (SSE), the mapping of every HTTP failure to the typed errors of
gemma_chat.errors (no raw httpx exception leaves this module), and the tier's availability: a
health check (GET {base_url}/models) at start and from a daemon thread, every RECHECK_S while the
server is unavailable, every HEALTHY_RECHECK_S while it answers, and at once after a failure.

Things a remote server cannot do for us, and what stands in for them:
- History trimming: we cannot tokenize remotely, so the newest turns are kept whose characters fit
  about (n_ctx - max_tokens) * TRIM_CHARS_PER_TOKEN, dropping the oldest user/assistant pairs (3
  characters a token is on the safe side for English; the newest message is always sent). The
  server's own context error is the backstop: it becomes ContextTooLongError.
- Token counts: from the stream's `usage` when the server sends it (`stream_options.include_usage`).
  llama_cpp.server ignores that option, so otherwise each streamed chunk counts as one completion
  token (servers send a token a chunk) and the prompt is estimated at PROMPT_CHARS_PER_TOKEN
  characters a token.
- Stop: a read blocked on a silent server (a long prefill) cannot see `stop`, so a watcher thread
  shuts the socket down when it is set; the server sees the connection close and stops generating.
- A stream that ends without a finish_reason was cut off by the server (llama_cpp.server does that
  to a running stream when another request arrives unless started with --interrupt_requests False):
  it is a GenerationError, never a result, so it is never charged. llama_cpp.server also answers a
  streamed prompt beyond its context with an empty stream (its 400 comes only unstreamed), so an
  answer cut before its first chunk suggests a new chat.
- llama_cpp.server serves one request at a time, and even GET /models waits behind a running stream
  (with interrupt_requests on, it cuts the stream off): so the health check is skipped while this
  tier streams, and a check that connects but gets no answer in time counts as "up, busy".
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import threading
import time
from typing import Iterator, Sequence

import httpx

from ..config import Settings, TierSettings
from ..errors import ContextTooLongError, GemmaChatError, GenerationError, ModelUnavailableError, QueueFullError
from .base import GenerationResult, Message, Sampling, TierLoad, TierQueue, TierStatus, Waiting, ms_since, normalize_messages, stop_prefix_length
from .prompts import TRANSCRIPT_SAMPLING, TRANSCRIPT_STOP, transcript_prompt

TRIM_CHARS_PER_TOKEN = 3
PROMPT_CHARS_PER_TOKEN = 4
STOP_POLL_S = 0.05  # how often the watcher looks at `stop` while a stream is open
CLOSE_WAIT_S = 10.0
CONNECT_TIMEOUT_S = 10.0
_CONTEXT_WORDS = re.compile(r"context|too long|exceed", re.IGNORECASE)


def read_api_key(tier: TierSettings) -> str:
    return os.environ.get(tier.api_key_env, "") if tier.api_key_env else ""


def trim_history(turns: list[dict[str, str]], tier: TierSettings, fixed_chars: int = 0) -> list[dict[str, str]]:
    """The newest turns whose characters (plus `fixed_chars` of prompt around them) fit the context roughly."""
    budget = (tier.n_ctx - tier.max_tokens) * TRIM_CHARS_PER_TOKEN - fixed_chars
    while len(turns) > 1 and sum(len(turn["content"]) for turn in turns) > budget:
        turns = turns[2:]  # the oldest user/assistant pair
    return turns


# --- the health check --------------------------------------------------------------------------


def _why_unreachable(exc: httpx.HTTPError) -> str:
    text = str(exc)
    if isinstance(exc, httpx.TimeoutException):
        return "no answer in time"
    if "refused" in text.lower():
        return "connection refused"
    if any(s in text for s in ("Name or service not known", "nodename nor servname", "getaddrinfo", "name resolution")):
        return "unknown host"
    return text or type(exc).__name__


def _describe_key_refusal(tier: TierSettings, status_code: int) -> str:
    url = tier.base_url.rstrip("/")
    if not tier.api_key_env:
        return f"the server at {url} wants an API key (HTTP {status_code}): set api_key_env for tier {tier.name}"
    if not read_api_key(tier):
        return f"the server at {url} wants an API key (HTTP {status_code}), but {tier.api_key_env} is not set in the environment"
    return f"the server at {url} refused the API key in {tier.api_key_env} (HTTP {status_code})"


def _probe_server(client: httpx.Client, tier: TierSettings, timeout: float) -> tuple[bool, str, list[str]]:
    """(available, reason, the model ids it serves) from one GET {base_url}/models."""
    url = tier.base_url.rstrip("/")
    try:
        response = client.get(f"{url}/models", timeout=timeout)
    except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
        return False, f"not reachable at {url}: {_why_unreachable(exc)}", []
    except httpx.TimeoutException:  # connected, but no answer: busy (e.g. llama_cpp.server mid-stream), not down
        return True, f"served by {url} (busy: it did not answer GET /models within {timeout:g} s)", []
    except httpx.HTTPError as exc:
        return False, f"not reachable at {url}: {_why_unreachable(exc)}", []
    if response.status_code in (401, 403):
        return False, _describe_key_refusal(tier, response.status_code), []
    if response.status_code != 200:
        return False, f"GET {url}/models answered HTTP {response.status_code} (does base_url end in /v1?)", []
    try:
        ids = [str(model["id"]) for model in response.json().get("data", [])]
    except (ValueError, TypeError, KeyError, AttributeError):
        ids = []
    return True, f"served by {url}", ids


def check_server(tier: TierSettings, timeout: float = 2.0) -> tuple[bool, str]:
    """Whether the tier's server answers GET /models with its key: (True, "served by …") or (False, why)."""
    with httpx.Client(headers=_auth_headers(tier)) as client:
        available, reason, _ = _probe_server(client, tier, timeout)
    return available, reason


def _auth_headers(tier: TierSettings) -> dict[str, str]:
    key = read_api_key(tier)
    return {"Authorization": f"Bearer {key}"} if key else {}


# --- the answer as it streams ------------------------------------------------------------------


class _Answer:
    """The text so far. Leading blanks are skipped, and a tail that may begin a stop string or is
    trailing whitespace is held back until the next chunk (or the end) decides."""

    def __init__(self, stops: Sequence[str]):
        self.text, self.emitted, self.stops, self.hit_stop = "", 0, stops, False

    def add(self, piece: str) -> str:
        self.text += piece
        cuts = [self.text.find(s) for s in self.stops if s in self.text]
        if cuts:  # servers apply `stop` themselves; this is the belt to their braces
            self.text, self.hit_stop = self.text[: min(cuts)], True
        end = len(self.text.rstrip())
        if not self.hit_stop:
            end = min(end, len(self.text) - stop_prefix_length(self.text, self.stops))
        return self._take(end)

    def finish(self) -> str:
        return self._take(len(self.text.rstrip()))

    def _take(self, end: int) -> str:
        start = max(self.emitted, len(self.text) - len(self.text.lstrip()))
        if end <= start:
            return ""
        self.emitted = end
        return self.text[start:end]

    @property
    def streamed(self) -> str:
        return self.text.strip()  # exactly what add()/finish() gave out, once finish() has run


def _read_events(response: httpx.Response) -> Iterator[dict]:
    """Each `data:` payload of a server-sent event stream, parsed, until `[DONE]` or the end."""
    for line in response.iter_lines():
        if not line.startswith("data:"):
            continue  # blank separators, `: ping` comments, `event:` names
        data = line[5:].strip()
        if data == "[DONE]":
            return
        try:
            payload = json.loads(data)
        except ValueError:
            raise GenerationError("The model server sent an answer this app cannot read.", detail=data[:300]) from None
        if isinstance(payload, dict):
            yield payload


def _read_error_body(response: httpx.Response, limit: int = 4096) -> str:
    """The start of an error body: enough to quote, never a megabyte."""
    data = b""
    try:
        for chunk in response.iter_bytes():
            data += chunk
            if len(data) >= limit:
                break
    except httpx.HTTPError:
        pass
    return data[:limit].decode("utf-8", errors="replace")


def _shut_socket(response: httpx.Response) -> None:
    """Wake a read blocked on this response: close() alone does not wake a blocked recv on Linux."""
    stream = response.extensions.get("network_stream")
    sock = stream.get_extra_info("socket") if stream is not None else None
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


# --- the backend -------------------------------------------------------------------------------


class OpenAIBackend:
    """One tier on an OpenAI-compatible server: its queue, its streamed requests and its health."""

    RECHECK_S = 2.0  # health check interval while the server is unavailable
    HEALTHY_RECHECK_S = 30.0  # ...and while it answers
    HEALTH_TIMEOUT_S = 2.0

    def __init__(self, settings: Settings, tier: TierSettings, *, log=print):
        self.tier = tier
        self.label = tier.display_name
        self._url = tier.base_url.rstrip("/")
        self._log = log
        # Read timeout = timeout_s: the longest silence between two chunks (prefill included).
        timeout = httpx.Timeout(tier.timeout_s, connect=min(tier.timeout_s, CONNECT_TIMEOUT_S))
        # A fresh connection per request: a pooled one may be stale (the server restarted, or it dropped the
        # connection after a failed stream) and fail the next answer; a handshake costs nothing beside a generation.
        limits = httpx.Limits(max_keepalive_connections=0)
        self._client = httpx.Client(headers=_auth_headers(tier), timeout=timeout, limits=limits)
        self._queue = TierQueue(self.label, slots=tier.max_concurrent, max_waiting=settings.queue_size)
        self._lock = threading.Lock()
        self._available, self._reason, self._served_model = False, f"checking the server at {self._url}", ""
        self._checked, self._wake, self._closing = threading.Event(), threading.Event(), threading.Event()
        self._thread = threading.Thread(target=self._watch_server, name=f"openai-{tier.name}", daemon=True)
        self._thread.start()

    # --- availability ---

    def load(self) -> TierLoad:
        return TierLoad(self._queue.running, self._queue.waiting, self._queue.slots)

    def status(self) -> TierStatus:
        with self._lock:
            available, reason = self._available and not self._closing.is_set(), self._reason
        state = "ready" if available else "unreachable" if self._checked.is_set() else "loading"
        return TierStatus(
            tier=self.tier.name, label=self.label, price=self.tier.price, available=available, reason=reason,
            is_demo=False, max_tokens=self.tier.max_tokens, n_ctx=self.tier.n_ctx, backend="openai", state=state,
        )

    def wait_until_loaded(self, timeout: float) -> None:
        self._checked.wait(timeout)

    def restart(self) -> None:
        self._check_server()

    def close(self) -> None:
        """Refuse new work, stop running streams (they end "stopped"), end the health thread."""
        self._closing.set()
        self._wake.set()
        self._queue.close(timeout=CLOSE_WAIT_S)
        self._thread.join(timeout=self.HEALTH_TIMEOUT_S + 1)
        self._client.close()
        with self._lock:
            self._available, self._reason = False, "shut down"

    def _check_server(self) -> None:
        available, reason, models = _probe_server(self._client, self.tier, self.HEALTH_TIMEOUT_S)
        with self._lock:
            changed = (available, reason) != (self._available, self._reason)
            self._available, self._reason = available, reason
            self._served_model = self._served_model or (models[0] if models else "")
        self._checked.set()
        if changed and not self._closing.is_set():
            self._log(f"{self.tier.name}: {self.label} " + ("available, " if available else "unavailable: ") + reason)

    def _mark_unavailable(self, reason: str) -> None:
        with self._lock:
            self._available, self._reason = False, reason
        self._wake.set()

    def _watch_server(self) -> None:
        while not self._closing.is_set():
            # A running stream is proof enough, and llama_cpp.server would queue the check behind it.
            if self._queue.running == 0 or not self._checked.is_set():
                try:
                    self._check_server()
                except Exception as exc:  # noqa: BLE001 — the watcher must outlive any surprise
                    self._mark_unavailable(f"health check failed: {exc}")
            self._wake.wait(self.HEALTHY_RECHECK_S if self._available else self.RECHECK_S)
            self._wake.clear()

    # --- generation ---

    def generate(
        self, messages: Sequence[Message], *, stop: threading.Event | None = None, sampling: Sampling | None = None
    ) -> Iterator[Waiting | str | GenerationResult]:
        """Waiting(position)…, text deltas, then one GenerationResult; typed errors, never an httpx one."""
        turns = normalize_messages(messages)
        if not self._available and not self._closing.is_set():
            self._check_server()  # it may have come back since the last check
        with self._lock:
            available, reason = self._available and not self._closing.is_set(), self._reason
        if not available:
            raise ModelUnavailableError(
                "The {label} model is not available: {reason}", detail=reason, label=self.label, reason=reason
            )
        stop = stop or threading.Event()
        queued_at = time.monotonic()
        yield from self._queue.acquire()
        failed = False
        try:
            started = time.monotonic()
            yield from self._stream(turns, stop, sampling, started, queued_ms=int(round((started - queued_at) * 1000)))
        except GemmaChatError:
            failed = True
            raise
        finally:
            self._queue.release()
            if failed:  # was it the server going away? check now (the slot is free), not in HEALTHY_RECHECK_S
                self._wake.set()

    def _build_request(self, turns: list[dict[str, str]], sampling: Sampling | None = None) -> tuple[str, dict, int]:
        """(path, JSON body, prompt characters) for the tier's api; the request's sampling wins over the tier's."""
        asked = sampling.as_dict() if sampling is not None else {}
        tier = self.tier
        body: dict = {"max_tokens": tier.max_tokens, "stream": True, "stream_options": {"include_usage": True}}
        model = tier.model or self._served_model
        if model:
            body["model"] = model
        if tier.api == "completions":
            turns = trim_history(turns, tier, fixed_chars=len(transcript_prompt([])))
            prompt = transcript_prompt(turns)
            recommended = dict(TRANSCRIPT_SAMPLING)
            temperature = recommended.pop("temp") if tier.temperature is None else tier.temperature
            body.update(prompt=prompt, stop=TRANSCRIPT_STOP, temperature=temperature, **recommended)
            body.update(asked)
            return "/completions", body, len(prompt)
        turns = trim_history(turns, tier)
        body["messages"] = turns
        if tier.temperature is not None:  # unset: the server's defaults for its model
            body["temperature"] = tier.temperature
        body.update(asked)
        return "/chat/completions", body, sum(len(turn["content"]) for turn in turns)

    def _stream(
        self, turns, stop: threading.Event, sampling: Sampling | None, started: float, *, queued_ms: int
    ) -> Iterator[str | GenerationResult]:
        if self._closing.is_set():
            raise ModelUnavailableError("The {label} model is shutting down.", label=self.label)
        if stop.is_set():  # stopped while it waited: no request at all
            yield GenerationResult("", 0, 0, "stopped", None, ms_since(started), self.label, queued_ms)
            return
        path, body, prompt_chars = self._build_request(turns, sampling)
        completions = self.tier.api == "completions"
        answer = _Answer(TRANSCRIPT_STOP if completions else [])
        chunks, usage, finish, first_at, lost = 0, None, None, None, ""
        try:
            with self._client.stream("POST", self._url + path, json=body) as response, self._close_on_stop(response, stop):
                if response.status_code != 200:
                    raise self._status_error(response)
                for data in _read_events(response):
                    if stop.is_set() or self._closing.is_set():
                        break
                    if "error" in data:
                        raise self._payload_error(data["error"])
                    usage = data.get("usage") or usage
                    choice = (data.get("choices") or [{}])[0]
                    piece = choice.get("text") if completions else (choice.get("delta") or {}).get("content")
                    if piece:
                        chunks += 1
                        first_at = first_at or time.monotonic()
                        delta = answer.add(piece)
                        if delta:
                            yield delta
                        if answer.hit_stop:
                            finish = "stop"
                            break
                    if choice.get("finish_reason"):
                        finish = "length" if choice["finish_reason"] == "length" else "stop"
        except (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError) as exc:  # the connection was cut
            lost = f" ({type(exc).__name__}: {exc})"
        except httpx.HTTPError as exc:
            if not (stop.is_set() or self._closing.is_set() or finish):
                raise self._transport_error(exc) from exc
        if finish is None and (stop.is_set() or self._closing.is_set()):
            finish = "stopped"
        if finish is None:
            detail = f"{self._url}{path}: the stream ended without a finish_reason after {chunks} chunks{lost}"
            if chunks == 0:  # llama_cpp.server answers a streamed prompt beyond its context this way
                raise GenerationError(
                    "The model server ended the answer before it began; if this chat is long, start a new one.",
                    detail=detail + " (llama_cpp.server does this to a prompt beyond its context)",
                )
            raise GenerationError(
                "The model server ended the answer early, without finishing it; please try again.", detail=detail
            )
        tail = answer.finish()
        if tail:
            yield tail
        usage = usage if isinstance(usage, dict) else {}
        yield GenerationResult(
            text=answer.streamed,
            prompt_tokens=int(usage.get("prompt_tokens") or max(1, prompt_chars // PROMPT_CHARS_PER_TOKEN)),
            completion_tokens=int(usage.get("completion_tokens") or chunks),
            finish_reason=finish,
            ttft_ms=int(round((first_at - started) * 1000)) if first_at else None,
            duration_ms=ms_since(started),
            model_label=self.label,
            queued_ms=queued_ms,
        )

    @contextlib.contextmanager
    def _close_on_stop(self, response: httpx.Response, stop: threading.Event) -> Iterator[None]:
        """While the block runs, a watcher shuts the response's socket as soon as `stop` is set."""
        done, lock = threading.Event(), threading.Lock()

        def watch() -> None:
            while not done.wait(STOP_POLL_S):
                if stop.is_set() or self._closing.is_set():
                    with lock:  # never once the block has ended: the socket is no longer this stream's
                        if not done.is_set():
                            _shut_socket(response)
                    return

        threading.Thread(target=watch, name=f"openai-{self.tier.name}-stop", daemon=True).start()
        try:
            yield
        finally:
            with lock:
                done.set()

    # --- errors ---

    def _status_error(self, response: httpx.Response) -> GemmaChatError:
        body = _read_error_body(response)
        status, excerpt = response.status_code, " ".join(body.split())[:300]
        detail = f"HTTP {status} from {response.request.url}: {excerpt}"
        if status in (401, 403):
            reason = _describe_key_refusal(self.tier, status)
            self._mark_unavailable(reason)
            return ModelUnavailableError(
                "The {label} model is not available: {reason}.", detail=detail, label=self.label, reason=reason
            )
        if status == 400 and _CONTEXT_WORDS.search(body):
            return ContextTooLongError(
                "The conversation is too long for {label}; start a new chat or shorten your message.", detail=detail,
                label=self.label,
            )
        if status in (429, 503):
            return QueueFullError("The {label} server is busy; please try again in a moment.", label=self.label)
        return GenerationError(
            "The {label} server refused the request (HTTP {status}); please try again.", detail=detail,
            label=self.label, status=status,
        )

    def _payload_error(self, error) -> GemmaChatError:
        text = error.get("message", "") if isinstance(error, dict) else str(error)
        detail = f"{self._url}: error in the stream: {str(error)[:300]}"
        if _CONTEXT_WORDS.search(text):
            return ContextTooLongError(
                "The conversation is too long for {label}; start a new chat.", detail=detail, label=self.label
            )
        return GenerationError(
            "The {label} server failed while answering; please try again.", detail=detail, label=self.label
        )

    def _transport_error(self, exc: httpx.HTTPError) -> GemmaChatError:
        detail = f"{type(exc).__name__}: {exc}"
        if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)):
            why = _why_unreachable(exc)
            self._mark_unavailable(f"not reachable at {self._url}: {why}")
            return ModelUnavailableError(
                "The {label} server at {url} is not reachable ({why}); please try again later.", detail=detail,
                label=self.label, url=self._url, why=why,
            )
        if isinstance(exc, httpx.TimeoutException):
            return GenerationError(
                "The {label} server sent nothing for {seconds:g} s, so the answer was abandoned.",
                label=self.label, seconds=self.tier.timeout_s,
                detail=detail,
            )
        return GenerationError(
            "The request to the {label} server failed; please try again.", detail=detail, label=self.label
        )
