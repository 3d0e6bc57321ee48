"""The method registry: every method registered once, and nothing above it branching on a method's name."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import ptuning
from ptuning.methods import Method, find_method, get_method, method_names, register_method

PACKAGE = Path(ptuning.__file__).resolve().parent
# where a method's name may be tested: the registry, and a method's own package
OWN_PLACES = ("methods.py", "handcrafted/")
# The report's tables of the paper's results: rows keyed by the paper's methods, compared by name
# (PT-2 against FT and PT), which is data, not a method's behaviour. file -> how many such tests.
# The benchmark's rows: "fine-tune" is the row its ratios divide by, and a worker's "handcrafted"
# is one of the benchmark's own kinds of row (beside "ours" and "peft").
ALLOWED = {
    "experiments/report/gaps.py": 4,
    "experiments/report/render.py": 2,
    "experiments/report/aggregate.py": 1,
    "experiments/report/study.py": 4,  # the study's verdicts: p-tuning-v2 against fine-tune, by name
    "commands/bench.py": 1,
    "experiments/bench/worker.py": 1,
}


def _names(node: ast.AST, names: set[str]) -> list[str]:
    """Method names the comparison operand `node` holds: a literal, a tuple / list / set of
    literals, or the name HANDCRAFTED."""
    if isinstance(node, ast.Constant) and node.value in names:
        return [node.value]
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return [n for element in node.elts for n in _names(element, names)]
    if isinstance(node, ast.Name | ast.Attribute) and ast.unparse(node).endswith("HANDCRAFTED"):
        return ["HANDCRAFTED"]
    return []


def method_branches(source: str, names: set[str]) -> list[tuple[int, str]]:
    """(line, test) of every comparison (==, !=, in, not in, is) against a method name in `source`."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare) and any(
            _names(operand, names) for operand in (node.left, *node.comparators)
        ):
            found.append((node.lineno, ast.unparse(node)))
    return found


def test_the_finder_finds_name_tests():
    names = {"fine-tune", "handcrafted"}
    code = (
        "a = method == 'fine-tune'\nb = m in ('x', 'handcrafted')\nc = cfg.method != HANDCRAFTED\n"
        "d = get_method(m).deep\ne = {'fine-tune': 1}['fine-tune']\nf = m == 'fine-tuned'\n"
    )
    assert [line for line, _ in method_branches(code, names)] == [1, 2, 3]


def test_nothing_above_the_registry_branches_on_a_method_name():
    names = set(method_names())
    counts: dict[str, list[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        where = path.relative_to(PACKAGE).as_posix()
        if where.startswith(OWN_PLACES):
            continue
        for line, test in method_branches(path.read_text(), names):
            counts.setdefault(where, []).append(f"{where}:{line}: {test}")
    over = [hit for where, hits in counts.items() if len(hits) > ALLOWED.get(where, 0) for hit in hits]
    assert over == [], "ask ptuning.methods.get_method(name) instead:\n" + "\n".join(over)


def test_registered_methods_and_their_properties():
    assert method_names() == ("p-tuning-v2", "prefix-tuning", "prompt-tuning", "fine-tune", "handcrafted")
    assert method_names(prompt_model=True) == ptuning.METHODS
    assert [m for m in method_names() if get_method(m).deep] == ["p-tuning-v2", "prefix-tuning"]
    assert not get_method("fine-tune").freezes_backbone and not get_method("fine-tune").has_prompt
    assert not get_method("handcrafted").gradient and get_method("handcrafted").zero_shot
    assert [m for m in method_names() if not get_method(m).servable] == ["fine-tune", "handcrafted"]
    assert find_method("nope") is None and find_method(3) is None
    with pytest.raises(ValueError, match="unknown method 'nope'; known: p-tuning-v2"):
        get_method("nope")
    with pytest.raises(ValueError, match="already registered"):
        register_method(Method("fine-tune", "again", learning_rate=1.0))


def test_hooks_resolve_to_callables():
    from ptuning.handcrafted.run import HandcraftedPredictor
    from ptuning.inference import Predictor
    from ptuning.training.multitask import train_prompt_model

    for name in method_names():
        method = get_method(name)
        for which in ("train", "predictor", "evaluator"):
            assert callable(method.hook(which))
    assert get_method("p-tuning-v2").hook("train") is train_prompt_model
    assert get_method("fine-tune").hook("predictor") == Predictor.from_prompt_checkpoint
    assert get_method("handcrafted").hook("predictor") == HandcraftedPredictor.from_checkpoint
    with pytest.raises(LookupError, match="no check_options hook"):
        get_method("fine-tune").hook("check_options")


def test_method_choices_and_spaces_come_from_the_registry():
    from typing import get_args

    from ptuning.training.config import TrainConfig, TrainMethod
    from ptuning.tuning.space import DEFAULT_SPACES

    assert get_args(TrainMethod) == method_names()
    assert list(DEFAULT_SPACES) == [m for m in method_names() if get_method(m).search_space]
    assert TrainConfig.build(method="handcrafted").max_train_samples == 0  # zero-shot by default
    assert TrainConfig.build(method="prefix-tuning").prompt.prefix_projection  # always the MLP
    assert TrainConfig.build(method="prompt-tuning", prefix_projection=True).lr == 1e-3
