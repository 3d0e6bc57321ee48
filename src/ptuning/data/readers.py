"""File readers of task data (TSV/CSV, JSONL, JSON, CoNLL columns, SQuAD JSON) and the records they yield,
and the rows of the user's own tables (`read_table_source`): files of every tabular format and
``save_to_disk`` folders read through `datasets`, and data passed from Python (a list of dicts, a
pandas DataFrame, a `datasets.Dataset` or `DatasetDict`).

Bad input raises `DataError` with one line naming the file, the line (or row, record, question id) and
what was expected.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import math
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ptuning.errors import DataError

Example = dict[str, Any]
PathLike = str | os.PathLike[str]


# --------------------------------------------------------------------------------------------------
# Errors and records


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _error(source: PathLike, where: str | None, expected: str) -> DataError:
    """A one-line `DataError`: ``<file>, <where>: <what was expected / found>``."""
    location = str(source) if where is None else f"{source}, {where}"
    return DataError(_one_line(f"{location}: {expected}", limit=1000))


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


@dataclass(frozen=True)
class _Record:
    """One input record (a table row, a JSON object, a hub row) and where it came from, for error messages."""

    source: str
    where: str
    data: dict[str, Any]
    kind: str = "key"  # what a field is called in messages: "column" for table rows

    def error(self, expected: str) -> DataError:
        return _error(self.source, self.where, expected)

    def get(self, key: str, types: type | tuple[type, ...] = str) -> Any:
        """The value of `key`, checked to be of `types` (bools are never accepted as ints); a string
        must be Unicode text (JSON can spell a lone surrogate, which no tokenizer takes)."""
        if key not in self.data:
            found = ", ".join(map(str, self.data)) or "none"
            raise self.error(f"missing {self.kind} {key!r}; {self.kind}s found: {found}")
        value = self.data[key]
        if value is None:  # a null in JSON, an empty cell of a table with a missing trailing field
            raise self.error(f"no value in {self.kind} {key!r}")
        wanted = types if isinstance(types, tuple) else (types,)
        if not isinstance(value, wanted) or (isinstance(value, bool) and bool not in wanted):
            names = " or ".join(t.__name__ for t in wanted)
            raise self.error(f"expected {key!r} to be {names}, found {_type_name(value)} {value!r}")
        if isinstance(value, str):
            _check_unicode(value, lambda found: self.error(f"{key!r} holds {found}"))
        return value

    def sub(self, key: str, index: int | None = None) -> _Record:
        """A nested record (a JSON object under `key`, or the `index`-th object of the list under `key`)."""
        value = self.get(key, list if index is not None else dict)
        where = f"{self.where}, {key}" if index is None else f"{self.where}, {key}[{index}]"
        if index is not None:
            value = value[index]
            if not isinstance(value, dict):
                raise self.error(f"expected {key}[{index}] to be a JSON object, found {_type_name(value)}")
        return _Record(self.source, where, value, self.kind)


def _check_unicode(text: str, error: Callable[[str], DataError]) -> None:
    """Refuse a string holding a lone surrogate (``"\\ud800"`` in JSON): it cannot be encoded as UTF-8."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        found = text[err.start]
        raise error(
            f"the lone surrogate \\u{ord(found):04x}, which is not Unicode text "
            "(half of a UTF-16 pair without its other half); expected UTF-8 text"
        ) from None


# --------------------------------------------------------------------------------------------------
# File readers (TSV/CSV, JSONL, JSON, CoNLL columns, SQuAD)


def _read_text(path: Path) -> str:
    """The whole file as text (UTF-8, a byte-order mark dropped); errors name the file and line."""
    if not path.is_file():
        raise _error(path, None, "file not found")
    raw = path.read_bytes()
    if not raw.strip():
        raise _error(path, None, "file is empty")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise _error(
            path, f"line {line}", f"expected UTF-8 text, found byte 0x{raw[err.start]:02x}"
        ) from None


