"""/v1: an OpenAI-compatible API on the app's own port, billed to the same balance as the chat window.

A request is authenticated by its API key (`Authorization: Bearer gck_...`, accounts/keys.py), never by a
cookie. A completion is one chat turn through turn.run_turn (hold → stream → capture or release),
run in its own thread: a client that goes away sets the turn's stop event, so a disconnect before
any text is released and one after text is charged as Stop, exactly as in the UI.

Accepted as OpenAI sends them: `model` (a tier's name), `messages` (system text is folded into the
next user turn, since the models take user/assistant turns), `max_tokens` / `max_completion_tokens`
(capped at the tier's; counted in streamed pieces, about one token each), `stop` (applied here, to
the text), `stream`, `stream_options.include_usage`, and `temperature` (0 to 2) and `top_p` (0 to
1), which the model samples with for this request instead of its tier's settings. `n` may only be 1.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import dataclass, field

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse

from ..accounts import keys
from ..billing import idempotency, ledger
from ..chats import turn
from ..backends.base import Sampling, stop_prefix_length
from ..config import Settings
from ..ops.error_log import log_error
from ..errors import GemmaChatError, ValidationError
from ..throttle import RateLimiter

MAX_BODY_BYTES = 4 * 1024 * 1024
MAX_STOP_SEQUENCES = 4
MAX_STOP_CHARS = 200
DISCONNECT_POLL_S = 0.25
BUSY_RETRY_AFTER_S = 2
IDEMPOTENT_WAIT_S = 600  # how long a duplicate waits for the first request to finish
ROLES = ("system", "developer", "user", "assistant")


class ApiError(Exception):
    """An answer in OpenAI's error shape: {"error": {"message", "type", "param", "code"}}."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None, retry_after: int | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.retry_after = retry_after

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def bad_request(message: str, param: str | None) -> ApiError:
    return ApiError(400, message, param=param, code="invalid_value" if param else None)


@dataclass(frozen=True)
class CompletionRequest:
    tier: str
    history: list[tuple[str, str]]  # earlier (user, assistant) turns
    prompt: str  # the last user turn, with any system text folded in
    max_tokens: int
    stream: bool
    include_usage: bool
    stops: tuple[str, ...]
    sampling: Sampling  # temperature / top_p as asked; unset fields keep the tier's
    canonical: dict = field(repr=False)  # the body as parsed: what an Idempotency-Key is checked against


# --- the request body ---------------------------------------------------------------------------


def parse_body(raw: bytes) -> dict:
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        raise bad_request("The body is not valid JSON.", None) from None
    if not isinstance(body, dict):
        raise bad_request("The body must be a JSON object.", None)
    return body


def _text(value, param: str) -> str:
    """A message's content: a string, or a list of text parts (the newer shape)."""
    if isinstance(value, list):
        parts = []
        for i, part in enumerate(value):
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise bad_request("Only text content parts are supported.", f"{param}[{i}]")
            parts.append(part["text"])
        value = "\n".join(parts)
    if not isinstance(value, str):
        raise bad_request("A message's content must be a string or a list of text parts.", param)
    if "\x00" in value:
        raise bad_request("A message contains a NUL character.", param)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise bad_request("A message contains an invalid character.", param) from None
    return value


def fold_messages(messages) -> tuple[list[tuple[str, str]], str]:
    """OpenAI messages → earlier (user, assistant) turns and the last user turn.

    System (and developer) text goes in front of the next user turn, or after the last one when it
    comes last; consecutive turns of one role are joined.
    """
    if not isinstance(messages, list) or not messages:
        raise bad_request("messages must be a non-empty list.", "messages")
    turns: list[list[str]] = []  # [role, text]
    pending_system: list[str] = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise bad_request("Each message must be an object.", f"messages[{i}]")
        role = message.get("role")
        if role not in ROLES:
            raise bad_request(f"A message's role must be one of {', '.join(ROLES)}.", f"messages[{i}].role")
        text = _text(message.get("content"), f"messages[{i}].content")
        if role in ("system", "developer"):
            pending_system.append(text)
            continue
        if role == "user" and pending_system:
            text = "\n\n".join(pending_system + [text])
            pending_system = []
        if turns and turns[-1][0] == role:
            turns[-1][1] += "\n\n" + text
        else:
            turns.append([role, text])
    if not turns or turns[-1][0] != "user":
        raise bad_request("The last message (besides system ones) must be from the user.", "messages")
    if pending_system:
        turns[-1][1] += "\n\n" + "\n\n".join(pending_system)
    history, user_text = [], ""
    for role, text in turns[:-1]:
        if role == "user":
            user_text = text
        else:
            history.append((user_text, text))
            user_text = ""
    return history, turns[-1][1]


