"""A runner started before its event: ``python -m runner --standby``.

A runner process spends about a second of CPU before its import starts: Python loads
pyspark's client (with pandas, pyarrow and gRPC) and boto3. A launcher that keeps one
runner on standby has that done while no event waits. The standby runner loads those,
then reads its arguments from one line of standard input: a JSON list of the arguments
``python -m runner`` takes (``["s3://.../spec.yaml", "--result", "result-....yaml"]``),
and from there is an ordinary one-shot runner: one import, one result, its exit code. At
the end of input before a line it exits 0 having run nothing (its launcher let it go).

What is loaded does not depend on any event: the environment is the one every runner of
the launcher gets, and nothing is read from S3 or Spark before the arguments arrive.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
from collections.abc import Mapping
from typing import TextIO

from common.s3 import s3_client
from runner.spark import SparkSettings

#: The argument that starts a runner on standby.
STANDBY = "--standby"


class BadArguments(ValueError):
    """The line read is not a JSON list of strings."""


def warm(environ: Mapping[str, str] = os.environ) -> None:
    """Load what every import needs. A failure here is left for the import to meet, with
    its own error, where the import needs the module."""
    with contextlib.suppress(Exception):
        # The Connect client, or pyspark's classic API (its JVM starts with the session).
        importlib.import_module("pyspark.sql.connect.session"
                                if SparkSettings.from_env(environ).is_connect
                                else "pyspark.sql")
    with contextlib.suppress(Exception):
        # boto3's default session keeps S3's service model once loaded: the runner's own
        # clients are then built without reading it again. No request is made.
        s3_client(environ)


def arguments(stream: TextIO) -> list[str] | None:
    """The runner's arguments, from one line of ``stream``; None at the end of input."""
    line = stream.readline()
    if not line:
        return None
    try:
        value = json.loads(line)
    except ValueError as error:
        raise BadArguments(f"not JSON: {error}") from None
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise BadArguments(f"not a JSON list of strings: {line.strip()[:200]!r}")
    return value
