"""Shared test fixtures."""

pytest_plugins = ["conftest_swap_models"]
