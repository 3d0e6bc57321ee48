"""How a task's data files were laid out (`InputFormat`, recorded in a checkpoint), and reading
prediction inputs in that layout (`read_prediction_inputs`).

`ptuning predict --input FILE` takes the training file's format, chosen by the file's extension:
  .csv / .tsv   classification, regression: the trained text (and pair) columns; other columns ignored
  .json         question answering: SQuAD JSON (answers optional; the question ids are kept)
  .jsonl        one input per line: a JSON object with the trained text (and pair) keys, or the
                generic keys of `ptuning.inference` (text/text_pair, tokens, question/context,
                context/choices), or a plain string
  .txt          one text per line (blank lines skipped): classification, regression, tagging
  -             standard input: JSON lines if its first non-blank line is a JSON object or
                string, else one text per line
  other         token classification: a CoNLL column file (the token is the first column; tag
                columns, if present, are ignored)
An id column (`id` by default, or the one named) is copied through to each prediction. Every error
names the file and the 1-based line (or the SQuAD question id).

`parse_input` is the one rule every raw input passes (predict, eval, serve): given the checkpoint's
`InputFormat` it also takes the trained column names as keys, and a model trained on text pairs
requires the pair.
"""

from __future__ import annotations

import json
import sys
import unicodedata
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, BinaryIO

from ptuning.data.readers import (
    _TABLE_DELIMITERS,
    _error,
    _lines,
    _read_json,
    _read_table,
    _read_text,
    _Record,
)
from ptuning.errors import DataError
from ptuning.tasks import TaskSpec

#: File formats an `InputFormat` names ("builtin": a built-in task, read by its own loader).
FILE_FORMATS = ("csv", "tsv", "jsonl", "conll", "squad", "builtin")
DEFAULT_ID_COLUMN = "id"
STDIN = "-"  # `--input -`: read the inputs from standard input
STDIN_NAME = "<stdin>"  # what errors call it


@dataclass(frozen=True)
class InputFormat:
    """The layout of the files a task was trained on: what `eval --validation-file` and `predict
    --input` read by default. The defaults are those of a checkpoint that recorded nothing."""

    file_format: str = "builtin"
    text_column: str = "text"
    text_pair_column: str | None = None
    label_column: str = "label"
    tag_column: int = -1

    def __post_init__(self) -> None:
        if self.file_format not in FILE_FORMATS:
            raise ValueError(f"unknown file format {self.file_format!r}; known: {', '.join(FILE_FORMATS)}")

    @classmethod
    def for_files(
        cls,
        task_type: str,
        train_file: str | Path | None,
        *,
        text_column: str = "text",
        text_pair_column: str | None = None,
        label_column: str = "label",
        tag_column: int = -1,
    ) -> InputFormat:
        """The format of a training run: its own file's (by task type and extension), else built-in."""
        if train_file is None:
            file_format = "builtin"
        elif task_type == "token_classification":
            file_format = "conll"
        elif task_type == "question_answering":
            file_format = "squad"
        else:
            file_format = Path(train_file).suffix.lower().lstrip(".")
            file_format = file_format if file_format in ("csv", "tsv", "jsonl") else "jsonl"
        return cls(file_format, text_column, text_pair_column, label_column, tag_column)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> InputFormat:
        """From a checkpoint's or train_config.json's fields (unknown keys ignored, missing ones defaulted)."""
        data = data if isinstance(data, dict) else {}
        known = {f.name for f in fields(cls)}
        return cls(
            **{k: v for k, v in data.items() if k in known and (v is not None or k == "text_pair_column")}
        )


@dataclass
class PredictionInputs:
    """Inputs read from a file, in the generic form `Predictor.predict` takes, and their ids (or None)."""

    items: list[Any]
    ids: list[Any]
    has_ids: bool


