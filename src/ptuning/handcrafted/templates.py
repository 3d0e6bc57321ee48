"""Handcrafted prompts: a template with text slots and a mask slot, and a verbalizer.

Template syntax: Python format fields, `{text}` (the sentence, or the first of a pair),
`{text_pair}` (the second sentence of a pair) and `{mask}` (where the label word goes), e.g.
"{text} It was {mask}." Literal braces are written `{{` and `}}`.

Verbalizer syntax: `label=word,label=word`, several words for one label joined by `|`
(`negative=terrible|awful,positive=great`). Every label of the task needs at least one word.

Both parse into frozen dataclasses; every mistake is a `DataError` of one line that names the
option and what was expected.
"""

from __future__ import annotations

import string
from dataclasses import dataclass

from ..errors import DataError
from ..tasks import TaskSpec

SLOTS = ("text", "text_pair", "mask")


@dataclass(frozen=True)
class Template:
    """A parsed template: alternating literal text and slot names."""

    source: str
    parts: tuple[tuple[str, str | None], ...]  # (literal text, slot name or None)

    @classmethod
    def parse(cls, source: str, *, option: str = "--template") -> Template:
        if not isinstance(source, str) or not source.strip():
            raise DataError(f'{option}: empty template; expected e.g. "{{text}} It was {{mask}}."')
        try:
            parsed = list(string.Formatter().parse(source))
        except ValueError as exc:
            raise DataError(f"{option} {source!r}: {exc} (write literal braces as {{{{ and }}}})") from None
        parts: list[tuple[str, str | None]] = []
        for literal, name, spec, conversion in parsed:
            if name is not None and (name not in SLOTS or spec or conversion):
                shown = (
                    "{" + name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
                )
                raise DataError(
                    f"{option} {source!r}: unknown slot {shown}; expected {{text}}, {{text_pair}} and one {{mask}}"
                )
            parts.append((literal, name))
        slots = [name for _, name in parts if name is not None]
        if slots.count("mask") != 1:
            raise DataError(
                f"{option} {source!r}: expected exactly one {{mask}} slot, found {slots.count('mask')}"
            )
        if "text" not in slots:
            raise DataError(f"{option} {source!r}: expected a {{text}} slot for the input text")
        return cls(source, tuple(parts))

    @property
    def slots(self) -> tuple[str, ...]:
        return tuple(name for _, name in self.parts if name is not None)

    @property
    def has_pair(self) -> bool:
        return "text_pair" in self.slots

    def fill(self, values: dict[str, str]) -> str:
        """The template with each slot replaced by `values[slot]` (spaces at the ends stripped)."""
        return "".join(literal + (values[name] if name else "") for literal, name in self.parts).strip()

    def check(self, spec: TaskSpec, pairs: bool) -> None:
        """Refuse a template that drops the second text of a pair task, or asks for one it lacks."""
        if pairs and not self.has_pair:
            raise DataError(
                f"--template {self.source!r}: task {spec.name!r} gives sentence pairs; add a {{text_pair}} slot"
            )
        if not pairs and self.has_pair:
            raise DataError(
                f"--template {self.source!r}: task {spec.name!r} gives single sentences; remove the {{text_pair}} slot"
            )


