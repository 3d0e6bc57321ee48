"""Tests of ptuning.training: runs, multi-task runs, resume, early stopping, settings, output folders.

Fixtures shared by every folder are in tests/conftest.py."""
