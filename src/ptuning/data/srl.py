"""CoNLL-2005 semantic role labelling (``conll05``): one example per predicate, BIO argument tags.

Files: ``conll05/train.txt`` and ``conll05/dev.txt`` under the data directory, in the CoNLL-2005
column format (the shared task's ``words`` and ``props`` columns side by side, e.g. made with
``paste`` from ``train-set``/``dev-set``): one line per word, a blank line between sentences,
whitespace-separated columns

    word  [other columns ...]  target  args_1 ... args_k

``target`` holds the predicate's lemma on each predicate's line and ``-`` elsewhere; the sentence has
k predicates and k argument columns, the i-th for the i-th predicate in sentence order, in the start-end
bracket notation: ``(A0*`` opens an A0 argument, ``*)`` closes it, ``(V*)`` is a one-word span, ``*``
continues. The target column is the one followed by as many columns as it has predicates. No data
ships with ptuning and the hub has no maintained copy: the error on a missing file says where to put it.

Each predicate gives one example ``{"tokens", "tags", "predicate"}``: IOB2 tags (``B-A0``, ``I-A0``,
``B-V``, ...) and the predicate's word index. The predicate is marked in the input as the reference
implementation (P-Tuning v2, tasks/srl) does: the words are followed by the separator token and the
predicate word again (``[CLS] words [SEP] predicate [SEP]``; see `ptuning.data.features`). Metric:
entity-level (span) F1 with seqeval over all argument spans, the predicate's own V span included
(the official srl-eval.pl leaves V out, so this F1 reads slightly higher than published ones).
"""

from __future__ import annotations

import re
from pathlib import Path

from ptuning.data.readers import Example, _error, _lines, _read_text
from ptuning.data.registry import BuiltinTask
from ptuning.tasks import TaskSpec

_CORE = ("A0", "A1", "A2", "A3", "A4", "A5", "AA")
_MODIFIERS = tuple(
    f"AM-{m}"
    for m in ("ADV", "CAU", "DIR", "DIS", "EXT", "LOC", "MNR", "MOD", "NEG", "PNC", "PRD", "REC", "TM", "TMP")
)
#: Argument types of CoNLL-2005 (PropBank): core, modifiers, their continuation (C-) and reference (R-) forms, V.
ARGUMENT_TYPES = (*_CORE, *_MODIFIERS, *(f"{p}-{a}" for p in ("C", "R") for a in (*_CORE, *_MODIFIERS)), "V")
TAGS = ("O", *(f"{prefix}-{kind}" for kind in ARGUMENT_TYPES for prefix in ("B", "I")))

_CELL = re.compile(r"^(?:\((?P<open>[^()*]+))?\*(?P<close>\))?$")


def _sentences(path: Path) -> list[list[tuple[int, list[str]]]]:
    """Sentences as lists of (line number, columns)."""
    sentences, current = [], []
    for line_no, line in enumerate(_lines(_read_text(path)), start=1):
        columns = line.split()
        if not columns:
            if current:
                sentences.append(current)
                current = []
            continue
        if current and len(columns) != len(current[0][1]):
            raise _error(
                path,
                f"line {line_no}",
                f"expected {len(current[0][1])} columns like line {current[0][0]} of the sentence, found {len(columns)}",
            )
        current.append((line_no, columns))
    if current:
        sentences.append(current)
    if not sentences:
        raise _error(path, None, "file is empty (no word lines)")
    return sentences


def _target_column(path: Path, sentence: list[tuple[int, list[str]]]) -> int:
    """Index of the target column: the one followed by exactly as many columns as it has predicates."""
    width = len(sentence[0][1])
    for k in range(width - 2, -1, -1):
        column = width - 1 - k
        if sum(columns[column] != "-" for _, columns in sentence) == k:
            return column
    raise _error(
        path,
        f"line {sentence[0][0]}",
        "expected CoNLL-2005 columns: word ... target args_1 ... args_k, with k predicates "
        "(non '-' entries) in the target column",
    )


def _bio(path: Path, sentence: list[tuple[int, list[str]]], column: int) -> list[str]:
    """IOB2 tags of one argument column in start-end bracket notation."""
    tags, open_type = [], None
    for line_no, columns in sentence:
        cell = columns[column]
        match = _CELL.match(cell)
        if match is None:
            raise _error(
                path, f"line {line_no}", f"argument cell {cell!r} is not '*', '(TYPE*', '*)' or '(TYPE*)'"
            )
        if match["open"]:
            if open_type is not None:
                raise _error(path, f"line {line_no}", f"argument {match['open']} opens inside {open_type}")
            open_type = match["open"]
            if open_type not in ARGUMENT_TYPES:
                raise _error(
                    path,
                    f"line {line_no}",
                    f"unknown argument type {open_type!r}; known: {', '.join(ARGUMENT_TYPES)}",
                )
            tags.append(f"B-{open_type}")
        else:
            tags.append(f"I-{open_type}" if open_type else "O")
        if match["close"]:
            if open_type is None:
                raise _error(path, f"line {line_no}", f"{cell!r} closes an argument that was never opened")
            open_type = None
    if open_type is not None:
        raise _error(path, f"line {sentence[-1][0]}", f"argument {open_type} is never closed")
    return tags


def read_conll05(path: Path, spec: TaskSpec) -> list[Example]:
    """One example per predicate of every sentence of a CoNLL-2005 column file (module docstring)."""
    examples = []
    for sentence in _sentences(path):
        target = _target_column(path, sentence)
        predicates = [i for i, (_, columns) in enumerate(sentence) if columns[target] != "-"]
        tokens = [columns[0] for _, columns in sentence]
        for number, predicate in enumerate(predicates):
            tags = _bio(path, sentence, target + 1 + number)
            if tags[predicate] not in ("B-V", "I-V"):
                line = sentence[predicate][0]
                raise _error(
                    path,
                    f"line {line}",
                    f"predicate {tokens[predicate]!r} is not inside the (V*) span of its column",
                )
            examples.append({"tokens": tokens, "tags": tags, "predicate": predicate})
    if not examples:
        raise _error(path, None, "no predicates (every target column entry is '-')")
    return examples


TASK = BuiltinTask(
    TaskSpec("conll05", "token_classification", TAGS, "f1"),
    "CoNLL-2005 SRL",
    "conll05",
    "train.txt",
    "dev.txt",
    read_conll05,
)