def _lines(text: str) -> list[str]:
    """Lines split on newlines only (str.splitlines would also split on form feeds and U+2028)."""
    return [line.removesuffix("\r") for line in text.split("\n")]


def _read_table(
    path: Path, *, delimiter: str, header: Sequence[str] | None = None, required: Sequence[str] = ()
) -> list[_Record]:
    """Rows of a CSV/TSV file as records keyed by column name (header from the first line unless given).

    TSV files are read without quote handling, as GLUE TSVs contain bare ``"`` characters; CSV files
    use standard quoting. A UTF-8 byte-order mark (MRPC has one) is dropped. Blank lines are skipped.
    """
    text = _read_text(path)
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    columns = list(header) if header is not None else None
    records: list[_Record] = []
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, quoting=quoting)
    try:
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            if columns is None:
                columns = [cell.strip() for cell in row]
                missing = [name for name in required if name not in columns]
                if missing:
                    raise _error(
                        path,
                        f"line {reader.line_num}",
                        f"missing column {missing[0]!r} (expected {', '.join(required)}); "
                        f"columns found: {', '.join(columns)}",
                    )
                continue
            if len(row) != len(columns):
                raise _error(
                    path,
                    f"line {reader.line_num}",
                    f"expected {len(columns)} columns ({', '.join(columns)}), found {len(row)}",
                )
            records.append(
                _Record(str(path), f"line {reader.line_num}", dict(zip(columns, row, strict=True)), "column")
            )
    except csv.Error as err:
        raise _error(
            path,
            f"line {reader.line_num}",
            f"unreadable {'TSV' if quoting == csv.QUOTE_NONE else 'CSV'} ({err})",
        ) from None
    if columns is None:
        raise _error(path, None, "file is empty")
    if not records:
        raise _error(path, None, "no examples (only a header line)")
    return records


