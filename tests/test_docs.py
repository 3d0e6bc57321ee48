"""The README quick start and the docs site: the two commands first, and references that cannot drift.

`mkdocs build --strict` (.ci/run) checks links and API names; these tests check what it cannot:
the README's shape, that the generated CLI page covers every subcommand and option, and that the
site's nav and API page follow the code.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = REPO / "docs"

MAIN_JOB = "bash scripts/install.sh && PTUNING_DATA=../shared/data .venv/bin/ptuning train"
TESTS = "bash scripts/install.sh && .venv/bin/python -m pytest -q"


def _docs_cli():
    spec = importlib.util.spec_from_file_location("docs_cli", REPO / "scripts" / "docs_cli.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _code_blocks(text: str) -> list[str]:
    return [block.strip() for block in re.findall(r"^```[a-z]*\n(.*?)^```", text, re.M | re.S)]


def test_readme_is_short_and_starts_with_the_two_commands():
    text = README.read_text()
    assert len(text.splitlines()) <= 200
    blocks = _code_blocks(text)
    assert blocks[:2] == [MAIN_JOB, TESTS]
    # nothing but the title and the introduction comes before them
    before = text[: text.index(MAIN_JOB)]
    assert before.count("\n## ") == 1, "the two commands are the README's first section"


def test_ci_runs_the_readme_test_command_and_builds_the_docs_strictly():
    ci = (REPO / ".ci" / "run").read_text()
    assert TESTS in ci
    build = next(line for line in ci.splitlines() if "mkdocs build" in line)
    assert "--strict" in build and "--site-dir" in build
    assert ci.index(TESTS) < ci.index(build)


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    return _docs_cli().subcommand_parsers()


def test_cli_reference_has_every_subcommand_and_option():
    from ptuning.cli import available_commands

    page = _docs_cli().render()
    parsers = _subcommands()
    assert set(parsers) == set(available_commands())
    for name, parser in parsers.items():
        section = page.split(f"## `ptuning {name}`\n", 1)
        assert len(section) == 2, f"no section for ptuning {name}"
        body = section[1].split("\n## ", 1)[0]
        assert f"usage: ptuning {name}" in body
        for action in parser._actions:
            for option in action.option_strings:
                assert option in body, f"ptuning {name}: {option} missing from the CLI reference"


def test_cli_reference_does_not_depend_on_the_terminal_width(monkeypatch):
    docs_cli = _docs_cli()
    monkeypatch.setenv("COLUMNS", "40")
    narrow = docs_cli.render()
    monkeypatch.setenv("COLUMNS", "300")
    assert docs_cli.render() == narrow


def _nav_pages(entries) -> list[str]:
    pages = []
    for entry in entries:
        value = next(iter(entry.values())) if isinstance(entry, dict) else entry
        pages += _nav_pages(value) if isinstance(value, list) else [value]
    return pages


def test_every_nav_page_exists_and_every_page_is_in_the_nav():
    config = yaml.safe_load((REPO / "mkdocs.yml").read_text())
    nav = _nav_pages(config["nav"])
    generated = {_docs_cli().PAGE}
    assert generated <= set(nav)
    for page in set(nav) - generated:
        assert (DOCS / page).is_file(), f"mkdocs.yml names {page}, which is not in docs/"
    on_disk = {str(path.relative_to(DOCS)) for path in DOCS.rglob("*.md")}
    assert on_disk <= set(nav), f"pages missing from the nav: {sorted(on_disk - set(nav))}"
    assert not (generated & on_disk), "the generated CLI page must not be committed"


@pytest.mark.parametrize("page", ["README.md", *sorted(str(p.relative_to(REPO)) for p in DOCS.rglob("*.md"))])
def test_docs_name_the_public_api_by_its_top_level_names(page):
    """Modules are moving into sub-folders: `::: ptuning.x.Y` would break, `::: ptuning.Y` does not."""
    text = (REPO / page).read_text()
    for target in re.findall(r"^::: (\S+)", text, re.M):
        assert target.count(".") == 1, f"{page}: '::: {target}' names a module path"


def test_api_reference_covers_every_public_name():
    import ptuning

    api = (DOCS / "reference" / "api.md").read_text()
    errors = (DOCS / "reference" / "errors.md").read_text()
    documented = set(re.findall(r"^::: ptuning\.(\w+)", api, re.M))
    documented |= set(re.findall(r"^\s+- (\w+)$", errors, re.M))  # the members of ::: ptuning.errors
    missing = {name for name in ptuning.__all__ if name != "__version__"} - documented
    assert not missing, f"add '::: ptuning.NAME' to docs/reference/api.md for {sorted(missing)}"
