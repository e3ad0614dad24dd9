"""The Top up tab's layout, and the user's statement: every ledger entry, paged, totals by kind, a CSV.

A mixin of ChatApp (ui.py): every callback resolves the user from the request's session cookie, and
statement.py reads only that user's entries, so the table, the totals and the CSV are the caller's
own whatever a client sends. Callbacks return their outputs by name (`ChatApp.named`).
"""

from __future__ import annotations

import gradio as gr
import pandas as pd

from . import statement
from .history import neighbour_page

KIND_NAMES = {"signup": "Sign-up", "topup": "Top-ups", "grant": "Grants", "charge": "Charges"}
# The CSV comes from the app's own route (web/app.py), which checks the session cookie itself: no
# file of anyone's statement is ever written where Gradio would serve it by URL.
STATEMENT_CSV_LINK = (
    '<a href="statement.csv" download class="statement-csv" id="statement-csv">Download statement (CSV)</a>'
)


def totals_markdown(user_id: int) -> str:
    lines = ["| | Entries | Credits |", "|---|---:|---:|"]
    totals = statement.totals_by_kind(user_id)
    for total in totals:
        lines.append(f"| {KIND_NAMES.get(total.kind, total.kind)} | {total.entries:,} | {total.credits:+,d} |")
    lines.append(f"| **Balance** | {sum(t.entries for t in totals):,} | **{sum(t.credits for t in totals):,}** |")
    return "\n".join(lines)


class TopUpTab:
    LEDGER_COLUMNS = ["Time (UTC)", "Kind", "Amount", "Balance after"]

    def statement_view(self, user_id: int, page=1) -> tuple[pd.DataFrame, statement.StatementPage]:
        """One page of the user's entries as a table, newest first, and the page it turned out to be."""
        found = statement.list_statement(user_id, page, self.settings.history_page_size)
        rows = [[f"{e.created_at:%Y-%m-%d %H:%M:%S}", e.kind, f"{e.amount:+d}", e.balance_after] for e in found.entries]
        return pd.DataFrame(rows, columns=self.LEDGER_COLUMNS), found

    def ledger_table(self, user_id: int) -> pd.DataFrame:
        """The statement's first page: what a top-up shows at once."""
        return self.statement_view(user_id)[0]

    def statement_page(self, request: gr.Request, page) -> dict:
        """A page of the statement and the totals by kind."""
        user = self.current_user(request)
        table, found = self.statement_view(user.id, page)
        label = f"Page {found.page} of {found.total_pages} — {found.total:,} {'entry' if found.total == 1 else 'entries'}"
        return {
            "statement_table": table,
            "statement_label": label,
            "statement_page_state": found.page,
            "statement_totals": totals_markdown(user.id),
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
            # With self_topup off the form is hidden and the event refuses (ChatApp.top_up).
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
                c["statement_label"] = gr.Markdown("Page 1 of 1", elem_id="statement-label")
                c["statement_next"] = gr.Button(t("next"), size="sm", elem_id="statement-next")
            gr.HTML(STATEMENT_CSV_LINK)
            c["statement_page_state"] = gr.State(1)

    def wire_topup_tab(self, c: dict) -> None:
        listing = ["statement_table", "statement_label", "statement_page_state", "statement_totals"]
        wire = self.wire
        wire(c["topup_tab"].select, self.statement_first, [], listing, api_name="statement")
        wire(c["statement_previous"].click, self.statement_previous, ["statement_page_state"], listing, api_name=False)
        wire(c["statement_next"].click, self.statement_next, ["statement_page_state"], listing, api_name=False)
        # top_up (ui.py) answers with its message, the balance and the first page; then the rest follows.
        added = c["topup_button"].click(
            self.top_up, [c["amount"]], [c["topup_message"], c["balance"], c["statement_table"]],
            api_name="top_up", api_visibility="undocumented",
        )
        wire(added.then, self.statement_first, [], listing, api_name=False)
