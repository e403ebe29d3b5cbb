"""``python -m runner.sandbox IMPORTER_YAML FILE...``: try an importer on local files.

The importer runs as the runner would run it, minus the services: a local Spark with
Delta, a warehouse directory with an embedded Derby metastore, and the FILEs served as
the job's outputs. Then it runs a second time on the same job, and every table is
compared with its state after the first run: an importer must leave the tables exactly
as they were when it imports the same job again (a redelivered event, a retry).

With ``--format iceberg`` (default: ``CSEP_TABLE_FORMAT``, else ``delta``) the session is
the ``iceberg`` table format's instead, with no Delta and no Hive: Iceberg's extensions
and the user's catalog as ``my`` (the default catalog) and ``sandbox``, a Hadoop catalog
in the warehouse's ``iceberg/`` directory (no catalog server). The commits reported are
the snapshots bearing the run's marker (:mod:`runner.snapshots`).

What the importer gets:

- ``job_info`` is built by :meth:`contract.spec.JobInfo.for_importer`, as in the runner:
  id ``sandbox-<random>``, the YAML's image, user ``sandbox`` (namespace ``u_sandbox__``;
  ``""`` on Iceberg, whose tables are in the user's own catalog),
  completion time now, and one output per FILE, ``sandbox/<job id>/<file name>``, with
  its CRC64/NVME checksum computed here. An S3 importer (``source: s3``) takes one FILE,
  the uploaded object: its ``job_info`` has ``source: s3`` and the ``object`` (bucket
  ``sandbox``, the key above, the size, the MD5 eTag a single-part upload gets, no
  version or sequencer) and no image.
- ``s3a://sandbox/...`` is served from the warehouse's ``s3/sandbox/`` directory, where the
  FILEs are copied: Hadoop's ``ViewFileSystemOverloadScheme`` takes over the ``s3a``
  scheme with a mount table whose fallback is that directory, so the importer's reads
  (``importers.delimited``, ``spark.read``) work unchanged. No other bucket exists.
- ``metadata`` is the YAML's ``importer_meta``.

The YAML is read by the registry's loader, which reads every ``*.yaml`` of its directory
(as the runner does for a directory of ``CSEP_IMPORTER_DIRS``): a problem in any of
them is reported. A YAML in an importer package (a directory with ``__init__.py``) is
loaded with its package, so ``py_module: pkg.module`` and the package's imports between
its modules work without ``PYTHONPATH``. ``CSEP_SPARK_JARS`` and ``CSEP_ICEBERG_JARS`` are
honoured (the Delta jar, the Iceberg runtime); the S3, metastore, catalog and master
settings of the environment are not: the sandbox is always local.

Exit status: 0 when both runs succeed and the second changed nothing; 1 when the second
run changed a table; 64 for an unusable YAML or FILE; for a failing run, the runner's
exit code for that failure (65 bad data, 70 an importer bug, 75 temporary). Any failure
ends with one line on stderr, ``sandbox: <reason>``.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import copy
import hashlib
import importlib
import json
import os
import shutil
import sys
import tempfile
import traceback
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from contract.result import DeltaCommit, ExitCode, IcebergSnapshot
from contract.spec import JobInfo, Output, S3Object, namespace_prefix
from registry import Registry, RegistryError
from registry.registry import ImporterEntry
from runner.commits import MarkedSpark, commits_marked
from runner.errors import importer_outcome
from runner.snapshots import snapshots_marked
from runner.spark import DEFAULT_CATALOG, TABLE_FORMATS, SparkSettings

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

USER = "sandbox"
BUCKET = "sandbox"
NOT_IDEMPOTENT = 1
#: Not a real image digest: the sandbox runs no image.
IMAGE_DIGEST = "sha256:" + "0" * 64
_CHUNK = 1 << 20


class SandboxError(Exception):
    """The sandbox cannot run or the import failed; ``exit_code`` is the process's status
    and the message is the one line printed for it."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@attrs.frozen