@dataclass(frozen=True)
class Verbalizer:
    """Label -> its words, in the task's label order."""

    words: tuple[tuple[str, tuple[str, ...]], ...]

    @classmethod
    def parse(cls, source: str, spec: TaskSpec | None = None, *, option: str = "--verbalizer") -> Verbalizer:
        example = "e.g. negative=terrible,positive=great"
        if not isinstance(source, str) or not source.strip():
            raise DataError(f"{option}: empty verbalizer; expected label=word pairs, {example}")
        mapping: dict[str, tuple[str, ...]] = {}
        for number, item in enumerate(source.split(","), start=1):
            label, sep, words = item.partition("=")
            label = label.strip()
            if not sep or not label:
                raise DataError(
                    f"{option} {source!r}: item {number} {item.strip()!r} is not label=word; {example}"
                )
            parsed = tuple(word.strip() for word in words.split("|"))
            if not all(parsed):
                raise DataError(f"{option} {source!r}: item {number} {item.strip()!r} has an empty word")
            if any(" " in word for word in parsed):
                raise DataError(
                    f"{option} {source!r}: item {number}: a label word is one word, without spaces"
                )
            if label in mapping:
                raise DataError(f"{option} {source!r}: label {label!r} is given twice")
            mapping[label] = parsed
        seen: dict[str, str] = {}
        for label, words in mapping.items():
            for word in words:
                if word in seen:
                    raise DataError(
                        f"{option} {source!r}: word {word!r} is given to both {seen[word]!r} and {label!r}"
                    )
                seen[word] = label
        verbalizer = cls(tuple(mapping.items()))
        if spec is not None:
            verbalizer = verbalizer.for_task(spec, option=option)
        return verbalizer

    @classmethod
    def from_dict(cls, data: dict[str, list[str] | tuple[str, ...]]) -> Verbalizer:
        return cls(tuple((label, tuple(words)) for label, words in data.items()))

    def to_dict(self) -> dict[str, list[str]]:
        return {label: list(words) for label, words in self.words}

    def to_string(self) -> str:
        return ",".join(f"{label}={'|'.join(words)}" for label, words in self.words)

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(label for label, _ in self.words)

    def for_task(self, spec: TaskSpec, *, option: str = "--verbalizer") -> Verbalizer:
        """Check the labels against the task's and put them in its label order."""
        mapping = dict(self.words)
        unknown = [label for label in mapping if label not in spec.labels]
        if unknown:
            raise DataError(
                f"{option}: {unknown[0]!r} is not a label of task {spec.name!r}; its labels: {', '.join(spec.labels)}"
            )
        missing = [label for label in spec.labels if label not in mapping]
        if missing:
            raise DataError(
                f"{option}: label {missing[0]!r} of task {spec.name!r} has no word; give every label one "
                f"({', '.join(spec.labels)})"
            )
        return Verbalizer(tuple((label, mapping[label]) for label in spec.labels))


# Defaults for built-in tasks: the manual templates and label words of LM-BFF (Gao et al. 2021,
# "Making Pre-trained Language Models Better Few-shot Learners", Table 1), written for our slots.
# BoolQ's text is the question and its text_pair the passage.
_NLI_TEMPLATE = "{text} ? {mask} , {text_pair}"
DEFAULT_PROMPTS: dict[str, tuple[str, str]] = {
    "sst2": ("{text} It was {mask}.", "negative=terrible,positive=great"),
    "cola": ("{text} This is {mask}.", "unacceptable=incorrect,acceptable=correct"),
    "mrpc": (_NLI_TEMPLATE, "not_equivalent=No,equivalent=Yes"),
    "rte": (_NLI_TEMPLATE, "entailment=Yes,not_entailment=No"),
    "superglue-rte": (_NLI_TEMPLATE, "entailment=Yes,not_entailment=No"),
    "qnli": (_NLI_TEMPLATE, "entailment=Yes,not_entailment=No"),
    "cb": (_NLI_TEMPLATE, "entailment=Yes,contradiction=No,neutral=Maybe"),
    "boolq": ("{text_pair} Question: {text} ? Answer: {mask}.", "False=No,True=Yes"),
}


def resolve_prompt(
    spec: TaskSpec, template: str | None, verbalizer: str | None
) -> tuple[Template, Verbalizer]:
    """The task's template and verbalizer: those given, else the built-in task's defaults."""
    default = DEFAULT_PROMPTS.get(spec.name)
    if spec.task_type != "classification":
        raise DataError(
            f"--method handcrafted scores label words, so it needs a classification task; {spec.name!r} is "
            f"{spec.task_type}"
        )
    if default is None and (template is None or verbalizer is None):
        missing = " and ".join(
            o for o, v in (("--template", template), ("--verbalizer", verbalizer)) if v is None
        )
        raise DataError(
            f"task {spec.name!r} has no default handcrafted prompt; give {missing} "
            '(e.g. --template "{text} It was {mask}." --verbalizer negative=terrible,positive=great)'
        )
    parsed_template = Template.parse(template if template is not None else default[0])
    parsed_verbalizer = Verbalizer.parse(verbalizer if verbalizer is not None else default[1], spec)
    return parsed_template, parsed_verbalizer


def check_options(args) -> None:
    """Parse --template and --verbalizer before any data or model loads (one-line errors): for a
    built-in task, resolved against its labels; for your own files, each on its own."""
    from ..data import KNOWN_TASKS

    builtin = KNOWN_TASKS.get(args.task) if not args.train_file else None
    if builtin is not None:
        resolve_prompt(builtin.spec, args.template, args.verbalizer)
        return
    if args.template is not None:
        Template.parse(args.template)
    if args.verbalizer is not None:
        Verbalizer.parse(args.verbalizer)
