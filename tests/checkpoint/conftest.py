"""Tests of ptuning.checkpoint: atomic writes and the validation of every checkpoint file.

Fixtures shared by every folder are in tests/conftest.py."""
