"""csep-dlq's logic: reading dead letters as the dispatcher writes them, choosing some,
printing them, and replaying them once (in-memory Kafka producer and replay log)."""

from __future__ import annotations

import io
import json
from datetime import datetime, timedelta, timezone

import attrs
import pytest

from dispatcher import dlq
from dispatcher import dlq_tool as tool

T0 = datetime(2026, 11, 20, 10, 0, tzinfo=timezone.utc)
SPEC = "s3://cdm-lake/specs/job-1/t-1/spec.yaml"


@attrs.frozen
class Record:
    """The fields of a kafka-python ConsumerRecord that the tool reads."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: list


def record(letter: dlq.DeadLetter, offset: int, at: datetime = T0,
           topic: str = "jobs-dlq") -> Record:
    return Record(topic, 0, offset, int(at.timestamp() * 1000), letter.key, letter.value,
                  letter.headers)


def cts_letter(job_id: str, error_class: str = "RetriesExhausted", spec: str | None = SPEC,
               reason: str = "retries exhausted after 3 attempt(s)", **kwargs) -> dlq.DeadLetter:
    value = json.dumps({"job_id": job_id, "state": "complete", "time": "2026-11-20T10:00:00Z",
                        "trans_id": f"t-{job_id}"}).encode()
    return dlq.dead_letter(topic="cts-jobs", partition=1, offset=7, key=b"k", value=value,
                           failure=dlq.Failure(reason, error_class, "Traceback ...\nBoom",
                                               spec, 3 if spec else None, 75 if spec else None),
                           source="cts", **kwargs)


S3_MESSAGE = {"Records": [{"eventName": "s3:ObjectCreated:Put", "eventTime": "2026-11-20T10:00:00Z",
                           "s3": {"bucket": {"name": "dataplane"},
                                  "object": {"key": "raw%2Fa+b.tsv", "size": 3}}}]}


def s3_letter() -> dlq.DeadLetter:
    return dlq.dead_letter(topic="s3-events", partition=0, offset=3, key=None,
                           value=json.dumps(S3_MESSAGE).encode(),
                           failure=dlq.Failure("Records[0].s3.object.sequencer: missing",
                                               "MalformedMessage"), source="s3")


def test_a_cts_dead_letter_is_read_back_whole():
    letter = tool.parse_record(record(cts_letter("job-1"), 5))
    assert (letter.source, letter.subject, letter.job_id) == ("cts", "job-1", "job-1")
    assert letter.context == tool.Context(
        topic="cts-jobs", partition=1, offset=7, error_class="RetriesExhausted",
        reason="retries exhausted after 3 attempt(s)", trace="Traceback ...\nBoom",
        spec_uri=SPEC, attempts=3, exit_code=75, source="cts")
    assert letter.time == T0 and letter.ref == "0:5" and letter.problems == ()
    assert letter.message["job_id"] == "job-1" and not letter.truncated


def test_an_s3_dead_letter_names_its_decoded_object():
    letter = tool.parse_record(record(s3_letter(), 0))
    assert letter.source == "s3"
    assert letter.subject == letter.object_uri == "s3://dataplane/raw/a b.tsv"
    assert letter.context.error_class == "MalformedMessage"
    assert letter.reason == "Records[0].s3.object.sequencer: missing"


def test_a_value_that_is_not_json_and_a_record_without_headers_are_listed_not_refused():
    raw = dlq.dead_letter(topic="cts-jobs", partition=0, offset=1, key=None,
                          value=b"\xff\xfe not json", source="cts",
                          failure=dlq.Failure("not UTF-8", "MalformedMessage"))
    letter = tool.parse_record(record(raw, 1))
    assert letter.message is None and letter.value == b"\xff\xfe not json"
    assert (letter.source, letter.subject, letter.reason) == ("cts", "-", "not UTF-8")
    bare = tool.parse_record(Record("jobs-dlq", 0, 2, 0, None, None, []))
    assert (bare.source, bare.subject, bare.reason, bare.value) == ("?", "-", "", b"")
    assert "?" in tool.table([tool.row(bare, None)])


def test_an_unreadable_header_is_named_and_left_out():
    letter = cts_letter("job-1")
    headers = [(n, b"three" if n == "__csep.errors.attempts" else v) for n, v in letter.headers]
    headers.append(("__csep.errors.exit.code", b"\xff"))
    parsed = tool.parse_record(attrs.evolve(record(letter, 0), headers=headers))
    assert parsed.context.attempts is None and parsed.context.spec_uri == SPEC
    assert any("__csep.errors.attempts: expected a whole number, got 'three'" in p
               for p in parsed.problems)
    assert any(p.startswith("header __csep.errors.exit.code:") for p in parsed.problems)


def test_a_minimal_dead_letter_is_known_as_truncated():
    big = json.dumps({"job_id": "j", "pad": "x" * (dlq.MINIMAL_VALUE_BYTES + 10)}).encode()
    minimal = dlq.dead_letter(topic="cts-jobs", partition=0, offset=9, key=None, value=big,
                              failure=dlq.Failure("too large", "MessageSizeTooLargeError"),
                              minimal=True, source="cts")
    letter = tool.parse_record(record(minimal, 0))
    assert letter.truncated and letter.context.truncated_bytes == len(big)
    assert letter.message is None  # cut mid-JSON


def test_job_id_of_an_s3_event_comes_from_its_spec():
    letter = dlq.dead_letter(topic="s3-events", partition=0, offset=1, key=None,
                             value=json.dumps(S3_MESSAGE).encode(), source="s3",
                             failure=dlq.Failure("bad data", "RunnerFailed", "",
                                                 "s3://b/specs/s3-abc123/seq1/spec.yaml", 1, 65))
    parsed = tool.parse_record(record(letter, 0))
    assert parsed.job_id == "s3-abc123"
    assert tool.Selection(jobs=("s3-abc123",)).matches(parsed)
    assert tool.Selection(jobs=("s3://dataplane/raw/a b.tsv",)).matches(parsed)


def test_each_filter_and_their_combination():
    letters = [tool.parse_record(record(cts_letter("a", "RetriesExhausted"), 0, T0)),
               tool.parse_record(record(cts_letter("b", "JobNotFound", spec=None), 1,
                                        T0 + timedelta(hours=1))),
               tool.parse_record(record(s3_letter(), 2, T0 + timedelta(hours=2)))]
    importer = {0: "checkm2", 1: None, 2: None}

    def chosen(**filters) -> list[int]:
        selection = tool.Selection(**filters)
        return [x.offset for x in letters if selection.matches(x, importer[x.offset])]

    assert chosen() == [0, 1, 2]
    assert chosen(error_classes=("JobNotFound", "MalformedMessage")) == [1, 2]
    assert chosen(importers=("checkm2",)) == [0]
    assert chosen(jobs=("a", "b")) == [0, 1]
    assert chosen(sources=("s3",)) == [2]
    assert chosen(since=T0 + timedelta(minutes=30)) == [1, 2]
    assert chosen(until=T0 + timedelta(minutes=90)) == [0, 1]
    assert chosen(sources=("cts",), error_classes=("MalformedMessage",)) == []


def test_times_are_iso_or_ages():
    now = T0
    assert tool.parse_time("90m", now) == T0 - timedelta(minutes=90)
    assert tool.parse_time("2d", now) == T0 - timedelta(days=2)
    assert tool.parse_time("2026-11-20T08:00:00", now) == T0 - timedelta(hours=2)
    assert tool.parse_time("2026-11-20T10:00:00+02:00", now) == T0 - timedelta(hours=2)
    with pytest.raises(tool.DlqToolError, match="neither an ISO 8601 time nor an age"):
        tool.parse_time("yesterday", now)


def test_the_importer_is_read_once_per_spec_and_an_unreadable_spec_is_reported():
    reads = []

    def read_text(uri: str) -> str:
        reads.append(uri)
        if "missing" in uri:
            raise FileNotFoundError(uri)
        return "importer:\n  name: checkm2\n  py_module: importers.checkm2\n"

    importers = tool.Importers(read_text)
    first = tool.parse_record(record(cts_letter("a"), 0))
    again = tool.parse_record(record(cts_letter("b"), 1))
    gone = tool.parse_record(record(cts_letter("c", spec="s3://b/missing/c/t/spec.yaml"), 2))
    none = tool.parse_record(record(cts_letter("d", spec=None), 3))
    assert [importers.of(x) for x in (first, again, gone, none)] == ["checkm2", "checkm2",
                                                                     None, None]
    assert reads == [SPEC, "s3://b/missing/c/t/spec.yaml"]
    assert "FileNotFoundError" in importers.failures["s3://b/missing/c/t/spec.yaml"]


def test_the_table_has_one_aligned_line_per_record_with_a_one_line_reason():
    long = "line one\nline two " + "x" * 200
    letters = [tool.parse_record(record(cts_letter("a", reason=long), 0)),
               tool.parse_record(record(s3_letter(), 1))]
    text = tool.table([tool.row(x, "checkm2" if i == 0 else None) for i, x in enumerate(letters)])
    lines = text.splitlines()
    assert len(lines) == 3
    assert lines[0].split()[:3] == ["TIME", "RECORD", "SOURCE"]
    assert "line one line two xxx" in lines[1] and "…" in lines[1]
    assert "checkm2" in lines[1] and SPEC in lines[1] and "RetriesExhausted" in lines[1]
    assert lines[2].index("s3://dataplane/raw/a b.tsv") == lines[1].index("a ")


def test_stats_count_by_error_class_and_importer():
    letters = [(tool.parse_record(record(cts_letter(j, c), i)), imp)
               for i, (j, c, imp) in enumerate([("a", "RunnerFailed", "checkm2"),
                                                 ("b", "RunnerFailed", "checkm2"),
                                                 ("c", "JobNotFound", None)])]
    text = tool.stats(letters)
    assert text.startswith("3 dead letter(s)")
    assert any(line.split() == ["RunnerFailed", "2"] for line in text.splitlines())
    assert any(line.split() == ["checkm2", "2"] for line in text.splitlines())
    assert any(line.split() == ["JobNotFound", "-", "1"] for line in text.splitlines())


class Producer:
    """An in-memory Kafka producer: what was sent, acknowledged at once."""

    @attrs.frozen
    class Sent:
        partition: int
        offset: int

        def get(self, timeout: float):
            return self

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes, list]] = []

    def send(self, topic, key=None, value=None, headers=None):
        self.sent.append((topic, key, value, headers))
        return self.Sent(0, len(self.sent) - 1)


class Log:
    """An in-memory replay log with ReplayLog's interface."""

    def __init__(self) -> None:
        self.marks: dict[str, tool.ReplayMark] = {}

    def uri(self, letter):
        return f"mem://{letter.topic}/{letter.partition}/{letter.offset}"

    def find(self, letter):
        return self.marks.get(self.uri(letter))

    def record(self, mark, letter):
        return self.marks.setdefault(self.uri(letter), mark) is mark


