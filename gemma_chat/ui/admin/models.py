"""The Admin tab's Models section: each tier's backend, state and reason, and Restart model.

A tier whose worker crashed too often, or whose model failed to load, stays down until an
administrator restarts it here (or the app restarts). A mixin of ChatApp (ui/app.py): every callback
re-checks the administrator in the database, and returns its outputs by name.
"""

from __future__ import annotations

import logging

import gradio as gr
import pandas as pd

from ...errors import ValidationError
from ..text import code_name, columns, language_of, text

logger = logging.getLogger("gemma_chat")


MODEL_COLUMN_KEYS = ["col_tier", "col_model", "col_backend", "col_state", "col_reason"]


class AdminModelsSection:
    MODEL_COLUMNS = columns("en", MODEL_COLUMN_KEYS)

    def models_state(self, request: gr.Request):
        self.current_user(request, admin=True)
        language = language_of(request)
        tiers = self.engine.tiers()
        rows = [
            [s.tier, s.label, s.backend, code_name(language, "model_state", s.state or ("ready" if s.available else "unavailable")),
             s.reason]
            for s in tiers
        ]
        return {
            "models_table": pd.DataFrame(rows, columns=columns(language, MODEL_COLUMN_KEYS)),
            "restart_tier": gr.update(choices=[s.tier for s in tiers]),
            "models_message": "",
        }

    def restart_model(self, request: gr.Request, tier):
        admin = self.current_user(request, admin=True)
        if tier not in {s.tier for s in self.engine.tiers()}:
            raise ValidationError("Choose the model to restart.")
        self.engine.restart_tier(tier)
        logger.warning("administrator %s restarted the %s model", admin.username, tier)  # who, when, what
        message = text(language_of(request), "model_restarting_admin", tier=tier)
        return {**self.models_state(request), "models_message": message}

    def build_admin_models(self, t, c: dict) -> None:
        gr.Markdown(t("models_section"))
        c["models_table"] = gr.Dataframe(headers=self.MODEL_COLUMNS, interactive=False, wrap=True, elem_id="models-table")
        with gr.Row():
            c["restart_tier"] = gr.Dropdown(label=t("model_to_restart"), choices=[], scale=3)
            c["restart_model_button"] = gr.Button(t("restart_model"), variant="stop", scale=1)
        c["models_message"] = gr.Markdown(elem_id="models-message")

    def wire_admin_models(self, c: dict, admin_tab, refresh_button) -> None:
        outputs = ["models_table", "restart_tier", "models_message"]
        self.wire(admin_tab.select, self.models_state, [], outputs, api_name=False)
        self.wire(refresh_button.click, self.models_state, [], outputs, api_name=False)
        self.wire(
            c["restart_model_button"].click, self.restart_model, ["restart_tier"], outputs,
            api_name="restart_model", api_visibility="undocumented",
        )
