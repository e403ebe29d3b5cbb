"""The dispatcher's rules, one test each, on in-memory stubs (:mod:`tests.unit.stubs`).

Each test drives the real loop (:class:`dispatcher.loop.Dispatcher`, its
:class:`~dispatcher.intake.Intake` and :class:`~dispatcher.ledger.AttemptLedger`) turn by
turn, with time moved by hand; what only real servers can show stays in
``tests/integration``.
"""

from __future__ import annotations

import json

import attrs
from kafka import TopicPartition
from kafka.errors import CommitFailedError, KafkaTimeoutError

from common.faults import Fault, ServiceFailure
from contract import claim as claims
from contract.result import Status
from dispatcher.config import DeadLetterStreakSettings, KafkaSettings, RetrySettings
from dispatcher.ledger import AttemptLedger
from dispatcher.loop import (
    BACKLOG_COMMIT_SECONDS,
    EXIT_DEAD_LETTER_STREAK,
    EXIT_INFRASTRUCTURE,
    EXIT_OK,
)
from registry.registry import S3Route
from tests.unit.stubs import Core, Store, importer

RUNNER_SERVICES_DOWN = 31.0  # past any probe's backoff (30 s at most, plus 1 s of jitter)


def _work(core: Core, job_id: str):
    return next(w for w in core.dispatcher.work.values() if w.event.job_id == job_id)


def _next_step_in(core: Core, job_id: str) -> float:
    return round(_work(core, job_id).not_before - core.clock.monotonic(), 6)


def _claim(core: Core, job_id: str, attempt: int) -> claims.AttemptClaim:
    uri = core.spec_uri(job_id).replace("spec.yaml", claims.claim_name(attempt))
    return claims.from_yaml(core.store.text(uri))


# -- the path of one event ----------------------------------------------------------------

def test_an_imported_event_is_run_once_committed_and_marked_in_the_cts():
    core = Core()
    core.announce("job1")
    core.turn()
    assert core.stage("job1") == "running"
    [runner] = core.launcher.runners
    assert (runner.request.attempt, runner.request.result_name) == (1, "result-0001.yaml")
    assert core.consumer.commits == []  # nothing is committed under a running event

    runner.end(0)
    core.turn()
    assert core.stage("job1") is None
    assert core.consumer.commits == [{core.partition(0): 1}]
    assert [key for _, key in core.cts.meta] == ["cse_event_processing_start",
                                                 "cse_event_processing_complete"]
    assert core.metric("csep_events_total", outcome="imported") == 1
    assert core.dead_letters() == []


# -- retries and backoff ------------------------------------------------------------------

def test_a_failed_attempt_is_retried_after_the_policy_s_backoff_until_the_budget_is_spent():
    core = Core()  # max_attempts 3, backoff 5 s doubling, no jitter
    core.announce("job1")
    core.turn()
    core.runner("job1").end(70, message="importer crashed")
    core.turn()
    assert core.stage("job1") == "queued"
    assert _next_step_in(core, "job1") == 5.0

    core.wait(4.5)  # (the idle poll adds 0.2 s)
    assert len(core.runners("job1")) == 1
    core.wait(0.5)
    assert [r.request.attempt for r in core.runners("job1")] == [1, 2]

    core.runner("job1").end(70, message="importer crashed")
    core.turn()
    assert _next_step_in(core, "job1") == 10.0
    core.wait(10)
    assert [r.request.attempt for r in core.runners("job1")] == [1, 2, 3]

    core.runner("job1").end(70, message="importer crashed again")
    core.turn()
    [letter] = core.dead_letters()
    assert letter.header("__connect.errors.exception.class.name") == "RetriesExhausted"
    assert letter.header("__csep.errors.attempts") == "3"
    assert letter.header("__csep.errors.exit.code") == "70"
    assert "importer crashed again" in letter.json["error_dlq"]
    assert core.metric("csep_retries_total", importer="stub") == 2
    assert core.consumer.committed_offset(core.partition(0)) == 1
    assert [r.status for r in core.results("job1")] == [Status.FAILED] * 3


def test_an_importer_s_max_attempts_overrides_the_default():
    core = Core(importers=[importer(max_attempts=1)])
    core.announce("job1")
    core.turn()
    core.runner("job1").end(75)  # temporary, but the importer allows one attempt
    core.turn()
    assert len(core.launcher.runners) == 1
    assert core.dead_letters()[0].header("__csep.errors.attempts") == "1"


