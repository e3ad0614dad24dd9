"""The History tab: the user's answers one by one, newest first, with what each cost (the receipts)."""

from __future__ import annotations

import gradio as gr
import pandas as pd

from ..chats.history import list_history
from ..numbers import neighbour_page
from .common import owned, owned_by, shorten, shows_errors
from .text import code_name, columns, language_of, text

HISTORY_COLUMN_KEYS = ["col_date_time", "col_model", "col_credits", "col_status", "col_prompt", "col_answer"]


def status_name(language: str, status: str, answer: str) -> str:
    """A turn's status as History shows it: an "ok" turn without text is an empty answer (never charged)."""
    return text(language, "status_empty") if status == "ok" and not answer else code_name(language, "status", status)


class HistoryTab:
    HISTORY_COLUMNS = columns("en", HISTORY_COLUMN_KEYS)
    HISTORY_OUTPUTS = ["history_table", "history_page_label", "history_page", "history_full", "full_prompt", "full_answer"]

    @shows_errors
    def history(self, request: gr.Request, page):
        user = self.current_user(request)
        language = language_of(request)
        result = list_history(user.id, page or 1, self.settings.history_page_size)
        rows = [
            [f"{r.created_at:%Y-%m-%d %H:%M:%S}", r.model_name + (" (API)" if r.source == "api" else ""), r.credits_charged,
             status_name(language, r.status, r.answer), shorten(r.prompt), shorten(r.answer)]
            for r in result.rows
        ]
        table = pd.DataFrame(rows, columns=columns(language, HISTORY_COLUMN_KEYS))
        full = owned(user.id, [(r.prompt, r.answer) for r in result.rows])
        label = text(language, "page_of" if result.total else "history_empty", page=result.page, pages=result.total_pages)
        return {
            "history_table": table, "history_page_label": label, "history_page": result.page, "history_full": full,
            "full_prompt": "", "full_answer": "",
        }

    @shows_errors
    def history_step(self, request: gr.Request, page, step):
        return self.history.__wrapped__(self, request, neighbour_page(page, step))

    def history_previous(self, request: gr.Request, page):
        return self.history_step(request, page, -1)

    def history_next(self, request: gr.Request, page):
        return self.history_step(request, page, +1)

    @shows_errors
    def history_detail(self, request: gr.Request, full, event: gr.SelectData):
        user = self.current_user(request)
        full = owned_by(user.id, full)
        row = event.index[0] if isinstance(event.index, (list, tuple)) else event.index
        if not full or not isinstance(row, int) or not 0 <= row < len(full):
            return "", ""
        return full[row]

    def build_history_tab(self, t, c: dict) -> None:
        with gr.Tab(t("history"), id="history") as c["history_tab"]:
            c["history_table"] = gr.Dataframe(
                headers=self.HISTORY_COLUMNS,
                interactive=False,
                wrap=True,
                datatype="str",
                column_widths=["15%", "20%", "8%", "9%", "24%", "24%"],
            )
            with gr.Row():
                c["history_previous"] = gr.Button(t("previous"), size="sm")
                c["history_page_label"] = gr.Markdown(t("page_1_of_1"))
                c["history_next"] = gr.Button(t("next"), size="sm")
            c["full_prompt"] = gr.Textbox(label=t("full_prompt"), interactive=False, lines=3)
            c["full_answer"] = gr.Textbox(label=t("full_answer"), interactive=False, lines=6)
            c["history_page"] = gr.State(1)
            c["history_full"] = gr.State([])

    def wire_history_tab(self, c: dict) -> None:
        self.wire(c["history_tab"].select, self.history, ["history_page"], self.HISTORY_OUTPUTS, api_name="history")
        self.wire(c["history_previous"].click, self.history_previous, ["history_page"], self.HISTORY_OUTPUTS, api_name=False)
        self.wire(c["history_next"].click, self.history_next, ["history_page"], self.HISTORY_OUTPUTS, api_name=False)
        c["history_table"].select(
            self.history_detail, [c["history_full"]], [c["full_prompt"], c["full_answer"]], api_name=False
        )
