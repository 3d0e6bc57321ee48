"""Tests of ptuning.handcrafted: templates, verbalizers, scorers, zero- and few-shot runs.

Fixtures shared by every folder are in tests/conftest.py."""