def test_bad_data_is_dead_lettered_at_once_without_a_retry():
    core = Core()
    core.announce("job1")
    core.turn()
    core.runner("job1").end(65, message="column 3 is not a number")
    core.turn()
    [letter] = core.dead_letters()
    assert letter.header("__connect.errors.exception.class.name") == "RunnerFailed"
    assert letter.json["error_dlq"] == "runner exit 65: column 3 is not a number"
    core.wait(600)
    assert len(core.launcher.runners) == 1


def test_a_runner_that_dies_without_a_result_gets_one_written_for_it_and_it_counts():
    core = Core()
    core.announce("job1")
    core.turn()
    core.runner("job1").end(None)  # killed by a signal before writing anything
    core.turn()
    [result] = core.results("job1")
    assert (result.status, result.written_by, result.exit_code) == (
        Status.KILLED, "dispatcher", 137)
    assert _next_step_in(core, "job1") == 5.0  # a spent attempt: the policy's backoff


# -- the attempt budget across restarts ---------------------------------------------------

def test_attempts_spent_before_a_restart_count_against_the_budget():
    first = Core(owner="dispatcher-a")
    first.announce("job1")
    first.turn()
    first.runner("job1").end(70)
    first.turn()
    first.wait(5)
    first.runner("job1").end(70)
    first.turn()  # attempt 2 recorded; the dispatcher stops before attempt 3, uncommitted
    assert first.consumer.commits == []

    second = Core(owner="dispatcher-b", store=first.store, clock=first.clock, cts=first.cts)
    second.announce("job1")  # the same message, read again from the committed offset
    second.turn()
    [runner] = second.launcher.runners
    assert runner.request.attempt == 3
    runner.end(70)
    second.turn()
    [letter] = second.dead_letters()
    assert letter.header("__connect.errors.exception.class.name") == "RetriesExhausted"
    assert letter.header("__csep.errors.attempts") == "3"


def test_an_event_imported_before_a_restart_is_not_run_again():
    first = Core()
    first.announce("job1")
    first.turn()
    first.runner("job1").end(0)  # imported; the dispatcher stops before recording it

    second = Core(owner="dispatcher-b", store=first.store, clock=first.clock, cts=first.cts)
    second.announce("job1")
    second.turn()
    assert second.launcher.runners == []
    assert second.consumer.committed_offset(second.partition(0)) == 1
    assert second.metric("csep_events_total", outcome="imported") == 1


# -- infrastructure failures: not spent, gated by the breaker -----------------------------

def test_runner_exit_69_spends_no_attempt_and_waits_for_the_service_s_breaker():
    core = Core()  # max_attempts 3
    core.announce("job1")
    core.turn()
    for attempt in range(1, 5):  # four outages in a row: more than max_attempts
        core.runner("job1").end(69, service="metastore", message="metastore refused")
        core.turn()
        assert core.dispatcher.breakers.states()["metastore"]["open"]
        core.wait(0.5)
        assert len(core.launcher.runners) == attempt  # no launch before the probe
        assert core.consumer.paused() == core.consumer.assignment()  # intake waits too
        core.wait(RUNNER_SERVICES_DOWN)
        assert len(core.launcher.runners) == attempt + 1  # the probe: one runner
    core.runner("job1").end(0)
    core.turn()
    assert core.dead_letters() == []
    assert core.metric("csep_events_total", outcome="imported") == 1
    assert core.metric("csep_infrastructure_failures_total", service="metastore") == 4
    assert not core.dispatcher.breakers.any_open()
    assert [r.status for r in core.results("job1")] == [Status.INFRASTRUCTURE] * 4 + [
        Status.SUCCEEDED]
    assert core.consumer.paused() == set()


def test_an_s3_outage_while_preparing_holds_the_event_unspent_then_it_runs():
    core = Core()
    core.store.down = "ServiceUnavailable"
    core.announce("job1")
    core.turn()
    assert core.stage("job1") == "prepare"
    assert core.dispatcher.breakers.states()["s3"]["open"]
    assert core.launcher.runners == [] and core.dead_letters() == []
    core.wait(RUNNER_SERVICES_DOWN)  # the probe fails: still held
    assert core.stage("job1") == "prepare"

    core.store.down = None
    core.wait(RUNNER_SERVICES_DOWN)
    assert core.stage("job1") == "running"
    assert not core.dispatcher.breakers.any_open()
    assert core.metric("csep_infrastructure_failures_total", service="s3") == 2


def test_an_s3_outage_when_the_runner_ends_delays_its_record_and_spends_nothing():
    core = Core()
    core.announce("job1")
    core.turn()
    core.runner("job1").end(70)  # its result is written before S3 goes down
    core.store.down = "SlowDown"
    core.turn()
    assert core.stage("job1") == "running"  # the exit is kept until it can be recorded
    core.store.down = None
    core.wait(RUNNER_SERVICES_DOWN)
    assert core.stage("job1") == "queued"
    assert _work(core, "job1").attempts.spent == 1  # the runner's one attempt, once
    assert core.dead_letters() == []


