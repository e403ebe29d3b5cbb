"""``csep-dlq`` (``python -m dispatcher.dlq_tool``): look into the DLQ topic and replay
chosen dead letters.

    csep-dlq list   [filters]          one line per dead letter
    csep-dlq show   PARTITION:OFFSET   one dead letter whole, with its spec and results
    csep-dlq stats  [filters]          counts by error class and importer
    csep-dlq replay [filters] [--to TOPIC] [--dry-run]

Filters (each may be repeated: any of its values; different filters: all of them):
``--error-class``, ``--importer``, ``--job`` (a CTS job id, an S3 event's ``s3-...`` job
id or its object's ``s3://`` URI), ``--source`` (``cts``, ``s3``), ``--since`` and
``--until`` (ISO 8601, UTC when no offset is given, or an age such as ``90m``, ``6h``,
``2d``), on the time the record was dead-lettered.

The tool reads with a consumer of its own (partitions assigned, no consumer group), so it
never moves any group's offsets. ``replay`` publishes each selected record to the topic
it came from (``__connect.errors.topic``) or to ``--to``: the record as it is in the DLQ,
its headers kept, so a dispatcher reads it as a replay of the source the dead letter
names, with a fresh attempt budget (see docs/operations.md). Each replayed record is
marked in a replay log in S3 (``--replay-log``, default ``<CSEP_SPEC_STORE>/dlq-replays``),
written after Kafka acknowledged the copy: a second ``replay`` of the same selection
publishes nothing. A record cut down to a minimal dead letter (its value truncated) is
not replayed: its value is not the original message any more.

Kafka: ``--bootstrap-servers`` or ``CSEP_KAFKA__BOOTSTRAP_SERVERS``; the DLQ topic:
``--topic`` or ``CSEP_KAFKA__DLQ_TOPIC`` (default ``cts-jobs-dlq``), the names the
dispatcher's configuration uses. S3 (specs, results, the replay log) as for the runner:
``CSEP_S3_ENDPOINT_URL``, ``AWS_*``.
"""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import os
import re
import sys
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

import attrs
import yaml

from common.convert import StructureError, converter, structure
from dispatcher import dlq

DEFAULT_TOPIC = "cts-jobs-dlq"
#: Header a replayed copy carries: the dead letter it copies (``topic/partition/offset``).
REPLAY_OF_HEADER = "__csep.replay.of"
TRUNCATED_HEADER = "__csep.errors.value.truncated"
REPLAY_LOG_NAME = "dlq-replays"


class DlqToolError(Exception):
    """A request the tool cannot serve (no such topic, record, bad option); one line."""


# -- one dead letter --------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Context:
    """What a dead letter's headers say (``dispatcher.dlq``); absent headers are None."""

    topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    error_class: str | None = None
    reason: str | None = None
    trace: str | None = None
    spec_uri: str | None = None
    attempts: int | None = None
    exit_code: int | None = None
    source: str | None = None
    record_index: int | None = None
    truncated_bytes: int | None = None


_HEADER_FIELDS = {
    "__connect.errors.topic": "topic",
    "__connect.errors.partition": "partition",
    "__connect.errors.offset": "offset",
    "__connect.errors.exception.class.name": "error_class",
    "__connect.errors.exception.message": "reason",
    "__connect.errors.exception.stacktrace": "trace",
    "__csep.errors.spec.uri": "spec_uri",
    "__csep.errors.attempts": "attempts",
    "__csep.errors.exit.code": "exit_code",
    dlq.SOURCE_HEADER: "source",
    dlq.RECORD_HEADER: "record_index",
    TRUNCATED_HEADER: "truncated_bytes",
}


def _whole_number(value: Any, _: type) -> int:
    # Headers are text: a number arrives as its decimal digits.
    if not isinstance(value, str) or not re.fullmatch(r"-?\d{1,19}", value.strip()):
        raise ValueError(f"expected a whole number, got {str(value)[:40]!r}")
    return int(value)


