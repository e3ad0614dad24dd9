"""Our own prompt format for models without a chat template (the bundled 270M base model), shared by
the local worker and the remote `api = "completions"` backend so both ask a base model the same way.

Forcing a chat template on a base model makes it loop; a short few-shot transcript at low temperature
gets short, sensible answers, and the stop strings end each answer.
"""

from __future__ import annotations

from typing import Mapping, Sequence

TRANSCRIPT_PREAMBLE = (
    "Below are questions and the answers of a helpful, knowledgeable assistant.\n\n"
    "Q: What is the largest planet in the solar system?\n"
    "A: Jupiter is the largest planet in the solar system.\n\n"
    "Q: How many days are in a week?\n"
    "A: A week has seven days.\n\n"
)
TRANSCRIPT_STOP = ["\nQ:", "\nA:", "\n\n"]
TRANSCRIPT_SAMPLING = {"temp": 0.3, "top_k": 64, "top_p": 0.95, "min_p": 0.05, "repeat_penalty": 1.1}


def transcript_prompt(turns: Sequence[Mapping[str, str]]) -> str:
    """The preamble, then "Q: …\\nA: …\\n\\n" per earlier turn, ending "Q: <last>\\nA:" for the model to go on."""
    parts = [TRANSCRIPT_PREAMBLE]
    for turn in turns:
        if turn["role"] == "user":
            parts.append(f"Q: {turn['content'].strip()}\nA:")
        else:
            parts.append(f" {turn['content'].strip()}\n\n")
    return "".join(parts)