def test_a_launcher_that_cannot_start_runners_opens_its_breaker_without_spending():
    core = Core()
    core.launcher.refuse = "docker daemon not running"
    core.announce("job1")
    core.turn()
    assert core.dispatcher.breakers.states()["launcher"]["open"]
    assert core.launcher.runners == [] and core.stage("job1") == "queued"
    core.launcher.refuse = None
    core.wait(RUNNER_SERVICES_DOWN)  # the breaker's probe: the claim held is launched
    [runner] = core.launcher.runners
    assert runner.request.attempt == 1  # that attempt is launched: none was spent
    assert _claim(core, "job1", 1).takeovers == ()  # its own claim, renewed, not taken over
    assert core.dead_letters() == []


def test_a_service_down_past_the_budget_stops_the_dispatcher_with_69_uncommitted():
    core = Core(infrastructure_budget_seconds=120.0)
    core.cts.down = "HTTP 503"
    core.announce("job1")
    for _ in range(3):  # failing for about 60 s: within the budget
        core.wait(RUNNER_SERVICES_DOWN)
    assert core.dispatcher.health.problem().startswith("cts failing for 6")
    assert core.dispatcher.breakers.over_budget() is None
    for _ in range(3):  # about 150 s
        core.wait(RUNNER_SERVICES_DOWN)
    turned_on = []  # a turn of run() would mean it did not stop
    core.consumer.on_poll.append(lambda: (turned_on.append(1), core.dispatcher.stop()))
    assert core.dispatcher.run() == EXIT_INFRASTRUCTURE
    assert turned_on == []
    assert core.dead_letters() == []  # an outage never dead-letters
    assert core.consumer.commits == []
    assert core.consumer.closed


# -- breaker gating and probes ------------------------------------------------------------

def test_an_open_breaker_lets_one_probe_through_per_backoff_window():
    core = Core()
    core.cts.down = "HTTP 503"
    for job in ("job1", "job2", "job3"):
        core.announce(job)
    core.turn()
    assert core.cts.calls == 1  # the others wait behind the breaker the first opened
    core.wait(0.5)
    assert core.cts.calls == 1
    core.wait(RUNNER_SERVICES_DOWN)
    assert core.cts.calls == 2  # one probe, failing
    assert core.dispatcher.breakers.states()["cts"]["failures"] == 2

    core.cts.down = None
    core.wait(RUNNER_SERVICES_DOWN)  # the probe answers: every event moves on
    assert {core.stage(job) for job in ("job1", "job2", "job3")} == {"running"}
    assert not core.dispatcher.breakers.any_open()


def test_a_success_of_one_service_does_not_close_another_s_breaker():
    core = Core()
    core.announce("job1")
    core.turn()
    core.runner("job1").end(69, service="spark")
    core.turn()
    core.announce("job2")  # its preparation (CTS, S3) succeeds while Spark is down
    core.wait(0.5)
    assert core.dispatcher.breakers.states()["spark"]["open"]
    assert len(core.launcher.runners) == 1


# -- lease takeover and duplicate announcements -------------------------------------------

def test_an_attempt_whose_owner_s_lease_ran_out_is_taken_over_and_recorded():
    core = Core(owner="dispatcher-a", attempt_lease_seconds=60.0)
    stopped = AttemptLedger(core.store, 60.0, owner="dispatcher-old", clock=core.clock)
    assert stopped.claim(core.spec_uri("job1"), 1) is not None  # then it stopped
    core.announce("job1")
    core.turn()
    assert core.launcher.runners == []  # its lease still holds: wait for its outcome
    core.wait(30)
    assert core.launcher.runners == []

    core.wait(31)
    [runner] = core.launcher.runners
    assert runner.request.attempt == 1
    claim = _claim(core, "job1", 1)
    assert claim.owner == "dispatcher-a"
    assert [(t.by, t.previous_owner) for t in claim.takeovers] == [
        ("dispatcher-a", "dispatcher-old")]
    assert claim.lease_until == core.clock.now() + (claim.lease_until - claim.takeovers[0].at)


def test_a_running_attempt_renews_its_lease_and_is_never_taken_over():
    core = Core(owner="dispatcher-a", attempt_lease_seconds=60.0)
    core.announce("job1")
    core.turn()
    for _ in range(10):  # ten minutes of a long import
        core.wait(30)
    assert _claim(core, "job1", 1).lease_until > core.clock.now()

    other = Core(owner="dispatcher-b", store=core.store, clock=core.clock, cts=core.cts)
    other.announce("job1")
    other.turn()
    assert other.launcher.runners == []  # it waits for our attempt's outcome


