"""Shardline: YAML spec -> sharded vLLM replicas on Ray Serve, behind a gRPC router."""

__version__ = "0.1.0"