_CONVERTER = converter()
_CONVERTER.register_structure_hook(int, _whole_number)
_CONTEXT_TYPES = {a.name: a.type for a in attrs.fields(attrs.resolve_types(Context))
                  if a.type is not None}


def parse_context(headers: Iterable[tuple[str, bytes]]) -> tuple[Context, tuple[str, ...]]:
    """The context of a dead letter's headers, and one line per header that could not be
    read (not UTF-8, not a number): that field is then left out, never guessed."""
    values: dict[str, Any] = {}
    problems = []
    for name, raw in headers:
        field = _HEADER_FIELDS.get(name)
        if field is None:
            continue
        try:
            text = bytes(raw or b"").decode("utf-8")
            values[field] = _CONVERTER.structure(text, _CONTEXT_TYPES[field])
        except (UnicodeDecodeError, ValueError, TypeError) as error:
            problems.append(f"header {name}: {error}")
    return Context(**values), tuple(problems)


@attrs.frozen(kw_only=True)
class DeadLetter:
    """One record of the DLQ topic, at ``topic/partition/offset``, dead-lettered at ``time``."""

    topic: str
    partition: int
    offset: int
    time: datetime
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...]
    context: Context
    #: The value's JSON object, when it is one (the original message with error_dlq added).
    message: dict[str, Any] | None
    problems: tuple[str, ...] = ()

    @property
    def ref(self) -> str:
        return f"{self.partition}:{self.offset}"

    @property
    def source(self) -> str:
        """``cts`` or ``s3`` as the headers say (older records: guessed from the value),
        ``?`` when neither tells."""
        if self.context.source:
            return self.context.source
        if self.message is not None:
            if "Records" in self.message:
                return "s3"
            if "job_id" in self.message:
                return "cts"
        return "?"

    @property
    def job_id(self) -> str | None:
        """The CTS job id, or an S3 event's ``s3-...`` job id (from its spec URI)."""
        if self.message is not None and isinstance(self.message.get("job_id"), str):
            return self.message["job_id"]
        if self.context.spec_uri:
            parts = self.context.spec_uri.split("/")
            if len(parts) >= 3 and parts[-1] == "spec.yaml":
                return urllib.parse.unquote(parts[-3])
        return None

    @property
    def object_uri(self) -> str | None:
        """An S3 event's object, ``s3://bucket/key`` (key decoded), when the value has it."""
        records = self.message.get("Records") if self.message is not None else None
        if not isinstance(records, list) or not records or not isinstance(records[0], dict):
            return None
        s3 = records[0].get("s3")
        if not isinstance(s3, dict):
            return None
        try:
            bucket, key = s3["bucket"]["name"], s3["object"]["key"]
        except (KeyError, TypeError):
            return None
        if not isinstance(bucket, str) or not isinstance(key, str):
            return None
        more = f" (+{len(records) - 1} more)" if len(records) > 1 else ""
        return f"s3://{bucket}/{urllib.parse.unquote_plus(key)}{more}"

    @property
    def subject(self) -> str:
        """What the event was about, for a table: the job id, else the object."""
        if self.source == "s3":
            return self.object_uri or self.job_id or "-"
        return self.job_id or self.object_uri or "-"

    @property
    def reason(self) -> str:
        return self._header_or_field(self.context.reason, "error_dlq")

    @property
    def trace(self) -> str:
        return self._header_or_field(self.context.trace, "error_dlq_trace")

    def _header_or_field(self, header: str | None, field: str) -> str:
        """The header's text, else the message's ``field`` when it is a string, else ""."""
        if header:
            return header
        value = self.message.get(field) if self.message is not None else None
        return value if isinstance(value, str) else ""

    @property
    def truncated(self) -> bool:
        return self.context.truncated_bytes is not None


