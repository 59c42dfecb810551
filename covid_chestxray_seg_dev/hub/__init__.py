"""Helpers for testing against a Hub without the network: a strict local Hub server and
the pytest plugin that points both test suites (`tests/`, `compat/datasets3/`) at it."""
