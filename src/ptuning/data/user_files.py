"""A task from the user's own train and validation files (CSV/TSV/JSONL tables, CoNLL columns, SQuAD JSON)."""

from __future__ import annotations

from pathlib import Path

from ptuning.data.converters import _float_label, _read_squad
from ptuning.data.readers import (
    _TABLE_DELIMITERS,
    Example,
    PathLike,
    _error,
    _iob2_order,
    _read_conll,
    _read_jsonl,
    _read_table,
    _Record,
    _to_iob2,
)
from ptuning.data.registry import TaskData
from ptuning.data.spec import TASK_TYPES, DataError, TaskSpec


def load_user_task(
    task_type: str,
    train_file: PathLike,
    validation_file: PathLike,
    *,
    text_column: str = "text",
    text_pair_column: str | None = None,
    label_column: str = "label",
    tag_column: int = -1,
    name: str = "custom",
) -> TaskData:
    """A task from the user's own train and validation files.

    - classification / regression: CSV, TSV or JSONL (by extension ``.csv``, ``.tsv``, ``.jsonl``)
      with `text_column`, optional `text_pair_column` and `label_column`. Classification labels are
      the sorted set of training labels; a validation label not seen in training is an error.
      Primary metric: accuracy (classification), pearson (regression).
    - token_classification: CoNLL column files (token first, tag in column `tag_column`, default the
      last; blank line between sentences; ``-DOCSTART-`` skipped). Tags are converted to IOB2 (from
      IOB1, BIOES or BILOU); tag ids: O first, then by type. Primary metric: entity-level f1.
    - question_answering: SQuAD JSON. Primary metric: f1.
    """
    train_path, validation_path = Path(train_file), Path(validation_file)
    if task_type in ("classification", "regression"):
        train = _read_user_table(train_path, text_column, text_pair_column, label_column)
        validation = _read_user_table(validation_path, text_column, text_pair_column, label_column)
        return _user_sequence_task(task_type, name, label_column, train, validation)
    if task_type == "token_classification":
        train_sentences = _read_user_conll(train_path, tag_column)
        validation_sentences = _read_user_conll(validation_path, tag_column)
        labels = _iob2_order({tag for _, ex in train_sentences for tag in ex["tags"]})
        for path, sentences in ((validation_path, validation_sentences),):
            for lines, example in sentences:
                for i, tag in enumerate(example["tags"]):
                    if tag not in labels:
                        raise _error(
                            path,
                            f"line {lines[i]}",
                            f"tag {tag!r} does not occur in the training file; known: {', '.join(labels)}",
                        )
        spec = TaskSpec(name, "token_classification", labels, "f1")
        return TaskData(spec, [ex for _, ex in train_sentences], [ex for _, ex in validation_sentences])
    if task_type == "question_answering":
        spec = TaskSpec(name, "question_answering", (), "f1")
        return TaskData(spec, _read_squad(train_path, spec), _read_squad(validation_path, spec))
    if task_type in TASK_TYPES:
        raise DataError(
            f"task type {task_type!r} is not supported for user files (only built-in tasks, e.g. copa)"
        )
    raise DataError(f"unknown task type {task_type!r}; known: {', '.join(TASK_TYPES)}")


def _read_user_table(path: Path, text: str, pair: str | None, label: str) -> list[tuple[_Record, Example]]:
    """(record, example) pairs of a CSV/TSV/JSONL file; labels are kept raw (str or float) until the
    label set is known."""
    suffix = path.suffix.lower()
    required = [c for c in (text, pair, label) if c is not None]
    if suffix in _TABLE_DELIMITERS:
        records = _read_table(path, delimiter=_TABLE_DELIMITERS[suffix], required=required)
    elif suffix == ".jsonl":
        records = _read_jsonl(path)
    else:
        raise _error(
            path, None, f"unsupported file type {suffix or '(none)'!r}; expected .csv, .tsv or .jsonl"
        )
    rows = []
    for record in records:
        value = record.get(label, (str, int, float, bool))
        second = record.get(pair, str) if pair is not None else None
        rows.append((record, {"text": record.get(text, str), "text_pair": second, "label": value}))
    return rows


def _user_sequence_task(
    task_type: str,
    name: str,
    label_column: str,
    train: list[tuple[_Record, Example]],
    validation: list[tuple[_Record, Example]],
) -> TaskData:
    """Labels of a user classification task are the sorted set of training labels (as strings);
    regression labels must parse as floats."""
    if task_type == "regression":
        for record, example in (*train, *validation):
            example["label"] = _float_label(record, label_column)
        spec = TaskSpec(name, "regression", (), "pearson")
        return TaskData(spec, [ex for _, ex in train], [ex for _, ex in validation])
    for record, example in (*train, *validation):
        value = example["label"]
        example["label"] = str(value).strip()
        if not example["label"]:
            raise record.error("empty label")
    labels = tuple(sorted({ex["label"] for _, ex in train}))
    for record, example in validation:
        if example["label"] not in labels:
            raise record.error(
                f"label {example['label']!r} does not occur in the training file; known: {', '.join(labels)}"
            )
    spec = TaskSpec(name, "classification", labels, "accuracy")
    return TaskData(spec, [ex for _, ex in train], [ex for _, ex in validation])


def _read_user_conll(path: Path, tag_column: int) -> list[tuple[list[int], Example]]:
    out = []
    for sentence in _read_conll(path, tag_column):
        tags = _to_iob2(sentence.tags, lambda i, s=sentence: f"line {s.lines[i]}", path)
        out.append((sentence.lines, {"tokens": sentence.tokens, "tags": tags}))
    return out
