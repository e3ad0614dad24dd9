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

from .config import Settings
from .db import User, WebSession, transaction, utcnow

# A session's last_seen_at is written at most this often: reading a session on every event must not
# cost a write transaction each time. Idle expiry is therefore exact to within this many seconds.
TOUCH_EVERY_S = 30


@dataclass(frozen=True)
class SignedIn:
    """What resolving a cookie gives: the user as the database has it now, and which session."""

    user: User
    session_id: int


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def create_session(settings: Settings, user_id: int, *, now: dt.datetime | None = None) -> str:
    """A new session for the user; returns the token for the cookie (never stored as it is)."""
    now = now or utcnow()
    token = secrets.token_urlsafe(32)
    with transaction():
        WebSession.create(
            token_hash=hash_token(token),
            user=user_id,
            created_at=now,
            last_seen_at=now,
            expires_at=now + dt.timedelta(seconds=settings.session_max_age_s),
        )
        # Expired sessions are dead weight: sweep them when sessions are made, which is rare.
        WebSession.delete().where(WebSession.expires_at < now - dt.timedelta(days=1)).execute()
    return token


def resolve_session(settings: Settings, token, *, touch: bool = True, now: dt.datetime | None = None) -> SignedIn | None:
    """The live session for a cookie's token, with its user re-read; None for anything else.

    None: no or malformed token, unknown, revoked, idle too long, past its absolute age, or a
    disabled user. `touch` counts this as activity (a timer tick is not).
    """
    if not isinstance(token, str) or not 20 <= len(token) <= 100:
        return None
    now = now or utcnow()
    row = (
        WebSession.select(WebSession, User)
        .join(User)
        .where(WebSession.token_hash == hash_token(token))
        .first()
    )
    if row is None or row.revoked_at is not None or row.expires_at <= now:
        return None
    if now - row.last_seen_at > dt.timedelta(seconds=settings.session_idle_s):
        return None
    if row.user.is_disabled:
        return None
    if touch and now - row.last_seen_at > dt.timedelta(seconds=TOUCH_EVERY_S):
        with transaction():
            WebSession.update(last_seen_at=now).where(WebSession.id == row.id).execute()
    return SignedIn(row.user, row.id)


def revoke_session(token, *, now: dt.datetime | None = None) -> bool:
    """Log out: end the session of this token. True when a live session ended."""
    if not isinstance(token, str) or not token:
        return False
    with transaction():
        ended = (
            WebSession.update(revoked_at=now or utcnow())
            .where(WebSession.token_hash == hash_token(token), WebSession.revoked_at.is_null())
            .execute()
        )
    return ended > 0


def revoke_user_sessions(user_id: int, *, now: dt.datetime | None = None) -> int:
    """Log out everywhere: end every session of the user. Returns how many ended."""
    with transaction():
        return (
            WebSession.update(revoked_at=now or utcnow())
            .where(WebSession.user == user_id, WebSession.revoked_at.is_null())
            .execute()
        )


def live_sessions(user_id: int, settings: Settings, *, now: dt.datetime | None = None) -> int:
    """How many sessions of the user are live now (for the CLI and tests)."""
    now = now or utcnow()
    idle_since = now - dt.timedelta(seconds=settings.session_idle_s)
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


def revoke_other_sessions(user_id: int, keep_session_id: int, *, now: dt.datetime | None = None) -> int:
    """A password change from one browser: every other session of the user ends, this one stays."""
    with transaction():
        return (
            WebSession.update(revoked_at=now or utcnow())
            .where(WebSession.user == user_id, WebSession.id != keep_session_id, WebSession.revoked_at.is_null())
            .execute()
        )
