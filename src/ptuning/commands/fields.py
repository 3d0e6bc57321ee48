"""Command-line options generated from dataclass fields documented with `ptuning.core.config.option`.

A field becomes `--field-name` (or its `flag`), typed from its annotation: a Literal gives the
choices, a bool that defaults to False a switch, a bool that may be None `--x/--no-x`, `int | None`
an int; its help text ends with the default taken from the field itself (or its `default_text`).
Nested dataclass fields (`metadata={"nested": True}`) contribute their own fields. So the defaults
of `ptuning train` are those of `TrainConfig` and `PromptConfig`, and nothing restates them.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from typing import Any, Literal, Union, get_args, get_origin


@dataclasses.dataclass(frozen=True)
class FieldOption:
    """One generated option: where its value goes (`path`: field names from the outer dataclass)."""

    path: tuple[str, ...]
    dest: str
    flags: tuple[str, ...]
    group: str
    kwargs: dict[str, Any]


def _parts(annotation: Any) -> tuple[list[Any], bool]:
    """The non-None members of an annotation, and whether None is one."""
    members = (
        list(get_args(annotation)) if get_origin(annotation) in (Union, types.UnionType) else [annotation]
    )
    return [m for m in members if m is not type(None)], type(None) in members


def _describe_default(field: dataclasses.Field) -> str:
    text = field.metadata.get("default_text")
    if text is not None:
        return text
    default = field.default
    if default is None:
        return "none"
    if isinstance(default, bool):
        return "on" if default else "off"
    return f"{default:g}" if isinstance(default, float) else str(default)


def field_options(cls: type, prefix: tuple[str, ...] = ()) -> list[FieldOption]:
    """The options of every documented field of `cls` and of its nested dataclasses."""
    hints = typing.get_type_hints(cls)
    out: list[FieldOption] = []
    for field in dataclasses.fields(cls):
        meta = field.metadata
        if meta.get("nested"):
            out += field_options(hints[field.name], (*prefix, field.name))
            continue
        if "help" not in meta or meta.get("cli") is False:
            continue
        members, optional = _parts(hints[field.name])
        literals = [m for m in members if get_origin(m) is Literal]
        plain = [m for m in members if get_origin(m) is not Literal]
        kwargs: dict[str, Any] = {}
        help_text = meta["help"]
        if plain == [bool] and not literals:
            if field.default is False and not optional:
                kwargs["action"] = "store_true"
            else:
                kwargs["action"] = argparse.BooleanOptionalAction
        elif literals and not plain:
            kwargs["choices"] = [c for lit in literals for c in get_args(lit)]
        else:
            kind = next((m for m in plain if m in (int, float, str)), str)
            if kind is not str:
                words = tuple(c for lit in literals for c in get_args(lit))
                kwargs["type"] = _typed(kind, optional, words)
        if "action" not in kwargs or kwargs["action"] is argparse.BooleanOptionalAction:
            kwargs["default"] = field.default
        if meta.get("metavar"):
            kwargs["metavar"] = meta["metavar"]
        kwargs["help"] = f"{help_text} (default: {_describe_default(field)})"
        dest = meta.get("dest", field.name)
        flag = meta.get("flag", "--" + dest.replace("_", "-"))
        out.append(FieldOption((*prefix, field.name), dest, (flag,), meta.get("group", ""), kwargs))
    return out


KIND_NAMES = {int: "a whole number", float: "a number"}


def _typed(kind: type, optional: bool, words: tuple[str, ...]):
    """A converter that also reads "none" where the field may be None, and the field's literal words
    (`int | Literal["auto"]` reads "auto")."""

    def convert(text: str):
        if optional and text.strip().lower() in ("none", "all"):
            return None
        if text in words:
            return text
        try:
            return kind(text)
        except ValueError:
            if not words:
                raise  # argparse's own "invalid int value: 'x'"
            accepted = [KIND_NAMES.get(kind, kind.__name__), *(["none"] if optional else []), *words]
            raise argparse.ArgumentTypeError(
                f"expected {', '.join(accepted[:-1])} or {accepted[-1]}, got {text!r}"
            ) from None

    convert.__name__ = kind.__name__  # argparse names the type in its errors: "invalid int value"
    # what `--config` files are checked against (ptuning.commands.settings_file): the base type, None, the words
    convert.base_type, convert.optional, convert.words = kind, optional, words
    return convert


def add_field_options(
    parser: argparse.ArgumentParser, cls: type, groups: dict[str, argparse._ArgumentGroup] | None = None
) -> dict[str, argparse._ArgumentGroup]:
    """Add the options of `cls`'s fields to `parser`, each in its metadata's group (created on first
    use, in field order, unless given in `groups`). Returns the groups."""
    groups = dict(groups or {})
    for option in field_options(cls):
        group = groups.get(option.group)
        if group is None:
            group = groups[option.group] = parser.add_argument_group(option.group or None)
        group.add_argument(*option.flags, dest=option.dest, **option.kwargs)
    return groups


def values_from(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    """Flat field name -> value of `cls`'s generated options in `args` (options absent from `args` are
    left out, so the fields keep their defaults)."""
    return {
        option.path[-1]: getattr(args, option.dest)
        for option in field_options(cls)
        if hasattr(args, option.dest)
    }
