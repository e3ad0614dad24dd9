"""Error events: the full details for admins (error table + rotating file), a short id for users.

Also the app's log lines: human text by default; with log_format = "json" (`--log-format json`)
one JSON object per line (time, level, event, message, and request_id, user_id, tier… where known),
on stdout for a log shipper and in the file alike.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import logging.handlers
import secrets
import sys
import traceback as tb
from pathlib import Path

from ..store import error_queries
from ..store.db import retryable_error

logger = logging.getLogger("gemma_chat")


class _QuietRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """A log file that cannot be written (a full disk) costs the lines, never the request, and
    says so once on stderr (one line, not logging's traceback per record) until a write succeeds."""

    failing = False

    def emit(self, record: logging.LogRecord) -> None:
        self._failed = False
        super().emit(record)  # calls handleError instead of raising
        if not self._failed:
            self.failing = False

    def handleError(self, record: logging.LogRecord) -> None:
        self._failed = True
        if not self.failing:
            self.failing = True
            print(f"gemma-chat: cannot write the log file {self.baseFilename} ({sys.exc_info()[1]}); "
                  "log lines are lost until it can", file=sys.stderr, flush=True)


TEXT_FORMAT = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
# What a line may say besides its message, passed as `extra=` by the code that logs it.
CONTEXT_FIELDS = ("request_id", "user_id", "tier", "outcome", "credits", "error_id", "location")


class JsonLines(logging.Formatter):
    """One JSON object per record: what a log shipper parses without a pattern."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": dt.datetime.fromtimestamp(record.created, dt.timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "event": getattr(record, "event", "log"),
            "message": record.getMessage(),
        }
        entry.update({name: getattr(record, name) for name in CONTEXT_FIELDS if getattr(record, name, None) is not None})
        if record.exc_info:
            entry["traceback"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


_json_stdout = False


def configure_file_log(path: Path, log_format: str = "text") -> None:
    """A rotating log in the data dir (5 x 2 MB), and for "json" the same lines on stdout too.

    Called once per process by the edges; a second call for the same file changes nothing.
    """
    global _json_stdout
    path.parent.mkdir(parents=True, exist_ok=True)
    for handler in logger.handlers:
        if isinstance(handler, logging.handlers.RotatingFileHandler) and Path(handler.baseFilename) == path.resolve():
            return
    formatter = JsonLines() if log_format == "json" else TEXT_FORMAT
    handler = _QuietRotatingFileHandler(path, maxBytes=2_000_000, backupCount=5, encoding="utf-8")
    handler.setFormatter(formatter)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    if log_format == "json" and not _json_stdout:
        stdout = logging.StreamHandler(sys.stdout)
        stdout.setFormatter(formatter)
        logger.addHandler(stdout)
        _json_stdout = True


def announce(event: str, message: str, *, level: int = logging.INFO) -> None:
    """A line for whoever started the app (the model plan, "running at", warnings): plain text on
    stdout, or with the JSON log format a JSON line like every other."""
    if _json_stdout:
        logger.log(level, message, extra={"event": event})
    else:
        print(message, flush=True)


def new_error_id() -> str:
    return "E-" + secrets.token_hex(4).upper()


def log_error(
    location: str,
    exc: BaseException,
    *,
    user_id: int | None = None,
    request_id: str | None = None,
    detail: str = "",
) -> str:
    """Store an error with its traceback; return the short id to show the user.

    Call it outside any transaction the failure rolls back, or the row goes with it.
    """
    error_id = new_error_id()
    trace = "".join(tb.format_exception(type(exc), exc, exc.__traceback__))
    if detail:
        trace = f"{trace}\ndetail: {detail}"
    message = str(exc) or type(exc).__name__
    logger.error(
        "%s at %s (user %s, request %s): %s\n%s", error_id, location, user_id, request_id, message, trace,
        extra={"event": "error", "error_id": error_id, "location": location, "user_id": user_id, "request_id": request_id},
    )
    try:
        error_queries.insert_error_event(
            error_id, location, type(exc).__name__, message, trace, user_id=user_id, request_id=request_id
        )
    except Exception as store_exc:  # the database itself may be the failure: the file log has it
        if retryable_error(store_exc) is None:
            logger.exception("could not store error %s in the database", error_id)
    return error_id

