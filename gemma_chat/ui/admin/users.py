"""The Admin tab's Users section: accounts with balance, role, state and use, searched and paged, each
row with its own menu of the actions that apply to it (grant credits, set a password, disable or
enable, promote or demote, unlock), Create user above the table, and the latest administrator
actions below.

The table is HTML the server renders (names escaped), its rows' menus those of row_menu.py: a click
sends "disable:12" as one event, `account_request`, which re-checks the administrator and the
account and opens a small dialog that names the account and asks (for a grant or a password, with
its input); its button runs the action held for this administrator in `account_target`. A request
or a confirmation the page should not have sent is said inline, never with a popup.

A mixin of ChatApp (ui/app.py): every callback resolves the administrator from the request's session
cookie and re-checks it in the database (accounts/admin.py checks again inside each action's transaction).
A refusal of the caller is a popup; a refused action (the last administrator, a bad amount) is a message.
"""

from __future__ import annotations

import html

import gradio as gr
import pandas as pd

from ...accounts import admin, auth
from ...errors import GemmaChatError
from ...numbers import page_bounds
from ..common import notice, owned, owned_by
from ..markup import as_literal
from ..row_menu import menu_html, parse_request
from ..text import code_name, columns, language_of, text, translated

USERS_PAGE_SIZE = 20
MAX_SEARCH_CHARS = 64
USER_COLUMN_KEYS = ["col_user", "col_balance", "col_held", "col_role", "col_state", "col_last_login", "col_requests"]
ACTION_COLUMN_KEYS = ["col_time", "col_by", "col_action", "col_account", "col_detail"]
ROW_ACTIONS = ("grant", "set_password", "disable", "enable", "promote", "demote", "unlock")  # a row's menu, in order
WITH_INPUT = ("grant", "set_password")  # their dialog has a field; a refusal keeps it open to fix that
TAKING_AWAY = ("disable", "demote")  # their button is red
# The account changes without an input: what each does, and the key of the message that says it is done.
CHANGES = {
    "disable": (lambda by, name: admin.set_disabled(by, name, True), "account_disabled"),
    "enable": (lambda by, name: admin.set_disabled(by, name, False), "account_enabled"),
    "promote": (lambda by, name: admin.set_admin(by, name, True), "account_promoted"),
    "demote": (lambda by, name: admin.set_admin(by, name, False), "account_demoted"),
    "unlock": (admin.unlock, "account_unlocked"),
}
CONFIRM_LABELS = {
    "grant": "grant_credits", "set_password": "set_password", "disable": "disable_account", "enable": "enable_account",
    "promote": "promote_account", "demote": "demote_account", "unlock": "unlock_account",
}


def _page_number(value) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 1 else 1


def _search_text(value) -> str:
    return value.strip()[:MAX_SEARCH_CHARS] if isinstance(value, str) else ""


def _asked(chosen: list) -> bool:
    """Whether a dialog's State holds a question this section asked: [action, account id]."""
    return (
        len(chosen) == 2 and chosen[0] in ROW_ACTIONS and isinstance(chosen[1], int) and not isinstance(chosen[1], bool)
    )


def offered_actions(row: admin.AccountRow) -> list[str]:
    """What a row's menu offers: only what applies to the account as it is (Enable only when disabled, …)."""
    offered = ["grant", "set_password", "enable" if row.state == "disabled" else "disable"]
    offered.append("demote" if row.role == "admin" else "promote")
    if row.state == "locked":
        offered.append("unlock")
    return offered


def users_table_html(rows: list[admin.AccountRow], language: str) -> str:
    """The accounts as a table, a "⋯" menu at the end of each row; every name and value escaped."""
    headers = columns(language, USER_COLUMN_KEYS)
    head = "".join(f"<th scope=\"col\">{html.escape(name)}</th>" for name in headers)
    head += f'<th scope="col"><span class="gc-sr-only">{html.escape(text(language, "col_actions"))}</span></th>'
    never = text(language, "never")
    body = []
    for row in rows:
        values = [
            row.username, row.balance, row.held, code_name(language, "role", row.role), code_name(language, "state", row.state),
            f"{row.last_login_at:%Y-%m-%d %H:%M}" if row.last_login_at else never, row.requests,
        ]
        cells = "\n".join(
            f'<td data-label="{html.escape(name)}">{html.escape(str(value))}</td>' for name, value in zip(headers, values)
        )
        labels = {action: text(language, f"account_menu_{action}") for action in offered_actions(row)}
        menu = menu_html(row.id, labels, text(language, "account_menu", username=row.username))
        body.append(f'<tr data-state="{html.escape(row.state)}">\n{cells}\n<td class="gc-actions">{menu}</td>\n</tr>')
    if not body:
        body.append(f'<tr><td colspan="{len(headers) + 1}" class="gc-empty">{html.escape(text(language, "no_accounts_found"))}</td></tr>')
    return f'<table class="gc-table"><thead><tr>{head}</tr></thead><tbody>\n' + "\n".join(body) + "\n</tbody></table>"


