"""Generated gRPC stubs for the `shardline.v1` proto package (`make protos`)."""
