"""Security: who may call (auth) and what may be loaded (model integrity)."""
