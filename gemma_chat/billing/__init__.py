"""The money: the ledger, statements, idempotent requests."""
