"""Tests of ptuning.serving: the engine, the HTTP app, its limits and hardening (shared: helpers.ServerThread).

Fixtures shared by every folder are in tests/conftest.py."""
