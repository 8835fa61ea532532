"""The endpoint picker: pool state, metrics scraping and scheduling of inference requests onto model-server endpoints."""
