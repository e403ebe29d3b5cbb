"""The dispatcher's configuration: one YAML file plus ``CSEP_*`` environment overrides.

Every key of the file can be overridden by an environment variable named after its path,
upper-case, with ``__`` between levels: ``kafka.bootstrap_servers`` is
``CSEP_KAFKA__BOOTSTRAP_SERVERS``. Values from the environment are parsed as YAML scalars
or flow collections (``4``, ``true``, ``[A, B]``), so they are typed like the file's.

The CTS admin token is never in the file: it comes from ``CSEP_CTS_TOKEN`` only.
Credentials for S3 come from boto3's usual chain (``AWS_ACCESS_KEY_ID``...), not from here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import attrs
import yaml

from common.convert import StructureError, converter, positive, structure
from dispatcher.launch import (
    DEFAULT_KIND,
    KIND_MODULES,
    Launcher,
    UnknownLauncherKind,
    launcher_kind,
)

ENV_PREFIX = "CSEP_"
TOKEN_VARIABLE = "CSEP_CTS_TOKEN"


class ConfigError(ValueError):
    """The configuration is unusable; the message is one line naming the setting."""


@attrs.frozen
class KafkaSettings:
    bootstrap_servers: str
    group_id: str = "cdm-spark-events"
    topic: str = "cts-jobs"
    dlq_topic: str = "cts-jobs-dlq"
    #: A topic of S3 event notifications (object created...), consumed beside ``topic``
    #: by the same group; none: the dispatcher takes CTS events only.
    s3_topic: str | None = None
    #: Larger message values are not parsed: they go to the DLQ as "oversized".
    max_message_bytes: int = attrs.field(default=65536, validator=positive)
    #: Deadline of each blocking Kafka call: a commit, end offsets, a DLQ publish.
    call_timeout_seconds: float = attrs.field(default=10.0, validator=positive)
    #: The group evicts a consumer that does not poll within this; it must exceed the
    #: bound of one turn of the loop (see ``Config.turn_bound_seconds``).
    max_poll_interval_ms: int = attrs.field(default=300_000, validator=positive)
    #: A consumer silent this long is taken out of the group (its partitions move).
    session_timeout_ms: int = attrs.field(default=45_000, validator=positive)
    #: Static group membership: a dispatcher restarted with the same id takes its
    #: partitions back at once, without a rebalance (e.g. a StatefulSet pod's name).
    #: Only with an eager ``assignor`` (``range``, ``roundrobin``): see Config.
    group_instance_id: str | None = None
    #: How partitions are shared in the group. ``cooperative-sticky`` moves only the
    #: partitions that must move when a dispatcher joins or leaves: the others' runners
    #: keep working. ``range``/``roundrobin`` revoke everything at each rebalance.
    assignor: Literal["cooperative-sticky", "range", "roundrobin"] = "cooperative-sticky"


@attrs.frozen
class CtsSettings:
    url: str
    #: Total deadline of one CTS request, connection and body included.
    timeout_seconds: float = attrs.field(default=10.0, validator=positive)


@attrs.frozen
class RetrySettings:
    """Defaults for runner attempts; an importer's YAML may override ``max_attempts``."""

    max_attempts: int = attrs.field(default=3, validator=positive)
    max_elapsed_seconds: float = attrs.field(default=6 * 3600.0, validator=positive)
    initial_backoff_seconds: float = attrs.field(default=5.0, validator=positive)
    max_backoff_seconds: float = attrs.field(default=300.0, validator=positive)
    jitter_seconds: float = attrs.field(default=2.0)


@attrs.frozen
class DeadLetterStreakSettings:
    """Stop the bleeding: after ``limit`` events of one importer in a row end in the DLQ
    (or ``all_limit`` events of any kind), stop taking that importer's events (all
    events) and report unhealthy; ``action`` ``exit`` then drains and exits with status
    70 for the supervisor, ``wait`` holds the events until an operator restarts the
    dispatcher. ``None`` turns a limit off."""

    limit: int | None = attrs.field(default=20, validator=positive)
    all_limit: int | None = attrs.field(default=None, validator=positive)
    action: Literal["exit", "wait"] = "exit"


