"""Expert-parallel fused MoE: top-k routed tokens through the rank's local experts."""