def test_a_dispatcher_whose_attempt_was_taken_over_stops_its_runner_and_waits():
    a = Core(owner="dispatcher-a", attempt_lease_seconds=60.0)
    a.announce("job1")
    a.turn()
    a.clock.advance(61)  # a stalls past its lease; another dispatcher takes the attempt
    other = AttemptLedger(a.store, 60.0, owner="dispatcher-b", clock=a.clock)
    assert other.take_over(a.spec_uri("job1"), other.attempts(a.spec_uri("job1")).open)

    a.turn()
    assert a.runner("job1").killed  # the other's runner is the one that counts
    assert a.dispatcher.slots.in_use == 0
    a.wait(5)
    assert len(a.launcher.runners) == 1 and a.stage("job1") == "queued"
    assert _claim(a, "job1", 1).owner == "dispatcher-b"


def test_two_announcements_of_one_job_run_one_runner_and_both_commit():
    core = Core()
    core.announce("job1")
    core.announce("job1")  # the same completion announced twice (offsets 0 and 1)
    core.turn()
    [runner] = core.launcher.runners
    runner.end(0)
    core.turn()
    core.wait(5)  # the copy checks the attempt it waited for
    assert len(core.launcher.runners) == 1
    assert core.consumer.committed_offset(core.partition(0)) == 2
    assert core.metric("csep_events_total", outcome="imported") == 2


def test_two_dispatchers_with_copies_of_one_job_run_it_once():
    a = Core(owner="dispatcher-a")
    b = Core(owner="dispatcher-b", store=a.store, clock=a.clock, cts=a.cts)
    a.announce("job1")
    b.announce("job1")
    a.turn()
    b.turn()
    assert len(a.launcher.runners) + len(b.launcher.runners) == 1
    a.runner("job1").end(0)
    a.turn()
    b.wait(5)
    assert b.launcher.runners == []
    assert b.consumer.committed_offset(b.partition(0)) == 1


# -- dead-letter streaks ------------------------------------------------------------------

def test_an_importer_dead_lettering_n_events_in_a_row_is_halted():
    core = Core(max_in_flight=1,
                dead_letter_streak=DeadLetterStreakSettings(limit=2, action="wait"))
    for job in ("job1", "job2", "job3"):
        core.announce(job)
    core.turn()
    core.runner("job1").end(65)
    core.turn()
    assert len(core.launcher.runners) == 2  # the next event took the slot
    core.runner("job2").end(65)
    core.turn()
    assert len(core.launcher.runners) == 2  # job3 is held, not run
    assert core.stage("job3") == "queued"
    assert "importer stub halted after 2 dead-lettered events" in core.dispatcher.health.problem()
    assert core.consumer.committed_offset(core.partition(0)) == 2


def test_a_streak_with_action_exit_stops_the_dispatcher_with_70():
    core = Core(dead_letter_streak=DeadLetterStreakSettings(limit=2, action="exit"))
    for job in ("job1", "job2"):
        core.announce(job)
    core.turn()
    for job in ("job1", "job2"):
        core.runner(job).end(64)
    core.turn()
    assert core.dispatcher.run() == EXIT_DEAD_LETTER_STREAK
    assert core.consumer.committed_offset(core.partition(0)) == 2


def test_an_import_between_dead_letters_breaks_the_streak():
    core = Core(dead_letter_streak=DeadLetterStreakSettings(limit=2, action="wait"))
    for job, code in (("job1", 65), ("job2", 0), ("job3", 65)):
        core.announce(job)
        core.turn()
        core.runner(job).end(code)
        core.turn()
    assert core.dispatcher.health.problem() is None


# -- the uncommitted span, commits --------------------------------------------------------

def test_a_partition_pauses_when_its_uncommitted_span_reaches_the_bound():
    core = Core(max_uncommitted_span=2)
    core.announce("slow")
    core.announce("job1", state="created")  # not actionable: finished at once
    core.announce("job2", state="created")
    core.turn()
    core.turn()
    assert core.consumer.paused() == {core.partition(0)}
    core.announce("job3")
    core.turn()
    assert core.runners("job3") == []  # not read while paused
    assert core.consumer.commits == []  # offset 0 holds them all

    core.runner("slow").end(0)
    core.turn()
    assert core.consumer.committed_offset(core.partition(0)) == 3
    core.turn()
    assert core.consumer.paused() == set()
    assert len(core.runners("job3")) == 1


