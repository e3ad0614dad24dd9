"""The Admin tab's Users section: accounts with balance, role, state and use, searched and paged, and
the actions on one account (grant credits, disable, enable, promote, demote, unlock, set a password,
create an account), with the latest administrator actions below.

A mixin of ChatApp (ui/app.py): every callback resolves the administrator from the request's session
cookie and re-checks it in the database (accounts/admin.py checks again inside each action's transaction).
A refusal of the caller is a popup; a refused action (the last administrator, a bad amount) is the
section's message.
"""

from __future__ import annotations

import gradio as gr
import pandas as pd

from ...accounts import admin
from ...errors import GemmaChatError
from ...numbers import page_bounds
from ..markup import as_literal
from ..text import code_name, columns, language_of, text, translated

USERS_PAGE_SIZE = 20
ACCOUNT_ACTIONS = ("disable", "enable", "promote", "demote", "unlock")  # each asks before it acts
MAX_SEARCH_CHARS = 64
USER_COLUMN_KEYS = ["col_user", "col_balance", "col_held", "col_role", "col_state", "col_last_login", "col_requests"]
ACTION_COLUMN_KEYS = ["col_time", "col_by", "col_action", "col_account", "col_detail"]


def _page_number(value) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 1 else 1


def _search_text(value) -> str:
    return value.strip()[:MAX_SEARCH_CHARS] if isinstance(value, str) else ""


