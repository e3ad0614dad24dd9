"""Each chat's settings: the model chosen in the composer's picker and the system prompt under
"Chat settings", kept with the open chat (chats/conversations.py) and restored when it is reopened;
and the hint beside the box when the balance runs low for the chosen model's price.
"""

from __future__ import annotations

import gradio as gr

from ..billing import ledger
from ..chats import conversations
from ..errors import GemmaChatError
from .common import notice
from .text import language_of, text, translated


class SettingsPart:
    """The chat's model and system prompt."""

    @staticmethod
    def _keep_chat_settings(user_id: int, conversation_id: int, tier, system_prompt: str) -> None:
        """The chat remembers the model and system prompt of its latest turn (restored when reopened)."""
        try:
            current = conversations.chat_settings(user_id, conversation_id)
            if (current.tier, current.system_prompt) != (tier, system_prompt):
                conversations.save_chat_settings(user_id, conversation_id, tier, system_prompt)
        except GemmaChatError:
            pass  # the chat was deleted meanwhile: nothing to remember

    def chosen_tier(self, tier):
        """The picker's model as the engine has it now (its price, whether it is up); None for a name it does not serve."""
        return next((status for status in self.engine.tiers() if status.tier == tier), None)

    def low_balance_hint(self, user_id: int, tier, language: str) -> str:
        """Before the balance cannot pay for the chosen model: say so beside the box."""
        model = self.chosen_tier(tier)
        if model is None:
            return ""
        price = model.price
        available = ledger.get_balance(user_id).available
        if available >= 2 * price:
            return ""
        key = "balance_low" if available >= price else "balance_too_low"
        return text(language, key, n=available, price=price)

    def choose_model(self, request: gr.Request, tier, system_prompt):
        """A model chosen in the picker: the open chat keeps it, and the balance hint is for its price
        (Regenerate's price follows the picker's change: wire_chat_settings)."""
        found = self.signed_in(request)
        language = language_of(request)
        open_id = conversations.open_conversation_of(found.user.id, found.session_id)
        if open_id is not None and self.chosen_tier(tier) is not None:
            self._keep_chat_settings(found.user.id, open_id, tier, self._system_prompt_or_kept(found, open_id, system_prompt))
        return {"chat_notice": self.low_balance_hint(found.user.id, tier, language)}

    def save_system_prompt(self, request: gr.Request, tier, system_prompt):
        """The system prompt box left: the open chat keeps what it says (a new chat, with its first message)."""
        found = self.signed_in(request)
        language = language_of(request)
        open_id = conversations.open_conversation_of(found.user.id, found.session_id)
        try:
            cleaned = conversations.clean_system_prompt(system_prompt)
        except GemmaChatError as exc:
            return {"settings_notice": notice(translated(language, exc))}
        if open_id is None:
            return {"settings_notice": ""}
        kept = conversations.chat_settings(found.user.id, open_id)
        conversations.save_chat_settings(found.user.id, open_id, kept.tier, cleaned)
        return {"settings_notice": text(language, "system_prompt_saved") if cleaned != kept.system_prompt else ""}

    @staticmethod
    def _system_prompt_or_kept(found, open_id, system_prompt) -> str:
        try:
            return conversations.clean_system_prompt(system_prompt)
        except GemmaChatError:
            return conversations.chat_settings(found.user.id, open_id).system_prompt

    def build_chat_settings(self, t, c: dict) -> None:
        with gr.Accordion(t("chat_settings"), open=False, elem_id="chat-settings"):
            c["system_prompt"] = gr.Textbox(
                label=t("system_prompt"), info=t("system_prompt_info"), lines=3, max_lines=12, elem_id="system-prompt",
            )
            c["settings_notice"] = gr.Markdown(elem_id="settings-notice")

    def wire_chat_settings(self, c: dict) -> None:
        model, system_prompt = c["model"], c["system_prompt"]
        quiet = dict(api_name=False, show_progress="hidden")
        self.wire(model.input, self.choose_model, ["model", "system_prompt"], ["chat_notice"], **quiet)
        # Chosen here or by the page (a reopened chat's model): Regenerate's price, and whether it is paid for.
        self.wire(model.change, self.action_state, ["model"], ["regenerate_button", "edit_button"], **quiet)
        self.wire(system_prompt.blur, self.save_system_prompt, ["model", "system_prompt"], ["settings_notice"], api_name=False)