def parse_record(record: Any) -> DeadLetter:
    """A Kafka ``ConsumerRecord`` of the DLQ topic as a :class:`DeadLetter`. Never raises
    for what the record holds: a value that is not JSON (or not an object) is kept as
    bytes with ``message`` None, an unreadable header is left out and named in
    ``problems``."""
    context, problems = parse_context(record.headers or ())
    value = record.value if record.value is not None else b""
    try:
        message = json.loads(value)
    except (UnicodeDecodeError, ValueError, RecursionError):
        message = None
    return DeadLetter(
        topic=record.topic, partition=record.partition, offset=record.offset,
        time=datetime.fromtimestamp(record.timestamp / 1000, timezone.utc),
        key=record.key, value=value, headers=tuple(record.headers or ()), context=context,
        message=message if isinstance(message, dict) else None, problems=problems)


# -- choosing dead letters ----------------------------------------------------------------


_AGE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_time(text: str, now: datetime) -> datetime:
    """``text`` as an instant: ISO 8601 (UTC when it has no offset) or an age before
    ``now`` (``90m``, ``6h``, ``2d``). Raises DlqToolError."""
    if match := _AGE.match(text.strip()):
        return now - timedelta(**{_UNITS[match[2]]: float(match[1])})
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise DlqToolError(f"{text!r} is neither an ISO 8601 time nor an age such as 90m, "
                           "6h or 2d") from None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


@attrs.frozen(kw_only=True)
class Selection:
    """Which dead letters a command works on: each non-empty filter must hold."""

    error_classes: tuple[str, ...] = ()
    importers: tuple[str, ...] = ()
    jobs: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    since: datetime | None = None
    until: datetime | None = None

    @property
    def needs_importer(self) -> bool:
        return bool(self.importers)

    @property
    def empty(self) -> bool:
        return self == Selection()

    def matches(self, letter: DeadLetter, importer: str | None = None) -> bool:
        """Whether ``letter`` (whose spec names ``importer``, if known) is selected."""
        if self.error_classes and letter.context.error_class not in self.error_classes:
            return False
        if self.importers and importer not in self.importers:
            return False
        if self.sources and letter.source not in self.sources:
            return False
        if self.jobs and not ({letter.job_id, letter.object_uri} & set(self.jobs)):
            return False
        if self.since is not None and letter.time < self.since:
            return False
        if self.until is not None and letter.time > self.until:
            return False
        return True


class Importers:
    """The importer of each dead letter, read from its spec (one read per spec)."""

    def __init__(self, read_text: Callable[[str], str] | None) -> None:
        self.read_text = read_text
        self._known: dict[str, str | None] = {}
        #: Why a spec could not be read, by URI (shown once, on stderr).
        self.failures: dict[str, str] = {}

    def of(self, letter: DeadLetter) -> str | None:
        """The importer's name; None when no import was tried (no spec) or the spec
        cannot be read (then :attr:`failures` says why)."""
        uri = letter.context.spec_uri
        if uri is None or self.read_text is None:
            return None
        if uri not in self._known:
            self._known[uri] = None
            try:
                spec = yaml.safe_load(self.read_text(uri))
                self._known[uri] = spec["importer"]["name"]
            except Exception as error:  # noqa: BLE001 - shown, and the column stays empty
                self.failures[uri] = f"{type(error).__name__}: {str(error)[:200]}"
        return self._known[uri]


def select(letters: Iterable[DeadLetter], selection: Selection,
           importers: Importers) -> Iterator[tuple[DeadLetter, str | None]]:
    """The selected dead letters, each with its importer (None: unknown)."""
    for letter in letters:
        importer = importers.of(letter)
        if selection.matches(letter, importer):
            yield letter, importer


# -- reading the topic --------------------------------------------------------------------


