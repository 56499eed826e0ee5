"""The gRPC door: server setup, the Inference servicer, interceptors (auth, decoding), transport limits."""
