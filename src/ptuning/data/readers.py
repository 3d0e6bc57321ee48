"""File readers of task data (TSV/CSV, JSONL, JSON, CoNLL columns, SQuAD JSON) and the records they
yield; the user's own tables in every form read through `datasets` are `ptuning.data.tables`.

Bad input raises `DataError` with one line naming the file, the line (or row, record, question id) and
what was expected.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections.abc import Callable, Sequence
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