class Warehouse:
    """A directory holding everything of one sandbox: the managed tables, the Derby
    metastore, the FILEs laid out as ``s3/<bucket>/<key>``, and Derby's and Hive's files;
    on Iceberg, the Hadoop catalog's tables instead of the managed tables and metastore."""

    root: Path

    @property
    def s3(self) -> Path:
        return self.root / "s3"

    @property
    def iceberg(self) -> Path:
        """The Iceberg catalog's warehouse: ``<namespace>/<table>/{metadata,data}``."""
        return self.root / "iceberg"

    def spark_settings(self, jars: tuple[str, ...], table_format: str = "delta"
                       ) -> SparkSettings:
        """The runner's settings for a local session on this warehouse."""
        if table_format == "iceberg":
            return SparkSettings(master="local[*]", jars=jars, table_format="iceberg",
                                 iceberg_local_warehouse=self.iceberg.as_uri())
        metastore = self.root / "metastore_db"
        return SparkSettings(master="local[*]", jars=jars,
                             warehouse_dir=str(self.root / "tables"),
                             metastore_url=f"jdbc:derby:;databaseName={metastore};create=true")

    def spark_overrides(self, table_format: str = "delta") -> dict[str, str]:
        """Configuration on top of :meth:`SparkSettings.spark_conf`: ``s3a://`` served by
        this directory, and (for Delta) Derby's and Hive's files kept in it rather than
        the cwd."""
        overrides = {
            "spark.app.name": "cdm-spark-events-sandbox",
            "spark.hadoop.fs.s3a.impl": "org.apache.hadoop.fs.viewfs.ViewFileSystemOverloadScheme",
            # The mount table of s3a://<bucket> is named after the bucket (the authority);
            # its fallback serves every path of the bucket from the directory.
            f"spark.hadoop.fs.viewfs.mounttable.{BUCKET}.linkFallback":
                (self.s3 / BUCKET).as_uri(),
            # Hadoop caches a file system per scheme and bucket for the JVM's life: a
            # process that runs the sandbox again (on another warehouse) must not be
            # served the files of the first.
            "spark.hadoop.fs.s3a.impl.disable.cache": "true",
        }
        if table_format == "iceberg":
            # Spark's own session catalog, unused, still makes its directory at start.
            overrides["spark.sql.warehouse.dir"] = str(self.root / "spark-warehouse")
            return overrides
        return overrides | {
            "spark.driver.extraJavaOptions":
                f"-Dderby.stream.error.file={self.root / 'derby.log'}",
            "spark.hadoop.hive.exec.scratchdir": str(self.root / "hive-scratch"),
            "spark.hadoop.hive.exec.local.scratchdir": str(self.root / "hive-local-scratch"),
            "spark.hadoop.hive.downloaded.resources.dir": str(self.root / "hive-resources"),
        }


def crc64nvme(path: Path) -> str:
    """The file's CRC64/NVME, base64 of its 8 big-endian bytes, as S3 and the CTS record it."""
    from awscrt import checksums

    crc = 0
    with path.open("rb") as file:
        while chunk := file.read(_CHUNK):
            crc = checksums.crc64nvme(chunk, crc)
    return base64.b64encode(crc.to_bytes(8, "big")).decode()


def stage_outputs(files: Sequence[Path], warehouse: Warehouse, job_id: str) -> tuple[Output, ...]:
    """Copy each file to ``<warehouse>/s3/sandbox/<job_id>/<name>`` and return the job's
    outputs (``sandbox/<job_id>/<name>`` and the copy's checksum). Raises
    :class:`SandboxError` for a file that cannot be read or two files of the same name."""
    seen: dict[str, Path] = {}
    outputs = []
    for path in files:
        if not path.is_file():
            raise SandboxError(f"{path}: not a readable file", ExitCode.BAD_SPEC)
        if path.name in seen:
            raise SandboxError(f"{path} and {seen[path.name]} have the same name; the job's "
                               f"outputs are named after the files", ExitCode.BAD_SPEC)
        seen[path.name] = path
        key = f"{job_id}/{path.name}"
        target = warehouse.s3 / BUCKET / key
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            shutil.copyfile(path, target)
        except OSError as error:
            raise SandboxError(f"{path}: cannot be copied: {error}", ExitCode.BAD_SPEC) from error
        # The copy is what the importer reads, so its checksum is the one recorded.
        outputs.append(Output(file=f"{BUCKET}/{key}", crc64nvme=crc64nvme(target)))
    return tuple(outputs)


