"""SeaweedFS as the S3 server, with one identity: anonymous and wrong-key requests fail.

The same server is the stack's Iceberg REST catalog (``weed``'s own, on
:attr:`SeaweedS3.iceberg_url`): a warehouse is an S3 table bucket, and OAuth2 client
credentials are the S3 identity's access key and secret key, so a wrong credential is
refused as a wrong S3 key is.
"""

from __future__ import annotations

import json
import secrets
import urllib.request
from pathlib import Path

from stack.paths import weed_binary
from stack.process import ServerProcess, free_ports


class SeaweedS3:
    """``weed server`` with master, volume, filer and S3 gateway on 127.0.0.1."""

    region = "us-east-1"

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        (self.master_port, self.master_grpc, self.volume_port, self.volume_grpc,
         self.filer_port, self.filer_grpc, self.port, self.s3_grpc,
         self.iceberg_port) = free_ports(9)
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.iceberg_url = f"http://127.0.0.1:{self.iceberg_port}"
        # Letters and digits, as a MinIO user's access key is: S3 event notifications name
        # the uploader by it (userIdentity.principalId), and a plain name can be a job's user.
        self.access_key = "csep" + secrets.token_hex(6)
        self.secret_key = secrets.token_urlsafe(24)
        self._server: ServerProcess | None = None

    def start(self, timeout: float = 60.0) -> SeaweedS3:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        identities = {"identities": [{
            "name": "csep",
            "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
            "actions": ["Admin", "Read", "List", "Tagging", "Write"],
        }]}
        s3_config = self.data_dir / "s3.json"
        s3_config.write_text(json.dumps(identities))
        s3_config.chmod(0o600)
        argv = [
            weed_binary(), "server",
            "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-dir={self.data_dir / 'data'}",
            f"-master.port={self.master_port}", f"-master.port.grpc={self.master_grpc}",
            "-master.volumeSizeLimitMB=256",
            f"-volume.port={self.volume_port}", f"-volume.port.grpc={self.volume_grpc}",
            "-volume.max=100",
            "-filer", f"-filer.port={self.filer_port}", f"-filer.port.grpc={self.filer_grpc}",
            f"-filer.localSocket={self.data_dir / 'filer.sock'}",
            "-s3", f"-s3.port={self.port}", f"-s3.port.grpc={self.s3_grpc}",
            f"-s3.config={s3_config}", f"-s3.localSocket={self.data_dir / 's3.sock'}",
            # The Iceberg REST catalog on a free port; the Lance listener, unused, off
            # (its default port is fixed, and two stacks must run side by side).
            f"-s3.port.iceberg={self.iceberg_port}", "-s3.port.lance=0",
        ]
        (self.data_dir / "data").mkdir(exist_ok=True)
        # weed's graceful shutdown waits ~25 s on its volume server; the data is scratch.
        self._server = ServerProcess("seaweedfs", argv, self.data_dir / "weed.log",
                                     stop_grace=2.0)
        self._server.wait_healthy(self._ready, timeout)
        return self

    def client(self, **overrides):
        """A boto3 S3 client with this server's credentials (``overrides`` replace them)."""
        import boto3
        from botocore.config import Config

        kwargs = dict(
            endpoint_url=self.endpoint, region_name=self.region,
            aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}),
        )
        kwargs.update(overrides)
        return boto3.client("s3", **kwargs)

    def _ready(self) -> bool:
        # Writable, not just listening: the volume server must have registered.
        client = self.client()
        probe = "csep-probe"
        if probe not in {b["Name"] for b in client.list_buckets().get("Buckets", [])}:
            client.create_bucket(Bucket=probe)
        client.put_object(Bucket=probe, Key="ready", Body=b"ok")
        # The Iceberg catalog answers too (its configuration endpoint needs no token).
        with urllib.request.urlopen(f"{self.iceberg_url}/v1/config", timeout=5) as response:
            return response.status == 200

    @property
    def iceberg_credential(self) -> str:
        """The OAuth2 client credentials (``client_id:client_secret``) of the catalog."""
        return f"{self.access_key}:{self.secret_key}"

    def create_table_bucket(self, name: str) -> None:
        """Create the S3 table bucket ``name`` (an Iceberg warehouse) unless it exists."""
        import boto3

        tables = boto3.client("s3tables", endpoint_url=self.endpoint, region_name=self.region,
                              aws_access_key_id=self.access_key,
                              aws_secret_access_key=self.secret_key)
        existing = {b["name"] for b in tables.list_table_buckets().get("tableBuckets", [])}
        if name not in existing:
            tables.create_table_bucket(name=name)

    def create_bucket(self, name: str) -> None:
        client = self.client()
        existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
        if name not in existing:
            client.create_bucket(Bucket=name)

    def stop(self) -> None:
        if self._server:
            self._server.stop()
            self._server = None

    def restart(self) -> SeaweedS3:
        """Stop and start again on the same ports and data."""
        self.stop()
        return self.start()
