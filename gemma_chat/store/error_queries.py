"""The error_events table: one row per unexpected error, its traceback for admins."""

from __future__ import annotations

from .db import ErrorEvent


def insert_error_event(
    error_id: str, location: str, exception_type: str, message: str, traceback: str, *,
    user_id: int | None, request_id: str | None,
) -> None:
    ErrorEvent.create(
        error_id=error_id,
        location=location,
        exception_type=exception_type,
        message=message,
        traceback=traceback,
        user=user_id,
        request_id=request_id,
    )