@attrs.frozen
class LauncherConfig:
    """``launcher``: the kind of launcher that starts runners, and its settings.

    In the file, ``launcher.kind`` names the kind and ``launcher.<kind>`` holds its
    settings, whose class the kind's own module declares (:mod:`dispatcher.launch`);
    the sections of the other kinds are allowed (a file may keep them) but not read.
    """

    kind: str
    #: An instance of the kind's settings class (``launcher_kind(kind).settings``).
    settings: Any

    def __attrs_post_init__(self) -> None:
        expected = launcher_kind(self.kind).settings
        if not isinstance(self.settings, expected):
            raise ValueError(f"launcher.{self.kind}: expected {expected.__name__} settings, "
                             f"got {type(self.settings).__name__}")

    @classmethod
    def default(cls) -> LauncherConfig:
        """The launcher of a configuration without a ``launcher`` section."""
        return cls(DEFAULT_KIND, launcher_kind(DEFAULT_KIND).settings())

    def make(self, environ: Mapping[str, str]) -> Launcher:
        """The launcher, its runners started from ``environ``."""
        launcher: Launcher = launcher_kind(self.kind).factory(self.settings, environ)
        return launcher


@attrs.frozen
class Config:
    kafka: KafkaSettings
    cts: CtsSettings
    #: ``s3://bucket/prefix`` under which specs and results are written.
    spec_store: str
    #: Importer directories, importer package directories or built-in sets (``@builtin``)
    #: added to ``CSEP_IMPORTER_DIRS`` (the runners see them too: see
    #: :func:`dispatcher.__main__.runner_environment`); the registry is what is named
    #: there, the built-in importers only when ``@builtin`` is (or nothing is named).
    registry_dirs: tuple[str, ...] = ()
    retry: RetrySettings = RetrySettings()
    dead_letter_streak: DeadLetterStreakSettings = DeadLetterStreakSettings()
    launcher: LauncherConfig = attrs.field(factory=LauncherConfig.default)
    #: Runners at once, across importers (each importer may set a lower limit).
    max_in_flight: int = attrs.field(default=4, validator=positive)
    #: Events held in memory at once (running, waiting for a runner slot or a retry);
    #: the consumer pauses its partitions when the buffer is full.
    max_buffered_events: int = attrs.field(default=256, validator=positive)
    #: Finished offsets a partition may hold uncommitted behind its oldest unfinished
    #: event before it pauses (a crash would read them again).
    max_uncommitted_span: int = attrs.field(default=10_000, validator=positive)
    #: How long an attempt's claim holds without renewal: a dispatcher that stops is
    #: taken over this long after its last renewal (renewed every third of it).
    attempt_lease_seconds: float = attrs.field(default=60.0, validator=positive)
    #: Time one turn of the loop spends moving events before it polls again.
    turn_budget_seconds: float = attrs.field(default=5.0, validator=positive)
    #: Deadline of each S3 request (connect and read) and attempts per call.
    s3_timeout_seconds: float = attrs.field(default=10.0, validator=positive)
    s3_max_attempts: int = attrs.field(default=2, validator=positive)
    shutdown_grace_seconds: float = attrs.field(default=60.0, validator=positive)
    #: How long the CTS, S3 or Kafka may keep failing before the dispatcher gives up.
    infrastructure_budget_seconds: float = attrs.field(default=300.0, validator=positive)
    metrics_port: int = 9400
    log_level: str = "INFO"
    #: Not from the file: ``CSEP_CTS_TOKEN``.
    cts_token: str = attrs.field(default="", repr=False)

    def __attrs_post_init__(self) -> None:
        if self.kafka.topic == self.kafka.dlq_topic:
            raise ValueError(f"kafka.dlq_topic must differ from kafka.topic "
                             f"({self.kafka.topic!r}): a failing replay would feed itself")
        if self.kafka.s3_topic in (self.kafka.topic, self.kafka.dlq_topic):
            raise ValueError(f"kafka.s3_topic must differ from kafka.topic and kafka.dlq_topic "
                             f"({self.kafka.s3_topic!r}): each topic is read as one source")
        if not self.spec_store.startswith("s3://"):
            raise ValueError(f"spec_store must be an s3:// URI, got {self.spec_store!r}")
        if self.kafka.group_instance_id and self.kafka.assignor == "cooperative-sticky":
            # A cooperative rebalance moves a partition in two rounds: its owner gives it
            # up, then rejoins so it can be assigned. A static member restarted between
            # the two rounds rejoins without a rebalance, and the partition is left with
            # no owner until the next one.
            raise ValueError(
                "kafka.group_instance_id (static membership) needs kafka.assignor range or "
                "roundrobin: with cooperative-sticky, a dispatcher restarted during a "
                "rebalance can leave a partition assigned to no one")
        if self.kafka.max_poll_interval_ms / 1000 < 2 * self.turn_bound_seconds:
            raise ValueError(
                f"kafka.max_poll_interval_ms ({self.kafka.max_poll_interval_ms}) must be at "
                f"least twice the loop's turn bound ({self.turn_bound_seconds:.0f}s)")

    @property
    def turn_bound_seconds(self) -> float:
        """The longest one turn of the loop can take: the poll, the step budget plus the
        one call that may overrun it, the commit and the lag query."""
        s3_call = 2 * self.s3_timeout_seconds * self.s3_max_attempts  # connect + read
        longest_call = max(self.cts.timeout_seconds, s3_call, self.kafka.call_timeout_seconds)
        return 0.5 + self.turn_budget_seconds + longest_call + 3 * self.kafka.call_timeout_seconds


