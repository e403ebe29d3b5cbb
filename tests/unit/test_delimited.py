"""Typed reading: every value is its declared type, or the error names row and column."""

from __future__ import annotations

import re
from datetime import date, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from importers.delimited import Column, literal_path, parse
from importers.tables import quote
from runner import BadDataError

COLUMNS = (
    Column("name", "string", source="Name", nullable=False),
    Column("count", "int", source="Count"),
    Column("size", "long", source="Size"),
    Column("score", "double", source="Score"),
    Column("ok", "boolean", source="OK"),
    Column("day", "date", source="Day"),
    Column("at", "timestamp", source="At"),
)
HEADER = "Name\tCount\tSize\tScore\tOK\tDay\tAt\tIgnored\n"


def read(body: str, **options):
    return parse(HEADER + body, COLUMNS, file="b/k.tsv", **options)


def test_values_are_coerced_to_their_declared_types():
    rows = read("g1\t-3\t9000000000\t1.5e2\tTRUE\t2026-11-20\t2026-11-20T10:15:00+00:00\tx\n")
    assert rows == [("g1", -3, 9_000_000_000, 150.0, True, date(2026, 11, 20),
                     datetime.fromisoformat("2026-11-20T10:15:00+00:00"))]


def test_empty_cells_of_nullable_columns_are_null_and_blank_lines_skipped():
    assert read("g1\t\t\t\t\t\t\t\n\n") == [("g1", None, None, None, None, None, None)]


def test_declared_null_markers_are_null():
    assert read("g1\tNA\t\t\t\t\t\t\n", null_values=("", "NA"))[0][1] is None


@pytest.mark.parametrize(("cells", "column", "value"), [
    ("g1\t1.0\t\t\t\t\t\t", "Count", "'1.0' is not a valid int"),
    ("g1\t3000000000\t\t\t\t\t\t", "Count", "out of the 32-bit range"),
    ("g1\t\tbig\t\t\t\t\t", "Size", "'big' is not a valid long"),
    ("g1\t\t\tNA\t\t\t\t", "Score", "'NA' is not a valid double"),
    ("g1\t\t\tnan\t\t\t\t", "Score", "not a finite number"),
    ("g1\t\t\t1_000\t\t\t\t", "Score", "'1_000' is not a valid double"),
    ("g1\t\t\t\tyes\t\t\t", "OK", "'yes' is not a valid boolean"),
    ("g1\t\t\t\t\t20/11/2026\t\t", "Day", "'20/11/2026' is not a valid date"),
    ("g1\t\t\t\t\t\tnoon\t", "At", "'noon' is not a valid timestamp"),
])
def test_an_uncoercible_value_names_row_line_and_column(cells, column, value):
    with pytest.raises(BadDataError) as caught:
        read("g0\t1\t\t\t\t\t\t\n" + cells + "\n")
    message = str(caught.value)
    assert message.startswith(f"b/k.tsv: row 2 (line 3), column {column!r}: ")
    assert value in message


def test_an_empty_value_in_a_non_nullable_column_fails():
    with pytest.raises(BadDataError, match=r"row 1 \(line 2\), column 'Name': empty"):
        read("\t1\t\t\t\t\t\t\n")


def test_missing_header_columns_and_ragged_rows_fail():
    with pytest.raises(BadDataError, match="header lacks column.*'Score'"):
        parse("Name\tCount\tSize\tOK\tDay\tAt\n", COLUMNS, file="b/k.tsv")
    with pytest.raises(BadDataError, match=r"row 1 \(line 2\) has 3 fields, the header has 8"):
        read("g1\t1\t2\n")
    with pytest.raises(BadDataError, match="empty file"):
        parse("", COLUMNS, file="b/k.tsv")


def test_csv_honours_quotes():
    columns = (Column("name", "string"), Column("note", "string"))
    assert parse('name,note\na,"x, y"\n', columns, file="f.csv", format="csv") == [("a", "x, y")]


def test_unknown_types_are_refused_when_declared():
    with pytest.raises(ValueError, match="type 'float' is not one of"):
        Column("x", "float")


def test_identifiers_are_quoted_or_refused():
    assert quote("u_alice__checkm2.quality_report") == "`u_alice__checkm2`.`quality_report`"
    with pytest.raises(ValueError, match="not a plain identifier"):
        quote("db.t; DROP TABLE x")


@pytest.mark.parametrize(("file", "path"), [
    ("cts-out/job-1/quality_report.tsv", "s3a://cts-out/job-1/quality_report.tsv"),
    ("cts-out/job[1]/report{a,b}.tsv", r"s3a://cts-out/job\[1\]/report\{a,b\}.tsv"),
    ("s3a://bucket/what?*.tsv", r"s3a://bucket/what\?\*.tsv"),
    ("bucket/back\\slash", r"s3a://bucket/back\\slash"),
    ("bucket/a://b", "s3a://bucket/a://b"),
])
def test_an_output_path_is_read_literally(file, path):
    assert literal_path(file) == path


@given(st.text(min_size=1))
def test_every_glob_character_of_a_key_is_escaped_and_nothing_else_changes(key):
    path = literal_path(f"bucket/{key}")
    assert path.startswith("s3a://bucket/")
    escaped = path[len("s3a://bucket/"):]
    # Reading each backslash pair as its second character gives the key back, and no
    # glob character is left unescaped.
    assert re.sub(r"\\(.)", r"\1", escaped, flags=re.DOTALL) == key
    assert not re.search(r"(?<!\\)(?:\\\\)*[*?\[\]{}]", escaped)
