"""The Top up tab's layout, and the user's statement: every ledger entry, paged, totals by kind, a CSV.

A mixin of ChatApp (app.py): every callback resolves the user from the request's session cookie, and
billing/statement.py reads only that user's entries, so the table, the totals and the CSV are the caller's
own whatever a client sends. Callbacks return their outputs by name (`ChatApp.named`).
"""

from __future__ import annotations

import gradio as gr
import pandas as pd

from ..billing import ledger, statement
from ..errors import GemmaChatError, PermissionDeniedError
from ..numbers import neighbour_page
from .common import balance_text
from .text import code_name, columns, language_of, text, translated

LEDGER_COLUMN_KEYS = ["col_time", "col_kind", "col_amount", "col_balance_after"]
# The CSV comes from the app's own route (web/app.py), which checks the session cookie itself: no
# file of anyone's statement is ever written where Gradio would serve it by URL. The link's text is
# a label Gradio translates in the browser (`t`).
STATEMENT_CSV_LINK = '<a href="statement.csv" download class="statement-csv" id="statement-csv">{}</a>'


def totals_markdown(user_id: int, language: str = "en") -> str:
    lines = [f"| | {text(language, 'totals_entries')} | {text(language, 'totals_credits')} |", "|---|---:|---:|"]
    totals = statement.totals_by_kind(user_id)
    for total in totals:
        lines.append(f"| {code_name(language, 'total', total.kind)} | {total.entries:,} | {total.credits:+,d} |")
    lines.append(
        f"| **{text(language, 'totals_balance')}** | {sum(t.entries for t in totals):,} | **{sum(t.credits for t in totals):,}** |"
    )
    return "\n".join(lines)


class TopUpTab:
    LEDGER_COLUMNS = columns("en", LEDGER_COLUMN_KEYS)

    def top_up(self, request: gr.Request, amount):
        try:
            user = self.current_user(request)
            if not self.settings.self_topup:  # the tab hides the form; a raw call to this event is refused here
                raise PermissionDeniedError("Top-ups are turned off here; ask an administrator for credits.")
            entry = self._guarded("top_up", ledger.top_up, user.id, amount, maximum=self.settings.max_topup)
        except GemmaChatError as exc:
            return f"⚠ {translated(language_of(request), exc)}", gr.update(), gr.update()
        language = language_of(request)
        message = text(language, "topped_up", amount=entry.amount, balance=entry.balance_after)
        # the statement follows (wire_topup_tab)
        return message, balance_text(user.id, language), self.ledger_table(user.id, language)


    def statement_view(self, user_id: int, page=1, language: str = "en") -> tuple[pd.DataFrame, statement.StatementPage]:
        """One page of the user's entries as a table, newest first, and the page it turned out to be."""
        found = statement.list_statement(user_id, page, self.settings.history_page_size)
        rows = [
            [f"{e.created_at:%Y-%m-%d %H:%M:%S}", code_name(language, "kind", e.kind), f"{e.amount:+d}", e.balance_after]
            for e in found.entries
        ]
        return pd.DataFrame(rows, columns=columns(language, LEDGER_COLUMN_KEYS)), found

    def ledger_table(self, user_id: int, language: str = "en") -> pd.DataFrame:
        """The statement's first page: what a top-up shows at once."""
        return self.statement_view(user_id, 1, language)[0]

    def statement_page(self, request: gr.Request, page) -> dict:
        """A page of the statement and the totals by kind."""
        user = self.current_user(request)
        language = language_of(request)
        table, found = self.statement_view(user.id, page, language)
        label = text(language, "statement_page", page=found.page, pages=found.total_pages, total=f"{found.total:,}")
        return {
            "statement_table": table,
            "statement_label": label,
            "statement_page_state": found.page,
            "statement_totals": totals_markdown(user.id, language),
        }

    def statement_first(self, request: gr.Request) -> dict:
        return self.statement_page(request, 1)

    def statement_step(self, request: gr.Request, page, step: int) -> dict:
        return self.statement_page(request, neighbour_page(page, step))

    def statement_previous(self, request: gr.Request, page) -> dict:
        return self.statement_step(request, page, -1)

    def statement_next(self, request: gr.Request, page) -> dict:
        return self.statement_step(request, page, +1)

    def build_topup_tab(self, t, c: dict) -> None:
        """The tab's components go into `c` by name; wire_topup_tab wires their events."""
        with gr.Tab(t("top_up"), id="topup") as c["topup_tab"]:
            # With self_topup off the form is hidden and the event refuses (top_up).
            gr.Markdown(t("topup_closed"), visible=not self.settings.self_topup, elem_id="topup-closed")
            c["amount"] = gr.Number(label=t("credits_to_add"), value=10, precision=None, visible=self.settings.self_topup)
            c["topup_button"] = gr.Button(t("top_up"), variant="primary", visible=self.settings.self_topup)
            c["topup_message"] = gr.Markdown(elem_id="topup-message")
            c["statement_totals"] = gr.Markdown(elem_id="statement-totals")
            c["statement_table"] = gr.Dataframe(
                headers=self.LEDGER_COLUMNS, interactive=False, datatype="str", elem_id="statement-table"
            )
            with gr.Row():
                c["statement_previous"] = gr.Button(t("previous"), size="sm", elem_id="statement-previous")
                c["statement_label"] = gr.Markdown(t("page_1_of_1"), elem_id="statement-label")
                c["statement_next"] = gr.Button(t("next"), size="sm", elem_id="statement-next")
            gr.HTML(STATEMENT_CSV_LINK.format(t("download_statement")))
            c["statement_page_state"] = gr.State(1)

    def wire_topup_tab(self, c: dict) -> list:
        """Wires the tab's events; returns the one that changes the balance (Top up)."""
        listing = ["statement_table", "statement_label", "statement_page_state", "statement_totals"]
        wire = self.wire
        wire(c["topup_tab"].select, self.statement_first, [], listing, api_name="statement")
        wire(c["statement_previous"].click, self.statement_previous, ["statement_page_state"], listing, api_name=False)
        wire(c["statement_next"].click, self.statement_next, ["statement_page_state"], listing, api_name=False)
        # top_up answers with its message, the balance and the first page; then the rest follows.
        added = c["topup_button"].click(
            self.top_up, [c["amount"]], [c["topup_message"], c["balance"], c["statement_table"]],
            api_name="top_up", api_visibility="undocumented",
        )
        wire(added.then, self.statement_first, [], listing, api_name=False)
        return [added]