_converter = converter()


def _apply_env(data: dict[str, Any], environ: Mapping[str, str]) -> None:
    sections = {field.name for field in attrs.fields(Config)} - {"cts_token"}
    for name, raw in environ.items():
        path = name[len(ENV_PREFIX):].lower().split("__")
        # Other CSEP_* variables (the runner's CSEP_S3_ENDPOINT_URL...) are not settings.
        if not name.startswith(ENV_PREFIX) or path[0] not in sections:
            continue
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError as error:
            raise ConfigError(f"{name}: not a valid value: {error}") from error
        target = data
        for part in path[:-1]:
            node = target.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{name}: {'.'.join(path[:-1])} is not a section")
            target = node
        target[path[-1]] = value


def load(path: str | Path | None, environ: Mapping[str, str] = os.environ) -> Config:
    """Read the YAML file at ``path`` (optional), apply ``CSEP_*`` overrides, validate.

    Raises :class:`ConfigError` with one line naming the offending setting.
    """
    data: Any = {}
    if path is not None:
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as error:
            raise ConfigError(f"config file {path}: {error}") from error
        if not isinstance(data, dict):
            raise ConfigError(f"config file {path}: expected a mapping at the top level")
    data = dict(data)
    if "cts_token" in data:
        raise ConfigError(f"cts_token must not be in a file: set {TOKEN_VARIABLE}")
    _apply_env(data, environ)
    data["cts_token"] = environ.get(TOKEN_VARIABLE, "")
    launcher = _launcher(data.pop("launcher", None))
    try:
        return attrs.evolve(structure(data, Config, _converter), launcher=launcher)
    except StructureError as error:
        raise ConfigError(f"invalid configuration: {error}") from error
    except ValueError as error:
        raise ConfigError(f"invalid configuration: {error}") from error


def _launcher(data: Any) -> LauncherConfig:
    """The ``launcher`` section: its ``kind`` (default ``subprocess``), and the section of
    that kind structured into the kind's settings class."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"invalid configuration: launcher: expected a mapping, got "
                          f"{type(data).__name__}")
    kind = data.get("kind", DEFAULT_KIND)
    known = ", ".join(sorted(KIND_MODULES))
    if not isinstance(kind, str):
        raise ConfigError(f"invalid configuration: launcher.kind: expected one of {known}, "
                          f"got {kind!r}")
    unexpected = sorted(set(data) - {"kind", *KIND_MODULES})
    if unexpected:
        raise ConfigError(f"invalid configuration: launcher: unexpected field(s) "
                          f"{', '.join(unexpected)} (besides kind, a section per launcher "
                          f"kind: {known})")
    try:
        entry = launcher_kind(kind)
    except UnknownLauncherKind as error:
        raise ConfigError(f"invalid configuration: {error}") from error
    try:
        settings = structure(data.get(kind) or {}, entry.settings, _converter,
                             at=f"launcher.{kind}")
    except StructureError as error:
        raise ConfigError(f"invalid configuration: {error}") from error
    except ValueError as error:
        raise ConfigError(f"invalid configuration: launcher.{kind}: {error}") from error
    return LauncherConfig(kind, settings)