def read_topic(consumer, topic: str, since: datetime | None = None,
               timeout: float = 60.0) -> Iterator[DeadLetter]:
    """Every record of ``topic`` present when the call starts (from ``since`` on, when
    given), partition by partition in offset order, through ``consumer``: a kafka-python
    ``KafkaConsumer`` without a group, whose partitions this assigns. Raises DlqToolError
    for a topic that does not exist or a read that has not reached the end in ``timeout``."""
    from kafka import TopicPartition

    partitions = consumer.partitions_for_topic(topic)
    if not partitions:
        raise DlqToolError(f"no topic {topic!r} on the Kafka cluster")
    assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
    consumer.assign(assigned)
    ends = consumer.end_offsets(assigned)
    starts = consumer.offsets_for_times(
        {tp: int(since.timestamp() * 1000) for tp in assigned}) if since else {}
    for tp in assigned:
        found = starts.get(tp)
        if since is None:
            consumer.seek_to_beginning(tp)
        else:
            consumer.seek(tp, found.offset if found is not None else ends[tp])
    remaining = {tp for tp in assigned if consumer.position(tp) < ends[tp]}
    deadline = time.monotonic() + timeout
    while remaining:
        if time.monotonic() > deadline:
            raise DlqToolError(f"reading {topic!r} did not reach its end in {timeout:.0f}s "
                               f"(partitions left: {sorted(tp.partition for tp in remaining)})")
        for tp, records in consumer.poll(timeout_ms=500).items():
            for record in records:
                if record.offset < ends[tp]:
                    yield parse_record(record)
        remaining = {tp for tp in remaining if consumer.position(tp) < ends[tp]}


def read_one(consumer, topic: str, partition: int, offset: int,
             timeout: float = 30.0) -> DeadLetter:
    """The record at ``topic/partition/offset``. Raises DlqToolError if there is none."""
    from kafka import TopicPartition

    tp = TopicPartition(topic, partition)
    if partition not in (consumer.partitions_for_topic(topic) or ()):
        raise DlqToolError(f"no partition {partition} of topic {topic!r}")
    consumer.assign([tp])
    end = consumer.end_offsets([tp])[tp]
    if not 0 <= offset < end:
        raise DlqToolError(f"no record at {topic}/{partition}:{offset} (offsets end at {end})")
    consumer.seek(tp, offset)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for record in consumer.poll(timeout_ms=500).get(tp, []):
            if record.offset == offset:
                return parse_record(record)
            if record.offset > offset:
                break
        if consumer.position(tp) > offset:
            break
    raise DlqToolError(f"no record at {topic}/{partition}:{offset} (deleted by retention "
                       "or compaction?)")


# -- replays ------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class ReplayMark:
    """A replay log entry: the dead letter ``dlq_topic/partition/offset`` was copied to
    ``topic/to_partition:to_offset`` at ``replayed_at``."""

    dlq_topic: str
    partition: int
    offset: int
    dead_lettered_at: datetime
    subject: str
    topic: str
    to_partition: int
    to_offset: int
    replayed_at: datetime
    replayed_by: str


_MARKS = converter()


class ReplayLog:
    """Replay marks in S3, one object per dead letter:
    ``<base>/<dlq topic>/<partition>/<offset>.yaml``, written once (a conditional put)."""

    def __init__(self, base: str, client) -> None:
        from contract.store import SpecStore

        # SpecStore's reading and conditional writing of text objects, not its layout.
        self.store = SpecStore(base, client)

    def uri(self, letter: DeadLetter) -> str:
        return (f"{self.store.base}/{urllib.parse.quote(letter.topic, safe='')}/"
                f"{letter.partition}/{letter.offset}.yaml")

    def find(self, letter: DeadLetter) -> ReplayMark | None:
        from botocore.exceptions import ClientError

        try:
            text = self.store.read_text(self.uri(letter))
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise
        try:
            return structure(yaml.safe_load(text), ReplayMark, _MARKS)
        except (StructureError, yaml.YAMLError) as error:
            raise DlqToolError(f"the replay mark {self.uri(letter)} is unreadable ({error}): "
                               "remove it to replay that record") from error

    def record(self, mark: ReplayMark, letter: DeadLetter) -> bool:
        """Write ``mark``; False when a mark was there already (another replay's)."""
        return self.store.write_text_if_absent(
            self.uri(letter), yaml.safe_dump(_MARKS.unstructure(mark), sort_keys=False))


