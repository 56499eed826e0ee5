"""The seam to inference engines: a protocol, and the vLLM adapter (the only vLLM importer)."""
