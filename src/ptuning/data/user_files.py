"""A task from the user's own data: files (CSV, TSV, JSONL, JSON, Parquet, Arrow, save_to_disk folders,
CoNLL columns, SQuAD JSON) or data passed from Python (a list of dicts, a pandas DataFrame, a
`datasets.Dataset` or `DatasetDict`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ptuning.data.converters import _float_label, _read_squad
from ptuning.data.readers import Example, _iob2_order, _read_conll, _Record, _to_iob2
from ptuning.data.registry import TaskData
from ptuning.data.tables import TABLE_FILE_BUILDERS, is_in_memory, read_table_source
from ptuning.errors import DataError
from ptuning.tasks import TASK_TYPES, TaskSpec

#: What a training or validation source may be: a path, or data passed from Python.
DataSource = Any

# (where token i is, for messages; the example)
_Located = tuple[Callable[[int], str], Example]


def load_user_task(
    task_type: str,
    train_file: DataSource,
    validation_file: DataSource | None = None,
    *,
    text_column: str = "text",
    text_pair_column: str | None = None,
    label_column: str = "label",
    tag_column: int = -1,
    name: str = "custom",
    require_validation: bool = True,
) -> TaskData:
    """A task from the user's own training and validation data.

    Each source is a path or data passed from Python (`ptuning.data.tables.read_table_source`). A
    `DatasetDict` (in memory or a ``save_to_disk`` folder) given as the training source alone supplies
    the validation part too (its ``validation``, ``dev`` or ``test`` split); given as the validation
    source, its validation part is used. Without a validation source or part the validation list is
    empty where `require_validation` is False (the caller holds some training data out), else an error.

    - classification / regression: tables with `text_column`, optional `text_pair_column` and
      `label_column`. Classification labels are the sorted set of training labels; a validation label
      not seen in training is an error. Primary metric: accuracy (classification), pearson (regression).
    - token_classification: CoNLL column files (token first, tag in column `tag_column`, default the
      last; blank line between sentences; ``-DOCSTART-`` skipped), or tables with a list of tokens and a
      list of tags per row (columns `tokens` and `tags` or `ner_tags`; `text_column` / `label_column`
      where set). Tags are converted to IOB2 (from IOB1, BIOES or BILOU); tag ids: O first, then by
      type. Primary metric: entity-level f1.
    - question_answering: SQuAD JSON files, or tables in the hub's SQuAD form (`id`, `question`,
      `context`, `answers` = {"text": [...], "answer_start": [...]}). Primary metric: f1.
    """
    if task_type not in TASK_TYPES:
        raise DataError(f"unknown task type {task_type!r}; known: {', '.join(TASK_TYPES)}")
    if task_type not in ("classification", "regression", "token_classification", "question_answering"):
        raise DataError(
            f"task type {task_type!r} is not supported for user files (only built-in tasks, e.g. copa)"
        )

    def read(source: DataSource, role: str) -> tuple[list, list | None]:
        if task_type == "token_classification":
            return _token_rows(source, role, text_column, label_column, tag_column)
        if task_type == "question_answering":
            return _qa_rows(source, role)
        return _sequence_rows(source, role, text_column, text_pair_column, label_column)

    train, carried = read(train_file, "train_file")
    if validation_file is not None:
        first, held = read(validation_file, "validation_file")
        validation = held if held is not None else first
    elif carried is not None:
        validation = carried
    elif require_validation:
        raise DataError(
            "--train-file has no validation part (only a DatasetDict carries one): give --validation-file "
            "FILE, or --validation-split F to hold out a share of the training data"
        )
    else:
        validation = []
    if task_type in ("classification", "regression"):
        return _user_sequence_task(task_type, name, label_column, train, validation)
    if task_type == "token_classification":
        labels = _iob2_order({tag for _, ex in train for tag in ex["tags"]})
        for where, example in validation:
            for i, tag in enumerate(example["tags"]):
                if tag not in labels:
                    raise DataError(
                        f"{where(i)}: tag {tag!r} does not occur in the training data; known: {', '.join(labels)}"
                    )
        spec = TaskSpec(name, "token_classification", labels, "f1")
        return TaskData(spec, [ex for _, ex in train], [ex for _, ex in validation])
    spec = TaskSpec(name, "question_answering", (), "f1")
    return TaskData(spec, train, validation)


def _is_table(source: DataSource) -> bool:
    """A source read as a table: data from Python, a save_to_disk folder, or a table file (by suffix)."""
    if is_in_memory(source):
        return True
    path = Path(source)
    return path.is_dir() or path.suffix.lower() in TABLE_FILE_BUILDERS


def _sequence_rows(
    source: DataSource, role: str, text: str, pair: str | None, label: str
) -> tuple[list[tuple[_Record, Example]], list[tuple[_Record, Example]] | None]:
    """(record, example) pairs of a table's training and validation parts; labels are kept raw (str
    or float) until the label set is known."""
    required = [c for c in (text, pair, label) if c is not None]
    rows = read_table_source(source, role, required=required)

    def examples(records: list[_Record]) -> list[tuple[_Record, Example]]:
        out = []
        for record in records:
            value = record.get(label, (str, int, float, bool))
            second = record.get(pair, str) if pair is not None else None
            out.append((record, {"text": record.get(text, str), "text_pair": second, "label": value}))
        return out

    return examples(rows.train), None if rows.validation is None else examples(rows.validation)


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
                f"label {example['label']!r} does not occur in the training data; known: {', '.join(labels)}"
            )
    spec = TaskSpec(name, "classification", labels, "accuracy")
    return TaskData(spec, [ex for _, ex in train], [ex for _, ex in validation])


def _token_rows(
    source: DataSource, role: str, text_column: str, label_column: str, tag_column: int
) -> tuple[list[_Located], list[_Located] | None]:
    if not _is_table(source):
        path = Path(source)
        out: list[_Located] = []
        for sentence in _read_conll(path, tag_column):
            where = lambda i, s=sentence: f"{path}, line {s.lines[i]}"  # noqa: E731
            tags = _to_iob2(sentence.tags, lambda i, s=sentence: f"line {s.lines[i]}", path)
            out.append((where, {"tokens": sentence.tokens, "tags": tags}))
        return out, None
    rows = read_table_source(source, role)

    def examples(records: list[_Record]) -> list[_Located]:
        out = []
        for record in records:
            tokens_key = text_column if text_column != "text" else "tokens"
            tags_key = label_column if label_column != "label" else "tags"
            if tags_key == "tags" and "tags" not in record.data and "ner_tags" in record.data:
                tags_key = "ner_tags"
            tokens, raw = record.get(tokens_key, list), record.get(tags_key, list)
            if len(tokens) != len(raw):
                raise record.error(f"{len(tokens)} tokens but {len(raw)} tags")
            for i, token in enumerate(tokens):
                if not isinstance(token, str) or not token:
                    raise record.error(f"token {i}: expected a non-empty string, found {token!r}")
            where = lambda i, r=record: f"{r.source}, {r.where}, token {i}"  # noqa: E731
            tags = _to_iob2([str(t) for t in raw], lambda i, r=record: f"{r.where}, token {i}", record.source)
            out.append((where, {"tokens": list(tokens), "tags": tags}))
        return out

    return examples(rows.train), None if rows.validation is None else examples(rows.validation)


def _qa_rows(source: DataSource, role: str) -> tuple[list[Example], list[Example] | None]:
    if not _is_table(source) or (not is_in_memory(source) and Path(source).suffix.lower() == ".json"):
        return _read_squad(Path(source), TaskSpec("custom", "question_answering", (), "f1")), None
    rows = read_table_source(source, role, required=("id", "question", "context", "answers"))
    convert = lambda records: [_qa_example(record) for record in records]  # noqa: E731
    return convert(rows.train), None if rows.validation is None else convert(rows.validation)


def _qa_example(record: _Record) -> Example:
    """A row in the hub's SQuAD form; every answer must be found at its `answer_start` in the context."""
    qid = str(record.get("id", (str, int)))
    question, context = record.get("question"), record.get("context")
    answers = record.get("answers", dict)
    texts, starts = answers.get("text"), answers.get("answer_start")
    if not isinstance(texts, list) or not isinstance(starts, list) or len(texts) != len(starts):
        raise record.error(
            "expected 'answers' to be {'text': [...], 'answer_start': [...]} with one start per text"
        )
    for text, start in zip(texts, starts, strict=True):
        if not isinstance(text, str) or not isinstance(start, int) or isinstance(start, bool):
            raise record.error(f"expected answer text and integer answer_start, found {text!r} at {start!r}")
        found = context[start : start + len(text)]
        if found != text:
            raise record.error(
                f"answer_start {start} does not match the answer text {text!r} (the context there reads {found!r})"
            )
    return {
        "id": qid,
        "question": question,
        "context": context,
        "answers": {"text": list(texts), "answer_start": list(starts)},
    }
