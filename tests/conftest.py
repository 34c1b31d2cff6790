"""Shared test fixtures."""

# A throwaway PostgreSQL server on 127.0.0.1 for the PostgreSQL store tests, and the tiny
# local SLMs the swap and fallback tests serve.
pytest_plugins = ["tests.postgres_server", "conftest_swap_models"]
