"""Tests of ptuning.data: built-in tasks, user files in every format, features (fixture files: tests/fixtures).

Fixtures shared by every folder are in tests/conftest.py."""