class AdminUsersSection:
    ACTION_COLUMNS = columns("en", ACTION_COLUMN_KEYS)
    # What an account's dialog shows; each callback that opens, runs or closes it sets all of them.
    DIALOG_OUTPUTS = [
        "account_dialog", "account_question", "grant_fields", "admin_password", "account_dialog_message", "account_confirm",
        "account_target",
    ]

    def _users_view(self, search, page, language: str = "en") -> dict:
        search, page = _search_text(search), _page_number(page)
        rows, total = admin.list_accounts(search, page=page, page_size=USERS_PAGE_SIZE)
        page, pages = page_bounds(page, total, USERS_PAGE_SIZE)  # past the end: the last page, as list_accounts gave
        actions = pd.DataFrame(
            [[f"{when:%Y-%m-%d %H:%M:%S}", by, code_name(language, "action", action), target, detail]
             for when, by, action, target, detail in admin.recent_actions()],
            columns=columns(language, ACTION_COLUMN_KEYS),
        )
        label = text(language, "users_page_matching" if search else "users_page", page=page, pages=pages, total=total, search=search)
        return {
            "users_table": users_table_html(rows, language), "users_page_label": label, "users_page": page,
            "admin_actions_table": actions,
        }

    def users_state(self, request: gr.Request, search, page):
        self.current_user(request, admin=True)
        return {**self._users_view(search, page, language_of(request)), "users_message": ""}

    def users_search(self, request: gr.Request, search, page):
        return self.users_state(request, search, 1)

    def users_previous(self, request: gr.Request, search, page):
        return self.users_state(request, search, max(1, _page_number(page) - 1))

    def users_next(self, request: gr.Request, search, page):
        return self.users_state(request, search, _page_number(page) + 1)

    # --- a row's menu: ask, then act ---

    def _closed_dialog(self, acting_id: int) -> dict:
        return {
            "account_dialog": gr.update(visible=False), "account_question": "", "grant_fields": gr.update(visible=False),
            "admin_password": gr.update(value="", visible=False), "account_dialog_message": "",
            "account_confirm": gr.update(), "account_target": owned(acting_id, []),
        }

    def _refused_request(self, acting_id: int, search, page, language: str, message: str) -> dict:
        """A request or confirmation that cannot go on: the dialog closes, the reason shows above the
        table, and the table is drawn afresh (the account may have changed since the page drew it)."""
        return {**self._users_view(search, page, language), **self._closed_dialog(acting_id), "users_message": notice(message)}

    def _chosen_account(self, action: str, user_id, language: str) -> tuple[admin.AccountRow | None, str]:
        """The account a request names, as it is now, if `action` applies to it; else the reason."""
        row = admin.find_account(user_id) if user_id is not None else None
        # Acted on by name: a name that leads to another account (one made before names were checked)
        # is not this one.
        found = auth.find_user(row.username) if row is not None else None
        if row is None or found is None or found.id != row.id:
            return None, text(language, "account_not_found")
        if action not in offered_actions(row):
            return None, text(
                language, "account_action_not_offered", action=text(language, CONFIRM_LABELS[action]), username=as_literal(row.username)
            )
        return row, ""

    def account_request(self, request: gr.Request, value, search, page):
        """A click in a row's menu: the dialog that names the account and asks; nothing is done yet."""
        acting = self.current_user(request, admin=True)  # refuses with a popup: not signed in, not an admin
        language = language_of(request)
        action, user_id = parse_request(value, ROW_ACTIONS)
        if not action:
            return self._refused_request(acting.id, search, page, language, text(language, "account_request_unknown"))
        row, reason = self._chosen_account(action, user_id, language)
        if row is None:
            return self._refused_request(acting.id, search, page, language, reason)
        question = text(language, f"account_question_{action}", username=as_literal(row.username), balance=row.balance)
        return {
            "account_dialog": gr.update(visible=True), "account_question": question,
            "grant_fields": gr.update(visible=action == "grant"), "admin_password": gr.update(value="", visible=action == "set_password"),
            "account_dialog_message": "", "account_confirm": gr.update(
                value=text(language, CONFIRM_LABELS[action]), variant="stop" if action in TAKING_AWAY else "primary"
            ),
            "account_target": owned(acting.id, [action, row.id]), "grant_amount": None, "grant_note": "", "users_message": "",
            "create_user_dialog": gr.update(visible=False),
        }

    def confirm_account_action(self, request: gr.Request, target, amount, note, password, search, page):
        """The dialog's button: the action held for this administrator, on the account as it is now."""
        acting = self.current_user(request, admin=True)
        language = language_of(request)
        chosen = owned_by(acting.id, target)
        if not _asked(chosen):  # nothing asked (or another administrator's question, or forged State)
            return self._refused_request(acting.id, search, page, language, text(language, "account_choose_again"))
        action, user_id = chosen
        row, reason = self._chosen_account(action, user_id, language)
        if row is None:
            return self._refused_request(acting.id, search, page, language, reason)
        return self.act_on_account(request, action, row.username, search, page, amount=amount, note=note, password=password)

    def close_account_dialog(self, request: gr.Request):
        acting = self.current_user(request, admin=True)
        return self._closed_dialog(acting.id)

    def open_create_user(self, request: gr.Request):
        """Create user: its dialog, empty, in place of an account's (one dialog at a time)."""
        acting = self.current_user(request, admin=True)
        return {
            **self._closed_dialog(acting.id), "create_user_dialog": gr.update(visible=True), "create_user_message": "",
            "new_user_password": "",
        }

    def close_create_user(self, request: gr.Request):
        self.current_user(request, admin=True)
        return {"create_user_dialog": gr.update(visible=False), "create_user_message": "", "new_user_password": ""}

    def act_on_account(self, request: gr.Request, action: str, target, search, page, *, amount=None, note=None, password=None) -> dict:
        """Run one row action on the account named `target` as the signed-in administrator: done, the
        dialog closes and the table shows the change; refused, the reason shows, inside the dialog
        when its input is what to fix. The password box is emptied whatever happened."""
        acting = self.current_user(request, admin=True)
        language = language_of(request)

        def act(by, language):
            if action == "grant":
                entry = admin.grant_credits(by, target, amount, note)
                return text(
                    language, "granted", amount=f"{entry.amount:+d}", username=as_literal(target.strip()), balance=entry.balance_after
                )
            if action == "set_password":
                user = admin.reset_password(self.settings, by, target, password)
                return text(language, "password_set", username=as_literal(user.username))
            change, done = CHANGES[action]
            user = change(by, target)
            return text(
                language, done, username=as_literal(user.username), role=text(language, "now_admin" if user.is_admin else "now_user"),
                state=text(language, "now_disabled" if user.is_disabled else "now_active"),
            )

        try:
            message = self._guarded(f"admin:{action}", act, acting.id, language)
        except GemmaChatError as exc:
            refusal = notice(translated(language, exc))
            if action in WITH_INPUT:
                return {"account_dialog_message": refusal, "admin_password": ""}
            return self._refused_request(acting.id, search, page, language, translated(language, exc))
        return {**self._users_view(search, page, language), **self._closed_dialog(acting.id), "users_message": message, "grant_note": ""}

    # --- Create user: a dialog of its own ---

    def create_account(self, request: gr.Request, target, new_password, search, page):
        """Create user's dialog: created, it closes and empties; refused, it stays with the name and the
        reason, for a retry. The password box is emptied whatever happened."""
        acting = self.current_user(request, admin=True)
        language = language_of(request)
        try:
            user = self._guarded("admin:create_user", admin.create_user, self.settings, acting.id, target, new_password)
        except GemmaChatError as exc:
            return {"create_user_message": notice(translated(language, exc)), "new_user_password": ""}
        created = text(language, "user_created", username=as_literal(user.username), balance=user.balance)
        return {
            **self._users_view(search, page, language), "users_message": created, "create_user_message": "", "new_username": "",
            "new_user_password": "", "create_user_dialog": gr.update(visible=False),
        }

    def build_admin_users(self, t, c: dict) -> None:
        gr.Markdown(t("users_section"))
        with gr.Row(equal_height=True):
            c["users_search"] = gr.Textbox(label=t("search_users"), max_lines=1, scale=3)
            c["users_search_button"] = gr.Button(t("search"), scale=1)
            c["create_user_button"] = gr.Button(t("create_user"), variant="primary", scale=1, elem_id="create-user-button")
        c["users_message"] = gr.Markdown(elem_id="users-message")
        c["users_table"] = gr.HTML(elem_id="users-table")  # its menus' clicks: PAGE_JS (session.py)
        with gr.Row():
            c["users_previous"] = gr.Button(t("previous"), size="sm")
            c["users_page_label"] = gr.Markdown(t("page_1_of_1"))
            c["users_next"] = gr.Button(t("next"), size="sm")
        c["users_page"] = gr.State(1)
        # Hidden by the page's style (an invisible component is not on the page): a menu's click reaches
        # the server through them.
        c["account_request"] = gr.Textbox(elem_id="account-request", elem_classes=["gc-hidden"], container=False)
        c["account_request_button"] = gr.Button("ask", elem_id="account-request-button", elem_classes=["gc-hidden"])
        c["account_target"] = gr.State(owned(0, []))  # [action, account id], tagged with the administrator who asked
        # A row action's dialog: the question naming the account, the input the action needs, its button.
        with gr.Column(visible=False, elem_id="account-dialog", elem_classes=["gc-dialog"]) as c["account_dialog"]:
            c["account_question"] = gr.Markdown(elem_id="account-question")
            with gr.Column(visible=False) as c["grant_fields"]:
                c["grant_amount"] = gr.Number(label=t("credits_to_grant"), value=None, precision=0, elem_id="grant-amount")
                c["grant_note"] = gr.Textbox(label=t("grant_note"), max_lines=1, elem_id="grant-note")
            c["admin_password"] = gr.Textbox(label=t("password_to_set"), type="password", max_lines=1, visible=False)
            c["account_dialog_message"] = gr.Markdown(elem_id="account-dialog-message")
            with gr.Row():
                c["account_confirm"] = gr.Button(variant="stop", size="sm", elem_id="account-confirm")
                c["account_cancel"] = gr.Button(t("cancel"), size="sm", elem_id="account-cancel")
        # Create user is a small form of its own, not the boxes of an account being changed.
        with gr.Column(visible=False, elem_id="create-user-dialog", elem_classes=["gc-dialog"]) as c["create_user_dialog"]:
            c["new_username"] = gr.Textbox(label=t("new_account_name"), max_lines=1, elem_id="new-username")
            c["new_user_password"] = gr.Textbox(label=t("new_account_password"), type="password", max_lines=1)
            c["create_user_message"] = gr.Markdown(elem_id="create-user-message")
            with gr.Row():
                c["create_user_confirm"] = gr.Button(t("create_user"), variant="primary", size="sm", elem_id="create-user-confirm")
                c["create_user_cancel"] = gr.Button(t("cancel"), size="sm", elem_id="create-user-cancel")
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
        self.wire(
            c["account_request_button"].click, self.account_request, ["account_request"] + paging,
            view + self.DIALOG_OUTPUTS + ["grant_amount", "grant_note", "create_user_dialog"], api_name="admin_account_request",
            api_visibility="undocumented", show_progress="hidden",
        )
        self.wire(
            c["account_confirm"].click, self.confirm_account_action,
            ["account_target", "grant_amount", "grant_note", "admin_password"] + paging, view + self.DIALOG_OUTPUTS + ["grant_note"],
            api_name="admin_account_action", api_visibility="undocumented",
        )
        self.wire(c["account_cancel"].click, self.close_account_dialog, [], self.DIALOG_OUTPUTS, api_name=False)
        create_dialog = ["create_user_dialog", "create_user_message", "new_user_password"]
        self.wire(c["create_user_button"].click, self.open_create_user, [], self.DIALOG_OUTPUTS + create_dialog, api_name=False)
        self.wire(c["create_user_cancel"].click, self.close_create_user, [], create_dialog, api_name=False)
        self.wire(
            c["create_user_confirm"].click, self.create_account, ["new_username", "new_user_password"] + paging,
            view + ["new_username", "new_user_password", "create_user_message", "create_user_dialog"],
            api_name="admin_create_user", api_visibility="undocumented",
        )