def test_a_backlog_read_in_full_polls_commits_once_a_second_and_at_its_end():
    core = Core(max_buffered_events=4)
    for n in range(12):
        core.announce(f"job{n}", state="created")  # not actionable: finished at once
    core.turn()  # 4 of 12, within the loop's first second: not committed yet
    core.turn()  # 8 of 12
    assert core.consumer.commits == []
    core.clock.advance(BACKLOG_COMMIT_SECONDS)
    core.turn()  # 12 of 12, a full poll again, but a second has passed
    assert core.consumer.commits == [{core.partition(0): 12}]
    core.announce("job12", state="created")
    core.turn()  # one record in a poll of four: caught up, committed in its turn
    assert core.consumer.commits == [{core.partition(0): 12}, {core.partition(0): 13}]


def test_a_short_poll_with_records_known_behind_it_is_still_a_backlog():
    # A fetch ends mid-backlog: the poll comes back short, yet the partition's high
    # watermark shows more records; they are committed within the second, not per turn.
    core = Core(max_buffered_events=4)
    for n in range(6):
        core.announce(f"job{n}", state="created")
    core.turn()  # 4 of 6
    fetched = core.consumer.poll
    core.consumer.poll = lambda timeout_ms=0, max_records=None: fetched(timeout_ms, 1)
    core.turn()  # 5 of 6, a poll of one: behind the high watermark, not committed
    assert core.consumer.commits == []
    core.consumer.poll = fetched
    core.turn()  # 6 of 6, short and caught up: committed in its turn
    assert core.consumer.commits == [{core.partition(0): 6}]


def test_only_partitions_being_read_count_as_behind():
    # A partition paused (its uncommitted span at the bound) keeps its records unread:
    # it does not hold the others' commits back as a backlog would.
    core = Core()
    for n in range(3):
        core.announce(f"job{n}", state="created")
    intake = core.dispatcher.intake
    intake.poll(accepting=True, max_records=1, timeout_ms=0)
    assert intake.behind()
    core.consumer.pause(core.partition(0))
    assert not intake.behind()


def test_a_commit_refused_by_a_rebalance_is_made_by_a_later_turn():
    core = Core()
    core.announce("job1", state="created")
    core.consumer.commit_error = CommitFailedError("rebalancing")
    core.turn()
    assert core.consumer.commits == []
    assert not core.dispatcher.breakers.any_open()  # deferred, not a Kafka failure
    core.consumer.commit_error = None
    core.turn()
    assert core.consumer.commits == [{core.partition(0): 1}]


def test_a_commit_timing_out_opens_the_kafka_breaker_and_pauses_intake():
    core = Core()
    core.announce("job1", state="created")
    core.consumer.commit_error = KafkaTimeoutError("no answer")
    core.turn()
    assert core.dispatcher.breakers.states()["kafka"]["open"]
    assert core.clock.slept == [0.5]  # the loop's pause after a Kafka failure
    core.announce("job2")
    core.turn()
    assert core.runners("job2") == []  # intake waits for Kafka
    core.consumer.commit_error = None
    core.turn()
    assert core.consumer.committed_offset(core.partition(0)) == 1
    assert not core.dispatcher.breakers.any_open()


# -- drain on stop ------------------------------------------------------------------------

def test_stop_lets_running_attempts_finish_within_the_grace_period_then_commits():
    core = Core(subscribe=False, max_in_flight=1)
    core.announce("job1")
    core.announce("job2")  # waits for the slot: not started during the drain
    polls = []

    def script() -> None:
        polls.append(1)
        if len(polls) == 2:
            core.dispatcher.stop()  # SIGTERM's handler
        if len(polls) == 4:
            core.runner("job1").end(0)

    core.consumer.on_poll.append(script)
    assert core.dispatcher.run() == EXIT_OK
    assert [r.request.job_id for r in core.launcher.runners] == ["job1"]
    assert not core.runner("job1").killed
    assert core.consumer.committed_offset(core.partition(0)) == 1
    assert core.consumer.closed and core.launcher.closed


def test_a_runner_still_running_after_the_grace_period_is_killed_uncommitted():
    core = Core(subscribe=False, shutdown_grace_seconds=5.0)
    core.announce("job1")
    core.consumer.on_poll.append(lambda: core.dispatcher.stop())
    started = core.clock.monotonic()
    assert core.dispatcher.run() == EXIT_OK
    assert core.runner("job1").killed
    assert 5.0 <= core.clock.monotonic() - started < 6.0
    assert core.consumer.commits == []


# -- partition loss and rebalances --------------------------------------------------------

