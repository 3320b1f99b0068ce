"""Fixtures of the console's contract tests."""

from tests.console_support import console_env  # noqa: F401 - a fixture, found by pytest here
