"""SuperGLUE WiC (Words in Context): does the target word mean the same in both sentences?

Files: ``superglue/WiC/{train,val}.jsonl`` under the data directory (the SuperGLUE archive's layout;
``test.jsonl`` has no labels and is not read), one JSON object per line with ``word``, ``sentence1``,
``sentence2``, ``label`` (true/false) and ``start1``/``end1``/``start2``/``end2``, the character span
of the word's occurrence in each sentence. Where a network exists: the hub's ``aps/super_glue/wic``.

The target word reaches the model twice: the first text names it and each sentence marks its
occurrence with square brackets, e.g. ``bank: He sat on the [bank] of the river.`` paired with
``She went to the [bank] to cash a check.``; label "True" when the senses are the same. Accuracy.
"""

from __future__ import annotations

from ptuning.data.converters import _class_label, _jsonl
from ptuning.data.readers import Example, _Record
from ptuning.data.registry import BuiltinTask, HubSource
from ptuning.tasks import TaskSpec

LABELS = ("False", "True")


def mark(sentence: str, start: int, end: int) -> str:
    """The sentence with its characters [start, end) in square brackets."""
    return f"{sentence[:start]}[{sentence[start:end]}]{sentence[end:]}"


def _span(record: _Record, key: str, number: int) -> str:
    sentence = record.get(key)
    start, end = record.get(f"start{number}", int), record.get(f"end{number}", int)
    if not 0 <= start < end <= len(sentence):
        raise record.error(
            f"start{number}/end{number} [{start}, {end}) is not a span of {key} ({len(sentence)} characters)"
        )
    return mark(sentence, start, end)


def convert(record: _Record, spec: TaskSpec) -> list[Example]:
    """One WiC record -> a sentence-pair example (see the module docstring)."""
    word = record.get("word").strip()
    first, second = _span(record, "sentence1", 1), _span(record, "sentence2", 2)
    return [{"text": f"{word}: {first}", "text_pair": second, "label": _class_label(record, "label", spec)}]


TASK = BuiltinTask(
    TaskSpec("wic", "classification", LABELS, "accuracy"),
    "WiC",
    "superglue/WiC",
    "train.jsonl",
    "val.jsonl",
    _jsonl(convert),
    hub=HubSource("aps/super_glue", "wic", convert, revisions=("refs/convert/parquet", None)),
)