class AdminUsersSection:
    USER_COLUMNS = columns("en", USER_COLUMN_KEYS)
    ACTION_COLUMNS = columns("en", ACTION_COLUMN_KEYS)

    def _users_view(self, search, page, language: str = "en") -> dict:
        search, page = _search_text(search), _page_number(page)
        rows, total = admin.list_accounts(search, page=page, page_size=USERS_PAGE_SIZE)
        page, pages = page_bounds(page, total, USERS_PAGE_SIZE)  # past the end: the last page, as list_accounts gave
        never = text(language, "never")
        table = pd.DataFrame(
            [[r.username, r.balance, r.held, code_name(language, "role", r.role), code_name(language, "state", r.state),
              f"{r.last_login_at:%Y-%m-%d %H:%M}" if r.last_login_at else never, r.requests] for r in rows],
            columns=columns(language, USER_COLUMN_KEYS),
        )
        actions = pd.DataFrame(
            [[f"{when:%Y-%m-%d %H:%M:%S}", by, code_name(language, "action", action), target, detail]
             for when, by, action, target, detail in admin.recent_actions()],
            columns=columns(language, ACTION_COLUMN_KEYS),
        )
        label = text(language, "users_page_matching" if search else "users_page", page=page, pages=pages, total=total, search=search)
        return {"users_table": table, "users_page_label": label, "users_page": page, "admin_actions_table": actions}

    def _shower(self, dialog: str, visible: bool):
        """Open or close a dialog of the section; like every event here, for an administrator only."""
        def show(request: gr.Request):
            self.current_user(request, admin=True)
            return {dialog: gr.update(visible=visible)}

        return show

    def _asker(self, action: str):
        def ask(request: gr.Request, target):
            return self.ask_to_confirm(request, target, action)

        return ask

    def users_state(self, request: gr.Request, search, page):
        self.current_user(request, admin=True)
        return {**self._users_view(search, page, language_of(request)), "users_message": ""}

    def users_search(self, request: gr.Request, search, page):
        return self.users_state(request, search, 1)

    def users_previous(self, request: gr.Request, search, page):
        return self.users_state(request, search, max(1, _page_number(page) - 1))

    def users_next(self, request: gr.Request, search, page):
        return self.users_state(request, search, _page_number(page) + 1)

    def select_account(self, request: gr.Request, event: gr.SelectData):
        """A click on a row of the table chooses its account for the actions."""
        self.current_user(request, admin=True)
        row = getattr(event, "row_value", None)
        if isinstance(row, (list, tuple)) and row and isinstance(row[0], str):
            return {"admin_target": row[0]}
        return {}

    def ask_to_confirm(self, request: gr.Request, target, action: str) -> dict:
        """An account action's button: the question, with the one button that does it; nothing is done yet.
        Without an account chosen, the reason is said under the actions instead."""
        self.current_user(request, admin=True)
        language = language_of(request)
        username = target.strip() if isinstance(target, str) else ""
        hidden = {f"{name}_confirm": gr.update(visible=False) for name in ACCOUNT_ACTIONS}
        if not username:
            return {"users_confirm": gr.update(visible=False), "users_message": f"⚠ {text(language, 'choose_account_first')}", **hidden}
        question = text(language, "confirm_account_action", action=text(language, f"{action}_account"), username=as_literal(username))
        return {
            "users_confirm": gr.update(visible=True), "confirm_question": question, "users_message": "",
            **hidden, f"{action}_confirm": gr.update(visible=True),
        }

    def _act(self, request, search, page, location: str, action) -> dict:
        """Run one action as the signed-in administrator; its message, and the table as it is now."""
        acting = self.current_user(request, admin=True)  # refuses with a popup: not signed in, not an admin
        language = language_of(request)
        try:
            message = self._guarded(location, action, acting.id, language)
        except GemmaChatError as exc:
            message = f"⚠ {translated(language, exc)}"
        return {**self._users_view(search, page, language), "users_message": message}

    def grant_account_credits(self, request: gr.Request, target, amount, note, search, page):
        def grant(by, language):
            entry = admin.grant_credits(by, target, amount, note)
            return text(language, "granted", amount=f"{entry.amount:+d}", username=target.strip(), balance=entry.balance_after)

        return {**self._act(request, search, page, "admin:grant", grant), "grant_note": ""}

    def _account_change(self, request, target, search, page, done: str, change) -> dict:
        """One of the account actions; `done` names its message (account_disabled, …)."""
        def act(by, language):
            user = change(by, target)
            return text(
                language, done, username=user.username, role=text(language, "now_admin" if user.is_admin else "now_user"),
                state=text(language, "now_disabled" if user.is_disabled else "now_active"),
            )

        return self._act(request, search, page, f"admin:{done}", act)

    def disable_account(self, request: gr.Request, target, search, page):
        return self._account_change(
            request, target, search, page, "account_disabled", lambda by, name: admin.set_disabled(by, name, True)
        )

    def enable_account(self, request: gr.Request, target, search, page):
        return self._account_change(
            request, target, search, page, "account_enabled", lambda by, name: admin.set_disabled(by, name, False)
        )

    def promote_account(self, request: gr.Request, target, search, page):
        return self._account_change(request, target, search, page, "account_promoted", lambda by, name: admin.set_admin(by, name, True))

    def demote_account(self, request: gr.Request, target, search, page):
        return self._account_change(request, target, search, page, "account_demoted", lambda by, name: admin.set_admin(by, name, False))

    def unlock_account(self, request: gr.Request, target, search, page):
        return self._account_change(request, target, search, page, "account_unlocked", admin.unlock)

    def reset_account_password(self, request: gr.Request, target, new_password, search, page):
        def reset(by, language):
            user = admin.reset_password(self.settings, by, target, new_password)
            return text(language, "password_set", username=user.username)

        # The password box is cleared whatever happened: nothing typed into it lingers on the page.
        return {**self._act(request, search, page, "admin:reset_password", reset), "admin_password": ""}

    def create_account(self, request: gr.Request, target, new_password, search, page):
        """Create user's dialog: created, it closes and empties; refused, it stays with the name for a retry."""
        created = []

        def create(by, language):
            user = admin.create_user(self.settings, by, target, new_password)
            created.append(user)
            return text(language, "user_created", username=user.username, balance=user.balance)

        shown = {**self._act(request, search, page, "admin:create_user", create), "admin_password": "", "new_user_password": ""}
        if created:
            shown.update(new_username="", create_user_dialog=gr.update(visible=False))
        return shown

    def build_admin_users(self, t, c: dict) -> None:
        gr.Markdown(t("users_section"))
        with gr.Row():
            c["users_search"] = gr.Textbox(label=t("search_users"), max_lines=1, scale=3)
            c["users_search_button"] = gr.Button(t("search"), scale=1)
        c["users_table"] = gr.Dataframe(headers=self.USER_COLUMNS, interactive=False, elem_id="users-table")
        with gr.Row():
            c["users_previous"] = gr.Button(t("previous"), size="sm")
            c["users_page_label"] = gr.Markdown(t("page_1_of_1"))
            c["users_next"] = gr.Button(t("next"), size="sm")
        c["users_page"] = gr.State(1)
        c["admin_target"] = gr.Textbox(label=t("account_to_change"), max_lines=1, elem_id="admin-target")
        with gr.Row():
            c["grant_amount"] = gr.Number(label=t("credits_to_grant"), value=10, precision=0, scale=1)
            c["grant_note"] = gr.Textbox(label=t("grant_note"), max_lines=1, scale=3)
            c["grant_button"] = gr.Button(t("grant_credits"), variant="primary", scale=1)
        with gr.Row():
            for name in ACCOUNT_ACTIONS:
                c[f"{name}_button"] = gr.Button(t(f"{name}_account"), size="sm", elem_id=f"{name}-button")
        # An account action asks first: the question, the button that does it, and Cancel.
        with gr.Group(visible=False, elem_id="users-confirm") as c["users_confirm"]:
            c["confirm_question"] = gr.Markdown(elem_id="confirm-question")
            with gr.Row():
                for name in ACCOUNT_ACTIONS:
                    c[f"{name}_confirm"] = gr.Button(
                        t(f"{name}_account"), variant="stop", size="sm", visible=False, elem_id=f"{name}-confirm"
                    )
                c["confirm_cancel"] = gr.Button(t("cancel"), size="sm", elem_id="confirm-cancel")
        with gr.Row():
            c["admin_password"] = gr.Textbox(label=t("password_to_set"), type="password", max_lines=1, scale=3)
            c["reset_password_button"] = gr.Button(t("set_password"), scale=1)
            c["create_user_button"] = gr.Button(t("create_user"), scale=1, elem_id="create-user-button")
        # Create user is a small form of its own, not the boxes of the account being changed.
        with gr.Group(visible=False, elem_id="create-user-dialog") as c["create_user_dialog"]:
            c["new_username"] = gr.Textbox(label=t("new_account_name"), max_lines=1, elem_id="new-username")
            c["new_user_password"] = gr.Textbox(label=t("new_account_password"), type="password", max_lines=1)
            with gr.Row():
                c["create_user_confirm"] = gr.Button(t("create_user"), variant="primary", size="sm", elem_id="create-user-confirm")
                c["create_user_cancel"] = gr.Button(t("cancel"), size="sm", elem_id="create-user-cancel")
        c["users_message"] = gr.Markdown(elem_id="users-message")
        gr.Markdown(t("admin_actions_section"))
        c["admin_actions_table"] = gr.Dataframe(headers=self.ACTION_COLUMNS, interactive=False, wrap=True, elem_id="admin-actions-table")

    def wire_admin_users(self, c: dict, admin_tab, refresh_button) -> None:
        view = ["users_table", "users_page_label", "users_page", "admin_actions_table", "users_message"]
        paging = ["users_search", "users_page"]
        self.wire(admin_tab.select, self.users_state, paging, view, api_name=False)
        self.wire(refresh_button.click, self.users_state, paging, view, api_name=False)
        for trigger in (c["users_search_button"].click, c["users_search"].submit):
            self.wire(trigger, self.users_search, paging, view, api_name=False)
        self.wire(c["users_previous"].click, self.users_previous, paging, view, api_name=False)
        self.wire(c["users_next"].click, self.users_next, paging, view, api_name=False)
        self.wire(c["users_table"].select, self.select_account, [], ["admin_target"], api_name=False)
        self.wire(
            c["grant_button"].click, self.grant_account_credits, ["admin_target", "grant_amount", "grant_note"] + paging,
            view + ["grant_note"], api_name="admin_grant", api_visibility="undocumented",
        )
        confirm = ["users_confirm", "confirm_question", "users_message"] + [f"{name}_confirm" for name in ACCOUNT_ACTIONS]
        for name in ACCOUNT_ACTIONS:
            self.wire(c[f"{name}_button"].click, self._asker(name), ["admin_target"], confirm, api_name=False)
            self.wire(
                c[f"{name}_confirm"].click, getattr(self, f"{name}_account"), ["admin_target"] + paging, view,
                api_name=f"admin_{name}", api_visibility="undocumented",
            )
            self.wire(c[f"{name}_confirm"].click, self._shower("users_confirm", False), [], ["users_confirm"], api_name=False)
        close_question = self._shower("users_confirm", False)
        self.wire(c["confirm_cancel"].click, close_question, [], ["users_confirm"], api_name=False)
        # A different account chosen: the question asked about the old one goes.
        self.wire(c["admin_target"].change, close_question, [], ["users_confirm"], api_name=False)
        self.wire(
            c["reset_password_button"].click, self.reset_account_password, ["admin_target", "admin_password"] + paging,
            view + ["admin_password"], api_name="admin_set_password", api_visibility="undocumented",
        )
        self.wire(c["create_user_button"].click, self._shower("create_user_dialog", True), [], ["create_user_dialog"], api_name=False)
        self.wire(
            c["create_user_cancel"].click, self._shower("create_user_dialog", False), [], ["create_user_dialog"], api_name=False
        )
        self.wire(
            c["create_user_confirm"].click, self.create_account, ["new_username", "new_user_password"] + paging,
            view + ["admin_password", "new_username", "new_user_password", "create_user_dialog"],
            api_name="admin_create_user", api_visibility="undocumented",
        )
