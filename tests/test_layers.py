"""The layers of the package: no import circles, no module takes a name from the package facade,
`core` stands on nothing above it, the library never imports the command line or the experiments,
`import ptuning.cli` (and so `ptuning --help`) loads no torch, every error has one base and one home."""

from __future__ import annotations

import ast
import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

import ptuning
from ptuning import errors

PACKAGE = Path(ptuning.__file__).resolve().parent


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    hidden: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            hidden.update(id(sub) for sub in ast.walk(node))
    return hidden


def import_graph(*, top_level_only: bool = False) -> dict[str, set[str]]:
    """ptuning module -> the ptuning modules it imports (at module level, and inside functions
    unless `top_level_only`); imports under `if TYPE_CHECKING:` never run and are left out."""
    files = {_module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        hidden = _type_checking_nodes(tree)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        nodes = tree.body if top_level_only else ast.walk(tree)
        edges: set[str] = set()
        for node in nodes:
            if id(node) in hidden:
                continue
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    module = ".".join(base + ([node.module] if node.module else []))
                else:
                    module = node.module or ""
                # `from a import b` imports a, and a.b too where b is a module
                targets = [module, *(f"{module}.{alias.name}" for alias in node.names)]
            else:
                continue
            edges.update(target for target in targets if target in files and target != name)
        graph[name] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def facade_imports() -> list[str]:
    """`module:line` of every import, in the package, that takes a name from the facade
    (`ptuning/__init__.py`): `import ptuning`, `from ptuning import X`, `from .. import X` where X
    is not a submodule. Inside the package names come from the module that defines them."""
    files = {_module_name(path): path for path in PACKAGE.rglob("*.py")}
    found = []
    for name, path in files.items():
        if name == "ptuning":
            continue
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                if any(alias.name == "ptuning" for alias in node.names):
                    found.append(f"{name}:{node.lineno}")
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    module = ".".join(base + ([node.module] if node.module else []))
                else:
                    module = node.module or ""
                if module == "ptuning" and any(f"ptuning.{alias.name}" not in files for alias in node.names):
                    found.append(f"{name}:{node.lineno}")
    return found


def test_cycle_finder_finds_a_circle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [{"a", "b", "c"}]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_import_graph_sees_imports_inside_functions():
    full, top = import_graph(), import_graph(top_level_only=True)
    assert "ptuning.checkpoint" in full["ptuning.model"]  # loading: PromptModel.from_pretrained
    assert "ptuning.training.transfer" in full["ptuning.training.run"]  # imported inside run() (--init-from)
    assert "ptuning.training.transfer" not in top["ptuning.training.run"]
    assert len(full) > 40  # every module of the package was read


def test_no_import_circle_at_module_level():
    assert cycles(import_graph(top_level_only=True)) == []


# `training.train()` hands a run to its method's train hook (`ptuning.methods`: "module:function",
# imported when called): `multitask.train_prompt_model`, which builds on `training.run`, or
# `handcrafted.run`, which builds on the Trainer machinery of `trainer`: no circle, not even
# through imports inside functions.
def test_no_import_circle_inside_functions():
    assert cycles(import_graph()) == []


def test_the_library_never_imports_the_command_line():
    importers = sorted(name for name, edges in import_graph().items() if "ptuning.cli" in edges)
    assert importers == ["ptuning.__main__"]


def _inside(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def test_the_library_never_imports_the_commands_or_the_experiments():
    graph = import_graph()
    command_line = ("ptuning.cli", "ptuning.__main__", "ptuning.commands")
    commands_importers = sorted(
        name
        for name, edges in graph.items()
        if not any(_inside(name, top) for top in command_line)
        and any(_inside(edge, "ptuning.commands") for edge in edges)
    )
    assert commands_importers == []
    experiments_importers = sorted(
        name
        for name, edges in graph.items()
        if not _inside(name, "ptuning.experiments")
        and any(_inside(edge, "ptuning.experiments") for edge in edges)
    )
    # the two commands that run them; nothing of the library
    assert experiments_importers == ["ptuning.commands.bench", "ptuning.commands.report"]


def test_no_module_takes_a_name_from_the_package_facade():
    assert facade_imports() == []


def test_the_facade_finder_sees_a_climb_back_up(tmp_path, monkeypatch):
    package = tmp_path / "ptuning"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("__version__ = '1'\n")
    (package / "errors.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "sub" / "a.py").write_text("from .. import __version__\nfrom .. import errors\n")
    (package / "sub" / "b.py").write_text("def f():\n    import ptuning\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", package)
    assert sorted(facade_imports()) == ["ptuning.sub.a:1", "ptuning.sub.b:2"]


# core: the injection, prompts, backbones, settings, precision and the shallow cache, readable on their own
# leaves that import nothing of ptuning: the errors, the task types, the version, the method registry
CORE_MAY_IMPORT = {"ptuning.errors", "ptuning.tasks", "ptuning._version", "ptuning.methods"}


def test_core_imports_nothing_above_it():
    graph = import_graph()
    core = sorted(name for name in graph if _inside(name, "ptuning.core"))
    assert "ptuning.core.injection" in core and "ptuning.core.config" in core
    climbs = {
        name: sorted(
            edge for edge in graph[name] if not _inside(edge, "ptuning.core") and edge not in CORE_MAY_IMPORT
        )
        for name in core
    }
    assert climbs == dict.fromkeys(core, [])


def test_import_cli_and_help_load_no_torch():
    """In a fresh interpreter: `import ptuning.cli` and every command's --help leave torch and
    transformers unimported (so `ptuning --help` answers at once)."""
    code = (
        "import sys\n"
        "import ptuning.cli\n"
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'import ptuning.cli'\n"
        "for argv in [['--help']] + [[name, '--help'] for name in ptuning.cli.COMMANDS]:\n"
        "    try:\n"
        "        ptuning.cli.main(argv)\n"
        "    except SystemExit as exc:\n"
        "        assert exc.code == 0, argv\n"
        "    heavy = sorted(m for m in ('torch', 'transformers', 'numpy') if m in sys.modules)\n"
        "    assert not heavy, (argv, heavy)\n"
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(PACKAGE.parent), os.environ.get("PYTHONPATH")])),
    }
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage: ptuning" in done.stdout