def _number(body: dict, name: str, low: float, high: float) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise bad_request(f"{name} must be a number from {low:g} to {high:g}.", name)
    return float(value)


def parse_completion(body: dict, settings: Settings, tiers: dict) -> CompletionRequest:
    """Validate a /v1/chat/completions body. `tiers`: the engine's TierStatus by name."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise bad_request("model is required: one of the names /v1/models lists.", "model")
    if model not in tiers or model not in settings.tiers:
        raise ApiError(404, f"The model {model[:40]!r} does not exist; GET /v1/models lists them.",
                       param="model", code="model_not_found")
    history, prompt = fold_messages(body.get("messages"))
    cap = tiers[model].max_tokens
    max_tokens = cap
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise bad_request(f"{name} must be a whole number from 1.", name)
        max_tokens = min(value, cap)
    # max_tokens counts model tokens: the model enforces it and says "length" when it ended the answer.
    sampling = Sampling(
        temperature=_number(body, "temperature", 0, 2), top_p=_number(body, "top_p", 0, 1),
        max_tokens=max_tokens if max_tokens < cap else None,
    )
    n = body.get("n")
    if n is not None and (isinstance(n, bool) or n != 1):
        raise bad_request("Only n = 1 is supported.", "n")
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise bad_request("stream must be true or false.", "stream")
    options = body.get("stream_options")
    include_usage = False
    if options is not None:
        if not isinstance(options, dict):
            raise bad_request("stream_options must be an object.", "stream_options")
        include_usage = options.get("include_usage")
        if include_usage is not None and not isinstance(include_usage, bool):
            raise bad_request("stream_options.include_usage must be true or false.", "stream_options.include_usage")
    stops = body.get("stop")
    if stops is None:
        stops = []
    elif isinstance(stops, str):
        stops = [stops]
    if (
        not isinstance(stops, list)
        or len(stops) > MAX_STOP_SEQUENCES
        or not all(isinstance(s, str) and 0 < len(s) <= MAX_STOP_CHARS for s in stops)
    ):
        raise bad_request(f"stop must be a string or a list of at most {MAX_STOP_SEQUENCES} non-empty strings.", "stop")
    return CompletionRequest(
        tier=model, history=history, prompt=prompt, max_tokens=max_tokens, stream=bool(stream),
        include_usage=bool(include_usage), stops=tuple(stops), sampling=sampling, canonical=body,
    )


# --- stop sequences -----------------------------------------------------------------------------


def cut_at_stop(text: str, stops) -> tuple[str, bool]:
    found = [text.find(s) for s in stops if s in text]
    return (text[: min(found)], True) if found else (text, False)


def safe_length(text: str, stops) -> int:
    """How much of `text` may be sent: a tail that could begin a stop sequence waits for more."""
    return len(text) - stop_prefix_length(text, stops)


# --- one completion, run in its own thread --------------------------------------------------------


class Completion:
    """turn.run_turn in a thread, its updates handed to the event loop; `stop` ends it (as Stop does)."""

    def __init__(self, settings: Settings, engine, user_id: int, request: CompletionRequest, loop,
                 idempotency_key: str | None = None):
        self.idempotency_key = idempotency_key
        self.settings = settings
        self.engine = engine
        self.user_id = user_id
        self.request = request
        self.loop = loop
        self.stop = threading.Event()
        self.updates: asyncio.Queue = asyncio.Queue()
        self.finish_reason: str | None = None  # set when a stop sequence ended the answer
        self.created = int(time.time())
        self.request_id: str | None = None

    def start(self) -> None:
        threading.Thread(target=self._run, name="api-completion", daemon=True).start()

    def _run(self) -> None:
        final = None
        try:
            for update in turn.run_turn(
                self.settings, self.engine, self.user_id, self.request.tier, self.request.prompt,
                self.request.history, stop=self.stop, source="api", sampling=self.request.sampling,
            ):
                self.request_id = update.request_id or self.request_id
                if update.status == "streaming" and self.finish_reason is None:
                    if cut_at_stop(update.answer, self.request.stops)[1]:
                        self.finish_reason = "stop"
                        self.stop.set()
                if update.final:
                    final = update
                self._hand_over(update)
        except Exception as exc:  # noqa: BLE001 — run_turn settles its own hold; this is ours
            error_id = log_error("api:completion", exc, user_id=self.user_id)
            final = turn.TurnUpdate("error", message=f"Something went wrong (error {error_id}).")
            self._hand_over(final)
        if self.idempotency_key is not None:
            self._remember(final)

    def _hand_over(self, update: turn.TurnUpdate) -> None:
        try:
            self.loop.call_soon_threadsafe(self.updates.put_nowait, update)
        except RuntimeError:  # the event loop is gone (shutting down): the turn still settles here
            pass

    def _remember(self, final: turn.TurnUpdate | None) -> None:
        """Keep the outcome for a retry with the same key: here, so a client that left still gets it."""
        try:
            error = turn_error(final) if final is not None else ApiError(503, "No outcome.")
            result = self.result(final) if error is None else None
            idempotency.finish_key(self.user_id, self.idempotency_key, self.request_id,
                                   200 if error is None else error.status, result)
        except Exception as exc:  # noqa: BLE001 — the claim goes stale and is taken over later
            log_error("api:idempotency", exc, user_id=self.user_id, request_id=self.request_id)

    def text(self, answer: str, *, final: bool) -> str:
        """What the client may see of `answer` so far."""
        text, _ = cut_at_stop(answer, self.request.stops)
        return text if final else text[: safe_length(text, self.request.stops)]

    @property
    def id(self) -> str:
        return f"chatcmpl-{self.request_id or 'none'}"

    def usage(self, final: turn.TurnUpdate) -> dict:
        prompt, completion = final.prompt_tokens or 0, final.completion_tokens or 0
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    def result(self, final: turn.TurnUpdate) -> dict:
        reason = self.finish_reason or ("length" if final.finish_reason == "length" else "stop")
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.request.tier,
            "choices": [{
                "index": 0, "message": {"role": "assistant", "content": self.text(final.answer, final=True)},
                "finish_reason": reason, "logprobs": None,
            }],
            "usage": self.usage(final),
            "credits_charged": final.credits_charged,
        }


def turn_error(final: turn.TurnUpdate) -> ApiError | None:
    """The HTTP error for a turn that did not answer; None for an answer (empty or not)."""
    if final.status in ("ok", "stopped"):
        return None
    if final.status == "refused":
        return ApiError(402, final.message, type="insufficient_quota", code="insufficient_credits")
    if final.status == "busy":
        return ApiError(429, final.message, type="rate_limit_exceeded", code="model_busy", retry_after=BUSY_RETRY_AFTER_S)
    if final.status == "rejected":
        return bad_request(final.message, "messages")
    return ApiError(503, final.message or "The model failed to answer. Nothing was charged.", type="server_error",
                    code="model_error")


def chunk(completion: Completion, delta: dict, finish_reason=None, *, usage=False) -> str:
    data = {
        "id": completion.id, "object": "chat.completion.chunk", "created": completion.created,
        "model": completion.request.tier,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}],
    }
    if usage:
        data["usage"] = None
    return f"data: {json.dumps(data)}\n\n"


def replayed_stream(result: dict, include_usage: bool):
    """A kept result, sent again as the stream it once was (shorter: one piece of text)."""
    choice = result["choices"][0]
    base = {"id": result["id"], "object": "chat.completion.chunk", "created": result["created"], "model": result["model"]}
    extra = {"usage": None} if include_usage else {}
    yield "data: " + json.dumps({**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": choice["message"]["content"]}, "finish_reason": None}], **extra}) + "\n\n"
    yield "data: " + json.dumps({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": choice["finish_reason"]}], **extra}) + "\n\n"
    if include_usage:
        yield "data: " + json.dumps({**base, "choices": [], "usage": result["usage"]}) + "\n\n"
    yield "data: [DONE]\n\n"


class TurnStream(StreamingResponse):
    """A streamed answer whose turn is told to stop however the response ends (a closed client is Stop)."""

    def __init__(self, chunks, completion: Completion, **kwargs):
        super().__init__(chunks, **kwargs)
        self.completion = completion

    async def __call__(self, scope, receive, send):
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.completion.stop.set()


# --- the router ---------------------------------------------------------------------------------


def create_api_router(settings: Settings, engine) -> APIRouter:
    router = APIRouter(prefix="/v1")
    per_user = RateLimiter(settings.api_rate_per_minute, 60)

    def error_response(exc: ApiError, user_id: int | None = None, remaining: int | None = None) -> JSONResponse:
        headers = {}
        if exc.retry_after:
            headers["Retry-After"] = str(exc.retry_after)
        if exc.status == 401:
            headers["WWW-Authenticate"] = "Bearer"
        if remaining is not None:
            headers["X-Credits-Remaining"] = str(remaining)
        return JSONResponse(exc.body(), status_code=exc.status, headers=headers)

    async def credits_of(user_id: int) -> int:
        return (await asyncio.to_thread(ledger.get_balance, user_id)).available

    async def authenticate(request: Request):
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        user = None
        if scheme.lower() == "bearer" and token.strip():
            user = await asyncio.to_thread(keys.resolve_key, token.strip())
        if user is None:
            raise ApiError(401, "Missing or invalid API key: send Authorization: Bearer <key> (Account tab or `keys create`).",
                           code="invalid_api_key")
        if wait := per_user.hit(str(user.id)):
            raise ApiError(429, f"Too many API requests; the limit is {settings.api_rate_per_minute} a minute.",
                           type="rate_limit_exceeded", code="rate_limit_exceeded", retry_after=wait)
        return user

    async def read_body(request: Request) -> bytes:
        chunks, size = [], 0
        async for piece in request.stream():
            size += len(piece)
            if size > MAX_BODY_BYTES:
                raise ApiError(413, f"The body is larger than {MAX_BODY_BYTES // 1024 // 1024} MB.")
            chunks.append(piece)
        return b"".join(chunks)

    def tier_statuses() -> dict:
        return {status.tier: status for status in engine.tiers()}

    @router.get("/models")
    async def list_models(request: Request):
        try:
            user = await authenticate(request)
        except ApiError as exc:
            return error_response(exc)
        data = [
            {"id": s.tier, "object": "model", "created": 0, "owned_by": "gemma-chat", "name": s.label,
             "price": s.price, "max_tokens": s.max_tokens}
            for s in tier_statuses().values() if s.available
        ]
        return JSONResponse({"object": "list", "data": data}, headers={"X-Credits-Remaining": str(await credits_of(user.id))})

    @router.post("/chat/completions")
    async def chat_completions(request: Request):
        user_id = None
        try:
            user = await authenticate(request)
            user_id = user.id
            body = parse_body(await read_body(request))
            tiers = tier_statuses()
            parsed = parse_completion(body, settings, tiers)
            if not tiers[parsed.tier].available:
                raise ApiError(503, f"{tiers[parsed.tier].label} is not available: {tiers[parsed.tier].reason}",
                               type="server_error", code="model_unavailable")
            key = request.headers.get("idempotency-key")
            if key is not None:
                try:
                    key = idempotency.validate_key(key)
                except ValidationError as exc:
                    raise bad_request(exc.message, "Idempotency-Key") from None
                replay = await claimed(user_id, key, idempotency.body_hash(body), request)
                if replay is not None:
                    return await replayed(user_id, parsed, replay)
            return await complete(request, user_id, parsed, key)
        except ApiError as exc:
            remaining = await credits_of(user_id) if user_id is not None else None
            return error_response(exc, user_id, remaining)
        except GemmaChatError as exc:
            return error_response(bad_request(exc.message, None), user_id)
        except Exception as exc:  # noqa: BLE001 — a short answer with an id; the traceback goes to the log
            error_id = await asyncio.to_thread(log_error, "api:chat_completions", exc, user_id=user_id)
            return error_response(ApiError(500, f"Something went wrong (error {error_id}).", type="server_error"), user_id)

    async def claimed(user_id: int, key: str, digest: str, request: Request) -> dict | None:
        """Own the key (None: run the request) or the first request's kept result (replay it)."""
        deadline = time.monotonic() + IDEMPOTENT_WAIT_S
        while True:
            claim = await asyncio.to_thread(idempotency.claim_key, user_id, key, digest, stale_after_s=settings.stale_hold_s)
            if claim.state == "run":
                return None
            if claim.state == "done":
                return claim.response
            if claim.state == "conflict":
                raise ApiError(400, "This Idempotency-Key was already used with a different body.",
                               param="Idempotency-Key", code="idempotency_key_reused")
            if time.monotonic() > deadline or await request.is_disconnected():
                raise ApiError(409, "The first request with this Idempotency-Key is still running; try again later.",
                               code="idempotency_key_in_use")
            await asyncio.sleep(0.2)  # the first request with this key is running: wait for its result

    async def replayed(user_id: int, parsed: CompletionRequest, result: dict):
        headers = {"X-Credits-Remaining": str(await credits_of(user_id)), "Idempotent-Replayed": "true"}
        if parsed.stream:
            return StreamingResponse(replayed_stream(result, parsed.include_usage), media_type="text/event-stream", headers=headers)
        return JSONResponse(result, headers=headers)

    async def complete(request: Request, user_id: int, parsed: CompletionRequest, key: str | None):
        completion = Completion(settings, engine, user_id, parsed, asyncio.get_running_loop(), key)

        async def next_update() -> turn.TurnUpdate:
            """The next update; a client gone meanwhile stops the turn (released, or charged as Stop)."""
            while True:
                try:
                    return await asyncio.wait_for(completion.updates.get(), DISCONNECT_POLL_S)
                except asyncio.TimeoutError:
                    if not completion.stop.is_set() and await request.is_disconnected():
                        completion.stop.set()

        completion.start()
        try:
            # Nothing is sent until there is text or an outcome, so a refusal is a plain HTTP error.
            while True:
                update = await next_update()
                if update.final or (parsed.stream and completion.text(update.answer, final=False)):
                    break
        except BaseException:
            completion.stop.set()
            raise
        if update.final:
            remaining = str(await credits_of(user_id))
            error = turn_error(update)
            if error is not None:
                raise error
            if not parsed.stream:
                return JSONResponse(completion.result(update), headers={"X-Credits-Remaining": remaining})
            return TurnStream(whole_stream(completion, update, parsed), completion, media_type="text/event-stream",
                              headers={"X-Credits-Remaining": remaining})

        async def streamed(first: turn.TurnUpdate):
            sent = 0
            update = first
            yield chunk(completion, {"role": "assistant", "content": ""}, usage=parsed.include_usage)
            while True:
                text = completion.text(update.answer, final=update.final)
                if len(text) > sent:
                    yield chunk(completion, {"content": text[sent:]}, usage=parsed.include_usage)
                    sent = len(text)
                if update.final:
                    break
                update = await next_update()
            error = turn_error(update)
            if error is not None:
                yield f"data: {json.dumps(error.body())}\n\n"
                return
            yield chunk(completion, {}, completion.result(update)["choices"][0]["finish_reason"], usage=parsed.include_usage)
            if parsed.include_usage:
                yield "data: " + json.dumps({
                    "id": completion.id, "object": "chat.completion.chunk", "created": completion.created,
                    "model": parsed.tier, "choices": [], "usage": completion.usage(update),
                }) + "\n\n"
            yield "data: [DONE]\n\n"

        remaining = str(await credits_of(user_id))
        return TurnStream(streamed(update), completion, media_type="text/event-stream",
                          headers={"X-Credits-Remaining": remaining, "Cache-Control": "no-cache"})

    @router.api_route("/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"])
    async def unknown_endpoint(request: Request, path: str):
        """Anything else under /v1 gets an OpenAI-shaped 404, not the UI's page."""
        return error_response(ApiError(404, f"No endpoint {request.method} /v1/{path[:60]} here; this server has "
                                            "GET /v1/models and POST /v1/chat/completions.", code="unknown_url"))

    async def whole_stream(completion: Completion, final: turn.TurnUpdate, parsed: CompletionRequest):
        """An answer that ended before any text was sent (an empty one): its whole stream at once."""
        for line in replayed_stream(completion.result(final), parsed.include_usage):
            yield line

    return router
