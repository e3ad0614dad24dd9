"""A chat as a file: Markdown to read, JSON to keep (chats/documents.py's format, which Import reads
back); and all of a user's chats as one JSON file (the Account tab), each chat as its own export has it.

The file goes to the browser inside an event's output and is saved there (sidebar.py's DOWNLOAD_JS):
nothing is written where Gradio would serve it by URL. A file to import comes the other way, inside an
event's inputs (IMPORT_JS, used by the sidebar and the Account tab): nothing is uploaded.
"""

from __future__ import annotations

import json
import re
import time

from ..chats import documents
from ..numbers import positive_id


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


def file_size(value) -> int | None:
    """The chosen file's size in bytes as IMPORT_JS sends it; None when no file was chosen."""
    return 0 if value == "0" else positive_id(value)  # an empty file is a file


IMPORT_INPUTS = ["import_text", "import_size", "chat_search"]
# The edge takes an event of at most 8 MiB (web/edge.py MAX_JSON_BODY); the file's text goes in it
# escaped once, so a file that escapes to more than this counts as that large (a file of quotes, say).
MAX_SENT_BYTES = 7 * 1024 * 1024
# Import: the browser's own file chooser; the chosen file's text and size become the event's inputs
# (IMPORT_INPUTS), as an export comes back in an event's output. A file over the limit is not read:
# only its size is sent, and the server says it is too large. Cancelled: no size, nothing happens.
IMPORT_JS = """
async (text, size, search) => {
  const file = await new Promise((resolve) => {
    const input = document.createElement("input");
    input.type = "file";
    input.accept = ".json,application/json";
    input.style.display = "none";
    document.body.appendChild(input);
    const done = (chosen) => { input.remove(); resolve(chosen); };
    input.addEventListener("change", () => done(input.files && input.files[0] ? input.files[0] : null));
    input.addEventListener("cancel", () => done(null));
    input.click();
  });
  if (!file) return ["", "", search];
  if (file.size > %(limit)d) return ["", String(file.size), search];
  const read = await file.text();
  const sent = new Blob([JSON.stringify(read)]).size;
  if (sent > %(sent)d) return ["", String(sent), search];
  return [read, String(file.size), search];
}
""" % {"limit": documents.MAX_DOCUMENT_BYTES, "sent": MAX_SENT_BYTES}