def test_package_names_load_on_first_use():
    from ptuning.model import PromptModel

    assert ptuning.PromptModel is PromptModel
    for name in ptuning.__all__:
        assert getattr(ptuning, name) is not None, name
    assert set(ptuning.__all__) <= set(dir(ptuning))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        ptuning.nope  # noqa: B018


def test_every_error_has_one_base_and_one_home():
    from ptuning.core import backbones, shallow_cache
    from ptuning.core.shallow_cache import ShallowCacheError
    from ptuning.errors import BackboneError, CheckpointError, DataError, UserError
    from ptuning.serving import UnknownTaskError

    for kind in (DataError, BackboneError, CheckpointError, UserError):
        assert kind.__module__ == "ptuning.errors", kind
        assert getattr(ptuning, kind.__name__) is kind  # and the facade names it
    # the former homes export them no more (their modules use them, nothing re-exports them)
    assert "BackboneError" not in getattr(backbones, "__all__", ())
    assert ShallowCacheError.__module__ == shallow_cache.__name__
    for gone in ("FIELDS", "_too_long"):
        assert not hasattr(importlib.import_module("ptuning.inference"), gone), gone
    assert not hasattr(importlib.import_module("ptuning.tasks"), "DataError")
    assert not hasattr(importlib.import_module("ptuning.training.trainer"), "load_data")
    assert "_gap_table" not in importlib.import_module("ptuning.experiments.report").__all__

    assert (DataError, BackboneError, CheckpointError, UserError) == (
        errors.DataError,
        errors.BackboneError,
        errors.CheckpointError,
        errors.UserError,
    )
    for kind in (DataError, BackboneError, CheckpointError, ShallowCacheError, UnknownTaskError):
        assert issubclass(kind, errors.PtuningError), kind
    for kind in (DataError, BackboneError, CheckpointError):  # the CLI prints them as one line, exit 2
        assert issubclass(kind, errors.UserError) and issubclass(kind, ValueError), kind
    assert issubclass(UnknownTaskError, errors.ServingError)
