"""Search spaces of `ptuning tune`: the default space of each method and the `--space` syntax.

No Optuna here (the command's `--help` lists the spaces without importing it): a space is a dict of
parameter name -> `Range` (uniform, log-uniform for the learning rate) or `Choice` (categorical), and
`ptuning.tuning.search` turns it into `trial.suggest_*` calls.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ..core.limits import out_of_bounds
from ..errors import UserError
from ..methods import get_method, method_names

# parameter -> (the `ptuning train` option it sets, its type)
PARAMETERS: dict[str, tuple[str, type]] = {
    "lr": ("lr", float),
    # the learning rate of a reparameterized prefix, where a space searches it apart from `lr`
    "mlp_lr": ("lr", float),
    "prefix_len": ("prefix_len", int),
    "epochs": ("epochs", float),
    "prompt_dropout": ("prompt_dropout", float),
    "prefix_projection": ("prefix_projection", bool),
    "backbone_dropout": ("backbone_dropout", bool),
    "head_dropout": ("head_dropout", float),
    "prompt_layers": ("prompt_layers", int),
    "batch_size": ("batch_size", int),
}
# what only a prompt method has (fine-tune trains every weight and has no prompt)
PROMPT_ONLY = ("prefix_len", "prompt_dropout", "prefix_projection", "prompt_layers", "mlp_lr")
# A space with `mlp_lr` searches two learning rates, one per branch of `prefix_projection`: the
# prefix through its MLP trains best about ten times lower than a plain one (1e-3 against 1e-2 by
# default), and one shared range spends half its trials where the MLP's prefix outgrows the keys
# and values of the backbone. parameter -> (the parameter it depends on, the value it is searched at)
CONDITIONS: dict[str, tuple[str, Any]] = {
    "lr": ("prefix_projection", False),
    "mlp_lr": ("prefix_projection", True),
}
LOG_SCALE = ("lr", "mlp_lr")


def searched(name: str, space: Space, params: dict[str, Any]) -> bool:
    """Whether `name` is searched in a trial that has drawn `params` so far: `lr` and `mlp_lr`
    split by `prefix_projection` only where the space holds both."""
    if "mlp_lr" not in space or name not in CONDITIONS:
        return True
    on, value = CONDITIONS[name]
    return on in params and params[on] == value


def in_draw_order(space: Space) -> list[str]:
    """The space's parameters, those that others depend on first."""
    return sorted(space, key=lambda name: name in CONDITIONS and "mlp_lr" in space)


class SpaceError(UserError, ValueError):
    """A bad `--space` string (one line)."""


@dataclass(frozen=True)
class Range:
    """low..high, uniform (integers for an int parameter) or log-uniform (the learning rate)."""

    low: float
    high: float
    log: bool = False

    def describe(self) -> str:
        return f"{self.low:g}:{self.high:g}" + (" (log)" if self.log else "")


@dataclass(frozen=True)
class Choice:
    """One of the listed values."""

    values: tuple[Any, ...]

    def describe(self) -> str:
        return ",".join(_format(value) for value in self.values)


Space = dict[str, Range | Choice]


def describe_space(space: Space, sep: str = "=") -> str:
    """`lr=0.001:0.1 (log), prefix_len=8,16`; a split learning rate says which prefix it is for."""
    return ", ".join(
        f"{name}{sep}{dist.describe()}"
        + (f" (prefix_projection={_format(CONDITIONS[name][1])})" if not searched(name, space, {}) else "")
        for name, dist in space.items()
    )


def describe_spaces() -> str:
    """The default spaces, one method a line (for --help and the README)."""
    return "\n".join(f"  {method}: {describe_space(space)}" for method, space in DEFAULT_SPACES.items())


def _format(value: Any) -> str:
    return (
        str(value).lower()
        if isinstance(value, bool)
        else f"{value:g}"
        if isinstance(value, float)
        else str(value)
    )


def _number(name: str, kind: type, text: str, where: str) -> Any:
    text = text.strip()
    if kind is bool:
        if text.lower() in ("true", "on", "1"):
            return True
        if text.lower() in ("false", "off", "0"):
            return False
        raise SpaceError(f"{where}: {name} expects true or false, got {text!r}")
    try:
        value = float(text)
    except ValueError:
        raise SpaceError(f"{where}: {name} expects a number, got {text!r}") from None
    if not math.isfinite(value):  # inf overflows a log-uniform draw; nan compares false to every bound
        raise SpaceError(f"{where}: {name} expects a finite number, got {text!r}")
    if kind is int:
        if value != int(value):
            raise SpaceError(f"{where}: {name} expects a whole number, got {text!r}")
        return int(value)
    return value


