"""Model artifacts Shardline builds itself (tiny local models for tests and the demo)."""