def test_a_revoked_partition_s_runner_is_killed_and_its_claim_released_for_the_next_owner():
    a = Core(owner="dispatcher-a", attempt_lease_seconds=60.0)
    a.announce("job1", partition=0)
    a.announce("job2", partition=1)
    a.turn()
    a.consumer.revoke(a.partition(0))
    a.turn()
    assert a.runner("job1").killed and not a.runner("job2").killed
    assert a.stage("job1") is None and a.stage("job2") == "running"
    assert a.dispatcher.slots.in_use == 1
    assert _claim(a, "job1", 1).lease_until <= a.clock.now()  # released, not left to expire

    b = Core(owner="dispatcher-b", store=a.store, clock=a.clock, cts=a.cts)
    b.announce("job1")  # the partition's new owner reads the event again
    b.turn()
    [runner] = b.launcher.runners
    assert runner.request.attempt == 1  # at once, without waiting out a's lease
    assert [t.previous_owner for t in _claim(b, "job1", 1).takeovers] == ["dispatcher-a"]


def test_a_partition_revoked_and_given_back_keeps_what_finished_and_redoes_the_rest():
    core = Core()
    core.announce("job1")
    core.announce("job2", state="created")
    core.turn()
    core.consumer.revoke(core.partition(0))  # the revocation commits what finished
    core.consumer.assign(core.partition(0))
    core.turn()
    assert core.consumer.commits == []  # job1 holds offset 0
    first, again = core.runners("job1")  # read again and launched again at once
    assert first.killed and again.request.attempt == 1
    core.runner("job1").end(0)
    core.turn()
    assert core.consumer.committed_offset(core.partition(0)) == 2


def test_an_eager_rebalance_keeps_the_work_of_partitions_given_back():
    core = Core(kafka=KafkaSettings(bootstrap_servers="stub:9092", assignor="range"))
    core.announce("job1", partition=0)
    core.announce("job2", partition=1)
    core.turn()
    core.consumer.revoke(core.partition(0), core.partition(1))  # eager: everything goes
    core.consumer.assign(core.partition(0))                     # and p0 comes back
    core.announce("job3", partition=0)  # redelivered with job1, in the same poll
    core.turn()
    assert not core.runner("job1").killed and core.stage("job1") == "running"
    assert core.runner("job2").killed and core.stage("job2") is None
    # p0's first event is not read and launched again; the new one behind it is.
    assert [r.request.job_id for r in core.launcher.runners] == ["job1", "job2", "job3"]


def test_partitions_lost_with_the_group_membership_drop_their_work_without_commits():
    core = Core()
    core.announce("job1")
    core.announce("job2", state="created")
    core.turn()
    core.consumer.lose(core.partition(0))
    core.turn()
    assert core.runner("job1").killed
    assert core.dispatcher.work == {}
    assert core.consumer.commits == []


# -- write conflicts and refusals ---------------------------------------------------------

def test_an_attempt_lost_to_other_writers_is_not_spent_and_the_import_runs_again():
    core = Core()  # max_attempts 3
    core.announce("job1")
    core.turn()
    for conflicts, delay in ((1, 5.0), (2, 10.0), (3, 20.0)):
        core.runner("job1").end(75, status=Status.WRITE_CONFLICT,
                                message="another runner committed to the table")
        core.turn()
        assert core.stage("job1") == "queued"
        assert _next_step_in(core, "job1") == delay
        assert core.metric("csep_write_conflicts_total", importer="stub") == conflicts
        core.wait(delay)
    assert [r.request.attempt for r in core.launcher.runners] == [1, 2, 3, 4]
    core.runner("job1").end(0)  # a fourth attempt, past max_attempts: none was spent
    core.turn()
    assert core.dead_letters() == []
    assert core.metric("csep_retries_total", importer="stub") == 0
    assert core.metric("csep_events_total", outcome="imported") == 1
    # Timed by the runner's own status, so alerts can tell a busy table from a failure.
    for status, count in (("write_conflict", 3), ("succeeded", 1), ("temporary_failure", 0)):
        assert core.metric("csep_runner_duration_seconds_count", importer="stub",
                           status=status) == count


def test_write_conflicts_past_max_elapsed_are_dead_lettered():
    core = Core(retry=RetrySettings(max_elapsed_seconds=30.0, initial_backoff_seconds=5.0,
                                    jitter_seconds=0.0))
    core.announce("job1")
    core.turn()
    core.runner("job1").end(75, status=Status.WRITE_CONFLICT)
    core.turn()
    core.clock.advance(40)
    core.turn()
    core.runner("job1").end(75, status=Status.WRITE_CONFLICT, message="lost again")
    core.turn()
    [letter] = core.dead_letters()
    assert letter.header("__connect.errors.exception.class.name") == "WriteConflict"
    assert "lost its commit to other writers of its table in 2 attempt(s)" in (
        letter.json["error_dlq"])


