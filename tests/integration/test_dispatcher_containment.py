"""Containment against the real stack: no message, answer or outage stops the dispatcher,
misleads it into dead-lettering good events, or spends their attempts.

Each outage test checks the same invariants: zero DLQ records caused by the outage,
nothing lost (every offset committed), the events imported after recovery, and every
import's attempt budget untouched (one spent attempt per imported event).
"""

from __future__ import annotations

import json
import random
import urllib.error
import urllib.request

import pytest

from contract.identifiers import InvalidIdentifier, check_segment
from tests.integration.dispatcher_lane import event, headers, wait_until

MAX_MESSAGE_BYTES = 65536


def _usable(value: str) -> bool:
    try:
        check_segment("id", value)
    except InvalidIdentifier:
        return False
    return True


def _utf8(body: bytes) -> bool:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _generated(count: int, known_job: str, seed: int = 20261124) -> list[tuple[bytes, bool]]:
    """``count`` messages nobody listed, each with whether it must be dead-lettered (else
    it is a valid event that is acknowledged: a state other than complete)."""
    rng = random.Random(seed)
    odd_ids = ["..", ".", "", "../../etc/passwd", "a/b/../c", "x" * 3000, "\u0000nul",
               "t\u00e9l\u00e9\u2603", "%2e%2e", " ", "\ud83d\ude00" * 200, "a\nb"]
    unusable = [value for value in odd_ids if not _usable(value)]

    def message(kind: int) -> tuple[bytes, bool]:
        if kind == 0:
            return bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 200))), True
        if kind == 1:
            depth = rng.choice([1000, 30000, 32000])
            return (b"[" * depth + b"]" * depth), True
        if kind == 2:
            return json.dumps({**event("big"), "pad": "\u00e9" * rng.randint(20000, 30000)}
                              ).encode()[:MAX_MESSAGE_BYTES - 10], True  # cut: not JSON
        if kind == 3:
            field = rng.choice(["job_id", "trans_id", "time", "state"])
            value = rng.choice([None, 7, 3.5, True, [], {}, ["a"], {"x": 1}])
            return json.dumps({**event("typed"), field: value}).encode(), True
        if kind == 4:  # odd identifiers, for a job the CTS knows
            field, value = rng.choice(["job_id", "trans_id"]), rng.choice(odd_ids)
            if field == "trans_id" and _usable(value) and rng.random() < 0.9:
                value = rng.choice(unusable)  # usable ones are imports: a few are enough
            body = json.dumps({**event(known_job), field: value},
                              ensure_ascii=rng.random() < 0.5).encode("utf-8", "surrogatepass")
            # A usable odd trans_id is a transition of the known job: imported.
            return body, field == "job_id" or not _usable(value) or not _utf8(body)
        if kind == 5:
            return json.dumps({**event("x"), "state": rng.choice(
                ["created", "job_submitted", "error", "canceled", "upload_submitted"])}
            ).encode(), False
        if kind == 6:
            return json.dumps({**event("x"), "time": "yesterday"}).encode(), True
        if kind == 7:
            return b"x" * (MAX_MESSAGE_BYTES + 1), True
        if kind == 8:  # complete, valid, for a job the CTS does not have
            return json.dumps(event(f"unknown-{rng.randrange(10**9)}")).encode(), True
        return json.dumps(rng.choice([[], 1, "s", None, {"job_id": "j"}])).encode(), True

    weights = [12, 2, 2, 15, 15, 20, 10, 2, 4, 18]
    return [message(rng.choices(range(10), weights)[0]) for _ in range(count)]