def sandbox_job(entry: ImporterEntry, outputs: tuple[Output, ...], job_id: str,
                warehouse: Warehouse | None = None, table_format: str = "delta") -> JobInfo:
    """The job the importer is given: the YAML's image, user ``sandbox``, done now; its
    namespace prefix is ``u_sandbox__``, or ``""`` on Iceberg (as the runner gives it).
    For an S3 importer, the one output is the object (its file staged in ``warehouse``).
    Raises :class:`SandboxError` when an S3 importer is given other than one file."""
    prefix = "" if table_format == "iceberg" else namespace_prefix(USER)
    if entry.s3 is None:
        return JobInfo(id=job_id, outputs=outputs, image=entry.image,
                       image_digest=IMAGE_DIGEST, input_file_count=0,
                       output_file_count=len(outputs), completion_time=datetime.now(UTC),
                       user=USER, namespace_prefix=prefix)
    if len(outputs) != 1:
        raise SandboxError(f"importer {entry.name} takes S3 objects: give one FILE, the "
                           f"uploaded object (got {len(outputs)})", ExitCode.BAD_SPEC)
    assert warehouse is not None  # an S3 importer's object is staged in the warehouse
    staged = warehouse.s3 / outputs[0].file
    digest = hashlib.md5(staged.read_bytes(), usedforsecurity=False).hexdigest()
    obj = S3Object(bucket=outputs[0].bucket, key=outputs[0].key,
                   size=staged.stat().st_size, etag=digest)
    return JobInfo(id=job_id, outputs=outputs, image=None, image_digest=None,
                   input_file_count=0, output_file_count=1, completion_time=datetime.now(UTC),
                   user=USER, namespace_prefix=prefix, object=obj)


def load_importer(path: Path) -> ImporterEntry:
    """The importer of ``path``, read and imported by the registry's loader. Raises
    :class:`SandboxError` with every problem the registry found, on one line."""
    if path.suffix != ".yaml" or not path.is_file():
        raise SandboxError(f"{path}: expected an importer file, *.yaml", ExitCode.BAD_SPEC)
    try:
        registry = Registry.load([path.parent], check="import")
    except RegistryError as error:
        raise SandboxError("; ".join(error.problems), ExitCode.BAD_SPEC) from error
    return next(e for e in registry.entries if e.source.resolve() == path.resolve())


@attrs.frozen
class TableState:
    """What the idempotence check compares: schema, row count and an order-independent
    fingerprint of the rows (so a row repeated counts twice), plus the Delta version or
    the Iceberg table's current snapshot id (None for a table of neither kind, or an
    Iceberg table without a snapshot), which is reported but not compared."""

    schema: tuple[tuple[str, str, bool], ...]
    rows: int
    fingerprint: str
    version: int | None

    def differences(self, before: TableState) -> list[str]:
        """How this state differs from ``before`` in content; empty when it does not."""
        found = []
        if self.schema != before.schema:
            found.append("schema changed")
        if self.rows != before.rows:
            found.append(f"{before.rows} -> {self.rows} rows")
        elif self.fingerprint != before.fingerprint:
            found.append(f"row contents changed ({self.rows} rows)")
        return found


def snapshot(spark: SparkSession, iceberg: bool = False) -> dict[str, TableState]:
    """The state of every table (not view) of every database of the session's catalog
    (on ``iceberg``, its default catalog, the user's: tables named ``namespace.table``)."""
    from pyspark.errors import AnalysisException
    from pyspark.sql import functions as F

    states = {}
    for database in spark.catalog.listDatabases():
        for table in spark.catalog.listTables(database.name):
            if table.isTemporary or table.tableType == "VIEW":
                continue
            name = f"{database.name}.{table.name}"
            frame = spark.table(_quoted(name))
            # to_json makes every type hashable (maps included); summing the hashes makes
            # the fingerprint independent of row order and sensitive to duplicates.
            totals = frame.agg(
                F.count(F.lit(1)),
                F.sum(F.xxhash64(F.to_json(F.struct(*[F.col(f"`{c}`") for c in frame.columns])))
                      .cast("decimal(38,0)"))).first()
            assert totals is not None  # an aggregate without GROUP BY has one row
            count, total = totals
            version = (_current_snapshot(spark, name) if iceberg
                       else _delta_version(spark, name, AnalysisException))
            states[name] = TableState(
                schema=tuple((f.name, f.dataType.simpleString(), f.nullable)
                             for f in frame.schema.fields),
                rows=count, fingerprint=str(total), version=version)
    return states