def test_an_event_whose_spec_was_refused_already_is_dead_lettered_unrun():
    first = Core(owner="dispatcher-a")
    first.announce("job1")
    first.turn()
    first.runner("job1").end(65, message="row 7: not a genome")  # then it stops

    second = Core(owner="dispatcher-b", store=first.store, clock=first.clock, cts=first.cts)
    second.announce("job1")
    second.turn()
    assert second.launcher.runners == []
    [letter] = second.dead_letters()
    assert letter.header("__csep.errors.exit.code") == "65"
    assert letter.json["error_dlq"] == "runner exit 65: row 7: not a genome"
    assert second.consumer.committed_offset(second.partition(0)) == 1


# -- containment --------------------------------------------------------------------------

def test_a_malformed_message_and_an_unknown_job_are_dead_lettered_and_the_loop_goes_on():
    core = Core()
    core.consumer.append("cts-jobs", b"{not json")
    core.consumer.append("cts-jobs", b'{"job_id": "gone", "state": "complete", '
                                     b'"trans_id": "t1", "time": "2026-12-01T00:00:00Z"}')
    core.announce("job1")
    core.turn(2)  # (a failed preparation is dead-lettered by the next turn)
    classes = [s.header("__connect.errors.exception.class.name") for s in core.dead_letters()]
    assert classes == ["MalformedMessage", "JobNotFound"]
    assert core.stage("job1") == "running"
    assert core.consumer.committed_offset(core.partition(0)) == 2


def test_a_job_of_an_image_without_an_importer_is_acknowledged_as_a_no_op():
    core = Core()
    core.announce("job1", image="ghcr.io/kbase/other_tool")
    core.turn()
    assert core.launcher.runners == [] and core.dead_letters() == []
    assert core.metric("csep_events_total", outcome="no_importer") == 1
    assert core.cts.meta == [("job1", "cse_event_processing_no_operation")]


# -- events only acknowledged: a poll's worth finished together ---------------------------

def _poison(core: Core, job_id: str, error: Exception) -> list[str]:
    """Make the CTS source's ``finished`` raise ``error`` for ``job_id``; returns the
    list of jobs whose end it recorded, in order (cleared to lift the poison)."""
    source, finished, poisoned = core.dispatcher.sources["cts"], [], [job_id]
    original = source.finished

    def finish(event, outcome: str) -> None:
        if event.job_id in poisoned:
            raise error
        finished.append(event.job_id)
        original(event, outcome)

    source.finished = finish
    core.lift = poisoned.clear
    return finished


def test_a_backlog_of_acknowledged_events_is_counted_shown_and_committed():
    core = Core()
    for n in range(300):
        core.announce(f"job{n}", state="created" if n % 2 else "upload_submitted")
    core.turn()  # one poll of max_buffered_events (256), the rest at the next
    assert core.metric("csep_events_total", outcome="ignored") == 256
    core.turn()
    assert core.metric("csep_events_total", outcome="ignored") == 300
    recent = core.dispatcher.health.recent
    assert [e["job_id"] for e in recent] == [f"job{n}" for n in range(250, 300)]
    assert recent[-1] | {"finished_at": 0} == {
        "finished_at": 0, "job_id": "job299", "topic": "cts-jobs", "partition": 0,
        "offset": 299, "attempt": None, "spec_uri": None, "source": "cts", "importer": None,
        "outcome": "ignored", "error_class": None, "reason": None}
    assert core.consumer.committed_offset(core.partition(0)) == 300
    assert core.dispatcher.work == {} and core.cts.meta == []


def test_a_poisoned_event_among_acknowledged_ones_is_contained_alone():
    core = Core()
    for job_id in ("job0", "job1"):
        core.announce(job_id, state="created")
    core.consumer.append("cts-jobs", b"{not json")
    for job_id in ("job3", "job4"):
        core.announce(job_id, state="created")
    finished = _poison(core, "job3", RuntimeError("a bug while finishing"))
    core.turn()
    assert finished == ["job0", "job1", "job4"]
    assert [s.header("__connect.errors.exception.class.name")
            for s in core.dead_letters()] == ["MalformedMessage"]
    assert core.stage("job3") == "finish"  # held: finishing it is tried again
    assert core.metric("csep_events_total", outcome="ignored") == 3
    assert core.consumer.committed_offset(core.partition(0)) == 3
    assert [e["job_id"] for e in core.dispatcher.health.recent] == [
        "job0", "job1", "job4", None]

    core.lift()
    core.turn()
    assert core.stage("job3") is None and finished[-1] == "job3"
    assert core.metric("csep_events_total", outcome="ignored") == 4
    assert core.consumer.committed_offset(core.partition(0)) == 5
    assert len(core.dead_letters()) == 1


