"""Who may do what: sign-in, sessions, API keys, administrator actions."""
