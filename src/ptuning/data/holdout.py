"""A validation split held out of the training data (`--validation-split F`)."""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import replace

from ptuning.data.registry import TaskData
from ptuning.errors import DataError


def hold_out(data: TaskData, fraction: float, seed: int) -> TaskData:
    """`data` with a seeded `fraction` of its training examples as the validation split.

    Classification is stratified: each label gives round(fraction x its count) examples, and keeps at
    least one for training. Question answering holds out whole contexts (the questions on one passage
    go to one side). Both sides keep the file order. The task's own validation examples become
    `data.test`, scored once after training; the spec's notes say what was held out."""
    if not 0 < fraction < 1:
        raise DataError(f"--validation-split must be between 0 and 1 (exclusive), got {fraction}")
    examples = data.train
    spec = data.spec
    by_context = spec.task_type == "question_answering"
    groups: dict[object, list[int]] = defaultdict(list)
    for index, example in enumerate(examples):
        groups[example["context"] if by_context else index].append(index)
    units = list(groups.values())  # lists of example indices that go to one side together
    rng = random.Random(seed)
    held: list[int] = []
    if spec.task_type in ("classification", "multiple_choice") and all("label" in ex for ex in examples):
        by_label: dict[object, list[list[int]]] = defaultdict(list)
        for unit in units:
            by_label[examples[unit[0]]["label"]].append(unit)
        for label in sorted(by_label, key=str):
            members = by_label[label]
            take = min(round(fraction * len(members)), len(members) - 1)
            held += [i for unit in rng.sample(members, take) for i in unit]
        stratified = True
    else:
        take = min(max(round(fraction * len(units)), 1), len(units) - 1) if len(units) > 1 else 0
        held = [i for unit in rng.sample(units, take) for i in unit]
        stratified = False
    if not held:
        raise DataError(
            f"--validation-split {fraction:g} of {len(examples)} training examples holds out none: "
            "give more data or a larger share"
        )
    chosen = set(held)
    train = [ex for i, ex in enumerate(examples) if i not in chosen]
    validation = [ex for i, ex in enumerate(examples) if i in chosen]
    how = "stratified by label, " if stratified else ""
    note = (
        f"validation split: {len(validation)} of {len(examples)} training examples held out "
        f"({how}fraction {fraction:g}, seed {seed}) to select the checkpoint on"
    )
    if data.validation:
        note += f"; the {len(data.validation)} validation examples are scored once, after training"
    return TaskData(
        replace(spec, notes=(*spec.notes, note)), train, validation, test=list(data.validation) or None
    )
