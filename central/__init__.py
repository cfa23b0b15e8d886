"""Central: the work-order service (FastAPI), its storage, domain logic and edge ingest.

Depends on ``fieldloop`` contracts only, never on ``edge_agent``.
"""
