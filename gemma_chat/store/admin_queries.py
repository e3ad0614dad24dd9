"""The administrator's tables: admin_actions (append-only), and the per-account figures the Admin tab's
accounts list shows beside each user (accounts/admin.py)."""

from __future__ import annotations

import datetime as dt

import peewee as pw

from .db import AdminAction, Interaction, LoginThrottle, User, WebSession


def insert_admin_action(actor_id: int | None, actor_name: str, action: str, target_id: int | None, detail: str = "") -> None:
    AdminAction.create(actor=actor_id, actor_name=actor_name, action=action, target=target_id, detail=detail)


def list_recent_actions(limit: int) -> list[tuple[dt.datetime, str, str, str | None, str]]:
    """(time, actor's name, action, target's username or None, detail) of the latest actions, newest first."""
    target = User.alias()
    return list(
        AdminAction.select(AdminAction.created_at, AdminAction.actor_name, AdminAction.action, target.username, AdminAction.detail)
        .join(target, pw.JOIN.LEFT_OUTER, on=(AdminAction.target == target.id))
        .order_by(AdminAction.id.desc()).limit(limit).tuples()
    )


def _users_matching(search: str):
    query = User.select()
    if search:
        query = query.where(User.username.contains(search))  # case-insensitive, wildcards escaped
    return query


def count_users_matching(search: str) -> int:
    """Users whose name contains `search` (every user for "")."""
    return _users_matching(search).count()


def find_users_page(search: str, page: int, page_size: int) -> list[User]:
    """One page of the users whose name contains `search`, by name in any letter case."""
    return list(_users_matching(search).order_by(pw.fn.lower(User.username)).paginate(page, page_size))


def count_requests_by_user(user_ids: list[int]) -> dict[int, int]:
    """How many interactions each of these users has (users with none are left out)."""
    if not user_ids:
        return {}
    return dict(
        Interaction.select(Interaction.user, pw.fn.COUNT(Interaction.id)).where(Interaction.user.in_(user_ids))
        .group_by(Interaction.user).tuples()
    )


def latest_session_start_by_user(user_ids: list[int]) -> dict[int, dt.datetime | str]:
    """When each of these users' newest session began (users with none are left out)."""
    if not user_ids:
        return {}
    return dict(
        WebSession.select(WebSession.user, pw.fn.MAX(WebSession.created_at)).where(WebSession.user.in_(user_ids))
        .group_by(WebSession.user).tuples()
    )


def find_locked_username_keys(username_keys: list[str], now: dt.datetime) -> set[str]:
    """Those of these username keys that some client is locked out of at `now`."""
    if not username_keys:
        return set()
    return {
        key for (key,) in LoginThrottle.select(LoginThrottle.username_key)
        .where(LoginThrottle.locked_until > now, LoginThrottle.username_key.in_(username_keys)).tuples()
    }
