"""Tests of the command line (ptuning.cli, ptuning.commands): end to end, errors, user journeys.

Fixtures shared by every folder are in tests/conftest.py."""
