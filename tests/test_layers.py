"""The layers of the package: no import circles, the library never imports the command line,
`import ptuning.cli` (and so `ptuning --help`) loads no torch, every error has one base."""

from __future__ import annotations

import ast
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


def test_cycle_finder_finds_a_circle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [{"a", "b", "c"}]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_import_graph_sees_imports_inside_functions():
    full, top = import_graph(), import_graph(top_level_only=True)
    assert "ptuning.checkpoint" in full["ptuning.modeling"]  # loading: PromptModel.from_pretrained
    assert "ptuning.transfer" in full["ptuning.training"]  # imported inside run() (--init-from)
    assert "ptuning.transfer" not in top["ptuning.training"]
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
    from ptuning.modeling import PromptModel

    assert ptuning.PromptModel is PromptModel
    for name in ptuning.__all__:
        assert getattr(ptuning, name) is not None, name
    assert set(ptuning.__all__) <= set(dir(ptuning))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        ptuning.nope  # noqa: B018


def test_every_error_has_one_base_and_keeps_its_old_home():
    from ptuning.backbones import BackboneError
    from ptuning.checkpoint import CheckpointError
    from ptuning.cli import UserError
    from ptuning.data.spec import DataError
    from ptuning.serving import UnknownTaskError
    from ptuning.shallow_cache import ShallowCacheError

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
