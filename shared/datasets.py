"""Datasets for batches: a JSON list, a JSONL file or a CSV file, each row one run's input.

Every bad row is found before anything is stored, and named by its line number (the
item's number in a JSON list), so a user fixes a file in one round trip or chooses to
skip those rows:

    parse_items(list) / parse_file(bytes, format=)   -> Dataset (rows + problems)
    require_fields(dataset, fields)                   -> Dataset (rows missing a field
                                                         the prompts read become problems)

A whole file that cannot be read at all (not UTF-8, too many rows, a CSV header with a
duplicate column) raises `DatasetUnreadable` instead.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from shared.templates import TemplateSyntaxProblem, check_template

__all__ = [
    "FORMATS",
    "MAX_ROWS",
    "Dataset",
    "has_nul",
    "DatasetUnreadable",
    "Row",
    "RowProblem",
    "detect_format",
    "parse_file",
    "parse_items",
    "prompt_input_fields",
    "require_fields",
]

# A batch is accepted in one request; split anything larger into several batches.
MAX_ROWS = 100_000
FORMATS = ("jsonl", "csv", "json")

_SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".json": "json"}
_CONTENT_TYPES = {
    "application/jsonl": "jsonl",
    "application/x-ndjson": "jsonl",
    "application/x-jsonlines": "jsonl",
    "text/csv": "csv",
    "application/json": "json",
}


class DatasetUnreadable(ValueError):
    """The dataset as a whole cannot be read; the message says why, for the user."""


@dataclass(frozen=True, slots=True)
class Row:
    line: int  # the line number in the file (the item number in a JSON list), from 1
    input: dict[str, Any]


@dataclass(frozen=True, slots=True)
class RowProblem:
    line: int
    message: str  # starts with "line N:" (or "item N:"), ready to show


@dataclass(frozen=True, slots=True)
class Dataset:
    rows: list[Row]
    problems: list[RowProblem]
    # The input fields, in the order first seen (a CSV's header): the export's columns.
    columns: list[str] = field(default_factory=list)
    unit: str = "line"  # what `line` counts: "line" of a file or "item" of a JSON list


def detect_format(*, explicit: str | None, filename: str | None, content_type: str | None) -> str:
    """The dataset's format: as given, else from the file name, else from its type."""
    if explicit:
        if explicit not in FORMATS:
            raise DatasetUnreadable(f"format must be one of {', '.join(FORMATS)}")
        return explicit
    name = (filename or "").lower()
    for suffix, found in _SUFFIXES.items():
        if name.endswith(suffix):
            return found
    media = (content_type or "").split(";")[0].strip().lower()
    if media in _CONTENT_TYPES:
        return _CONTENT_TYPES[media]
    raise DatasetUnreadable(
        "cannot tell the file's format: name it .jsonl or .csv, or send format=jsonl|csv"
    )


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")  # a byte-order mark (Excel's CSV) is dropped
    except UnicodeDecodeError as exc:
        raise DatasetUnreadable(
            f"the file is not UTF-8 text (bad byte at offset {exc.start})"
        ) from None


