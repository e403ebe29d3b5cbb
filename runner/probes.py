"""Is a service the runner needs unreachable? Asked after an import failed.

An importer that loses S3, the metastore or Spark midway raises whatever its library
raises (a Py4J error wrapping a Hive exception, an S3A ``AWSClientIOException``, a gRPC
status): no list of exception types could say which service failed. So when an attempt
fails without a verdict of its own (bad data, a bad spec), the runner checks whether each
service still accepts a connection; if one does not, the failure is the service's, not
the event's, and the attempt exits 69.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterator

from common.net import connection_error
from runner.spark import SparkSettings

_DEFAULT_PORTS = {"http": 80, "https": 443, "postgresql": 5432, "mysql": 3306,
                  "thrift": 9083, "sc": 15002}


def endpoints(settings: SparkSettings) -> Iterator[tuple[str, str, int]]:
    """``(service, host, port)`` of each network service the settings name."""
    for service, url in (("s3", settings.s3_endpoint_url),
                         ("metastore", (settings.metastore_url or "").removeprefix("jdbc:")),
                         ("spark", settings.master if settings.is_connect else None)):
        if not url:
            continue
        parsed = urllib.parse.urlsplit(url)
        if parsed.hostname:
            yield service, parsed.hostname, parsed.port or _DEFAULT_PORTS.get(parsed.scheme, 0)


def unreachable(settings: SparkSettings, timeout: float = 3.0) -> tuple[str, str] | None:
    """The first service that refuses a TCP connection, with the reason; else None."""
    for service, host, port in endpoints(settings):
        if not port:
            continue
        if error := connection_error(host, port, timeout):
            return service, f"{host}:{port}: {error.strerror or error}"
    return None