@attrs.frozen
class Replayed:
    """What ``replay`` did with one selected dead letter."""

    letter: DeadLetter
    action: str          # published, would publish, skipped
    detail: str


def replay_headers(letter: DeadLetter) -> list[tuple[str, bytes]]:
    """The copy's headers: the dead letter's (they make it a replay for the dispatcher:
    ``dispatcher.dlq.is_replay`` and ``source_of``), plus the dead letter it copies."""
    kept = [(name, value) for name, value in letter.headers if name != REPLAY_OF_HEADER]
    return [*kept, (REPLAY_OF_HEADER,
                    f"{letter.topic}/{letter.partition}/{letter.offset}".encode())]


def replay(letters: Sequence[DeadLetter], *, producer, log: ReplayLog, to: str | None,
           dry_run: bool, timeout: float = 30.0,
           clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)
           ) -> Iterator[Replayed]:
    """Publish each of ``letters`` (and only those) to ``to`` or the topic it came from,
    unless the replay log has it; record each publication in the log once Kafka
    acknowledged it. ``dry_run``: publish and record nothing, say what would be done.
    Stops with DlqToolError (naming what was done) if Kafka or S3 fails."""
    user = _user()
    for letter in letters:
        target = to or letter.context.topic
        if target is None:
            yield Replayed(letter, "skipped", "no source topic header: give --to TOPIC")
            continue
        if target == letter.topic:
            # A dead letter of a dispatcher that replayed this very topic: back into it,
            # the copy would only be read by this tool again.
            yield Replayed(letter, "skipped", f"its source is {target}, the DLQ topic itself: "
                           "give --to TOPIC (the topic of the original event)")
            continue
        if letter.truncated:
            yield Replayed(letter, "skipped", (
                f"minimal dead letter (value cut from {letter.context.truncated_bytes} bytes):"
                f" replay the original, {letter.context.topic}/{letter.context.partition}:"
                f"{letter.context.offset}, instead"))
            continue
        mark = log.find(letter)
        if mark is not None:
            yield Replayed(letter, "skipped", f"replayed already, {mark.replayed_at.isoformat()}"
                           f" to {mark.topic}/{mark.to_partition}:{mark.to_offset}")
            continue
        if dry_run:
            yield Replayed(letter, "would publish", f"to {target}")
            continue
        try:
            sent = producer.send(target, key=letter.key, value=letter.value,
                                 headers=replay_headers(letter)).get(timeout=timeout)
        except Exception as error:
            raise DlqToolError(f"publishing {letter.topic}/{letter.ref} to {target!r} failed: "
                               f"{type(error).__name__}: {error}") from error
        mark = ReplayMark(dlq_topic=letter.topic, partition=letter.partition,
                          offset=letter.offset, dead_lettered_at=letter.time,
                          subject=letter.subject, topic=target, to_partition=sent.partition,
                          to_offset=sent.offset, replayed_at=clock(), replayed_by=user)
        try:
            log.record(mark, letter)
        except Exception as error:
            raise DlqToolError(
                f"{letter.topic}/{letter.ref} was published to {target}/{sent.partition}:"
                f"{sent.offset} but could not be marked in {log.uri(letter)} "
                f"({type(error).__name__}: {error}): a second replay would publish it again"
            ) from error
        yield Replayed(letter, "published", f"to {target}/{sent.partition}:{sent.offset}")


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no login name in a container: still a mark
        return "unknown"


# -- output -------------------------------------------------------------------------------


COLUMNS = ("TIME", "RECORD", "SOURCE", "JOB / OBJECT", "IMPORTER", "ERROR CLASS", "REASON",
           "ATTEMPTS", "SPEC")
