"""Where a running local stack is: ``.stack/stack.json``, written by ``python -m stack up``
and ``demo`` while their stack runs (owner-only: it holds the credentials), removed when
it stops, and read by commands that work on that stack (``python -m stack replay``)."""

from __future__ import annotations

import json
from pathlib import Path

import attrs

from common.convert import structure
from stack.paths import ROOT

STATE_FILE = ROOT / ".stack" / "stack.json"


@attrs.frozen
class StackState:
    """The coordinates and credentials of a running stack's servers."""

    kafka_bootstrap: str
    s3_endpoint: str
    s3_region: str
    s3_access_key: str
    s3_secret_key: str = attrs.field(repr=False)
    cts_url: str
    cts_token: str = attrs.field(repr=False)
    lake_bucket: str

    @classmethod
    def of(cls, stack) -> StackState:
        """The state of a started :class:`stack.local.LocalStack`."""
        return cls(kafka_bootstrap=stack.kafka.bootstrap, s3_endpoint=stack.s3.endpoint,
                   s3_region=stack.s3.region, s3_access_key=stack.s3.access_key,
                   s3_secret_key=stack.s3.secret_key, cts_url=stack.cts.url,
                   cts_token=stack.cts.token, lake_bucket=stack.lake_bucket)

    @classmethod
    def read(cls, path: Path = STATE_FILE) -> StackState:
        """Raises ``FileNotFoundError`` (no stack running) or ``ValueError`` naming the
        file and the field."""
        try:
            return structure(json.loads(path.read_text()), cls)
        except FileNotFoundError:
            raise FileNotFoundError(f"{path} does not exist: is a stack running? "
                                    "(python -m stack up --keep-running)") from None
        except ValueError as error:  # not JSON, or a field missing or mistyped
            raise ValueError(f"{path}: {error}") from error

    def write(self, path: Path = STATE_FILE) -> None:
        path.parent.mkdir(exist_ok=True)
        path.touch(mode=0o600)
        path.chmod(0o600)
        path.write_text(json.dumps(attrs.asdict(self), indent=2) + "\n")

    def s3_client(self):
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3", endpoint_url=self.s3_endpoint, region_name=self.s3_region,
            aws_access_key_id=self.s3_access_key, aws_secret_access_key=self.s3_secret_key,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}))
