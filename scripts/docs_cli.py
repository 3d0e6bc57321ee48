"""The CLI reference page of the docs site, generated from `ptuning.cli`'s argparse parsers.

Used two ways:
  * as an MkDocs hook (mkdocs.yml `hooks:`): `on_files` adds `reference/cli.md` to the site at
    build time, so the page cannot drift from the parsers and is never committed;
  * as a script: `python scripts/docs_cli.py [FILE]` prints (or writes) the same Markdown.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

PAGE = "reference/cli.md"
# argparse wraps --help to $COLUMNS; a fixed width keeps the page the same on every machine.
WIDTH = "100"

try:  # an installed ptuning (scripts/install.sh) or PYTHONPATH=src
    import ptuning.cli  # noqa: F401
except ImportError:  # a bare checkout: the source tree next to this script
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def subcommand_parsers() -> dict[str, argparse.ArgumentParser]:
    """Every subcommand's parser, in the order `ptuning --help` lists them."""
    from ptuning.cli import build_parser

    parser = build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise RuntimeError("ptuning.cli.build_parser() has no subcommands")


def _help(parser: argparse.ArgumentParser) -> str:
    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = WIDTH
    try:
        return parser.format_help().rstrip()
    finally:
        if previous is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = previous


def render() -> str:
    """The Markdown of the CLI reference: `ptuning --help`, then each subcommand's --help."""
    from ptuning.cli import available_commands, build_parser

    commands = available_commands()
    lines = [
        "# Command line reference",
        "",
        "Generated from the argparse parsers of `ptuning.cli` when the site is built: each block is",
        "that command's `--help`. Every option of `ptuning train` and `ptuning tune` comes from a",
        "documented field of `ptuning.TrainConfig` or `ptuning.PromptConfig`.",
        "",
    ]
    lines += [f"- [`ptuning {name}`](#ptuning-{name}): {text}" for name, (_, text) in commands.items()]
    lines += ["", "## `ptuning`", "", "```text", _help(build_parser()), "```", ""]
    for name, parser in subcommand_parsers().items():
        lines += [f"## `ptuning {name}`", "", "```text", _help(parser), "```", ""]
    return "\n".join(lines)


def on_files(files, config):  # MkDocs hook
    from mkdocs.structure.files import File

    files.append(File.generated(config, PAGE, content=render()))
    return files


if __name__ == "__main__":
    text = render() + "\n"
    if len(sys.argv) > 1:
        Path(sys.argv[1]).write_text(text)
    else:
        sys.stdout.write(text)
