"""Web sessions in the database: the sessions rows, found by the sha256 of a cookie's token (accounts/sessions.py)."""

from __future__ import annotations

import datetime as dt
import functools

from .db import User, WebSession, database


def insert_session(token_hash: str, user_id: int, now: dt.datetime, expires_at: dt.datetime) -> None:
    WebSession.create(token_hash=token_hash, user=user_id, created_at=now, last_seen_at=now, expires_at=expires_at)


def delete_sessions_expired_before(cutoff: dt.datetime) -> None:
    WebSession.delete().where(WebSession.expires_at < cutoff).execute()


def find_session_by_token_hash(token_hash: str) -> WebSession | None:
    """The session with its user read in the same query (`.user`)."""
    return WebSession.select(WebSession, User).join(User).where(WebSession.token_hash == token_hash).first()


def touch_session(session_id: int, now: dt.datetime) -> None:
    WebSession.update(last_seen_at=now).where(WebSession.id == session_id).execute()


_LIVENESS_COLUMNS = (WebSession.revoked_at, WebSession.expires_at, WebSession.last_seen_at, User.is_disabled, WebSession.user)
_TOKEN_HASH = "<token hash>"  # where the token's hash goes in the query's parameters (never a real hash)


@functools.lru_cache(maxsize=1)
def _liveness_query() -> tuple[str, tuple]:
    """The liveness query's SQL and parameters, built by Peewee once: building it is most of a lookup's cost."""
    query = WebSession.select(*_LIVENESS_COLUMNS).join(User).where(WebSession.token_hash == _TOKEN_HASH).limit(1)
    sql, params = query.sql()
    return sql, tuple(params)


def find_session_liveness(token_hash: str) -> tuple[dt.datetime | None, dt.datetime, dt.datetime, bool, int] | None:
    """(revoked_at, expires_at, last_seen_at, the user's is_disabled, user id) of the session, at a
    fraction of find_session_by_token_hash's cost: the edge asks on every queue request."""
    sql, params = _liveness_query()
    row = database.execute_sql(sql, [token_hash if p == _TOKEN_HASH else p for p in params]).fetchone()
    if row is None:
        return None
    return tuple(column.python_value(value) for column, value in zip(_LIVENESS_COLUMNS, row))


def revoke_session_by_token_hash(token_hash: str, now: dt.datetime) -> int:
    """End the session if it is not ended yet; how many ended (0 or 1)."""
    return (
        WebSession.update(revoked_at=now)
        .where(WebSession.token_hash == token_hash, WebSession.revoked_at.is_null())
        .execute()
    )


def revoke_sessions_of_user(user_id: int, now: dt.datetime) -> int:
    """End every session of the user not ended yet; how many ended."""
    return WebSession.update(revoked_at=now).where(WebSession.user == user_id, WebSession.revoked_at.is_null()).execute()


def revoke_other_sessions_of_user(user_id: int, keep_session_id: int, now: dt.datetime) -> int:
    """End every session of the user but one; how many ended."""
    return (
        WebSession.update(revoked_at=now)
        .where(WebSession.user == user_id, WebSession.id != keep_session_id, WebSession.revoked_at.is_null())
        .execute()
    )


def count_live_sessions(user_id: int, now: dt.datetime, idle_since: dt.datetime) -> int:
    """Sessions of the user not revoked, not past their absolute end, and seen since `idle_since`."""
    return (
        WebSession.select()
        .where(
            WebSession.user == user_id,
            WebSession.revoked_at.is_null(),
            WebSession.expires_at > now,
            WebSession.last_seen_at >= idle_since,
        )
        .count()
    )
