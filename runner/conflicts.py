"""Delta transaction conflicts: another writer committed to the table first.

Delta commits optimistically: a MERGE reads the table, writes its files, and then checks
that no commit since its read touched what it read. When one did (another runner MERGEd
into the same table meanwhile) the MERGE fails with a ``Concurrent*Exception`` and
commits nothing. Nothing is wrong with the data or the importer; the same import run
again on the new version of the table succeeds. Importers are idempotent (a replayed
event leaves the tables unchanged), so the runner runs the importer again itself, after
a short random pause, rather than failing the attempt and waiting for the dispatcher's
back-off and a new runner. A conflict that persists ends the attempt as a
:class:`~runner.errors.WriteConflict` (exit 75, status ``write_conflict``), which does not
spend one of the event's attempts: losing a race says nothing about the event, and with
several runners on one table a run can lose many in a row.

Creating a table races the same way: importers create their table on first use
(``tableExists``, else ``saveAsTable`` or ``CREATE TABLE``), so the runners of the first
events for a new table all find it missing, one creates it, and the others fail with
``[DELTA_CREATE_TABLE_WITH_NON_EMPTY_LOCATION]``, ``[TABLE_OR_VIEW_ALREADY_EXISTS]`` or the
metastore's ``AlreadyExistsException``. Run again, the importer finds the table and
MERGEs into it. Such an error that persists in every run is no race (the importer
creates a table that was always there, a location holds foreign files): the last one is
raised as it is, for the runner to classify like any importer error.

Over Spark Connect these errors reach Python as ``UnknownException`` carrying the Java
class and Delta's error condition in their text; through a classic session, as a
converted exception or a ``Py4JJavaError`` with the same text. delta-rs (the ``deltalake``
package) raises ``CommitFailedError`` naming the concurrent transaction. Importing this
module does not import pyspark.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TypeVar

import tenacity

from common.faults import causes, one_line
from runner.errors import WriteConflict
from runner.logs import log

T = TypeVar("T")

#: Delta's error conditions for a commit that lost a race (io.delta.exceptions.*).
_CONDITION = re.compile(
    r"\bDELTA_(?:CONCURRENT_[A-Z_]+|METADATA_CHANGED|PROTOCOL_CHANGED)\b")
_JAVA_CLASS = re.compile(
    r"\bio\.delta\.exceptions\.(?:Concurrent\w+|MetadataChanged|ProtocolChanged)Exception\b")
#: delta-rs's ``CommitFailedError`` for a lost race (its CommitConflictError and
#: VersionAlreadyExists), as opposed to one for a failed write.
_DELTA_RS_CONFLICT = re.compile(
    r"^CommitFailedError: .*(?:\bconcurrent transaction|\bsince last commit\b"
    r"|Tried committing existing table version)", re.IGNORECASE | re.DOTALL)

#: A table or database created by another writer between the importer's look and its
#: own creation (Spark's and Delta's error conditions, the metastore's exception).
_CREATED_CONDITION = re.compile(
    r"\b(?:DELTA_CREATE_TABLE_WITH_NON_EMPTY_LOCATION|DELTA_TABLE_ALREADY_EXISTS"
    r"|TABLE_OR_VIEW_ALREADY_EXISTS|SCHEMA_ALREADY_EXISTS)\b")
_CREATED_CLASS = re.compile(r"\b\w*AlreadyExistsException\b")

#: Runs of the importer, the first included, before the attempt ends as a write conflict
#: (which spends no attempt; the dispatcher runs it again after a back-off). Each conflict
#: means another writer committed, so the runs bound how many writers may commit first:
#: ten runners importing into one (new) table at once serialise, and the last of them
#: loses to each of the nine others (and may find the table being created).
RUNS = 16
#: The pause after run n is random in [0, min(MAX_PAUSE, PAUSE * 2**(n-1))) seconds, so
#: that runners which lost to the same commit do not all start again at once.
PAUSE = 0.25
MAX_PAUSE = 4.0


def is_write_conflict(error: BaseException) -> bool:
    """Whether ``error``, or an exception it was raised from, is a Delta commit that lost
    to a concurrent writer (or the importer's own :class:`WriteConflict`)."""
    return any(isinstance(e, WriteConflict) for e in causes(error)) or any(
        _CONDITION.search(text) or _JAVA_CLASS.search(text) or _DELTA_RS_CONFLICT.search(text)
        for text in map(_text, causes(error)))


def is_created_concurrently(error: BaseException) -> bool:
    """Whether ``error``, or an exception it was raised from, is the creation of a table
    (or database) that already exists: another runner may have just created it."""
    return any(_CREATED_CONDITION.search(text) or _CREATED_CLASS.search(text)
               for text in map(_text, causes(error)))


def _is_race(error: BaseException) -> bool:
    return is_write_conflict(error) or is_created_concurrently(error)


def run_until_committed(run: Callable[[], T], runs: int = RUNS, pause: float = PAUSE,
                        max_pause: float = MAX_PAUSE,
                        time_left: Callable[[], float] | None = None) -> T:
    """``run()``, again after each Delta write conflict or table created concurrently,
    up to ``runs`` runs in all.

    Returns what ``run`` returns. Any other exception propagates at once. When the last
    run still conflicts, raises :class:`~runner.errors.WriteConflict` from its error;
    when it still finds its new table existing, raises that error itself. With
    ``time_left`` (seconds left before the attempt is killed for its timeout), no run
    starts that would likely not end in time: a kill would spend one of the event's
    attempts, where a write conflict spends none.
    """
    stop: tenacity.stop.stop_base = tenacity.stop_after_attempt(runs)
    if time_left is not None:
        stop = tenacity.stop_any(stop, _no_time_for_another_run(time_left, max_pause))
    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception(_is_race),
        stop=stop,
        wait=tenacity.wait_random_exponential(multiplier=pause, max=max_pause),
        before_sleep=_log_conflict,
        reraise=True,
    )
    try:
        return retrying(run)
    except Exception as error:
        if not is_write_conflict(error):
            raise
        made = retrying.statistics.get("attempt_number", runs)
        raise WriteConflict(
            f"Delta write conflict in each of {made} runs of the importer (another writer "
            f"kept committing to the same table)"
            + ("" if made >= runs else "; no time left for another run within the "
                                       "importer's timeout_seconds")
            + f": {one_line(error, 300)}") from error


def _no_time_for_another_run(time_left: Callable[[], float], max_pause: float):
    """A stop for tenacity: true when another run and its pause would not fit twice over
    in the time left, a run taking what the runs so far took on average."""

    at_start = time_left()

    def stop(state: tenacity.RetryCallState) -> bool:
        left = time_left()
        per_run = (at_start - left) / max(state.attempt_number, 1)
        return left < 2 * per_run + max_pause

    return stop


def _log_conflict(state: tenacity.RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome else None
    what = ("Delta write conflict" if error is None or is_write_conflict(error)
            else "table created concurrently")
    log.warning("%s in run %d of the importer; running it again in %.2f s: %s", what,
                state.attempt_number, state.upcoming_sleep,
                one_line(error, 200) if error else "")


def _text(error: BaseException) -> str:
    try:
        return f"{type(error).__name__}: {error}"
    except Exception:  # an exception whose __str__ fails says nothing about conflicts
        return type(error).__name__
