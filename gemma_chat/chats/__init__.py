"""Chats: one turn end to end, conversations, history, the interaction log."""
