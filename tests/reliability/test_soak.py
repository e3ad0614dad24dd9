"""The soak (bench/soak.py) for two minutes: eight users on the real app, page and /v1 mixed, Stops,
disconnects, and a worker SIGKILL a minute. `python -m bench --only soak --minutes 30` is the long run."""

from __future__ import annotations

import pytest

from bench.soak import run_soak
from conftest import MODEL_CACHE
from gemma_chat.inference.model_files import BUNDLED_FILE_NAME

pytestmark = pytest.mark.slow

MINUTES = 2  # CI's budget: the suite stays under 60 minutes


def test_two_minutes_of_eight_users_and_worker_kills_keep_the_books_exact_and_memory_flat(tmp_path):
    result = run_soak(MODEL_CACHE / BUNDLED_FILE_NAME, tmp_path, minutes=MINUTES, log=lambda _: None)

    assert result["app_alive_at_end"] and result["worker_kills"] == MINUTES  # one a minute
    assert result["unexpected_count"] == 0, result["unexpected"]
    assert result["tracebacks_in_app_output"] == 0
    # Every kind of request ran, and a killed worker failed some answers cleanly.
    assert set(result["requests_by_action"]) >= {"ui_chat", "ui_stop", "ui_disconnect", "v1_chat", "v1_stream", "v1_disconnect"}
    # ...and people got answers, in the page and through /v1 (a page event of the wrong shape is
    # refused, and a soak of refusals would keep the books exact too)
    assert result["outcomes"].get("ui_chat: answered", 0) > 0, result["outcomes"]
    assert result["outcomes"].get("v1_chat: answered", 0) + result["outcomes"].get("v1_stream: answered", 0) > 0, result["outcomes"]
    assert result["holds_left"] == 0
    assert result["lost_credits"] == 0 and result["doubled_credits"] == 0
    assert result["charges_match_turns"]
    assert result["verify_problems"] == []
    assert result["rss"]["app"]["flat"], result["rss"]
    assert result["rss"]["workers"]["flat"], result["rss"]
