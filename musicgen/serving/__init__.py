"""The melody service: pydantic schemas, the Ray Serve deployments (one per style) and the app builder."""
