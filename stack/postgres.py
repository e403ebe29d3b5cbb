"""PostgreSQL from Debian's package, holding the Hive metastore database."""

from __future__ import annotations

import os
import pwd
import secrets
import subprocess
from pathlib import Path

from stack.paths import postgres_bin_dir
from stack.process import ServerProcess, free_ports


class Postgres:
    """A throw-away cluster on 127.0.0.1 with password authentication over TCP.

    PostgreSQL refuses to run as root; when the stack runs as root the cluster is owned
    by (and the server runs as) the ``postgres`` system user that the package creates.
    """

    user = "csep"
    database = "metastore"

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        (self.port,) = free_ports(1)
        self.password = secrets.token_urlsafe(18)
        self.jdbc_url = f"jdbc:postgresql://127.0.0.1:{self.port}/{self.database}"
        self._server: ServerProcess | None = None
        self._uid: int | None = None
        self._gid: int | None = None
        if os.geteuid() == 0:
            account = pwd.getpwnam("postgres")
            self._uid, self._gid = account.pw_uid, account.pw_gid

    def _run(self, argv: list[str], **kwargs) -> subprocess.CompletedProcess:
        uid, gid = self._uid, self._gid

        def demote() -> None:
            if gid is not None:
                os.setgid(gid)
            if uid is not None:
                os.setuid(uid)

        return subprocess.run(argv, preexec_fn=demote, check=True, capture_output=True, **kwargs)

    def start(self, timeout: float = 60.0) -> Postgres:
        bin_dir = postgres_bin_dir()
        cluster = self.data_dir / "cluster"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        fresh = not cluster.exists()  # else: a restart on the same data
        if fresh:
            self._initdb(bin_dir, cluster)
        self._server = ServerProcess(
            "postgres",
            [str(bin_dir / "postgres"), "-D", str(cluster), "-p", str(self.port),
             "-k", str(self.data_dir), "-c", "listen_addresses=127.0.0.1",
             "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
             "-c", "max_connections=200"],
            self.data_dir / "postgres.log", uid=self._uid, gid=self._gid)
        self._server.wait_healthy(self._ready, timeout)
        if fresh:
            self._psql(f"CREATE DATABASE {self.database}")
        return self

    def _initdb(self, bin_dir: Path, cluster: Path) -> None:
        pwfile = self.data_dir / "pwfile"
        pwfile.write_text(self.password + "\n")
        if self._uid is not None:
            os.chown(self.data_dir, self._uid, self._gid)
            os.chown(pwfile, self._uid, self._gid)
        pwfile.chmod(0o600)
        self._run([str(bin_dir / "initdb"), "-D", str(cluster), "-U", self.user,
                   f"--pwfile={pwfile}", "--auth-host=scram-sha-256", "--auth-local=peer",
                   "-E", "UTF8", "--no-sync"])
        pwfile.unlink()

    def _env(self) -> dict[str, str]:
        return {**os.environ, "PGPASSWORD": self.password}

    def _ready(self) -> bool:
        subprocess.run([str(postgres_bin_dir() / "pg_isready"), "-q", "-h", "127.0.0.1",
                        "-p", str(self.port)], check=True)
        return True

    def _psql(self, sql: str, database: str = "postgres") -> str:
        result = subprocess.run(
            [str(postgres_bin_dir() / "psql"), "-h", "127.0.0.1", "-p", str(self.port),
             "-U", self.user, "-d", database, "-v", "ON_ERROR_STOP=1", "-Atc", sql],
            env=self._env(), check=True, capture_output=True, text=True)
        return result.stdout

    def query(self, sql: str) -> str:
        """Run ``sql`` in the metastore database; return psql's unaligned output."""
        return self._psql(sql, self.database)

    def stop(self) -> None:
        if self._server:
            self._server.stop()
            self._server = None

    def restart(self) -> Postgres:
        """Stop and start again on the same port and data."""
        self.stop()
        return self.start()
