"""Datasets: every bad row named by its line before anything runs."""

from __future__ import annotations

import json

import pytest

from shared.datasets import (
    DatasetUnreadable,
    detect_format,
    parse_file,
    parse_items,
    prompt_input_fields,
    require_fields,
)


def test_jsonl_rows_keep_their_line_numbers_and_bad_lines_are_named() -> None:
    text = "\n".join(
        [
            '{"text": "a"}',
            "{not json",
            "",  # blank: not a row, but it still counts as a line
            '["a", "list"]',
            '{"text": "b", "lang": "fr"}',
            '"just a string"',
        ]
    )
    dataset = parse_file(text.encode(), format="jsonl")
    assert [(r.line, r.input) for r in dataset.rows] == [
        (1, {"text": "a"}),
        (5, {"text": "b", "lang": "fr"}),
    ]
    assert [p.line for p in dataset.problems] == [2, 4, 6]
    assert dataset.problems[0].message.startswith("line 2: not valid JSON")
    assert dataset.problems[1].message == "line 4: a row must be a JSON object, not a list"
    assert dataset.problems[2].message == "line 6: a row must be a JSON object, not a string"
    assert dataset.columns == ["text", "lang"]


def test_a_jsonl_line_may_hold_a_line_separator_inside_a_string() -> None:
    # U+2028 is valid inside a JSON string; it must not split the row.
    row = json.dumps({"text": "one\u2028two"}, ensure_ascii=False)
    dataset = parse_file((row + "\n").encode(), format="jsonl")
    assert [r.input for r in dataset.rows] == [{"text": "one\u2028two"}]
    assert dataset.problems == []


def test_csv_header_names_the_fields_and_rows_are_numbered_by_file_line() -> None:
    text = 'text,lang\n"hello, world",en\n\n"two\nlines",fr\nonly-one-value\nx,y,z\n'
    dataset = parse_file(text.encode("utf-8-sig"), format="csv")  # with Excel's BOM
    assert [(r.line, r.input) for r in dataset.rows] == [
        (2, {"text": "hello, world", "lang": "en"}),
        (4, {"text": "two\nlines", "lang": "fr"}),
    ]
    assert [(p.line, p.message) for p in dataset.problems] == [
        (6, "line 6: 1 values, but the header names 2 columns"),
        (7, "line 7: 3 values, but the header names 2 columns"),
    ]
    assert dataset.columns == ["text", "lang"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the CSV file is empty"),
        ("a,,b\n1,2,3\n", "line 1: column 2 has no name"),
        ("a,b,a\n1,2,3\n", "line 1: column 'a' appears twice"),
    ],
)
def test_a_csv_header_that_cannot_name_the_fields_is_refused(text: str, message: str) -> None:
    with pytest.raises(DatasetUnreadable, match=message):
        parse_file(text.encode(), format="csv")


def test_a_file_that_is_not_utf8_is_refused_as_a_whole() -> None:
    with pytest.raises(DatasetUnreadable, match="not UTF-8"):
        parse_file(b'{"text": "caf\xe9"}\n', format="jsonl")


def test_an_empty_file_has_no_rows() -> None:
    with pytest.raises(DatasetUnreadable, match="no rows"):
        parse_file(b"\n\n", format="jsonl")


def test_a_json_list_numbers_items_and_refuses_nul() -> None:
    dataset = parse_items([{"a": 1}, 5, {"a": "x\x00y"}, None])
    assert [r.line for r in dataset.rows] == [1]
    assert [p.message for p in dataset.problems] == [
        "item 2: a row must be a JSON object, not a number",
        "item 3: contains a NUL (\\u0000) character",
        "item 4: a row must be a JSON object, not null",
    ]


def test_rows_missing_a_field_the_prompts_read_become_problems() -> None:
    fields = prompt_input_fields(["Summarize {{ input.text }} in {{ input['lang'] }}", "{{ x }}"])
    assert fields == {"text", "lang"}
    dataset = parse_file(b'{"text": "a", "lang": "en"}\n{"text": "b"}\n{}\n', format="jsonl")
    checked = require_fields(dataset, fields)
    assert [r.line for r in checked.rows] == [1]
    assert [p.message for p in checked.problems] == [
        "line 2: missing input field 'lang', which the workflow's prompts use",
        "line 3: missing input fields 'lang', 'text', which the workflow's prompts use",
    ]


def test_format_comes_from_the_option_then_the_name_then_the_type() -> None:
    assert detect_format(explicit="csv", filename="a.jsonl", content_type=None) == "csv"
    assert detect_format(explicit=None, filename="Data.JSONL", content_type="text/csv") == "jsonl"
    assert detect_format(explicit=None, filename="blob", content_type="text/csv; x=1") == "csv"
    with pytest.raises(DatasetUnreadable, match="cannot tell the file's format"):
        detect_format(explicit=None, filename="data.txt", content_type="text/plain")


def test_a_json_file_must_be_a_list() -> None:
    assert [r.input for r in parse_file(b'[{"a": 1}]', format="json").rows] == [{"a": 1}]
    with pytest.raises(DatasetUnreadable, match="must be a list"):
        parse_file(b'{"a": 1}', format="json")
