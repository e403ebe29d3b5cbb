import pytest

from dispatcher.launchers import RunnerExit
from dispatcher.retry import RetryPolicy, Verdict, verdict

POLICY = RetryPolicy(max_attempts=3, max_elapsed_seconds=600, initial_backoff_seconds=2,
                     max_backoff_seconds=10, jitter_seconds=1)


def test_backoff_grows_exponentially_with_bounded_jitter():
    first = POLICY.next_delay(1, 0)
    second = POLICY.next_delay(2, 0)
    assert 2 <= first <= 3
    assert 4 <= second <= 5


def test_stops_at_max_attempts_or_max_elapsed():
    assert POLICY.next_delay(3, 0) is None
    assert POLICY.next_delay(1, 601) is None
    assert POLICY.overridden(max_attempts=5).next_delay(4, 0) is not None
    assert POLICY.overridden(max_attempts=None) == POLICY


def test_backoff_is_capped():
    assert POLICY.overridden(max_attempts=100).next_delay(20, 0) <= 11


@pytest.mark.parametrize(("ended", "expected"), [
    (RunnerExit(0), Verdict.DONE),
    (RunnerExit(64), Verdict.FATAL),
    (RunnerExit(65), Verdict.FATAL),
    (RunnerExit(75), Verdict.RETRY),
    (RunnerExit(70), Verdict.RETRY),
    (RunnerExit(1), Verdict.RETRY),
    (RunnerExit(None, signal=9), Verdict.RETRY),
    (RunnerExit(None, signal=9, timed_out=True), Verdict.RETRY),
])
def test_verdict_follows_the_exit_code_contract(ended, expected):
    assert verdict(ended) is expected


def test_attempts_lost_to_other_writers_are_paced_by_the_back_off_and_bounded_by_time():
    # Not spent: far past max_attempts, an import that keeps losing races runs again...
    assert 2 <= POLICY.after_conflicts(1, 0) <= 3
    assert POLICY.after_conflicts(50, 599) <= 11
    # ... until max_elapsed_seconds since the first of them.
    assert POLICY.after_conflicts(1, 601) is None


def test_without_jitter_the_backoff_doubles_from_the_initial_wait_up_to_the_cap():
    exact = RetryPolicy(max_attempts=10, max_elapsed_seconds=600, initial_backoff_seconds=2,
                        max_backoff_seconds=10, jitter_seconds=0)
    assert [exact.next_delay(n, 0) for n in range(1, 6)] == [2, 4, 8, 10, 10]
    assert exact.next_delay(9, 599.9) == 10
    assert exact.next_delay(10, 0) is None              # max_attempts made
    assert exact.next_delay(1, 600) is None             # max_elapsed_seconds reached
    assert exact.after_conflicts(10_000, 0) == 10       # no overflow far past the cap
