"""Model backends: one interface (base.py); local.py runs llama.cpp in supervised worker processes,
openai.py talks to an OpenAI-compatible server."""
