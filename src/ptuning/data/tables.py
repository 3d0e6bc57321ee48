"""The user's own tables: files of every tabular format (CSV, TSV, JSON lines, JSON arrays,
Parquet, Arrow) and ``save_to_disk`` folders read through `datasets`, and data passed from Python
(a list of dicts, a pandas DataFrame, a `datasets.Dataset` or `DatasetDict`), as the records of
`ptuning.data.readers`.

CSV, TSV and JSON lines keep the strict readers of `ptuning.data.readers` as the judge of a file
`datasets` reads differently, so that every error still names the file and its line.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import math
import os
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ptuning.data.readers import (
    _TABLE_DELIMITERS,
    PathLike,
    _error,
    _lines,
    _one_line,
    _read_json,
    _read_jsonl,
    _read_table,
    _read_text,
    _Record,
    _type_name,
)
from ptuning.errors import DataError

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
        return _split_rows(source, name, lambda split: f"{name}[{split!r}]", required)
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
        return _split_rows(saved, str(path), lambda split: f"{path} ({split})", required)
    return TableRows(_dataset_records(saved, str(path), required=required))


def _split_rows(
    splits: Any, source: str, split_name: Callable[[str], str], required: Sequence[str]
) -> TableRows:
    """A DatasetDict's `train` part and its validation part (the first of `VALIDATION_SPLITS` it
    holds, if any); `split_name` names a part in errors."""
    if "train" not in splits:
        raise _error(source, None, f"no 'train' split; splits found: {', '.join(splits) or 'none'}")
    held = next((split for split in VALIDATION_SPLITS if split in splits), None)
    train = _dataset_records(splits["train"], split_name("train"), required=required)
    validation = None
    if held is not None:
        validation = _dataset_records(splits[held], split_name(held), required=required)
    return TableRows(train, validation)


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
