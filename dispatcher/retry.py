"""Retry policies as data (tenacity's stop and wait strategies), evaluated without sleeping.

The dispatcher never sleeps between attempts: it asks the policy how long to wait, parks
the event, and keeps consuming. The attempt count and the elapsed time come from the
result files in S3, so they survive restarts and rebalances.

tenacity's strategies are functions of a ``RetryCallState`` (its ``attempt_number`` and
``seconds_since_start``). Since the counts live in S3 rather than in a running
``Retrying`` loop, :func:`_state` builds that state from them, owned by a ``Retrying``
with the policy's own stop and wait.
"""

from __future__ import annotations

import enum

import attrs
import tenacity
from tenacity import stop_after_attempt, stop_after_delay, wait_exponential_jitter

from contract.result import ExitCode
from dispatcher.launch import RunnerExit


@attrs.frozen
class RetryPolicy:
    max_attempts: int
    max_elapsed_seconds: float
    initial_backoff_seconds: float
    max_backoff_seconds: float
    jitter_seconds: float

    @property
    def stop(self) -> tenacity.stop.stop_base:
        """Stop after ``max_attempts`` attempts or ``max_elapsed_seconds``."""
        return stop_after_attempt(self.max_attempts) | stop_after_delay(self.max_elapsed_seconds)

    @property
    def wait(self) -> tenacity.wait.wait_base:
        """``initial_backoff_seconds`` doubled for each failure after the first, plus a
        jitter drawn from ``[0, jitter_seconds]``, at most ``max_backoff_seconds``."""
        return wait_exponential_jitter(multiplier=self.initial_backoff_seconds,
                                       max=self.max_backoff_seconds, jitter=self.jitter_seconds)

    def overridden(self, *, max_attempts: int | None = None) -> RetryPolicy:
        """This policy with an importer's own settings, where it has them."""
        return attrs.evolve(self, max_attempts=max_attempts or self.max_attempts)

    def next_delay(self, attempts_made: int, elapsed_seconds: float) -> float | None:
        """Seconds to wait before the next attempt, or None when the policy is exhausted:
        ``max_attempts`` attempts made, or ``max_elapsed_seconds`` passed.

        ``attempts_made`` attempts have failed; the first started ``elapsed_seconds`` ago.
        """
        state = self._state(attempts_made, elapsed_seconds)
        if self.stop(state):
            return None
        return self.wait(state)

    def after_conflicts(self, conflicts: int, elapsed_seconds: float) -> float | None:
        """Seconds to wait before running an import again that lost its commit to other
        writers in ``conflicts`` attempts, the first ``elapsed_seconds`` ago; None once
        ``max_elapsed_seconds`` have passed. Such attempts are not spent, so only the
        elapsed time bounds them; the back-off grows with them like the attempts'."""
        state = self._state(conflicts, elapsed_seconds)
        if stop_after_delay(self.max_elapsed_seconds)(state):
            return None
        return self.wait(state)

    def _state(self, attempt_number: int, elapsed_seconds: float) -> tenacity.RetryCallState:
        """The state of a call at its ``attempt_number``-th attempt, ``elapsed_seconds``
        after its first began."""
        owner = tenacity.Retrying(stop=self.stop, wait=self.wait)
        state = tenacity.RetryCallState(retry_object=owner, fn=None, args=(), kwargs={})
        state.attempt_number = attempt_number
        state.outcome_timestamp = state.start_time + elapsed_seconds
        return state


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