def read_prediction_inputs(
    path: str | Path,
    spec: TaskSpec,
    fmt: InputFormat,
    *,
    id_column: str | None = None,
    stdin: BinaryIO | None = None,
) -> PredictionInputs:
    """Inputs of `path` for a task of `spec` trained on files of format `fmt` (see the module doc).

    `id_column`: copied to each prediction; every input must have it. None: `id` where present.
    `path` "-": standard input (`stdin`, default `sys.stdin.buffer`)."""
    kind = spec.task_type
    if str(path) == STDIN:
        source = Path(STDIN_NAME)
        records = _stdin_records(stdin if stdin is not None else sys.stdin.buffer)
    else:
        source = path = Path(path)
        suffix = path.suffix.lower()
        if suffix in _TABLE_DELIMITERS:
            records = _table_records(path, spec, fmt)
        elif suffix == ".json" and kind == "question_answering":
            records = _squad_records(path)
        elif suffix == ".txt":
            records = _text_records(str(path), _read_text(path))
        elif suffix in (".jsonl", ".json") or kind != "token_classification":
            records = _jsonl_records(str(path), _read_text(path))
        else:
            records = _conll_records(path)
    items, ids = [], []
    for index, (record, raw) in enumerate(records):
        item = _generic_item(record, raw, spec, fmt)
        try:
            parse_input(spec, item, index, fmt)
        except DataError as err:
            raise record.error(str(err).split(": ", 1)[-1]) from None
        items.append(item)
        ids.append(_id_of(record, raw, id_column))
    if not items:
        raise _error(source, None, "no inputs found")
    return PredictionInputs(items, ids, has_ids=any(i is not None for i in ids))


def _stdin_records(stream: BinaryIO) -> list[tuple[_Record, Any]]:
    """Standard input: JSON lines when its first non-blank line is a JSON object or string, else
    one text per line (the same UTF-8 rules as a file's)."""
    raw = stream.read()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise _error(
            STDIN_NAME, f"line {line}", f"expected UTF-8 text, found byte 0x{raw[err.start]:02x}"
        ) from None
    first = next((line for line in _lines(text) if line.strip()), "")
    try:
        is_json = isinstance(json.loads(first), dict | str)
    except (ValueError, RecursionError):
        is_json = False
    return _jsonl_records(STDIN_NAME, text) if is_json else _text_records(STDIN_NAME, text)


def _text_records(source: str, text: str) -> list[tuple[_Record, Any]]:
    """One text per line (blank lines skipped), each a plain string input."""
    return [
        (_Record(source, f"line {number}", {}), line)
        for number, line in enumerate(_lines(text), start=1)
        if line.strip()
    ]


def _id_of(record: _Record, raw: Any, id_column: str | None) -> Any:
    if not isinstance(raw, dict):
        if id_column is not None:
            raise record.error(f"expected an object with the id {record.kind} {id_column!r}")
        return None
    if id_column is None:
        return raw.get(DEFAULT_ID_COLUMN)
    value = raw.get(id_column)
    if value is None:
        found = ", ".join(map(str, raw)) or "none"
        raise record.error(f"missing id {record.kind} {id_column!r}; {record.kind}s found: {found}")
    return value


def _generic_item(record: _Record, raw: Any, spec: TaskSpec, fmt: InputFormat) -> Any:
    """A raw line/row -> the input form of `parse_input`, reading trained columns."""
    if not isinstance(raw, dict):
        return raw
    if spec.task_type not in ("classification", "regression"):
        # a file's other keys (an id, gold tags or answers) are not the model's input
        return {key: value for key, value in raw.items() if key in FIELDS[spec.task_type]}
    names = [(fmt.text_column, "text"), (fmt.text_pair_column, "text_pair")]
    item = {}
    for column, generic in names:
        if column is not None and column in raw:
            item[generic] = raw[column]
        elif generic in raw:
            item[generic] = raw[generic]
    if "text" not in item:
        wanted = " or ".join(dict.fromkeys(repr(c) for c in (fmt.text_column, "text")))
        found = ", ".join(map(str, raw)) or "none"
        raise record.error(f"missing {record.kind} {wanted} (the text); {record.kind}s found: {found}")
    if fmt.text_pair_column is not None and "text_pair" not in item:
        found = ", ".join(map(str, raw)) or "none"
        raise record.error(
            f"missing {record.kind} {fmt.text_pair_column!r} (the model was trained on text pairs); "
            f"{record.kind}s found: {found}"
        )
    return item


def _table_records(path: Path, spec: TaskSpec, fmt: InputFormat) -> list[tuple[_Record, Any]]:
    if spec.task_type not in ("classification", "regression"):
        raise _error(
            path,
            None,
            f"a {path.suffix} input suits classification or regression, not {spec.task_type}; "
            "expected .jsonl" + (" or SQuAD .json" if spec.task_type == "question_answering" else ""),
        )
    required = [c for c in (fmt.text_column, fmt.text_pair_column) if c is not None]
    rows = _read_table(path, delimiter=_TABLE_DELIMITERS[path.suffix.lower()], required=required)
    return [(row, row.data) for row in rows]


