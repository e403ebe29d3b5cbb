"""Delta write conflicts and Iceberg commit conflicts are recognised in any wrapping and the
importer runs again."""

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from runner.conflicts import is_created_concurrently, is_write_conflict, run_until_committed
from runner.errors import BadDataError, TemporaryFailure, WriteConflict

# As a Spark Connect client sees them (pyspark.errors.exceptions.connect.UnknownException).
CONNECT_TEXT = (
    "(io.delta.exceptions.ConcurrentAppendException) [DELTA_CONCURRENT_APPEND.WITHOUT_HINT] "
    "Transaction conflict detected. a concurrent MERGE added data to table "
    "spark_catalog.u_sampleuser__checkm2.quality_report. Refer to "
    "https://docs.delta.io/latest/concurrency-control.html for more details.")
# As a classic session's converted exception reads: the Java exception's toString.
CLASSIC_TEXT = (
    "io.delta.exceptions.MetadataChangedException: [DELTA_METADATA_CHANGED] "
    "MetadataChangedException: The metadata of the Delta table has been changed by a "
    "concurrent update. Please try the operation again.")


class UnknownException(Exception):
    """Named like pyspark's, which the runner does not import."""


@pytest.mark.parametrize("text", [
    CONNECT_TEXT,
    CLASSIC_TEXT,
    "[DELTA_CONCURRENT_DELETE_READ] ConcurrentDeleteReadException: a file was deleted",
    "io.delta.exceptions.ConcurrentTransactionException: two writers, one app id",
    "[DELTA_PROTOCOL_CHANGED] The protocol version has been changed",
])
def test_delta_conflicts_are_recognised(text):
    assert is_write_conflict(UnknownException(text))


# Iceberg's, as a classic session's Py4JJavaError reads (the Java exception's toString).
ICEBERG_VALIDATION_TEXT = (
    "An error occurred while calling o71.sql.\n: "
    "org.apache.iceberg.exceptions.ValidationException: Found conflicting files that can "
    "contain records matching true: [s3://user-icy/conflicts/rows/data/00000-5-0b1e.parquet]"
    "\n\tat org.apache.iceberg.MergingSnapshotProducer.validateAddedDataFiles")


@pytest.mark.parametrize("text", [
    ICEBERG_VALIDATION_TEXT,
    "org.apache.iceberg.exceptions.CommitFailedException: Commit failed: Requirement "
    "failed: branch main has changed: expected id 1 != 2",
    "org.apache.iceberg.exceptions.ValidationException: Found new conflicting delete files "
    "that can apply to records matching true: [...]",
    "org.apache.iceberg.exceptions.ValidationException: Missing required files to delete: "
    "s3://user-icy/t/data/a.parquet",
])
def test_iceberg_conflicts_are_recognised(text):
    assert is_write_conflict(UnknownException(text))


@pytest.mark.parametrize("text", [
    "org.apache.iceberg.exceptions.ValidationException: Cannot find field 'x' in struct",
    "org.apache.iceberg.exceptions.CommitStateUnknownException: the catalog went away",
    "org.apache.iceberg.exceptions.NoSuchTableException: Table does not exist: ns.t",
])
def test_other_iceberg_failures_are_not_conflicts(text):
    assert not is_write_conflict(UnknownException(text))


def test_an_iceberg_conflict_in_every_run_is_named_so():
    run, calls = failing_then([UnknownException(ICEBERG_VALIDATION_TEXT)] * 2)
    with pytest.raises(WriteConflict, match="^Iceberg commit conflict in each of 2 runs"):
        run_until_committed(run, runs=2, pause=0)


def test_a_conflict_wrapped_by_an_importer_is_recognised():
    try:
        try:
            raise UnknownException(CONNECT_TEXT)
        except UnknownException as error:
            raise RuntimeError("could not merge the report") from error
    except RuntimeError as wrapped:
        assert is_write_conflict(wrapped)


