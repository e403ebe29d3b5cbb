"""The attempt ledger: specs and attempt results in S3, as the dispatcher reads them.

The spec of an event is written at its deterministic key; every attempt ends with one
result file beside it (the runner writes it, or the dispatcher on its behalf when the
runner could not). Reading the results tells how many attempts the event has spent,
which survives restarts and rebalances. Attempts that ended on an infrastructure
failure are recorded but not spent (:func:`contract.result.counts_as_attempt`).
"""

from __future__ import annotations

from datetime import datetime, timezone

import attrs

from common.faults import calling
from contract import result as results
from contract.spec import JobSpec
from contract.store import SpecStore, result_ended_at


@attrs.frozen
class Attempts:
    """What the results of one spec say."""

    recorded: int = 0                           # result files, infrastructure ones included
    spent: int = 0                              # those that count against max_attempts
    first_started: datetime | None = None       # of the first spent attempt
    latest: results.RunResult | None = None     # the latest readable result

    @property
    def succeeded(self) -> bool:
        return self.latest is not None and self.latest.status is results.Status.SUCCEEDED


class AttemptLedger:
    def __init__(self, store: SpecStore) -> None:
        self.store = store

    def write_spec(self, spec: JobSpec) -> str:
        """Write the spec at its key; return its URI. Raises ServiceFailure (s3)."""
        with calling("s3", "writing the spec"):
            return self.store.put_spec(spec)

    def attempts(self, spec_uri: str, since: datetime | None = None) -> Attempts:
        """The attempts recorded for ``spec_uri`` (ended after ``since``, when given: a
        DLQ replay starts a fresh count). Raises ServiceFailure (s3)."""
        with calling("s3", "reading the attempts"):
            uris = [u for u in self.store.result_uris(spec_uri)
                    if since is None or result_ended_at(u) > since]
            read = [(uri, self._read(uri)) for uri in uris]
        spent = [r for _, r in read if results.counts_as_attempt(r)]
        readable = [r for _, r in read if r is not None]
        first = next((r for r in spent if r is not None), None)
        return Attempts(recorded=len(read), spent=len(spent),
                        first_started=first.started_at if first else None,
                        latest=readable[-1] if readable else None)

    def record(self, result: results.RunResult) -> None:
        """Write a result on the runner's behalf. Raises ServiceFailure (s3)."""
        with calling("s3", "writing a result"):
            self.store.put_result(result)

    def _read(self, uri: str) -> results.RunResult | None:
        # An unreadable result still counts as an attempt; it just tells nothing more.
        try:
            return results.from_yaml(self.store.read_text(uri))
        except ValueError:
            return None


def now() -> datetime:
    return datetime.now(timezone.utc)
