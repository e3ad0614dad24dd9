"""The Admin tab's reports: requests per model, credits per user, requests per day, model
performance, active users and recent errors, for a date range (the same numbers as `report`).

A mixin of ChatApp (ui/app.py): every callback re-checks the administrator in the database.
"""

from __future__ import annotations

import gradio as gr
import pandas as pd

from ...errors import ValidationError
from ...ops.reports import Reports
from ..common import notice, owned, owned_by, shows_errors
from ..text import language_of, text, translated


# A report column's header: the key of its text (text.py) where it is not simply "col_" + its name.
HEADER_KEYS = {"username": "col_user", "created_at": "col_time"}


def header(name: str, language: str) -> str:
    return text(language, HEADER_KEYS.get(name, f"col_{name}"))


def readable(frame: pd.DataFrame, language: str) -> pd.DataFrame:
    """A report table with headers in `language` ("Credits spent", not credits_spent); the charts keep the
    report's own column names, which their axes are bound to."""
    return frame.rename(columns={name: header(name, language) for name in frame.columns})


def plotted(frame: pd.DataFrame, x: str, y: str, language: str) -> dict:
    """A chart's data with its axes titled in `language`."""
    return gr.update(value=frame, x_title=header(x, language), y_title=header(y, language))


class AdminReportsSection:
    ADMIN_REPORT_OUTPUTS = [
        "model_plot", "model_table", "user_table", "user_plot", "day_plot", "errors_table", "error_tracebacks",
        "error_text", "performance_table", "performance_plot", "active_table", "active_plot", "report_notice",
    ]

    @shows_errors
    def admin_report(self, request: gr.Request, since, until):
        """The report for the range; a date to fix is said beside the dates and the charts stay as they were."""
        user = self.current_user(request, admin=True)
        language = language_of(request)
        names = (text(language, "from_date_name"), text(language, "to_date_name"))
        try:
            chosen = Reports.for_range(since, until, names=names)
        except ValidationError as exc:
            return {"report_notice": notice(translated(language, exc))}
        report = chosen.full()
        by_model = pd.DataFrame(report["requests_by_model"], columns=["model", "requests", "ok", "stopped", "failed", "refused", "credits"])
        by_user = pd.DataFrame(
            report["credits_by_user"], columns=["username", "credits_spent", "credits_topped_up", "credits_granted", "balance", "requests"]
        )
        per_day = pd.DataFrame(report["requests_per_day"], columns=["day", "model", "requests"])
        errors = pd.DataFrame(report["errors"], columns=["created_at", "error_id", "location", "exception_type", "message", "username", "request_id", "traceback"])
        error_table = errors.drop(columns=["traceback"])
        performance = pd.DataFrame(
            report["model_performance"],
            columns=["model", "requests", "error_rate", "ttft_median_ms", "ttft_p95_ms", "tokens_per_s", "answer_median_ms", "answer_p95_ms"],
        )
        active = pd.DataFrame(report["active_users_by_day"], columns=["day", "active_users"])
        return {
            "model_plot": plotted(by_model, "model", "requests", language), "model_table": readable(by_model, language),
            "user_table": readable(by_user, language), "user_plot": plotted(by_user, "username", "credits_spent", language),
            "day_plot": plotted(per_day, "day", "requests", language), "errors_table": readable(error_table, language),
            "error_tracebacks": owned(user.id, errors["traceback"].tolist()), "error_text": "",
            "performance_table": readable(performance, language),
            "performance_plot": plotted(performance, "model", "tokens_per_s", language),
            "active_table": readable(active, language), "active_plot": plotted(active, "day", "active_users", language),
            "report_notice": "",
        }

    @shows_errors
    def error_detail(self, request: gr.Request, tracebacks, event: gr.SelectData):
        user = self.current_user(request, admin=True)
        tracebacks = owned_by(user.id, tracebacks)
        row = event.index[0] if isinstance(event.index, (list, tuple)) else event.index
        if not tracebacks or not isinstance(row, int) or not 0 <= row < len(tracebacks):
            return ""
        return tracebacks[row]

    def build_admin_dates(self, t, c: dict) -> None:
        """The date range every section of the Admin tab reports on."""
        with gr.Row(equal_height=True):
            # Date pickers (typing works too): the value is a plain "YYYY-MM-DD".
            c["since"] = gr.DateTime(label=t("from_date"), include_time=False, type="string", elem_id="report-since")
            c["until"] = gr.DateTime(label=t("to_date"), include_time=False, type="string", elem_id="report-until")
            c["refresh_button"] = gr.Button(t("refresh"), variant="primary", scale=0)
        c["report_notice"] = gr.Markdown(elem_id="report-notice")
        c["error_tracebacks"] = gr.State([])

    def build_admin_reports(self, t, c: dict) -> None:
        gr.Markdown(t("requests_per_model"))
        c["model_plot"] = gr.BarPlot(x="model", y="requests", y_lim=[0, None], height=240)
        c["model_table"] = gr.Dataframe(interactive=False, elem_id="model-table")
        gr.Markdown(t("credits_per_user"))
        c["user_table"] = gr.Dataframe(interactive=False)
        c["user_plot"] = gr.BarPlot(x="username", y="credits_spent", y_lim=[0, None], height=240)
        gr.Markdown(t("requests_per_day"))
        c["day_plot"] = gr.LinePlot(x="day", y="requests", color="model", y_lim=[0, None], height=240)
        gr.Markdown(t("active_users_per_day"))
        c["active_plot"] = gr.BarPlot(x="day", y="active_users", y_lim=[0, None], height=240)
        c["active_table"] = gr.Dataframe(interactive=False)

    def build_admin_performance(self, t, c: dict) -> None:
        gr.Markdown(t("model_performance"))
        c["performance_table"] = gr.Dataframe(interactive=False, elem_id="performance-table")
        c["performance_plot"] = gr.BarPlot(x="model", y="tokens_per_s", y_lim=[0, None], height=240)

    def build_admin_errors(self, t, c: dict) -> None:
        gr.Markdown(t("recent_errors"))
        c["errors_table"] = gr.Dataframe(interactive=False, wrap=True)
        c["error_text"] = gr.Textbox(label=t("error_details"), interactive=False, lines=8)

    def wire_admin_reports(self, c: dict) -> None:
        outputs, dates = self.ADMIN_REPORT_OUTPUTS, ["since", "until"]
        self.wire(c["admin_tab"].select, self.admin_report, dates, outputs, api_name="admin_report")
        self.wire(c["refresh_button"].click, self.admin_report, dates, outputs, api_name=False)
        c["errors_table"].select(self.error_detail, [c["error_tracebacks"]], [c["error_text"]], api_name=False)