def has_nul(value: Any) -> bool:
    """Whether a JSON value holds a NUL character anywhere: it would reach a prompt,
    which PostgreSQL text cannot store."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(has_nul(k) or has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(has_nul(v) for v in value)
    return False


class _Builder:
    """Collects rows and problems, and the columns in first-seen order."""

    def __init__(self, unit: str) -> None:
        self.unit = unit
        self.rows: list[Row] = []
        self.problems: list[RowProblem] = []
        self.columns: dict[str, None] = {}

    def problem(self, line: int, message: str) -> None:
        self.problems.append(RowProblem(line, f"{self.unit} {line}: {message}"))

    def add(self, line: int, value: Any) -> None:
        if len(self.rows) + len(self.problems) >= MAX_ROWS:
            raise DatasetUnreadable(
                f"the dataset has more than {MAX_ROWS} rows; split it into several batches"
            )
        if not isinstance(value, dict):
            self.problem(line, f"a row must be a JSON object, not {_json_kind(value)}")
        elif has_nul(value):
            self.problem(line, "contains a NUL (\\u0000) character")
        else:
            self.columns.update(dict.fromkeys(value))
            self.rows.append(Row(line, value))

    def build(self) -> Dataset:
        if not self.rows and not self.problems:
            raise DatasetUnreadable("the dataset has no rows")
        return Dataset(self.rows, self.problems, list(self.columns), self.unit)


def _json_kind(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return "a number"


def parse_items(items: Sequence[Any]) -> Dataset:
    """A JSON list already decoded (the API's `dataset` field)."""
    builder = _Builder("item")
    for number, item in enumerate(items, start=1):
        builder.add(number, item)
    return builder.build()


def _parse_jsonl(text: str) -> Dataset:
    builder = _Builder("line")
    # Only "\n" ends a line: str.splitlines would also split at U+2028, which JSON
    # strings may hold as is.
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue  # blank lines (a trailing newline, spacing) are not rows
        try:
            value = json.loads(line)
        except ValueError as exc:
            reason = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
            builder.problem(number, f"not valid JSON ({reason})")
            continue
        builder.add(number, value)
    return builder.build()


def _csv_header(reader: Any) -> list[str]:
    header: list[str] | None = next(reader, None)
    if not header:
        raise DatasetUnreadable("the CSV file is empty: line 1 must name the columns")
    names = [name.strip() for name in header]
    for index, name in enumerate(names, start=1):
        if not name:
            raise DatasetUnreadable(f"line 1: column {index} has no name")
        if names.index(name) != index - 1:
            raise DatasetUnreadable(f"line 1: column '{name}' appears twice")
    return names


def _parse_csv(text: str) -> Dataset:
    builder = _Builder("line")
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        names = _csv_header(reader)
        builder.columns.update(dict.fromkeys(names))
        start = reader.line_num + 1
        for record in reader:
            # A quoted value may span lines: the row is named by the line it starts on.
            line, start = start, reader.line_num + 1
            if not record:
                continue
            if len(record) != len(names):
                builder.problem(
                    line, f"{len(record)} values, but the header names {len(names)} columns"
                )
                continue
            builder.add(line, dict(zip(names, record, strict=True)))
    except csv.Error as exc:
        raise DatasetUnreadable(f"line {reader.line_num}: not valid CSV ({exc})") from None
    return builder.build()


def _parse_json_list(text: str) -> Dataset:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise DatasetUnreadable(f"the file is not valid JSON ({exc})") from None
    if not isinstance(value, list):
        raise DatasetUnreadable("a .json dataset must be a list of objects (or use JSONL)")
    return parse_items(value)


def parse_file(data: bytes, *, format: str) -> Dataset:
    """An uploaded file: JSONL (one object a line), CSV (a header line, then one row a
    line; values stay text) or a JSON list."""
    text = _decode(data)
    if format == "jsonl":
        return _parse_jsonl(text)
    if format == "csv":
        return _parse_csv(text)
    return _parse_json_list(text)


def prompt_input_fields(prompts: Iterable[str]) -> set[str]:
    """The `input.<name>` fields the prompt templates read (literal accesses only)."""
    fields: set[str] = set()
    for prompt in prompts:
        try:
            fields |= check_template(prompt).input_fields
        except TemplateSyntaxProblem:
            continue  # a stored workflow was validated when saved; nothing to require
    return fields


def require_fields(dataset: Dataset, fields: Iterable[str]) -> Dataset:
    """Rows that lack a field the prompts read become problems: their run would fail."""
    needed = sorted(set(fields))
    if not needed:
        return dataset
    rows: list[Row] = []
    problems = list(dataset.problems)
    for row in dataset.rows:
        missing = [name for name in needed if name not in row.input]
        if not missing:
            rows.append(row)
            continue
        names = ", ".join(f"'{name}'" for name in missing)
        plural = "s" if len(missing) > 1 else ""
        problems.append(
            RowProblem(
                row.line,
                f"{dataset.unit} {row.line}: missing input field{plural} {names}, "
                "which the workflow's prompts use",
            )
        )
    problems.sort(key=lambda p: p.line)
    return replace(dataset, rows=rows, problems=problems)
