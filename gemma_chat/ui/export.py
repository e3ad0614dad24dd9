"""A chat as a file: Markdown to read, JSON to keep (chats/documents.py's format, which Import reads
back); and all of a user's chats as one JSON file (the Account tab), each chat as its own export has it.

The file goes to the browser inside an event's output and is saved there (sidebar.py's DOWNLOAD_JS):
nothing is written where Gradio would serve it by URL.
"""

from __future__ import annotations

import json
import re
import time

from ..chats import documents


def chat_markdown(data: dict) -> str:
    lines = [f"# {data['title']}", ""]
    if data["system_prompt"]:
        lines += ["> System prompt: " + data["system_prompt"].replace("\n", "\n> "), ""]
    for turn in data["turns"]:
        lines += ["**You:**", "", turn["prompt"], "", f"**{turn['model']}:**", "", turn["answer"] or f"_({turn['status']})_", ""]
    return "\n".join(lines)


def file_name(title: str, extension: str) -> str:
    stem = re.sub(r"[^\w.-]+", "-", title, flags=re.UNICODE).strip("-.")[:60] or "chat"
    return f"{stem}.{extension}"


def chat_file(user_id: int, conversation_id: int, kind: str) -> str:
    """The payload DOWNLOAD_JS saves: the file's name, type and text (and when, so a second export
    of the same chat is a change the page sees)."""
    data = documents.chat_document(user_id, conversation_id)
    if kind == "json":
        payload = {"name": file_name(data["title"], "json"), "type": "application/json",
                   "text": json.dumps(data, ensure_ascii=False, indent=2)}
    else:
        payload = {"name": file_name(data["title"], "md"), "type": "text/markdown", "text": chat_markdown(data)}
    return json.dumps({**payload, "at": time.time()}, ensure_ascii=False)


def all_chats_file(user_id: int) -> str:
    """The payload DOWNLOAD_JS saves, as chat_file's: all of the user's chats in one JSON file."""
    data = documents.all_chats_document(user_id)
    name = f"gemma-chat-chats-{data['exported_at'][:10]}.json"
    text = json.dumps(data, ensure_ascii=False, indent=2)
    return json.dumps({"name": name, "type": "application/json", "text": text, "at": time.time()}, ensure_ascii=False)
