"""Tests of ptuning.tuning (ptuning tune) and of --config settings files.

Fixtures shared by every folder are in tests/conftest.py."""