_WIDTHS = {"JOB / OBJECT": 48, "REASON": 70, "ERROR CLASS": 24, "IMPORTER": 28}


def one_line(text: str, width: int) -> str:
    """``text`` on one line, at most ``width`` characters (cut with an ellipsis)."""
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[:width - 1] + "…"


def row(letter: DeadLetter, importer: str | None) -> tuple[str, ...]:
    context = letter.context
    return (letter.time.strftime("%Y-%m-%d %H:%M:%S"), letter.ref, letter.source,
            letter.subject, importer or "-", context.error_class or "-",
            letter.reason or "-", "-" if context.attempts is None else str(context.attempts),
            context.spec_uri or "-")


def table(rows: Sequence[Sequence[str]], header: Sequence[str] = COLUMNS) -> str:
    """Columns aligned; long cells cut to the column's limit."""
    cells = [[one_line(c, _WIDTHS.get(h, 200)) for h, c in zip(header, r, strict=True)]
             for r in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(header)]
    lines = [header, *cells]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
                     for line in lines) + "\n"


def stats(selected: Iterable[tuple[DeadLetter, str | None]]) -> str:
    """Counts by error class, by importer, and by both."""
    by_both = Counter((letter.context.error_class or "-", importer or "-")
                      for letter, importer in selected)
    by_class: Counter[str] = Counter()
    by_importer: Counter[str] = Counter()
    for (error_class, importer), count in by_both.items():
        by_class[error_class] += count
        by_importer[importer] += count
    parts = [f"{sum(by_both.values())} dead letter(s)\n"]
    for title, counts in (("ERROR CLASS", by_class), ("IMPORTER", by_importer)):
        parts.append(table([(k, str(v)) for k, v in counts.most_common()], (title, "COUNT")))
    parts.append(table([(c, i, str(v)) for (c, i), v in by_both.most_common()],
                       ("ERROR CLASS", "IMPORTER", "COUNT")))
    return "\n".join(parts)


def describe(letter: DeadLetter, importer: str | None) -> str:
    """One dead letter whole: coordinates, headers, key, value, reason and trace."""
    lines = [f"record:      {letter.topic}/{letter.ref}",
             f"time:        {letter.time.isoformat()}",
             f"source:      {letter.source}",
             f"job/object:  {letter.subject}",
             f"importer:    {importer or '-'}",
             f"error class: {letter.context.error_class or '-'}",
             f"reason:      {letter.reason or '-'}",
             "headers:"]
    for name, value in letter.headers:
        text = value.decode("utf-8", "replace") if value is not None else ""
        if name == "__connect.errors.exception.stacktrace":
            text = f"({len(text)} characters, below)"
        lines.append(f"  {name}: {text}")
    lines += [f"  ! {problem}" for problem in letter.problems]
    lines.append(f"key:         {letter.key!r}")
    if letter.message is not None:
        shown = {k: v for k, v in letter.message.items() if k != "error_dlq_trace"}
        lines.append("value (JSON):")
        lines += ["  " + line for line in json.dumps(shown, indent=2,
                                                      ensure_ascii=False).splitlines()]
    else:
        lines.append(f"value ({len(letter.value)} bytes, not a JSON object): "
                     f"{letter.value[:2000]!r}")
    lines.append("trace:")
    lines += ["  " + line for line in (letter.trace or "-").splitlines()]
    return "\n".join(lines) + "\n"


def audit(read_text: Callable[[str], str], files: Callable[[str], list[str]],
          spec_uri: str) -> str:
    """The spec and the files beside it (attempt claims, results), as YAML documents."""
    parts = []
    for uri in [spec_uri, *(u for u in files(spec_uri) if u != spec_uri)]:
        try:
            parts.append(f"# {uri}\n{read_text(uri)}")
        except Exception as error:  # noqa: BLE001 - one unreadable file hides nothing else
            parts.append(f"# {uri}: could not be read ({type(error).__name__}: {error})\n")
    return "---\n".join(parts)