def _check_bounds(name: str, value: float, where: str) -> None:
    """The bound `ptuning train` and the checkpoint validator hold the setting to (`ptuning.core.limits`);
    a dropout is also kept below 1 (a dropout of 1 drops every prompt vector)."""
    problem = out_of_bounds(name, value)
    if problem is not None:
        raise SpaceError(f"{where}: {problem}")
    if name.endswith("dropout") and not value < 1:
        raise SpaceError(f"{where}: {name} must be a number from 0 to below 1, got {value:g}")


def parse_space(text: str) -> Space:
    """`lr=1e-3:1e-1,prefix_len=4,8,16` -> {"lr": Range(1e-3, 1e-1, log=True), "prefix_len": Choice(...)}.

    `a:b` is a range (log-uniform for lr, uniform otherwise, whole numbers for an int parameter); a
    comma list is a categorical choice (a single value fixes the parameter). Raises SpaceError."""
    where = f"--space {text!r}"
    space: Space = {}
    items: dict[str, list[str]] = {}
    current = None
    for part in text.split(","):
        if "=" in part:
            current, _, value = part.partition("=")
            current = current.strip()
            if current not in PARAMETERS:
                raise SpaceError(f"{where}: unknown parameter {current!r}; known: {', '.join(PARAMETERS)}")
            if current in items:
                raise SpaceError(f"{where}: {current} is given twice")
            items[current] = [value]
        elif current is None:
            raise SpaceError(f"{where}: expected name=values, e.g. lr=1e-3:1e-1,prefix_len=8,16")
        else:
            items[current].append(part)
    for name, values in items.items():
        kind = PARAMETERS[name][1]
        if any(not value.strip() for value in values):
            raise SpaceError(f"{where}: {name} has an empty value")
        if len(values) == 1 and ":" in values[0]:
            if kind is bool:
                raise SpaceError(f"{where}: {name} is true or false, not a range; write {name}=false,true")
            bounds = values[0].split(":")
            if len(bounds) != 2:
                raise SpaceError(f"{where}: {name} expects a range low:high, got {values[0]!r}")
            low, high = (_number(name, kind, bound, where) for bound in bounds)
            for bound in (low, high):
                _check_bounds(name, bound, where)
            if not low < high:
                raise SpaceError(f"{where}: {name} range {values[0]!r} needs low < high")
            space[name] = Range(low, high, log=name in LOG_SCALE)
        else:
            if any(":" in value for value in values):
                raise SpaceError(f"{where}: {name} mixes a range and a list; give low:high or a,b,c")
            choice = tuple(dict.fromkeys(_number(name, kind, value, where) for value in values))
            for value in choice:
                if kind is not bool:
                    _check_bounds(name, value, where)
            space[name] = Choice(choice)
    return space


def space_for(
    method: str, override: str | None, *, max_steps: int = -1, only: bool = False
) -> tuple[Space, list[str]]:
    """The method's search space and notes on what was left out: `--space` replaces the default
    range or choice of each parameter it names; the default's other parameters are searched too,
    unless `only` (`--space-only`), which searches the named ones alone."""
    if method not in DEFAULT_SPACES:
        raise SpaceError(f"no search space for --method {method}; known: {', '.join(DEFAULT_SPACES)}")
    if only and not override:
        raise SpaceError("--space-only needs --space (the parameters to search)")
    space = {} if only else dict(DEFAULT_SPACES[method])
    notes: list[str] = []
    given = parse_space(override) if override else {}
    registered = get_method(method)
    if not registered.has_prompt:
        wrong = [name for name in given if name in PROMPT_ONLY]
        if wrong:
            raise SpaceError(f"--space {override!r}: {method} has no prompt to search {', '.join(wrong)} for")
    if not registered.projection_searchable and "prefix_projection" in given:
        searchable = [name for name in DEFAULT_SPACES if get_method(name).projection_searchable]
        raise SpaceError(
            f"--space {override!r}: prefix_projection is searched for {' and '.join(searchable)} only "
            "(prefix-tuning always reparameterizes, prompt-tuning never)"
        )
    space.update(given)
    if "mlp_lr" in space and not isinstance(space.get("prefix_projection"), Choice):
        raise SpaceError(
            f"--space {override!r}: mlp_lr is the learning rate of the reparameterized prefix, searched "
            "beside lr where prefix_projection is searched too: add prefix_projection=false,true"
        )
    if max_steps > 0 and "epochs" in space:
        if "epochs" in given:
            raise SpaceError(
                f"--space {override!r}: epochs cannot be searched with --max-steps (it fixes the length)"
            )
        del space["epochs"]
        notes.append("epochs not searched: --max-steps fixes the training length")
    return space, notes


# each method's default space, as the registry gives it (`ptuning.methods.Method.search_space`)
DEFAULT_SPACES: dict[str, Space] = {
    name: parse_space(get_method(name).search_space)
    for name in method_names()
    if get_method(name).search_space is not None
}
