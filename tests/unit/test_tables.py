"""The helper library's pure parts: the completion time a row is stamped with, the guarded
MERGE statement, and the declarative importer's reserved column name."""

from __future__ import annotations

import pytest

from importers.declarative import instructions
from importers.tables import COMPLETION_TIME_COLUMN, completion_micros, merge_statement


def job(completion_time) -> dict:
    return {"id": "job-a", "completion_time": completion_time}


def test_completion_time_is_an_instant_in_microseconds_whatever_its_offset():
    assert completion_micros(job("1970-01-01T00:00:01.5+00:00")) == 1_500_000
    assert completion_micros(job("1970-01-01T01:00:01.5+01:00")) == 1_500_000
    assert completion_micros(job("1970-01-01T00:00:01.5Z")) == 1_500_000
    # 11:00+02:00 is earlier than 10:00Z: ordering is by instant, not by the text.
    assert (completion_micros(job("2026-11-20T11:00:00+02:00"))
            < completion_micros(job("2026-11-20T10:00:00+00:00")))
    # What the runner hands over (contract/spec.py JobInfo.for_importer).
    assert completion_micros(job("2026-11-20T10:15:00.123000+00:00")) == 1_795_169_700_123_000


@pytest.mark.parametrize(("value", "reason"), [
    ("2026-11-20T10:15:00", "expected a time with a UTC offset"),
    ("yesterday", "expected an ISO 8601 time, got 'yesterday'"),
    (None, "expected an ISO 8601 time, got NoneType"),
])
def test_a_completion_time_that_cannot_be_ordered_names_the_job_and_field(value, reason):
    with pytest.raises(ValueError, match=f"job job-a: job_info completion_time: {reason}"):
        completion_micros(job(value))
    with pytest.raises(ValueError, match="job job-a: job_info has no completion_time"):
        completion_micros({"id": "job-a"})


GUARD = f"`{COMPLETION_TIME_COLUMN}`"


def statement(**options) -> str:
    columns = ["k", "v", *([COMPLETION_TIME_COLUMN] if options.get("guard") else [])]
    return merge_statement("db.t", "src", ["k"], columns, **options)


def test_a_guarded_upsert_updates_only_rows_no_newer_than_the_job_and_only_on_change():
    sql = statement(mode="upsert", guard=True)
    assert sql == (
        "MERGE INTO `db`.`t` t USING src s ON t.`k` = s.`k` WHEN MATCHED AND "
        f"(t.{GUARD} IS NULL OR s.{GUARD} >= t.{GUARD}) AND "
        f"(NOT (t.`v` <=> s.`v`) OR NOT (t.{GUARD} <=> s.{GUARD})) THEN UPDATE SET * "
        "WHEN NOT MATCHED THEN INSERT *")


def test_unguarded_and_insert_only_merges_have_no_time_condition():
    assert statement(mode="upsert", guard=False) == (
        "MERGE INTO `db`.`t` t USING src s ON t.`k` = s.`k` WHEN MATCHED AND "
        "(NOT (t.`v` <=> s.`v`)) THEN UPDATE SET * WHEN NOT MATCHED THEN INSERT *")
    for guard in (True, False):
        assert statement(mode="insert", guard=guard) == (
            "MERGE INTO `db`.`t` t USING src s ON t.`k` = s.`k` WHEN NOT MATCHED THEN INSERT *")


DECLARED = {"file_pattern": "*.tsv", "database": "d", "table": "t", "merge_keys": ["f"],
            "columns": [{"name": "f", "type": "string", "nullable": False}]}


def test_declarative_imports_are_guarded_unless_they_opt_out():
    assert instructions(DECLARED).guard is True
    assert instructions({**DECLARED, "guard": False}).guard is False


@pytest.mark.parametrize("meta", [
    {"job_id_column": COMPLETION_TIME_COLUMN},
    {"columns": [*DECLARED["columns"], {"name": COMPLETION_TIME_COLUMN, "type": "timestamp"}]},
])
def test_declarative_instructions_may_not_claim_the_guard_column(meta):
    field = next(iter(meta))
    with pytest.raises(ValueError, match=f"{field}: '{COMPLETION_TIME_COLUMN}' is reserved"):
        instructions({**DECLARED, **meta})
