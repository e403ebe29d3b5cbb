"""Retry policies as data, evaluated without sleeping.

The dispatcher never sleeps between attempts: it asks the policy how long to wait, parks
the event, and keeps consuming. The attempt count and the elapsed time come from the
result files in S3, so they survive restarts and rebalances.

The policy is the one of tenacity's ``stop_after_attempt | stop_after_delay`` and
``wait_exponential_jitter``, written out here: tenacity evaluates its strategies on a
``RetryCallState`` that its ``Retrying`` owns and times with this process's clock, and
has no public way to build one from counts and times read elsewhere.
"""

from __future__ import annotations

import enum
import random

import attrs

from contract.result import ExitCode
from dispatcher.launch import RunnerExit


@attrs.frozen
class RetryPolicy:
    max_attempts: int
    max_elapsed_seconds: float
    initial_backoff_seconds: float
    max_backoff_seconds: float
    jitter_seconds: float

    def overridden(self, *, max_attempts: int | None = None) -> RetryPolicy:
        """This policy with an importer's own settings, where it has them."""
        return attrs.evolve(self, max_attempts=max_attempts or self.max_attempts)

    def next_delay(self, attempts_made: int, elapsed_seconds: float) -> float | None:
        """Seconds to wait before the next attempt, or None when the policy is exhausted:
        ``max_attempts`` attempts made, or ``max_elapsed_seconds`` passed.

        ``attempts_made`` attempts have failed; the first started ``elapsed_seconds`` ago.
        """
        if attempts_made >= self.max_attempts:
            return None
        return self.after_conflicts(attempts_made, elapsed_seconds)

    def after_conflicts(self, conflicts: int, elapsed_seconds: float) -> float | None:
        """Seconds to wait before running an import again that lost its commit to other
        writers in ``conflicts`` attempts, the first ``elapsed_seconds`` ago; None once
        ``max_elapsed_seconds`` have passed. Such attempts are not spent, so only the
        elapsed time bounds them; the back-off grows with them like the attempts'."""
        if elapsed_seconds >= self.max_elapsed_seconds:
            return None
        return self.backoff(conflicts)

    def backoff(self, failures: int) -> float:
        """The wait after ``failures`` failures in a row: ``initial_backoff_seconds``
        doubled for each failure after the first, plus a jitter drawn from
        ``[0, jitter_seconds]``, at most ``max_backoff_seconds``."""
        jitter = random.uniform(0, self.jitter_seconds)
        try:
            grown = self.initial_backoff_seconds * 2.0 ** (failures - 1) + jitter
        except OverflowError:
            grown = self.max_backoff_seconds
        return max(0.0, min(grown, self.max_backoff_seconds))


class Verdict(enum.Enum):
    DONE = "done"
    FATAL = "fatal"      # straight to the DLQ
    RETRY = "retry"      # another attempt, if the policy allows


_FATAL_CODES = {int(ExitCode.BAD_SPEC), int(ExitCode.BAD_DATA)}


def verdict(exit: RunnerExit) -> Verdict:
    """Exit 0 is done; 64 and 65 are fatal; any other code, a signal or a timeout: retry."""
    if exit.timed_out or exit.exit_code is None:
        return Verdict.RETRY
    if exit.exit_code == ExitCode.OK:
        return Verdict.DONE
    return Verdict.FATAL if exit.exit_code in _FATAL_CODES else Verdict.RETRY
