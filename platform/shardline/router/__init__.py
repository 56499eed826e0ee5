"""The gRPC router: admission, streaming, health and reflection."""