@pytest.mark.parametrize("text", [
    "[TABLE_OR_VIEW_NOT_FOUND] The table or view `x`.`y` cannot be found",
    "[DELTA_MERGE_MULTIPLE_SOURCE_ROWS_MATCHING_TARGET_ROW_IN_MERGE] duplicate keys",
    "ConcurrentModificationException in java.util.HashMap",
    "io.delta.exceptions.DeltaConcurrentModificationExceptionHelper",
])
def test_other_failures_are_not_conflicts(text):
    assert not is_write_conflict(UnknownException(text))


@given(st.text())
def test_any_text_without_delta_names_is_not_a_conflict(text):
    assume("DELTA_" not in text and "io.delta.exceptions." not in text)
    assert not is_write_conflict(RuntimeError(text))


@given(st.text(), st.text())
def test_a_conflict_condition_anywhere_in_a_message_is_a_conflict(before, after):
    assert is_write_conflict(RuntimeError(f"{before} [DELTA_CONCURRENT_APPEND] {after}"))


def test_an_exception_whose_text_fails_is_not_a_conflict():
    class Unprintable(Exception):
        def __str__(self):
            raise ValueError("no text")

    assert not is_write_conflict(Unprintable())


def failing_then(outcomes):
    """A run that raises (or returns) the next of ``outcomes`` each call; its calls."""
    calls = []

    def run():
        calls.append(len(calls) + 1)
        outcome = outcomes[len(calls) - 1]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    return run, calls


def test_the_importer_runs_again_after_conflicts_until_it_commits():
    run, calls = failing_then([UnknownException(CONNECT_TEXT),
                               UnknownException(CLASSIC_TEXT), "done"])
    assert run_until_committed(run, runs=6, pause=0) == "done"
    assert calls == [1, 2, 3]


def test_another_failure_is_not_run_again():
    run, calls = failing_then([BadDataError("row 3: no genome"), "done"])
    with pytest.raises(BadDataError, match="row 3"):
        run_until_committed(run, runs=6, pause=0)
    assert calls == [1]


def test_a_failure_after_a_conflict_is_what_is_raised():
    run, calls = failing_then([UnknownException(CONNECT_TEXT), ZeroDivisionError("bug")])
    with pytest.raises(ZeroDivisionError):
        run_until_committed(run, runs=6, pause=0)
    assert calls == [1, 2]


def test_a_conflict_in_every_run_ends_the_attempt_as_a_write_conflict():
    conflict = UnknownException(CONNECT_TEXT)
    run, calls = failing_then([conflict] * 3)
    with pytest.raises(WriteConflict, match="conflict in each of 3 runs") as raised:
        run_until_committed(run, runs=3, pause=0)
    assert raised.value.__cause__ is conflict
    assert calls == [1, 2, 3]
    # Exit 75 as the contract says, with a status that spends no attempt.
    assert raised.value.exit_code == 75 and raised.value.status.value == "write_conflict"
    assert not isinstance(raised.value, TemporaryFailure)


def delta_rs_conflict(path) -> Exception:
    """The error delta-rs raises for a MERGE that lost to a concurrent append: a real one,
    made on a local table (a snapshot read, another writer commits, the MERGE commits)."""
    import pyarrow as pa
    from deltalake import DeltaTable, write_deltalake

    write_deltalake(str(path), pa.table({"id": pa.array([], pa.string())}), mode="append")
    snapshot = DeltaTable(str(path))
    write_deltalake(str(path), pa.table({"id": ["theirs"]}), mode="append")
    try:
        (snapshot.merge(pa.table({"id": ["ours"]}), predicate="t.id = s.id",
                        source_alias="s", target_alias="t")
         .when_not_matched_insert_all().execute())
    except Exception as error:
        return error
    raise AssertionError("the MERGE on a stale snapshot committed")


