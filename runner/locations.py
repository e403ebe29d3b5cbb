"""Where a spec comes from and where its result goes.

=====================  ==============================  ==================================
SPEC argument          spec read from                  result written to
=====================  ==============================  ==================================
``s3://bucket/k/...``  the S3 object                   ``result-*.yaml`` beside it in S3
a file path            the local file                  ``result-*.yaml`` beside the file
``-``                  standard input                  standard output (YAML)
=====================  ==============================  ==================================
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

from common.s3 import S3Uri, s3_client
from contract.result import RunResult, to_yaml
from contract.store import SpecStore, result_name
from runner.errors import BadSpecError, s3_failure
from runner.logs import log


class SpecLocation(Protocol):
    uri: str

    def read(self) -> str:
        """The spec's text; raises ``BadSpecError`` (unreadable) or ``TemporaryFailure``."""

    def write_result(self, result: RunResult, name: str | None = None) -> str:
        """Store ``result`` (as ``name`` beside the spec, when given, and only if no
        result of that name exists: the dispatcher may have recorded the attempt's end
        already); return where it went."""


class S3Location:
    def __init__(self, uri: str, environ: Mapping[str, str]) -> None:
        location = S3Uri.parse(uri)
        self.uri = str(location)
        self._store = SpecStore(str(location.sibling("")), s3_client(environ))

    def read(self) -> str:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return self._store.read_text(self.uri)
        except (ClientError, BotoCoreError) as error:
            raise s3_failure(error, f"spec {self.uri}", BadSpecError) from error
        except UnicodeDecodeError as error:
            raise BadSpecError(f"spec {self.uri} is not UTF-8: {error}") from error

    def write_result(self, result: RunResult, name: str | None = None) -> str:
        if name is None:
            return self._store.put_result(result)
        uri = str(S3Uri.parse(self.uri).sibling(name))
        if not self._store.write_text_if_absent(uri, to_yaml(result)):
            log.warning("%s exists already (the dispatcher recorded this attempt's end); "
                        "this result is not written", uri)
        return uri


class FileLocation:
    def __init__(self, path: str) -> None:
        self.path = Path(path).absolute()
        self.uri = str(self.path)

    def read(self) -> str:
        try:
            return self.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise BadSpecError(f"spec {self.path} cannot be read: {error}") from error

    def write_result(self, result: RunResult, name: str | None = None) -> str:
        target = self.path.parent / (name or result_name(result))
        with open(target, "x" if name else "w", encoding="utf-8") as file:
            file.write(to_yaml(result))
        return str(target)


class StdinLocation:
    uri = "-"

    def read(self) -> str:
        return sys.stdin.read()

    def write_result(self, result: RunResult, name: str | None = None) -> str:
        sys.stdout.write(to_yaml(result))
        sys.stdout.flush()
        return "stdout"


def open_location(argument: str, environ: Mapping[str, str]) -> SpecLocation:
    """The location named by the runner's SPEC argument; ``ValueError`` for a bad s3 URI."""
    if argument == "-":
        return StdinLocation()
    if argument.startswith("s3://"):
        return S3Location(argument, environ)
    return FileLocation(argument)
