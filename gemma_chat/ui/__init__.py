"""The Gradio screens, one module per part; app.py composes them into the Blocks web/app.py mounts."""

from .app import PAGE_JS, SESSION_COOKIE, ChatApp, build_app, chat_messages, owned, owned_by, use_served_route_app

__all__ = ["PAGE_JS", "SESSION_COOKIE", "ChatApp", "build_app", "chat_messages", "owned", "owned_by", "use_served_route_app"]
