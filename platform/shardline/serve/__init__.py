"""Ray Serve deployments (engine replicas, the router) and the app builder."""