def _delta_version(spark: SparkSession, name: str,
                   not_delta: type[Exception]) -> int | None:
    try:
        latest = spark.sql(f"DESCRIBE HISTORY {_quoted(name)} LIMIT 1").first()
    except not_delta:
        return None
    assert latest is not None  # a Delta table has at least its version 0
    return int(latest.version)


def _current_snapshot(spark: SparkSession, name: str) -> int | None:
    """The id of the snapshot the table's ``main`` branch is at (None before its first)."""
    refs = _quoted(f"{DEFAULT_CATALOG}.{name}.refs")
    main = spark.sql(f"SELECT snapshot_id FROM {refs} WHERE name = 'main'").first()
    return None if main is None else int(main.snapshot_id)


def _quoted(name: str) -> str:
    return ".".join(f"`{part.replace('`', '``')}`" for part in name.split("."))


class _SandboxSpark:
    """One local session for both runs, started when the importer first asks for it; the
    catalog's state is taken then, before the importer can change it."""

    def __init__(self, settings: SparkSettings, overrides: Mapping[str, str]) -> None:
        self._settings = settings
        self.iceberg = settings.is_iceberg
        self._overrides = dict(overrides)
        self.session: SparkSession | None = None
        self.initial: dict[str, TableState] = {}

    def get_spark(self, *, executor_cores: int = 1) -> SparkSession:
        from pyspark.sql import SparkSession

        if self.session is None:
            builder = SparkSession.builder.master(self._settings.master)
            conf = {**self._settings.spark_conf(executor_cores, USER), **self._overrides}
            for key, value in conf.items():
                builder = builder.config(key, value)
            self.session = builder.getOrCreate()
            self.initial = snapshot(self.session, self.iceberg)
        return self.session

    def stop(self) -> None:
        if self.session is not None:
            self.session.stop()


@attrs.frozen
class RunOutcome:
    """One run of the importer: the tables' states after it and the commits it made
    (Delta's, or Iceberg's snapshots)."""

    states: dict[str, TableState]
    commits: tuple[DeltaCommit, ...] | tuple[IcebergSnapshot, ...]


def run_once(module: Any, spark: _SandboxSpark, job: JobInfo, meta: Mapping[str, Any],
             which: str) -> RunOutcome:
    """Run the importer once, as the runner does (its prints go to stderr). Raises
    :class:`SandboxError` with the runner's exit code when the importer fails."""
    marked = MarkedSpark(spark.get_spark, marker=f"csep-sandbox:{uuid.uuid4()}",
                         iceberg=spark.iceberg)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            module.run_import(marked.get_spark, job.for_importer(), copy.deepcopy(dict(meta)))
    except (Exception, SystemExit) as error:
        traceback.print_exception(error, file=sys.stderr)
        raise SandboxError(f"the {which} run failed: {_classified(error)}",
                           _exit_code(error)) from error
    if spark.session is None:
        return RunOutcome({}, ())
    if spark.iceberg:
        # Every table of the user's catalog, by the marker in the snapshots' summaries.
        return RunOutcome(snapshot(spark.session, iceberg=True),
                          snapshots_marked(spark.session, marked.marker))
    # "" matches every database: commits outside the user's namespace are found too.
    commits = commits_marked(spark.session, "", marked.marker,
                             since_micros=marked.started_micros)
    return RunOutcome(snapshot(spark.session), commits)


def _exit_code(error: BaseException) -> int:
    """The runner's classification (:func:`runner.errors.importer_outcome`)."""
    return int(importer_outcome(error)[1])