def _read_jsonl(path: Path) -> list[_Record]:
    """One record per non-blank line of a JSON-lines file; each line must be a JSON object."""
    records: list[_Record] = []
    for line_no, line in enumerate(_lines(_read_text(path)), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as err:
            raise _error(
                path,
                f"line {line_no}",
                f"invalid JSON ({err.msg} at column {err.colno}); expected one JSON object per line",
            ) from None
        except RecursionError:
            raise _error(path, f"line {line_no}", "invalid JSON (nested too deeply)") from None
        if not isinstance(value, dict):
            raise _error(path, f"line {line_no}", f"expected a JSON object, found {_type_name(value)}")
        records.append(_Record(str(path), f"line {line_no}", value))
    if not records:
        raise _error(path, None, "file is empty")
    return records


def _read_json(path: Path) -> Any:
    text = _read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise _error(path, f"line {err.lineno}", f"invalid JSON ({err.msg} at column {err.colno})") from None
    except RecursionError:
        raise _error(path, None, "invalid JSON (nested too deeply)") from None


@dataclass(frozen=True)
class _Sentence:
    tokens: list[str]
    tags: list[str]
    lines: list[int]  # file line of each token, for error messages


def _read_conll(path: Path, tag_column: int = -1) -> list[_Sentence]:
    """Sentences of a CoNLL column file: whitespace-separated columns, the token first, a blank line
    between sentences, ``-DOCSTART-`` lines skipped. Every token line must have as many columns as
    the first one; the tag is taken from column `tag_column` (default: the last)."""
    sentences: list[_Sentence] = []
    current = _Sentence([], [], [])
    n_columns: int | None = None
    first_line = 0
    for line_no, line in enumerate(_lines(_read_text(path)), start=1):
        parts = line.split()
        if not parts or parts[0] == "-DOCSTART-":
            if current.tokens:
                sentences.append(current)
                current = _Sentence([], [], [])
            continue
        if n_columns is None:
            n_columns, first_line = len(parts), line_no
            if n_columns < 2:
                raise _error(
                    path,
                    f"line {line_no}",
                    "expected at least 2 whitespace-separated columns (token ... tag), found 1",
                )
            if not -n_columns <= tag_column < n_columns:
                raise _error(
                    path,
                    f"line {line_no}",
                    f"tag column {tag_column} does not exist: lines have {n_columns} columns",
                )
        elif len(parts) != n_columns:
            raise _error(
                path,
                f"line {line_no}",
                f"expected {n_columns} whitespace-separated columns like line {first_line}, "
                f"found {len(parts)}: {line.strip()[:80]!r}",
            )
        current.tokens.append(parts[0])
        current.tags.append(parts[tag_column])
        current.lines.append(line_no)
    if current.tokens:
        sentences.append(current)
    if not sentences:
        raise _error(path, None, "file is empty (no token lines)")
    return sentences


_TAG_RE = re.compile(r"^([BIELSU])-(.+)$")


def _to_iob2(tags: Sequence[str], where: Callable[[int], str], source: PathLike) -> list[str]:
    """Tags in IOB2 form. IOB1, BIOES and BILOU inputs are converted (E/L -> I, S/U -> B, an I that
    starts an entity -> B), so that seqeval and the model see one scheme."""
    out: list[str] = []
    open_type: str | None = None  # type of the entity the previous token leaves open
    for i, tag in enumerate(tags):
        if tag == "O":
            out.append("O")
            open_type = None
            continue
        match = _TAG_RE.match(tag)
        if match is None:
            raise _error(
                source, where(i), f"tag {tag!r} is not O or PREFIX-TYPE with PREFIX one of B, I, E, L, S, U"
            )
        prefix, kind = match.groups()
        continues = prefix in "IEL" and open_type == kind
        out.append(("I-" if continues else "B-") + kind)
        open_type = kind if prefix in "BI" else None
    return out


def _iob2_order(tags: set[str]) -> tuple[str, ...]:
    """Tag names in a stable id order: O first, then by entity type with B before I."""
    rest = sorted((t for t in tags if t != "O"), key=lambda t: (t[2:], t[:1]))
    return ("O", *rest)


def _read_squad_articles(path: Path) -> list[list[Example]]:
    """Examples of an official SQuAD JSON file, grouped by article (in file order).

    Checks every record: `context`, `question`, `id` and `answers` must be present, and each answer's
    `answer_start` must point at its text in the context."""
    data = _read_json(path)
    articles = data.get("data") if isinstance(data, dict) else None
    if not isinstance(articles, list):
        raise _error(path, None, "expected SQuAD JSON: an object with a 'data' list of articles")
    seen: set[str] = set()
    grouped: list[list[Example]] = []
    for a_index, article in enumerate(articles):
        record = _Record(str(path), f"article {a_index}", article if isinstance(article, dict) else {})
        examples: list[Example] = []
        for p_index in range(len(record.get("paragraphs", list))):
            paragraph = record.sub("paragraphs", p_index)
            examples.extend(_squad_paragraph(paragraph, seen))
        grouped.append(examples)
    if not any(grouped):
        raise _error(path, None, "no questions found")
    return grouped


def _squad_paragraph(paragraph: _Record, seen: set[str]) -> list[Example]:
    questions = paragraph.get("qas", list)
    first_id = questions[0].get("id") if questions and isinstance(questions[0], dict) else None
    where = paragraph.where if first_id is None else f"question id {first_id}"
    context = _Record(paragraph.source, where, paragraph.data).get("context")
    examples = []
    for q_index in range(len(questions)):
        qa = paragraph.sub("qas", q_index)
        qid = str(qa.get("id", (str, int)))
        qa = _Record(qa.source, f"question id {qid}", qa.data)
        if qid in seen:
            raise qa.error("duplicate question id")
        seen.add(qid)
        question = qa.get("question")
        texts, starts = [], []
        for a_index in range(len(qa.get("answers", list))):
            answer = qa.sub("answers", a_index)
            answer = _Record(qa.source, f"question id {qid}, answer {a_index}", answer.data)
            text, start = answer.get("text"), answer.get("answer_start", int)
            found = context[start : start + len(text)]
            if found != text:
                raise answer.error(
                    f"answer_start {start} does not match the answer text {text!r} (the context there reads {found!r})"
                )
            texts.append(text)
            starts.append(start)
        examples.append(
            {
                "id": qid,
                "question": question,
                "context": context,
                "answers": {"text": texts, "answer_start": starts},
            }
        )
    return examples


_TABLE_DELIMITERS = {".csv": ",", ".tsv": "\t"}


# --------------------------------------------------------------------------------------------------
# The user's own tables: files through `datasets`, save_to_disk folders, data passed from Python

#: Table file suffixes -> the `datasets` builder that reads them.
TABLE_FILE_BUILDERS = {
    ".csv": "csv",
    ".tsv": "csv",
    ".jsonl": "json",
    ".json": "json",
    ".parquet": "parquet",
    ".arrow": "arrow",
}
#: How a config records data passed from Python (train_config.json cannot hold the data itself).
IN_MEMORY_PREFIX = "<in-memory"
#: Split names a DatasetDict's validation part is taken from, in order.
VALIDATION_SPLITS = ("validation", "dev", "test")


@dataclass(frozen=True)
class TableRows:
    """The rows of one data source: its training part, and the validation part a DatasetDict carries."""

    train: list[_Record]
    validation: list[_Record] | None = None


def is_in_memory(source: Any) -> bool:
    """Whether `source` is data passed from Python rather than a path."""
    return source is not None and not isinstance(source, str | os.PathLike)


def is_in_memory_record(source: Any) -> bool:
    """Whether `source` is the recorded stand-in of data passed from Python (`describe_source`)."""
    return isinstance(source, str) and source.startswith(IN_MEMORY_PREFIX)


def _module_type(module: str, name: str) -> type | None:
    """`module.name` where the caller has imported that module (pandas and datasets are heavy: data
    passed from Python already loaded them, and a path needs neither)."""
    loaded = sys.modules.get(module)
    return getattr(loaded, name, None) if loaded is not None else None


def _is(value: Any, module: str, name: str) -> bool:
    cls = _module_type(module, name)
    return cls is not None and isinstance(value, cls)


def describe_source(source: Any) -> str | None:
    """A path as given; data passed from Python as ``<in-memory: KIND of N rows; sha1 X>`` (what
    train_config.json records, and what tells one data set from another there; no comma, which
    would list several training files)."""
    if source is None or isinstance(source, str):
        return source
    if isinstance(source, os.PathLike):
        return os.fspath(source)
    if _is(source, "datasets", "DatasetDict"):
        parts = "; ".join(f"{name} {len(split)}" for name, split in source.items())
        return f"{IN_MEMORY_PREFIX}: DatasetDict ({parts}); sha1 {_digest(source)}>"
    try:
        rows = len(source)
    except TypeError:
        return f"{IN_MEMORY_PREFIX}: {type(source).__name__}>"
    return f"{IN_MEMORY_PREFIX}: {type(source).__name__} of {rows} rows; sha1 {_digest(source)}>"


def _digest(source: Any) -> str:
    """A short content hash of in-memory data (a Dataset's own fingerprint where it has one)."""
    if _is(source, "datasets", "DatasetDict"):
        text = json.dumps({name: _digest(split) for name, split in source.items()}, sort_keys=True)
    elif _is(source, "datasets", "Dataset"):
        text = source._fingerprint
    elif _is(source, "pandas", "DataFrame"):
        text = json.dumps([list(map(str, source.columns)), _frame_rows(source)], default=str)
    else:
        text = json.dumps(source, default=str, sort_keys=True)
    return hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()[:12]


def _frame_rows(frame: Any) -> list[dict[str, Any]]:
    """A DataFrame's rows as dicts, missing values (NaN, None, pd.NA) as None."""
    rows = frame.to_dict("records")
    for row in rows:
        for key, value in row.items():
            nan = isinstance(value, float) and math.isnan(value)
            if nan or type(value).__name__ in ("NAType", "NaTType"):
                row[key] = None
    return rows


def read_table_source(source: Any, role: str, *, required: Sequence[str] = ()) -> TableRows:
    """The rows of a table source, each a record keyed by column name.

    `source`: a path to a CSV, TSV, JSONL (one object per line), JSON (an array of objects), Parquet
    or Arrow file or a ``save_to_disk`` folder (read through `datasets`), or data passed from Python:
    a list of dicts, a pandas DataFrame, a `datasets.Dataset` or `DatasetDict` (its ``train`` part,
    and its validation part from ``validation``, ``dev`` or ``test``). `role` names the source in
    messages about data from Python (``train_file``). `required`: columns a table with a header or a
    schema must have (checked once for the whole table). Class-label columns give their names."""
    if is_in_memory_record(source):
        raise DataError(
            f"{role} {source} stands for data passed from Python to the run that recorded it, which "
            f"its settings cannot hold: pass the data again (ptuning.train) or give a file"
        )
    if isinstance(source, str | os.PathLike):
        return _read_table_path(Path(source), required)
    name = f"{role} ({type(source).__name__})"
    if _is(source, "datasets", "DatasetDict"):
        if "train" not in source:
            raise DataError(f"{name}: no 'train' split; splits found: {', '.join(source) or 'none'}")
        held = next((split for split in VALIDATION_SPLITS if split in source), None)
        train = _dataset_records(source["train"], f"{name}['train']", required=required)
        validation = None
        if held is not None:
            validation = _dataset_records(source[held], f"{name}[{held!r}]", required=required)
        return TableRows(train, validation)
    if _is(source, "datasets", "Dataset"):
        return TableRows(_dataset_records(source, name, required=required))
    if _is(source, "pandas", "DataFrame"):
        _check_columns(name, [str(c) for c in source.columns], required)
        return TableRows(_non_empty(name, _row_records(name, _frame_rows(source))))
    if isinstance(source, list | tuple):
        for index, row in enumerate(source):
            if not isinstance(row, dict):
                raise DataError(
                    f"{name}, row {index}: expected a dict of column -> value, found {_type_name(row)}"
                )
        return TableRows(_non_empty(name, _row_records(name, list(source))))
    raise DataError(
        f"{role}: expected a file path, a list of dicts, a pandas DataFrame or a datasets Dataset / "
        f"DatasetDict, found {type(source).__name__}"
    )


def _row_records(
    source: str, rows: list[dict[str, Any]], where: Callable[[int], str] | None = None, kind: str = "column"
) -> list[_Record]:
    where = where or (lambda i: f"row {i}")
    return [_Record(source, where(i), row, kind) for i, row in enumerate(rows)]


def _json_records(source: str, rows: list[dict[str, Any]], where: Callable[[int], str]) -> list[_Record]:
    """Records of JSON objects read through `datasets`, which gives every row every key of the file
    (None where a row lacks it): the keys a row lacks are dropped again, so messages list its own."""
    rows = [{key: value for key, value in row.items() if value is not None} for row in rows]
    return _row_records(source, rows, where, kind="key")


def _non_empty(source: PathLike, records: list[_Record]) -> list[_Record]:
    if not records:
        raise _error(source, None, "no examples (no rows)")
    return records


def _check_columns(
    source: PathLike, columns: Sequence[str], required: Sequence[str], where: str | None = None
) -> None:
    missing = [name for name in required if name not in columns]
    if missing:
        raise _error(
            source,
            where,
            f"missing column {missing[0]!r} (expected {', '.join(required)}); "
            f"columns found: {', '.join(columns) or 'none'}",
        )


def _class_names(features: Any) -> dict[str, list[str]]:
    """Class-label names of the columns of a `datasets` table (plain and sequence-of class labels)."""
    names: dict[str, list[str]] = {}
    for column, feature in dict(features or {}).items():
        inner = getattr(feature, "feature", feature)
        if getattr(inner, "names", None):
            names[column] = list(inner.names)
    return names


def _dataset_records(
    split: Any,
    source: str,
    *,
    required: Sequence[str] = (),
    where: Callable[[int], str] | None = None,
    kind: str = "column",
) -> list[_Record]:
    """Records of the rows of a `datasets` table (or any iterable of row dicts), class-label ids
    replaced by their names."""
    columns = getattr(split, "column_names", None)
    if columns is not None:
        _check_columns(source, list(columns), required)
    names = _class_names(getattr(split, "features", None))
    rows = split.to_list() if hasattr(split, "to_list") else [dict(row) for row in split]
    where = where or (lambda i: f"row {i}")
    records = []
    for index, row in enumerate(rows):
        for column, labels in names.items():
            value = row.get(column)
            if isinstance(value, list):
                row[column] = [labels[v] if isinstance(v, int) and 0 <= v < len(labels) else v for v in value]
            elif isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(labels):
                row[column] = labels[value]
        records.append(_Record(source, where(index), row, kind))
    return _non_empty(source, records) if columns is not None else records


@contextlib.contextmanager
def _quiet_datasets() -> Iterator[None]:
    """No "Generating train split" bars or info lines while `datasets` reads a user's file."""
    import datasets

    bars_were_off = datasets.utils.are_progress_bars_disabled()
    verbosity = datasets.logging.get_verbosity()
    datasets.utils.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    try:
        yield
    finally:
        datasets.logging.set_verbosity(verbosity)
        if not bars_were_off:
            datasets.utils.enable_progress_bars()


def _load_file(builder: str, path: Path, **options: Any) -> Any:
    """One file through a `datasets` builder, kept in memory (a throwaway cache: the rows become
    examples at once, and nothing is left in the user's datasets cache)."""
    import datasets

    with tempfile.TemporaryDirectory(prefix="ptuning-data-") as cache, _quiet_datasets():
        return datasets.load_dataset(
            builder, data_files=str(path), split="train", cache_dir=cache, keep_in_memory=True, **options
        )


def _read_table_path(path: Path, required: Sequence[str]) -> TableRows:
    if path.is_dir():
        return _read_saved_folder(path, required)
    suffix = path.suffix.lower()
    builder = TABLE_FILE_BUILDERS.get(suffix)
    if builder is None:
        if not path.exists():
            raise _error(path, None, "file not found")
        known = ", ".join(TABLE_FILE_BUILDERS)
        raise _error(
            path,
            None,
            f"unsupported file type {suffix or '(none)'!r}; expected {known} or a save_to_disk folder",
        )
    if suffix in (".csv", ".tsv"):
        return TableRows(_read_delimited(path, _TABLE_DELIMITERS[suffix], required))
    if suffix == ".jsonl":
        return TableRows(_read_json_lines(path))
    if suffix == ".json":
        return TableRows(_read_json_array(path))
    if not path.is_file():
        raise _error(path, None, "file not found")
    try:
        dataset = _load_file(builder, path)
    except Exception as err:  # pyarrow says what it could not read; it has no line to name
        raise _error(path, None, f"unreadable {suffix[1:]} file ({type(err).__name__}: {err})") from None
    return TableRows(_dataset_records(dataset, str(path), required=required))


def _read_saved_folder(path: Path, required: Sequence[str]) -> TableRows:
    """A folder written by `Dataset.save_to_disk` (one split) or `DatasetDict.save_to_disk` (its
    ``train`` part, and its validation part from ``validation``, ``dev`` or ``test``)."""
    import datasets

    try:
        with _quiet_datasets():
            saved = datasets.load_from_disk(str(path), keep_in_memory=True)
    except Exception as err:
        raise _error(
            path,
            None,
            f"not a folder written by Dataset.save_to_disk or DatasetDict.save_to_disk ({_one_line(err, 200)})",
        ) from None
    if isinstance(saved, datasets.DatasetDict):
        if "train" not in saved:
            raise _error(path, None, f"no 'train' split; splits found: {', '.join(saved) or 'none'}")
        held = next((split for split in VALIDATION_SPLITS if split in saved), None)
        train = _dataset_records(saved["train"], f"{path} (train)", required=required)
        validation = None
        if held is not None:
            validation = _dataset_records(saved[held], f"{path} ({held})", required=required)
        return TableRows(train, validation)
    return TableRows(_dataset_records(saved, str(path), required=required))


def _read_delimited(path: Path, delimiter: str, required: Sequence[str]) -> list[_Record]:
    """A CSV or TSV file through the `datasets` csv builder, every cell read as text (``007`` stays
    ``007``, ``NA`` stays ``NA``). Rows are named by their file line; a file the builder cannot read,
    or reads differently from the csv module (a row of empty cells, a short row), is read by
    `_read_table`, whose errors name the line."""
    text = _read_text(path)
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    lines: list[int] = []
    columns: list[str] | None = None
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, quoting=quoting)
    try:
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            if columns is None:
                columns = [cell.strip() for cell in row]
                _check_columns(path, columns, required, f"line {reader.line_num}")
            elif len(row) != len(columns):
                break  # `_read_table` says which line
            else:
                lines.append(reader.line_num)
    except csv.Error:
        pass  # `_read_table` says which line
    import datasets

    try:
        if columns is None or len(set(columns)) != len(columns) or not lines:
            raise ValueError("not a table the builder reads")
        features = datasets.Features({name: datasets.Value("string") for name in columns})
        dataset = _load_file(
            "csv",
            path,
            sep=delimiter,
            quoting=quoting,
            column_names=columns,
            header=0,
            features=features,
            keep_default_na=False,
            encoding="utf-8-sig",
        )
        rows = dataset.to_list()
    except Exception:
        rows = None
    if rows is None or len(rows) != len(lines):
        return _read_table(path, delimiter=delimiter, required=required)
    return _row_records(str(path), rows, lambda i: f"line {lines[i]}")


