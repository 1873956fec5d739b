"""The model store and its formats: names, manifests, Modelfiles, GGUF headers, create, show."""
