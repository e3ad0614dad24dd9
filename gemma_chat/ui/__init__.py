"""The Gradio screens, one module per part; app.py composes them into the Blocks web/app.py mounts."""

from .app import ChatApp, build_app, use_served_route_app
from .common import SESSION_COOKIE, owned, owned_by, session_token
from .session import PAGE_JS
from .transcript import chat_messages

__all__ = [
    "PAGE_JS", "SESSION_COOKIE", "ChatApp", "build_app", "chat_messages", "owned", "owned_by", "session_token",
    "use_served_route_app",
]