def test_replay_publishes_the_selection_once_as_a_replay_of_its_source():
    letters = [tool.parse_record(record(cts_letter("a"), 0)),
               tool.parse_record(record(s3_letter(), 1))]
    producer, log = Producer(), Log()
    done = list(tool.replay(letters, producer=producer, log=log, to=None, dry_run=False))
    assert [d.action for d in done] == ["published", "published"]
    assert [s[0] for s in producer.sent] == ["cts-jobs", "s3-events"]
    topic, key, value, headers = producer.sent[1]
    assert value == letters[1].value and key is None
    # What the dispatcher reads: a replay, of the source its dead letter names.
    assert dlq.is_replay(headers) and dlq.source_of(headers) == "s3"
    assert (tool.REPLAY_OF_HEADER, b"jobs-dlq/0/1") in headers
    assert log.marks["mem://jobs-dlq/0/0"].topic == "cts-jobs"

    again = list(tool.replay(letters, producer=producer, log=log, to=None, dry_run=False))
    assert [d.action for d in again] == ["skipped", "skipped"]
    assert "replayed already" in again[0].detail and len(producer.sent) == 2


def test_a_dry_run_publishes_and_marks_nothing():
    letters = [tool.parse_record(record(cts_letter("a"), 0))]
    log = Log()
    done = list(tool.replay(letters, producer=None, log=log, to="elsewhere", dry_run=True))
    assert [(d.action, d.detail) for d in done] == [("would publish", "to elsewhere")]
    assert log.marks == {}