def _jsonl_records(path: str, text: str) -> list[tuple[_Record, Any]]:
    records = []
    for number, line in enumerate(_lines(text), start=1):
        if not line.strip():
            continue
        where = f"line {number}"
        try:
            value = json.loads(line)
        except json.JSONDecodeError as err:
            raise _error(
                path,
                where,
                f"invalid JSON ({err.msg} at column {err.colno}); expected one JSON input per line",
            ) from None
        except RecursionError:
            raise _error(path, where, "JSON nested too deeply; expected one JSON input per line") from None
        if not isinstance(value, dict | str):
            raise _error(path, where, f"expected a JSON object or string, found {type(value).__name__}")
        records.append((_Record(str(path), where, value if isinstance(value, dict) else {}), value))
    return records


def _conll_records(path: Path) -> list[tuple[_Record, Any]]:
    """Sentences of a CoNLL column file (token first; blank lines between sentences; -DOCSTART- skipped)."""
    records: list[tuple[_Record, Any]] = []
    tokens: list[str] = []
    first = 0
    for number, line in enumerate([*_lines(_read_text(path)), ""], start=1):
        parts = line.split()
        if not parts or parts[0] == "-DOCSTART-":
            if tokens:
                records.append((_Record(str(path), f"line {first}", {}), {"tokens": tokens}))
                tokens = []
            continue
        first = first if tokens else number
        tokens.append(parts[0])
    return records


def _squad_records(path: Path) -> list[tuple[_Record, Any]]:
    """Questions of a SQuAD JSON file (answers not needed), with their ids."""
    data = _read_json(path)
    articles = data.get("data") if isinstance(data, dict) else None
    if not isinstance(articles, list):
        raise _error(path, None, "expected SQuAD JSON: an object with a 'data' list of articles")
    records = []
    for a_index, article in enumerate(articles):
        record = _Record(str(path), f"article {a_index}", article if isinstance(article, dict) else {})
        for p_index in range(len(record.get("paragraphs", list))):
            paragraph = record.sub("paragraphs", p_index)
            context = paragraph.get("context")
            for q_index in range(len(paragraph.get("qas", list))):
                qa = paragraph.sub("qas", q_index)
                qid = qa.get("id", (str, int))
                qa = _Record(qa.source, f"question id {qid}", qa.data)
                records.append((qa, {"id": qid, "question": qa.get("question"), "context": context}))
    return records


# --- one raw input (a string or an object) -> an example: the rules of `ptuning.inference` ---

FIELDS: dict[str, tuple[str, ...]] = {
    "classification": ("text", "text_pair"),
    "regression": ("text", "text_pair"),
    "multiple_choice": ("context", "choices"),
    "token_classification": ("tokens", "predicate"),  # predicate: SRL's word index (conll05)
    "question_answering": ("question", "context"),
}


def _visible(text: str) -> bool:
    """True when `text` holds a character that shows: not a space or separator (Z*), nor a control,
    format (zero-width space, byte-order mark), surrogate, private or unassigned code point (C*)."""
    return any(unicodedata.category(char)[0] not in "ZC" for char in text)


