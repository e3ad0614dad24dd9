"""Running models: the engine, the GGUF model files and their tiers, memory, downloads."""
