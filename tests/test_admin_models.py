"""The Admin tab's Models section against a real engine: states, and Restart model after repeated crashes."""

from __future__ import annotations

import dataclasses
import os
import signal
import time

import pytest

from conftest import signed_in_request
from gemma_chat.inference.engine import Engine
from gemma_chat.errors import GemmaChatError
from gemma_chat.ui import ChatApp

pytestmark = [pytest.mark.slow, pytest.mark.worker]


def wait_for(predicate, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_an_admin_sees_each_model_and_restarts_one_that_crashed_too_often(chat_settings):
    engine = Engine.load(dataclasses.replace(chat_settings, worker_crash_limit=1), log=lambda line: None)
    try:
        app = ChatApp(chat_settings, engine)
        admin = signed_in_request(chat_settings, "root")  # the first account is the administrator
        member = signed_in_request(chat_settings, "member")

        shown = app.models_state(admin)
        assert shown["models_table"].values.tolist() == [
            ["mini", "Gemma 3 270M (bundled demo) for mini", "local", "ready", shown["models_table"].iloc[0, 4]],
            ["pro", "Gemma 3 270M (bundled demo) for pro", "local", "ready", shown["models_table"].iloc[1, 4]],
        ]
        with pytest.raises(GemmaChatError, match="Administrators only"):
            app.models_state(member)
        with pytest.raises(GemmaChatError, match="Administrators only"):
            app.restart_model(member, "mini")

        os.kill(engine.backend("mini").worker_pid, signal.SIGKILL)  # one crash is the limit here
        assert wait_for(lambda: engine.backend("mini").state == "crashed")
        row = app.models_state(admin)["models_table"].values.tolist()[0]
        assert row[3] == "crashed" and "stopped once within 5 minutes (last: SIGKILL" in row[4]

        with pytest.raises(GemmaChatError, match="Choose the model"):
            app.restart_model(admin, "max")
        restarted = app.restart_model(admin, "mini")
        assert restarted["models_message"].startswith("Restarting the mini model")
        assert wait_for(lambda: engine.backend("mini").state == "ready")
        assert app.models_state(admin)["models_table"].values.tolist()[0][3] == "ready"
    finally:
        engine.close()
