"""Subcommands of the `ptuning` command line (see `ptuning.cli`)."""
