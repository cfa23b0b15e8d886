"""Central storage: SQLAlchemy 2 models, engines for SQLite and PostgreSQL, Alembic migrations."""
