"""Tests of ptuning.experiments: the benchmark (ptuning bench) and the report (ptuning report).

Fixtures shared by every folder are in tests/conftest.py."""