def _read_json_lines(path: Path) -> list[_Record]:
    """A JSONL file through the `datasets` json builder, rows named by their file line. A file the
    builder refuses (a line that is not a JSON object, a lone surrogate) is read by `_read_jsonl`,
    whose errors name the line."""
    text = _read_text(path)
    lines = [number for number, line in enumerate(_lines(text), start=1) if line.strip()]
    try:
        rows = _load_file("json", path).to_list()
    except Exception:
        rows = None
    if rows is None or len(rows) != len(lines):
        return _read_jsonl(path)
    return _json_records(str(path), rows, lambda i: f"line {lines[i]}")


def _read_json_array(path: Path) -> list[_Record]:
    """A JSON file holding an array of objects through the `datasets` json builder, each object a row
    (``record N``, from 0). A file the builder refuses is parsed here, to name what is wrong and where."""
    text = _read_text(path)
    try:
        rows = _load_file("json", path).to_list() if text.lstrip().startswith("[") else None
    except Exception:
        rows = None
    if rows is None:
        data = _read_json(path)
        if not isinstance(data, list):
            raise _error(
                path,
                None,
                f"expected a JSON array of objects (one row each), found {_type_name(data)}; "
                "a .jsonl file holds one object per line",
            )
        for index, row in enumerate(data):
            if not isinstance(row, dict):
                raise _error(path, f"record {index}", f"expected a JSON object, found {_type_name(row)}")
        rows = data
    return _non_empty(path, _json_records(str(path), rows, lambda i: f"record {i}"))
