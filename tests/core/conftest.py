"""Tests of ptuning.core: the injection, prompts, precision and the caches, on tiny backbones.

Fixtures shared by every folder are in tests/conftest.py."""
