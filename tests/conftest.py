"""Shared test fixtures."""

# A throwaway PostgreSQL server on 127.0.0.1 for the PostgreSQL store tests.
pytest_plugins = ["tests.postgres_server"]