def _classified(error: BaseException) -> str:
    status = importer_outcome(error)[0].value
    # As in the runner, sys.exit() in an importer must not pass for success.
    what = (f"the importer called sys.exit({error.code!r})" if isinstance(error, SystemExit)
            else _message(error))
    return f"{status} (exit {_exit_code(error)}): {what}"


def _message(error: BaseException) -> str:
    """The error's type and first line; for an error raised in the JVM, the Java
    exception's (py4j's own first line only names the call that failed)."""
    java = getattr(error, "java_exception", None)
    text = str(java) if java is not None else f"{type(error).__name__}: {error}"
    return next((line.strip() for line in text.splitlines() if line.strip()), text)


def touched(before: Mapping[str, TableState], after: Mapping[str, TableState],
            commits: Sequence[DeltaCommit | IcebergSnapshot]) -> list[str]:
    """Tables the run created, dropped, changed or committed to, by name."""
    names = {c.table for c in commits}
    names.update(n for n in after if before.get(n) != after[n])
    names.update(n for n in before if n not in after)
    return sorted(names)


def changes(before: Mapping[str, TableState], after: Mapping[str, TableState]) -> list[str]:
    """One line per table whose content differs between the two states."""
    found = []
    for name in sorted(set(before) | set(after)):
        if name not in after:
            found.append(f"{name}: dropped")
        elif name not in before:
            found.append(f"{name}: created ({after[name].rows} rows)")
        elif differences := after[name].differences(before[name]):
            found.append(f"{name}: {', '.join(differences)}")
    return found


def described(commit: DeltaCommit | IcebergSnapshot) -> str:
    """A commit in a few words: ``v1 MERGE``, or ``snapshot 123 overwrite (+2 -2
    records)`` (the records its summary counts as added and deleted)."""
    if isinstance(commit, DeltaCommit):
        return f"v{commit.version} {commit.operation}"
    added = commit.summary.get("added-records", "0")
    deleted = commit.summary.get("deleted-records", "0")
    return f"snapshot {commit.snapshot_id} {commit.operation} (+{added} -{deleted} records)"


def _print_table(spark: SparkSession, name: str, state: TableState | None,
                 commits: Sequence[DeltaCommit | IcebergSnapshot], prefix: str, rows: int,
                 iceberg: bool = False) -> None:
    print(f"\ntable {name}")
    if state is None:
        print("  dropped by the import")
        return
    if not name.lower().startswith(prefix):
        print(f"  outside the user's namespace ({prefix}*): the runner does not record its "
              f"commits")
    if iceberg:
        version = ("Iceberg table without a snapshot" if state.version is None
                   else f"Iceberg snapshot {state.version}")
    else:
        version = ("not a Delta table" if state.version is None
                   else f"Delta version {state.version}")
    made = ", ".join(described(c) for c in commits if c.table == name)
    print(f"  {version}" + (f" (this run: {made})" if made else ""))
    print("  schema:")
    for column, kind, nullable in state.schema:
        print(f"    {column}: {kind}{'' if nullable else ' not null'}")
    print(f"  rows: {state.rows}")
    if state.rows:
        print(f"  first {min(rows, state.rows)} row(s):")
        sys.stdout.flush()
        spark.table(_quoted(name)).show(rows, truncate=40)


