"""The HTTP API (FastAPI): one router per resource in routes/."""