# -- the command --------------------------------------------------------------------------


def _filters(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("filters (repeat one for any of its values)")
    group.add_argument("--error-class", action="append", default=[], metavar="CLASS")
    group.add_argument("--importer", action="append", default=[], metavar="NAME",
                       help="the importer of the record's spec (read from S3)")
    group.add_argument("--job", action="append", default=[], metavar="ID",
                       help="a CTS job id, an S3 event's s3-... job id or s3:// object")
    group.add_argument("--source", action="append", default=[], choices=["cts", "s3"])
    group.add_argument("--since", metavar="TIME", help="ISO 8601 (UTC by default) or an "
                       "age: 90m, 6h, 2d")
    group.add_argument("--until", metavar="TIME")


def selection_of(args: argparse.Namespace, now: datetime) -> Selection:
    return Selection(
        error_classes=tuple(args.error_class), importers=tuple(args.importer),
        jobs=tuple(args.job), sources=tuple(args.source),
        since=parse_time(args.since, now) if args.since else None,
        until=parse_time(args.until, now) if args.until else None)


def _ref(text: str) -> tuple[int, int]:
    partition, _, offset = text.rpartition(":")
    try:
        return int(partition or 0), int(offset)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected PARTITION:OFFSET as list prints it, e.g. 0:17") from None


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(prog="csep-dlq", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    main.add_argument("--bootstrap-servers", help="default: CSEP_KAFKA__BOOTSTRAP_SERVERS")
    main.add_argument("--topic", help=f"the DLQ topic; default: CSEP_KAFKA__DLQ_TOPIC or "
                      f"{DEFAULT_TOPIC}")
    main.add_argument("--timeout", type=float, default=60.0,
                      help="seconds to read the topic to its end (default 60)")
    commands = main.add_subparsers(dest="command", required=True)
    _filters(commands.add_parser("list", help="one line per dead letter"))
    _filters(commands.add_parser("stats", help="counts by error class and importer"))
    show = commands.add_parser("show", help="one dead letter whole, with its spec and results")
    show.add_argument("record", type=_ref, metavar="PARTITION:OFFSET")
    again = commands.add_parser("replay", help="publish the selected dead letters again")
    _filters(again)
    again.add_argument("--to", metavar="TOPIC", help="default: the topic each came from")
    again.add_argument("--dry-run", action="store_true", help="say what would be published")
    again.add_argument("--all", action="store_true",
                       help="allow a replay without any filter (the whole topic)")
    again.add_argument("--replay-log", metavar="S3_URI", help="default: CSEP_DLQ_REPLAY_LOG,"
                       f" else <CSEP_SPEC_STORE>/{REPLAY_LOG_NAME}")
    return main


def replay_log_uri(args: argparse.Namespace, environ: Mapping[str, str]) -> str:
    if args.replay_log or environ.get("CSEP_DLQ_REPLAY_LOG"):
        return args.replay_log or environ["CSEP_DLQ_REPLAY_LOG"]
    if environ.get("CSEP_SPEC_STORE"):
        return environ["CSEP_SPEC_STORE"].rstrip("/") + "/" + REPLAY_LOG_NAME
    raise DlqToolError("replay needs a replay log: --replay-log s3://bucket/prefix, "
                       "CSEP_DLQ_REPLAY_LOG or CSEP_SPEC_STORE")


def main(argv: list[str] | None = None, environ: Mapping[str, str] = os.environ,
         out=None) -> int:
    """Exit status 0; 2 for a bad command line or a request that cannot be served (no
    such topic or record, Kafka or S3 failing: the line on stderr says what was done)."""
    out = out or sys.stdout
    args = parser().parse_args(argv)
    # kafka-python warns of every reconnection; the tool's own errors say what matters.
    logging.getLogger("kafka").setLevel(logging.ERROR)
    from botocore.exceptions import BotoCoreError, ClientError
    from kafka.errors import KafkaError

    try:
        return _run(args, environ, out)
    except DlqToolError as error:
        print(f"csep-dlq: {error}", file=sys.stderr)
    except KafkaError as error:
        print(f"csep-dlq: Kafka: {type(error).__name__}: {error}", file=sys.stderr)
    except (BotoCoreError, ClientError) as error:  # the replay log, a spec for show
        print(f"csep-dlq: S3: {type(error).__name__}: {error}", file=sys.stderr)
    return 2


def _run(args: argparse.Namespace, environ: Mapping[str, str], out) -> int:
    from kafka import KafkaConsumer

    from common.s3 import s3_client

    bootstrap = args.bootstrap_servers or environ.get("CSEP_KAFKA__BOOTSTRAP_SERVERS")
    if not bootstrap:
        raise DlqToolError("give --bootstrap-servers or set CSEP_KAFKA__BOOTSTRAP_SERVERS")
    topic = args.topic or environ.get("CSEP_KAFKA__DLQ_TOPIC") or DEFAULT_TOPIC
    now = datetime.now(timezone.utc)
    selection = None if args.command == "show" else selection_of(args, now)
    if args.command == "replay" and selection is not None and selection.empty and not args.all:
        raise DlqToolError("replay without a filter would publish the whole DLQ topic: "
                           "give filters, or --all")
    client = s3_client(environ, timeout_seconds=10, max_attempts=2)
    from contract.store import SpecStore

    def read_text(uri: str) -> str:
        return SpecStore(uri.rsplit("/", 1)[0], client).read_text(uri)

    importers = Importers(read_text)
    # No group: nothing is committed anywhere; the records are only read.
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                             enable_auto_commit=False, client_id="csep-dlq",
                             request_timeout_ms=30000)
    try:
        if args.command == "show":
            partition, offset = args.record
            letter = read_one(consumer, topic, partition, offset, timeout=args.timeout)
            out.write(describe(letter, importers.of(letter)))
            if letter.context.spec_uri:
                store = SpecStore(letter.context.spec_uri.rsplit("/", 1)[0], client)
                out.write(f"\naudit (csep-audit show {letter.context.spec_uri}):\n")
                out.write(audit(read_text, store.files, letter.context.spec_uri))
            _warn(importers)
            return 0
        assert selection is not None  # every command but show has one
        letters = read_topic(consumer, topic, selection.since, args.timeout)
        selected = list(select(letters, selection, importers))
    finally:
        consumer.close()
    _warn(importers)
    if args.command == "list":
        out.write(table([row(letter, importer) for letter, importer in selected]))
        return 0
    if args.command == "stats":
        out.write(stats(selected))
        return 0
    return _replay(args, environ, out, client, [letter for letter, _ in selected], bootstrap)


def _replay(args, environ, out, client, letters: list[DeadLetter], bootstrap: str) -> int:
    from kafka import KafkaProducer

    log = ReplayLog(replay_log_uri(args, environ), client)
    producer = None if args.dry_run else KafkaProducer(
        bootstrap_servers=bootstrap, acks="all", retries=5, client_id="csep-dlq",
        max_block_ms=30000)
    done: Counter[str] = Counter()
    try:
        for outcome in replay(letters, producer=producer, log=log, to=args.to,
                              dry_run=args.dry_run, timeout=args.timeout):
            done[outcome.action] += 1
            out.write(f"{outcome.letter.ref}\t{outcome.letter.subject}\t{outcome.action}\t"
                      f"{outcome.detail}\n")
    finally:
        if producer is not None:
            producer.close(timeout=10)
    summary = ", ".join(f"{count} {action}" for action, count in sorted(done.items()))
    out.write(f"{len(letters)} selected: {summary or 'nothing to do'}\n")
    return 0


def _warn(importers: Importers) -> None:
    for uri, why in importers.failures.items():
        print(f"csep-dlq: could not read the spec {uri} ({why}): its importer is unknown",
              file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