def sandbox(importer_yaml: Path, files: Sequence[Path], warehouse: Warehouse, *,
            jars: tuple[str, ...], rows: int = 10, table_format: str = "delta") -> None:
    """Run the importer of ``importer_yaml`` twice on ``files`` and print what it did,
    on ``table_format`` (``delta`` or ``iceberg``; ``jars`` must hold its runtime).

    Raises :class:`SandboxError` when the YAML or a file is unusable, a run fails, or
    the second run changed a table.
    """
    entry = load_importer(importer_yaml)
    job_id = f"sandbox-{uuid.uuid4().hex[:8]}"
    job = sandbox_job(entry, stage_outputs(files, warehouse, job_id), job_id, warehouse,
                      table_format)
    print(f"importer {entry.name} ({entry.py_module}) from {entry.source}")
    print(f"job_info: {json.dumps(job.for_importer())}")
    print(f"importer_meta: {json.dumps(entry.importer_meta)}")
    sys.stdout.flush()
    module = importlib.import_module(entry.py_module)
    if table_format == "iceberg":
        # The Hadoop catalog lists its warehouse directory, and refuses a missing one.
        warehouse.iceberg.mkdir(parents=True, exist_ok=True)
    spark = _SandboxSpark(warehouse.spark_settings(jars, table_format),
                          warehouse.spark_overrides(table_format))
    try:
        first = run_once(module, spark, job, entry.importer_meta, "first")
        names = touched(spark.initial, first.states, first.commits)
        print(f"\nfirst run succeeded; it touched {len(names)} table(s)")
        for name in names:
            assert spark.session is not None  # a table was touched: Spark was started
            _print_table(spark.session, name, first.states.get(name), first.commits,
                         job.namespace_prefix, rows, spark.iceberg)
        sys.stdout.flush()
        second = run_once(module, spark, job, entry.importer_meta, "second")
        changed = changes(first.states, second.states)
        print("\nsecond run of the same job:")
        for commit in second.commits:
            print(f"  {commit.table}: {described(commit)}")
        for line in changed:
            print(f"  changed {line}")
        if changed:
            print("NOT IDEMPOTENT")
            raise SandboxError(f"not idempotent: the second run changed {'; '.join(changed)}",
                               NOT_IDEMPOTENT)
        print("idempotent: the second run left every table as the first run did")
    finally:
        spark.stop()


def main(argv: list[str] | None = None, environ: Mapping[str, str] = os.environ) -> int:
    parser = argparse.ArgumentParser(prog="python -m runner.sandbox", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("importer_yaml", type=Path, help="the importer's YAML file")
    parser.add_argument("files", type=Path, nargs="+", metavar="FILE",
                        help="a local file, served as one of the job's outputs")
    parser.add_argument("--warehouse", type=Path, metavar="DIR",
                        help="keep tables, metastore and inputs here (kept; default: a "
                             "temporary directory)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the temporary warehouse instead of removing it")
    parser.add_argument("--rows", type=int, default=10, help="rows shown per table (10)")
    parser.add_argument("--format", choices=TABLE_FORMATS, dest="table_format",
                        help="the table format: delta (Delta and a Derby metastore) or "
                             "iceberg (a local Iceberg catalog); default: "
                             "CSEP_TABLE_FORMAT, else delta")
    args = parser.parse_args(argv)
    table_format = args.table_format or (
        environ.get("CSEP_TABLE_FORMAT") or "delta").strip().lower()
    if table_format not in TABLE_FORMATS:
        parser.error(f"CSEP_TABLE_FORMAT={table_format!r}: expected one of "
                     f"{', '.join(TABLE_FORMATS)}")
    temporary = args.warehouse is None
    root = Path(tempfile.mkdtemp(prefix="csep-sandbox-")) if temporary else args.warehouse
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        print(f"sandbox: --warehouse {root}: cannot be created: {error}", file=sys.stderr)
        return int(ExitCode.BAD_SPEC)
    print(f"warehouse: {root.resolve()}"
          + (" (temporary; removed at exit)" if temporary and not args.keep else ""))
    # Only the jar settings of the environment: its master, S3, metastore and catalog
    # are a deployment's, not the sandbox's.
    jars = SparkSettings.from_env(
        {name: environ[name] for name in ("CSEP_SPARK_JARS", "CSEP_ICEBERG_JARS")
         if name in environ} | {"CSEP_TABLE_FORMAT": table_format}).jars
    try:
        sandbox(args.importer_yaml, args.files, Warehouse(root.resolve()), jars=jars,
                rows=args.rows, table_format=table_format)
    except SandboxError as error:
        sys.stdout.flush()
        print(f"sandbox: {_one_line(str(error))}", file=sys.stderr)
        return error.exit_code
    except Exception as error:  # the sandbox's own failure (Spark, the metastore): say so
        traceback.print_exception(error, file=sys.stderr)
        print(f"sandbox: the sandbox failed: {_message(error)}", file=sys.stderr)
        return int(ExitCode.FAILURE)
    finally:
        if temporary and not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    return 0


def _one_line(text: str) -> str:
    return " ".join(text.split())


if __name__ == "__main__":
    sys.exit(main())