def test_ten_thousand_odd_messages_never_stop_the_dispatcher(lane):
    total_bad = 10_000
    goods = [f"good-{i}" for i in range(20)]
    for job_id in goods:
        lane.job(job_id, "quick")
    lane.job("known-odd", "quick")
    generated = _generated(total_bad, "known-odd")
    expected_dlq, acknowledged, good_offsets = set(), set(), set()
    futures = []
    every = total_bad // len(goods)
    for index, (value, dead) in enumerate(generated):
        futures.append((lane.producer.send(lane.topic, value=value, partition=0), dead))
        if index % every == every // 2:
            futures.append((lane.producer.send(lane.topic, value=json.dumps(
                event(goods[index // every])).encode(), partition=0), None))
    for future, dead in futures:
        offset = future.get(timeout=60).offset
        (good_offsets if dead is None else expected_dlq if dead else acknowledged).add(offset)
    end = max(good_offsets | expected_dlq | acknowledged) + 1

    dispatcher = lane.dispatcher(max_buffered_events=512)
    wait_until(lambda: lane.committed()[0] == end or dispatcher.process.poll() is not None,
               900, "every offset committed", interval=2)
    assert dispatcher.process.poll() is None, dispatcher.log()
    assert lane.committed()[0] == end
    assert all(lane.done(job_id) for job_id in goods)
    letters = lane.dead_letters(len(expected_dlq), timeout=120)
    by_offset = {int(headers(r)["__connect.errors.offset"]): r for r in letters}
    assert len(by_offset) == len(letters)  # one record per message
    assert set(by_offset) == expected_dlq
    for record in letters:
        context = headers(record)
        assert context["__connect.errors.exception.message"].strip()
        assert context["__connect.errors.exception.class.name"]
    assert dispatcher.stop() == 0


def _health(dispatcher) -> int:
    url = f"http://127.0.0.1:{dispatcher.config['metrics_port']}/health"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def _spent(lane, job_id: str) -> list[str]:
    return [r.status.value for r in lane.results(job_id)
            if r.status.value != "infrastructure_failure"]


def test_a_hung_cts_parks_the_event_and_it_is_imported_when_the_cts_answers(lane):
    lane.job("hung-cts-1", "quick")
    lane.stack.cts.hang(True)
    try:
        offset = lane.complete("hung-cts-1")
        dispatcher = lane.dispatcher(cts={"url": lane.stack.cts.url, "timeout_seconds": 2})
        wait_until(lambda: _health(dispatcher) == 503, 30, "the dispatcher to report unhealthy")
        assert lane.committed()[0] is None and dispatcher.process.poll() is None
        url = f"http://127.0.0.1:{dispatcher.config['metrics_port']}/status"
        status = wait_until(lambda: json.loads(urllib.request.urlopen(url, timeout=5).read()),
                            10, "the status view")
        [held] = status["events"]
        assert (held["job_id"], held["stage"]) == ("hung-cts-1", "prepare")
        assert status["breakers"]["cts"]["open"] and "cts" in status["problem"]
    finally:
        lane.stack.cts.hang(False)
    wait_until(lambda: lane.committed()[0] == offset + 1, 60, "the commit after the hang")
    wait_until(lambda: _health(dispatcher) == 200, 30, "the dispatcher to be healthy again")
    assert lane.done("hung-cts-1") and _spent(lane, "hung-cts-1") == ["succeeded"]
    assert lane.dead_letters(0, timeout=1) == []
    assert dispatcher.stop() == 0


def _s3_outage(lane, dispatcher, publish_rest):
    lane.stack.s3.stop()
    try:
        publish_rest()
        wait_until(lambda: _health(dispatcher) == 503, 60, "the S3 breaker to open")
    finally:
        lane.stack.s3.start()


def _broker_restart(lane, dispatcher, publish_rest):
    lane.stack.kafka.restart()
    publish_rest()


@pytest.mark.parametrize("outage", [_s3_outage, _broker_restart], ids=["s3", "kafka"])
def test_a_service_restarted_mid_stream_loses_nothing_and_spends_nothing(lane, outage):
    jobs = [f"{outage.__name__.strip('_').replace('_', '-')}-{i}" for i in range(10)]
    for job_id in jobs:
        lane.job(job_id, "quick")
    dispatcher = lane.dispatcher(max_in_flight=2)
    offsets = [lane.complete(job_id) for job_id in jobs[:4]]
    wait_until(lambda: lane.done(jobs[0]), 60, "the first import")
    outage(lane, dispatcher, lambda: offsets.extend(lane.complete(j) for j in jobs[4:]))
    wait_until(lambda: lane.committed()[0] == offsets[-1] + 1, 180, "every commit")
    assert dispatcher.process.poll() is None
    assert all(lane.done(job_id) for job_id in jobs)
    assert all(_spent(lane, job_id) == ["succeeded"] for job_id in jobs)
    assert lane.dead_letters(0, timeout=1) == []
    assert dispatcher.stop() == 0


def test_the_metastore_stopped_during_an_import_spends_no_attempt(lane):
    job_id = "metastore-outage-1"
    lane.job(job_id, "metastore")
    offset = lane.complete(job_id)
    dispatcher = lane.dispatcher()
    state = lane.state_dir
    wait_until(lambda: (state / f"{job_id}.spark-ready").exists(), 300, "the runner's Spark")
    lane.stack.postgres.stop()
    try:
        (state / f"{job_id}.go").write_text("")
        wait_until(lambda: any(r.status.value == "infrastructure_failure"
                               for r in lane.results(job_id)), 300, "the runner to give up")
        wait_until(lambda: _health(dispatcher) == 503, 30, "the metastore breaker to open")
    finally:
        lane.stack.postgres.start()
    wait_until(lambda: lane.committed()[0] == offset + 1, 400, "the import after the outage")
    results = lane.results(job_id)
    unavailable = [r for r in results if r.status.value == "infrastructure_failure"]
    assert unavailable and all(r.service == "metastore" for r in unavailable)
    assert all(r.exit_code == 69 for r in unavailable)
    assert _spent(lane, job_id) == ["succeeded"] and lane.done(job_id)
    assert lane.dead_letters(0, timeout=1) == []
    assert dispatcher.process.poll() is None
    assert dispatcher.stop() == 0


@pytest.mark.parametrize("action", ["exit", "wait"])
def test_a_dead_letter_streak_stops_the_bleeding(lane, action):
    jobs = [f"streak-{action}-{i}" for i in range(10)]
    for job_id in jobs:
        lane.job(job_id, "bad_data")   # an importer release that fails every event
    lane.job(f"streak-{action}-quick", "quick")
    for job_id in jobs:
        lane.complete(job_id)
    lane.complete(f"streak-{action}-quick")  # another importer's event goes on
    dispatcher = lane.dispatcher(max_in_flight=1,
                                 dead_letter_streak={"limit": 3, "action": action})
    if action == "exit":
        assert dispatcher.process.wait(120) == 70
    else:
        wait_until(lambda: _health(dispatcher) == 503, 120, "the halt to be reported")
        wait_until(lambda: lane.done(f"streak-{action}-quick"), 60, "the other importer's event")
    letters = lane.dead_letters(3, timeout=10)
    assert 3 <= len(letters) <= 4  # the streak, and at most the one running as it tripped
    assert sum(lane.attempts(job_id) for job_id in jobs) == len(letters)
    assert "halted after 3 dead-lettered events in a row" in dispatcher.log()
    assert (lane.committed()[0] or 0) < len(jobs)  # the rest stays for after the fix
    if action == "wait":
        assert dispatcher.stop() == 0
