"""Tests of ptuning.interop: pipelines, PEFT adapters, the hub cache.

Fixtures shared by every folder are in tests/conftest.py."""
