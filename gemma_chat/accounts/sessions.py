"""Server-side sessions: who a browser is signed in as, bound to the random token in its cookie.

The token is shown to the browser once (in an HttpOnly cookie) and stored only as its sha256, so a
copy of the database signs no one in. A session ends when idle for `session_idle_s`, at
`session_max_age_s` after sign-in, on Log out, and for all of a user's sessions on Log out
everywhere, a password change, disabling and demotion (auth.py). Plain Python: no web framework.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass

from ..config import Settings
from ..errors import DatabaseRetryableError
from ..store import session_queries
from ..store.db import User, transaction, utcnow

SESSION_COOKIE = "gemma_session"

# A session's last_seen_at is written at most this often: reading a session on every event must not
# cost a write transaction each time. Idle expiry is therefore exact to within this many seconds.
TOUCH_EVERY_S = 30


@dataclass(frozen=True)
class SignedIn:
    """What resolving a cookie gives: the user as the database has it now, and which session."""

    user: User
    session_id: int


def session_cookies(cookie_header: str | None) -> list[str]:
    """Every value sent under the session cookie's name, in order: the edge refuses more than one.

    The one parser for the edge and the handlers (Starlette's request.cookies keeps the last of
    two, a naive split the first: a page checked on one cookie ran as another's user). A cookie
    from another port of the same host, with a narrower Path, is how a second one arrives.
    """
    if not cookie_header:
        return []
    values = []
    for part in cookie_header.split(";"):
        name, has_value, value = part.partition("=")
        if has_value and name.strip() == SESSION_COOKIE:
            values.append(value.strip().strip('"'))
    return values


def session_token(cookie_header: str | None) -> str | None:
    """The session token of a Cookie header: None without one, and None with two (nobody is
    signed in by an ambiguous request)."""
    values = session_cookies(cookie_header)
    return values[0] if len(values) == 1 and values[0] else None


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def create_session(settings: Settings, user_id: int, *, now: dt.datetime | None = None) -> str:
    """A new session for the user; returns the token for the cookie (never stored as it is)."""
    now = now or utcnow()
    token = secrets.token_urlsafe(32)
    with transaction():
        session_queries.insert_session(
            hash_token(token), user_id, now, expires_at=now + dt.timedelta(seconds=settings.session_max_age_s)
        )
        # Expired sessions are dead weight: sweep them when sessions are made, which is rare.
        session_queries.delete_sessions_expired_before(now - dt.timedelta(days=1))
    return token


def _is_live(settings: Settings, revoked_at, expires_at, last_seen_at, is_disabled, now: dt.datetime) -> bool:
    return (
        revoked_at is None
        and expires_at > now
        and now - last_seen_at <= dt.timedelta(seconds=settings.session_idle_s)
        and not is_disabled
    )


def resolve_session(settings: Settings, token, *, touch: bool = True, now: dt.datetime | None = None) -> SignedIn | None:
    """The live session for a cookie's token, with its user re-read; None for anything else.

    None: no or malformed token, unknown, revoked, idle too long, past its absolute age, or a
    disabled user. `touch` counts this as activity (a timer tick is not).
    """
    if not isinstance(token, str) or not 20 <= len(token) <= 100:
        return None
    now = now or utcnow()
    row = session_queries.find_session_by_token_hash(hash_token(token))
    if row is None or not _is_live(settings, row.revoked_at, row.expires_at, row.last_seen_at, row.user.is_disabled, now):
        return None
    if touch and now - row.last_seen_at > dt.timedelta(seconds=TOUCH_EVERY_S):
        try:
            with transaction():
                session_queries.touch_session(row.id, now)
        except DatabaseRetryableError:
            pass  # a locked or full database must not sign anyone out or stop reads; the next event touches it
    return SignedIn(row.user, row.id)


def ended_because_disabled(token) -> bool:
    """Whether this cookie's session belongs to a disabled account: the page then says so."""
    if not isinstance(token, str) or not 20 <= len(token) <= 100:
        return False
    row = session_queries.find_session_by_token_hash(hash_token(token))
    return row is not None and bool(row.user.is_disabled)


def live_session_user(settings: Settings, token, *, now: dt.datetime | None = None) -> int | None:
    """The user id of resolve_session(touch=False), at a fraction of its cost: the edge asks on every
    queue request. The same conditions (_is_live) on the same columns."""
    if not isinstance(token, str) or not 20 <= len(token) <= 100:
        return None
    liveness = session_queries.find_session_liveness(hash_token(token))
    if liveness is None:
        return None
    *state, user_id = liveness
    return user_id if _is_live(settings, *state, now or utcnow()) else None


def has_live_session(settings: Settings, token, *, now: dt.datetime | None = None) -> bool:
    return live_session_user(settings, token, now=now) is not None


def revoke_session(token, *, now: dt.datetime | None = None) -> bool:
    """Log out: end the session of this token. True when a live session ended."""
    if not isinstance(token, str) or not token:
        return False
    with transaction():
        ended = session_queries.revoke_session_by_token_hash(hash_token(token), now or utcnow())
    return ended > 0


def revoke_user_sessions(user_id: int, *, now: dt.datetime | None = None) -> int:
    """Log out everywhere: end every session of the user. Returns how many ended."""
    with transaction():
        return session_queries.revoke_sessions_of_user(user_id, now or utcnow())


def revoke_other_sessions(user_id: int, keep_session_id: int, *, now: dt.datetime | None = None) -> int:
    """A password change from one browser: every other session of the user ends, this one stays."""
    with transaction():
        return session_queries.revoke_other_sessions_of_user(user_id, keep_session_id, now or utcnow())