def test_a_delta_rs_merge_that_lost_the_race_is_a_conflict(tmp_path):
    error = delta_rs_conflict(tmp_path / "table")
    assert type(error).__name__ == "CommitFailedError"
    assert is_write_conflict(error)


def test_an_importer_s_own_write_conflict_runs_it_again():
    run, calls = failing_then([WriteConflict("gave up after 20 races"), "done"])
    assert run_until_committed(run, runs=6, pause=0) == "done"
    assert calls == [1, 2]


def test_a_delta_rs_commit_that_failed_for_another_reason_is_not_a_conflict():
    CommitFailedError = type("CommitFailedError", (Exception,), {})
    assert not is_write_conflict(CommitFailedError(
        "Failed to commit transaction: Generic S3 error: Error after 10 retries: connection "
        "refused"))
    assert is_write_conflict(CommitFailedError(
        "Failed to commit transaction: Tried committing existing table version: 7"))


def test_no_run_starts_that_the_attempt_s_timeout_would_cut_short():
    # 13 s left and runs of 3 s: a fourth run would start with 4 s left, less than a run
    # and a pause of up to 1 s twice over (7 s), and risk being killed for the timeout,
    # which spends the attempt.
    clock = {"now": 0.0}
    conflict = UnknownException(CONNECT_TEXT)

    def run():
        clock["now"] += 3.0
        calls.append(clock["now"])
        raise conflict

    calls: list[float] = []
    with pytest.raises(WriteConflict, match=r"each of 3 runs .*no time left") as raised:
        run_until_committed(run, runs=6, pause=0, max_pause=1.0,
                            time_left=lambda: 13.0 - clock["now"])
    assert calls == [3.0, 6.0, 9.0] and raised.value.__cause__ is conflict


# What the runners that lost the race to create a new table saw (Delta's text, classic).
NON_EMPTY_LOCATION = (
    "[DELTA_CREATE_TABLE_WITH_NON_EMPTY_LOCATION] Cannot create table "
    "('`spark_catalog`.`u_x__seqkit`.`stats`'). The associated location "
    "('s3a://lake/warehouse/u_x__seqkit.db/stats') is not empty and also not a Delta table.")


@pytest.mark.parametrize("text", [
    NON_EMPTY_LOCATION,
    "[TABLE_OR_VIEW_ALREADY_EXISTS] Cannot create table or view `u_x__seqkit`.`stats` "
    "because it already exists.",
    "(org.apache.spark.sql.catalyst.analysis.TableAlreadyExistsException) table exists",
    "org.apache.hadoop.hive.metastore.api.AlreadyExistsException: Table stats already exists",
    "[SCHEMA_ALREADY_EXISTS] Cannot create schema `u_x__seqkit` because it already exists.",
])
def test_a_table_created_concurrently_is_recognised_and_is_no_write_conflict(text):
    assert is_created_concurrently(UnknownException(text))
    assert not is_write_conflict(UnknownException(text))


@pytest.mark.parametrize("text", [CONNECT_TEXT, "[TABLE_OR_VIEW_NOT_FOUND] `x`.`y`",
                                  "[DELTA_CREATE_TABLE_SCHEME_MISMATCH] schemas differ"])
def test_other_failures_are_no_concurrent_creation(text):
    assert not is_created_concurrently(UnknownException(text))


def test_the_importer_runs_again_when_another_runner_created_its_table():
    run, calls = failing_then([UnknownException(NON_EMPTY_LOCATION), "merged"])
    assert run_until_committed(run, runs=6, pause=0) == "merged"
    assert calls == [1, 2]


def test_a_table_existing_in_every_run_is_the_importers_error_not_a_temporary_one():
    exists = UnknownException("[TABLE_OR_VIEW_ALREADY_EXISTS] `a`.`b` already exists")
    run, calls = failing_then([exists] * 3)
    with pytest.raises(UnknownException) as raised:
        run_until_committed(run, runs=3, pause=0)
    assert raised.value is exists and calls == [1, 2, 3]
