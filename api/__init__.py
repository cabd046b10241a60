"""The HTTP API: thin FastAPI routes over Temporal (commands) and the database (read model)."""