def test_finish_hooks_are_told_of_each_event_once_and_of_a_poll_s_acknowledged_ones_together():
    core = Core()
    told: list[list[tuple[str | None, str]]] = []
    core.dispatcher.finish_hooks.append(lambda finished: told.append(
        [(getattr(held.event, "job_id", None), held.state.outcome.value) for held in finished]))
    core.announce("job0", state="created")
    core.announce("job1")
    core.announce("job2", state="canceled")
    core.consumer.append("cts-jobs", b"{not json")
    core.announce("job3", state="error")
    core.turn()
    assert told == [[("job0", "ignored"), ("job2", "ignored"), ("job3", "ignored")],
                    [(None, "dead_lettered")]]
    core.runner("job1").end(0)
    core.turn()
    assert told[2:] == [[("job1", "imported")]]
    assert core.metric("csep_events_total", outcome="ignored") == 3
    assert core.metric("csep_events_total", outcome="imported") == 1
    assert core.metric("csep_events_total", outcome="dead_lettered") == 1


def test_an_acknowledged_event_blaming_a_service_holds_the_events_after_it_behind_its_breaker():
    core = Core()
    for n in range(5):
        core.announce(f"job{n}", state="created")
    finished = _poison(core, "job2", ServiceFailure("cts", Fault.INFRASTRUCTURE, "CTS down"))
    core.turn()
    assert finished == ["job0", "job1"]  # job3 and job4 wait for the CTS's breaker
    assert {core.stage(f"job{n}") for n in (2, 3, 4)} == {"finish"}
    assert core.dispatcher.breakers.states()["cts"]["open"]
    assert core.consumer.committed_offset(core.partition(0)) == 2
    assert core.metric("csep_infrastructure_failures_total", service="cts") == 1

    core.lift()
    core.wait(RUNNER_SERVICES_DOWN)  # the probe goes through and closes the breaker
    assert finished == ["job0", "job1", "job2", "job3", "job4"]
    assert not core.dispatcher.breakers.any_open()
    assert core.metric("csep_events_total", outcome="ignored") == 5
    assert core.consumer.committed_offset(core.partition(0)) == 5


# -- S3 notifications: several events in one record -------------------------------------

def test_a_notification_of_several_objects_commits_once_all_are_finished():
    s3 = S3Route(bucket="cdm-dataplane", keys=("raw/*",))
    core = Core(importers=[importer(), attrs.evolve(importer("tables", image=None), s3=s3)],
                kafka=KafkaSettings(bootstrap_servers="stub:9092", s3_topic="s3-events"))
    records = []
    for name, etag in (("a.tsv", "e1"), ("b.tsv", "e2")):
        core.store.client.objects[("cdm-dataplane", f"raw/{name}")] = (10, etag)
        records.append({
            "eventName": "s3:ObjectCreated:Put", "eventTime": "2026-12-01T00:00:00Z",
            "userIdentity": {"principalId": "alice"},
            "s3": {"bucket": {"name": "cdm-dataplane"},
                   "object": {"key": f"raw/{name}", "size": 10, "eTag": etag,
                              "sequencer": f"0A{etag}"}}})
    core.consumer.append("s3-events", json.dumps({"Records": records}).encode())
    core.turn()
    first, second = core.launcher.runners
    assert {r.request.importer for r in (first, second)} == {"tables"}
    first.end(0)
    core.turn()
    assert core.consumer.commits == []  # the other object of the message is not done

    second.end(65, message="not a table")
    core.turn()
    [letter] = core.dead_letters()
    assert letter.header("__csep.errors.record.index") == "1"
    assert [r["s3"]["object"]["key"] for r in letter.json["Records"]] == ["raw/b.tsv"]
    assert core.consumer.commits == [{TopicPartition("s3-events", 0): 1}]


# -- the stubs keep their originals' semantics ---------------------------------------------

def test_the_store_stub_answers_conditional_puts_as_s3_does():
    store = Store()
    uri = "s3://specs/csep/job1/t1/attempt-0001.yaml"
    assert store.write_text_if_absent(uri, "a: 1\n")
    assert not store.write_text_if_absent(uri, "a: 2\n")
    text, etag = store.read_text_and_etag(uri)
    assert (text, etag.startswith('"')) == ("a: 1\n", True)
    assert store.replace_text_if_match(uri, "a: 3\n", etag)
    assert not store.replace_text_if_match(uri, "a: 4\n", etag)  # that version is gone
    assert store.read_text(uri) == "a: 3\n"
    assert store.files("s3://specs/csep/job1/t1/spec.yaml", "attempt-") == [uri]
    assert store.files("s3://specs/csep/job1/t2/spec.yaml") == []
