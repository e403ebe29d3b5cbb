"""Typed reading of TSV/CSV output files: every value is coerced to its declared type or
the import fails naming the file, the row and the column. A value is never silently
turned into a null; an empty cell (or a declared null marker) is null only in a nullable
column.

Type names: ``string``, ``int`` (32-bit), ``long`` (64-bit), ``double``, ``boolean``
(``true``/``false``, any case), ``date`` (ISO 8601), ``timestamp`` (ISO 8601).

The file is read whole through Spark (so Spark's S3 settings apply) and parsed on the
driver: meant for the result tables of CTS jobs, not for files of many gigabytes.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Callable, Iterable, Sequence
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, Literal

import attrs

from runner.errors import BadDataError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.types import StructType

Format = Literal["tsv", "csv"]

_INTEGER = re.compile(r"^[+-]?[0-9]+$")


def _integer(bits: int) -> Callable[[str], int]:
    low, high = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1

    def coerce(text: str) -> int:
        if not _INTEGER.match(text.strip()):
            raise ValueError("not an integer")
        value = int(text)
        if not low <= value <= high:
            raise ValueError(f"out of the {bits}-bit range")
        return value

    return coerce


def _double(text: str) -> float:
    if "_" in text:
        raise ValueError("not a number")
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("not a finite number")
    return value


def _boolean(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered not in ("true", "false"):
        raise ValueError("not true or false")
    return lowered == "true"


_COERCE: dict[str, Callable[[str], Any]] = {
    "string": str,
    "int": _integer(32),
    "long": _integer(64),
    "double": _double,
    "boolean": _boolean,
    "date": lambda text: date.fromisoformat(text.strip()),
    "timestamp": lambda text: datetime.fromisoformat(text.strip()),
}
TYPES = tuple(_COERCE)


def _known_type(instance: Any, attribute: attrs.Attribute, value: str) -> None:
    if value not in _COERCE:
        raise ValueError(f"type {value!r} is not one of {', '.join(TYPES)}")


@attrs.frozen
class Column:
    """A column of the table, read from the file's header ``source`` (default ``name``)."""

    name: str
    type: str = attrs.field(validator=_known_type)
    source: str | None = None
    nullable: bool = True

    @property
    def header(self) -> str:
        return self.source or self.name


def parse(text: str, columns: Sequence[Column], *, file: str, format: Format = "tsv",
          null_values: Iterable[str] = ("",)) -> list[tuple[Any, ...]]:
    """Rows of ``text`` (a header line, then data) as tuples in ``columns`` order.

    Columns of the file that are not declared are ignored. Raises :class:`BadDataError`
    for a missing header column, a row with the wrong number of fields, an uncoercible
    value or an empty value in a non-nullable column; rows are counted from 1 after the
    header, lines from 1 at the top of the file.
    """
    nulls = set(null_values)
    if format == "tsv":
        reader = csv.reader(io.StringIO(text, newline=""), delimiter="\t", quoting=csv.QUOTE_NONE)
    else:
        reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if header is None:
        raise BadDataError(f"{file}: empty file, expected a header line")
    missing = [c.header for c in columns if c.header not in header]
    if missing:
        raise BadDataError(f"{file}: header lacks column(s) {', '.join(map(repr, missing))}")
    positions = [header.index(c.header) for c in columns]
    rows = []
    for number, fields in enumerate((f for f in reader if f), start=1):
        where = f"{file}: row {number} (line {reader.line_num})"
        if len(fields) != len(header):
            raise BadDataError(f"{where} has {len(fields)} fields, the header has {len(header)}")
        rows.append(tuple(_value(fields[p], c, where, nulls)
                          for p, c in zip(positions, columns, strict=True)))
    return rows


def _value(text: str, column: Column, where: str, nulls: set[str]) -> Any:
    if text == "" or text in nulls:
        if column.nullable:
            return None
        raise BadDataError(
            f"{where}, column {column.header!r}: empty, but the column is not nullable")
    try:
        return _COERCE[column.type](text)
    except ValueError as error:
        raise BadDataError(f"{where}, column {column.header!r}: {text!r} is not a valid "
                           f"{column.type} ({error})") from None


def spark_schema(columns: Sequence[Column]) -> StructType:
    """The Spark schema of ``columns``, nullability included."""
    from pyspark.sql import types as T

    kinds = {"string": T.StringType(), "int": T.IntegerType(), "long": T.LongType(),
             "double": T.DoubleType(), "boolean": T.BooleanType(), "date": T.DateType(),
             "timestamp": T.TimestampType()}
    return T.StructType([T.StructField(c.name, kinds[c.type], c.nullable) for c in columns])


#: Characters Hadoop's path globbing gives a meaning (``GlobPattern``); a backslash makes
#: each stand for itself.
_GLOB = re.compile(r"([\\*?\[\]{}])")
#: A URI's scheme (RFC 3986); a bucket name cannot hold ``/`` or ``:``, so ``bucket/key``
#: never starts with one, whatever its key.
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def literal_path(file: str) -> str:
    """The path Spark reads for ``file`` (``bucket/key``, or a URI): an ``s3a://`` URI
    whose glob characters are escaped. Spark expands a path containing any of ``*?[]{}``
    as a pattern, so an output named ``report[1].tsv`` would otherwise read
    ``report1.tsv`` if there were one, or fail as missing."""
    scheme = _SCHEME.match(file)
    prefix, rest = (scheme.group(0), file[scheme.end():]) if scheme else ("s3a://", file)
    return prefix + _GLOB.sub(r"\\\1", rest)


def read_delimited(spark: SparkSession, file: str, columns: Sequence[Column], *,
                   format: Format = "tsv", null_values: Iterable[str] = ("",)) -> DataFrame:
    """A DataFrame of ``file`` (``bucket/key`` as in ``job_info["outputs"]``, or a URI)
    with the declared ``columns``; see :func:`parse` for the errors raised."""
    row = spark.read.text(literal_path(file), wholetext=True).first()
    rows = parse(row[0] if row else "", columns, file=file, format=format,
                 null_values=null_values)
    return spark.createDataFrame(rows, spark_schema(columns))
