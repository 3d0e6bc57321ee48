"""`--config FILE`: a JSON object of command settings (option names as keys, e.g. `"prefix_len": 16`),
under the options given on the command line.

Keys are the options' names with `_` for `-` (what `ptuning tune` writes in best_config.json). Every
key and value is checked against the command's own argument definitions; a bad one is a one-line
error naming the file and line.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..errors import UserError

_UNSET = object()


class SettingsError(UserError, ValueError):
    """A bad settings file (one line: file, line, what was expected)."""


def _parser(add_arguments: Callable[[argparse.ArgumentParser], None]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(add_help=False)
    add_arguments(parser)
    return parser


def _actions(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {action.dest: action for action in parser._actions if action.dest != argparse.SUPPRESS}


def explicit_options(
    add_arguments: Callable[[argparse.ArgumentParser], None], argv: Sequence[str]
) -> set[str]:
    """The options `argv` gives explicitly (argparse leaves attributes already on the namespace alone)."""
    parser = _parser(add_arguments)
    namespace = argparse.Namespace(**{dest: _UNSET for dest in _actions(parser)})
    parser.parse_args(list(argv), namespace=namespace)
    return {dest for dest, value in vars(namespace).items() if value is not _UNSET}


def _line_of(text: str, key: str) -> int:
    for number, line in enumerate(text.splitlines(), start=1):
        if f'"{key}"' in line:
            return number
    return 1


def _value(action: argparse.Action, value: Any, where: str) -> Any:
    """`value` checked (and converted) the way the option would take it on the command line."""
    flag = action.option_strings[-1] if action.option_strings else action.dest
    if action.nargs == 0:  # store_true, or --x/--no-x whose default None means "the command decides"
        if value is None and action.default is None:
            return None
        if not isinstance(value, bool):
            raise SettingsError(
                f"{where}: {action.dest} ({flag}) expects true or false, got {json.dumps(value)}"
            )
        return value
    kind = action.type or str
    if value is None:
        if action.default is not None and not getattr(kind, "optional", False):
            raise SettingsError(f"{where}: {action.dest} ({flag}) expects a value, got null")
        return None
    if isinstance(value, str) and value in getattr(kind, "words", ()):  # e.g. "auto"
        return value
    base = getattr(kind, "base_type", kind)  # options generated from fields convert through a function
    accepted = {int: (int,), float: (int, float), str: (str,)}.get(base)
    if accepted is not None and (isinstance(value, bool) or not isinstance(value, accepted)):
        name = {int: "a whole number", float: "a number", str: "a string"}[base]
        raise SettingsError(f"{where}: {action.dest} ({flag}) expects {name}, got {json.dumps(value)}")
    value = kind(value) if isinstance(value, str) else base(value)
    if action.choices is not None and value not in action.choices:
        raise SettingsError(
            f"{where}: {action.dest} ({flag}) expects one of {', '.join(map(str, action.choices))}, got {value!r}"
        )
    return value


def read_settings(
    path: str | Path, add_arguments: Callable[[argparse.ArgumentParser], None], *, refuse: Sequence[str] = ()
) -> dict[str, Any]:
    """The settings in `path`, checked against the options `add_arguments` defines (minus `refuse`)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise SettingsError(f"--config {path}: cannot read it ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise SettingsError(f"--config {path}: not UTF-8 text (byte {exc.start}); expected JSON") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SettingsError(f"{path}:{exc.lineno}: not valid JSON: {exc.msg}") from None
    except RecursionError:
        raise SettingsError(f"{path}: JSON nested too deeply; expected a flat object of settings") from None
    if not isinstance(data, dict):
        raise SettingsError(f'{path}:1: expected a JSON object of settings, e.g. {{"prefix_len": 16}}')
    actions = _actions(_parser(add_arguments))
    known = [dest for dest in actions if dest not in refuse]
    settings = {}
    for key, value in data.items():
        where = f"{path}:{_line_of(text, key)}"
        if key not in known:
            raise SettingsError(f"{where}: unknown setting {key!r}; known: {', '.join(known)}")
        settings[key] = _value(actions[key], value, where)
    return settings


def apply_settings_file(
    args: argparse.Namespace,
    add_arguments: Callable[[argparse.ArgumentParser], None],
    *,
    refuse: Sequence[str] = ("config",),
) -> argparse.Namespace:
    """`args` with the settings of `args.config` wherever the command line did not give the option.

    The command line is `args._argv` (set by `ptuning.cli.main`); without it, options still at their
    default count as not given."""
    path = getattr(args, "config", None)
    if not path:
        return args
    settings = read_settings(path, add_arguments, refuse=refuse)
    argv = getattr(args, "_argv", None)
    if argv is not None:
        given = explicit_options(add_arguments, argv)
    else:
        defaults = vars(_parser(add_arguments).parse_args([]))
        given = {dest for dest, value in defaults.items() if getattr(args, dest, value) != value}
    merged = argparse.Namespace(**vars(args))
    for key, value in settings.items():
        if key not in given:
            setattr(merged, key, value)
    return merged
