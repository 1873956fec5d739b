"""Moving models: Ollama-registry pull and push, resumable downloads, model sources."""
