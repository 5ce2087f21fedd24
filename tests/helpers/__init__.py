"""Shared test helpers, imported as tests.helpers.NAME (never by bare module name)."""