def _check_text(text: str, what: str) -> None:
    """`what` ("input 0: field 'text'") names the text in the DataError."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise DataError(
            f"{what} is not valid Unicode text (unpaired surrogate U+{ord(text[exc.start]):04X} at "
            f"character {exc.start}; invalid UTF-8?)"
        ) from None
    if not _visible(text):  # "\u200b" or "\x00" alone is as empty as " " to the model
        raise DataError(f"{what} is empty; expected text with at least one visible character")


def _field(item: dict, key: str, kind: type, index: int, *, optional: bool = False, name: str = ""):
    """`name`: how messages call the field (default: `key`)."""
    name = name or repr(key)
    value = item.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, kind) or (kind is list and not all(isinstance(v, str) for v in value)):
        expected = "a list of strings" if kind is list else "a string"
        got = "it is missing" if key not in item else f"got {type(value).__name__}"
        raise DataError(f"input {index}: field {name} must be {expected}; {got}")
    if kind is list:
        if not value:
            raise DataError(f"input {index}: field {name} is empty; expected at least one item")
        for position, text in enumerate(value):
            _check_text(text, f"input {index}: field {name} item {position}")
    else:
        _check_text(value, f"input {index}: field {name}")
    return value


def _trained_names(fmt: InputFormat | None) -> dict[str, str]:
    """generic key -> how messages name it: the trained column too where it differs ("'premise'
    (or 'text')")."""
    columns = {"text": fmt.text_column, "text_pair": fmt.text_pair_column} if fmt else {}
    return {
        generic: f"{column!r} (or {generic!r})" if column and column != generic else repr(generic)
        for generic, column in (("text", columns.get("text")), ("text_pair", columns.get("text_pair")))
    }


def _from_trained_columns(item: dict, fmt: InputFormat, index: int) -> dict:
    """A sentence-level input with the trained column names as keys -> the generic keys; the
    trained label column (a training row's gold answer) is dropped."""
    renamed = dict(item)
    for generic, column in (("text", fmt.text_column), ("text_pair", fmt.text_pair_column)):
        if column is None or column == generic or column not in renamed:
            continue
        if generic in renamed:
            raise DataError(
                f"input {index}: fields {column!r} and {generic!r} both give the {generic.replace('_', ' ')}; "
                "give one of them"
            )
        renamed[generic] = renamed.pop(column)
    if fmt.label_column not in FIELDS["classification"]:
        renamed.pop(fmt.label_column, None)
    return renamed


def parse_input(spec: TaskSpec, item: Any, index: int, fmt: InputFormat | None = None) -> dict[str, Any]:
    """A raw input -> an example dict of `ptuning.data` (without a label).

    `fmt`: the checkpoint's recorded `InputFormat`. A sentence-level input may then use its trained
    column names (`{"review": ...}`) as well as `text`/`text_pair`, may carry its label column
    (ignored), and must give the pair when the model was trained on text pairs."""
    kind = spec.task_type
    sentence = kind in ("classification", "regression")
    pairs = sentence and fmt is not None and fmt.text_pair_column is not None
    names = _trained_names(fmt if sentence else None)
    if isinstance(item, str):
        _check_text(item, f"input {index}: the text")
        if pairs:
            raise DataError(
                f"input {index}: the model was trained on text pairs; expected an object with the fields "
                f"{names['text']} and {names['text_pair']}, not a plain string"
            )
        if sentence:
            return {"text": item, "text_pair": None}
        if kind == "token_classification":
            return {"tokens": item.split()}
        raise DataError(f"input {index}: task {spec.name!r} ({kind}) needs an object, not a plain string")
    if not isinstance(item, dict):
        raise DataError(f"input {index}: expected a string or an object, got {type(item).__name__}")
    if sentence and fmt is not None:
        item = _from_trained_columns(item, fmt, index)
    unknown = [key for key in item if key not in FIELDS[kind]]
    if unknown:
        expected = ", ".join(names.values()) if fmt is not None and sentence else ", ".join(FIELDS[kind])
        raise DataError(
            f"input {index}: field {unknown[0]!r} is not a field of a {kind} input; expected {expected}"
        )
    if sentence:
        if pairs and item.get("text_pair") is None:
            raise DataError(
                f"input {index}: field {names['text_pair']} is missing; the model was trained on text pairs "
                f"({names['text']} and {names['text_pair']})"
            )
        return {
            "text": _field(item, "text", str, index, name=names["text"]),
            "text_pair": _field(item, "text_pair", str, index, optional=True, name=names["text_pair"]),
        }
    if kind == "multiple_choice":
        choices = _field(item, "choices", list, index)
        if spec.num_choices and len(choices) != spec.num_choices:
            raise DataError(
                f"input {index}: task {spec.name!r} expects {spec.num_choices} choices, got {len(choices)}"
            )
        return {"context": _field(item, "context", str, index), "choices": choices}
    if kind == "token_classification":
        tokens = _field(item, "tokens", list, index)
        predicate = item.get("predicate")  # semantic role labelling: the predicate's word index
        if predicate is None:
            return {"tokens": tokens}
        if not isinstance(predicate, int) or isinstance(predicate, bool) or not 0 <= predicate < len(tokens):
            raise DataError(f"input {index}: field 'predicate' must be a word index below {len(tokens)}")
        return {"tokens": tokens, "predicate": predicate}
    return {
        "id": str(index),
        "question": _field(item, "question", str, index),
        "context": _field(item, "context", str, index),
    }