def test_replay_skips_what_it_cannot_replay_faithfully():
    minimal = dlq.dead_letter(topic="cts-jobs", partition=0, offset=9, key=None,
                              value=b"x" * (dlq.MINIMAL_VALUE_BYTES + 1), minimal=True,
                              failure=dlq.Failure("too large", "MalformedMessage"), source="cts")
    replayed_dlq = dlq.dead_letter(topic="jobs-dlq", partition=0, offset=4, key=None,
                                   value=b"{}", source="cts",
                                   failure=dlq.Failure("again", "JobNotFound"))
    letters = [tool.parse_record(record(minimal, 0)),
               tool.parse_record(Record("jobs-dlq", 0, 1, 0, None, b"{}", [])),
               tool.parse_record(record(replayed_dlq, 2))]
    producer = Producer()
    done = list(tool.replay(letters, producer=producer, log=Log(), to=None, dry_run=False))
    assert [d.action for d in done] == ["skipped", "skipped", "skipped"]
    assert "replay the original, cts-jobs/0:9" in done[0].detail
    assert "give --to TOPIC" in done[1].detail
    assert "the DLQ topic itself: give --to TOPIC" in done[2].detail
    assert producer.sent == []


def test_replay_without_a_filter_is_refused(capsys):
    status = tool.main(["replay"], environ={"CSEP_KAFKA__BOOTSTRAP_SERVERS": "127.0.0.1:1"},
                       out=io.StringIO())
    assert status == 2
    assert "give filters, or --all" in capsys.readouterr().err
