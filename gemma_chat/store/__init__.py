"""The storage layer's engine-specific parts: the dialect seam and the schema's per-engine statements.

gemma_chat.db owns the models, the connection and the transactions; this package owns what differs
between SQLite (the embedded default) and PostgreSQL (a shared deployment).
"""
