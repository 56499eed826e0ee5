"""Int8 weight-only linear (W8A16): int8 weights, one scale per output channel."""
