"""A real Kubernetes API server: ``kube-apiserver`` on a single-member etcd.

Both binaries are built from source by ``scripts/build-kube.sh`` (``make setup``) into
``.cache/kube/bin``. Everything binds 127.0.0.1 on free ports and lives under one
directory: etcd's data, the certificates and the logs.

The certificates are made here with ``openssl`` on every start of a fresh directory: a CA,
the API server's serving certificate (for 127.0.0.1 and localhost), the key that signs
service-account tokens, and an admin client certificate (group ``system:masters``).
Authorization is RBAC only: a service account can do exactly what its Roles grant.

No controller manager, scheduler or kubelet runs: nothing creates a Job's pod, nothing
sets a status and nothing collects garbage. Tests do what those would do through the API
(:meth:`KubeApiServer.api_client` is the admin's client).
"""

from __future__ import annotations

import ssl
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from stack.paths import KUBE_BIN
from stack.process import ServerProcess, free_ports

#: The apiserver's cluster IP range for Services (no Service gets traffic here).
SERVICE_CIDR = "10.96.0.0/24"
ADMIN_USER = "csep-admin"


def kube_binary(name: str) -> Path:
    """``etcd`` or ``kube-apiserver`` from ``.cache/kube/bin``."""
    binary = KUBE_BIN / name
    if not binary.is_file():
        raise FileNotFoundError(
            f"no {binary}: run `make setup` (scripts/build-kube.sh builds it from source)")
    return binary


def _openssl(*args: str, cwd: Path) -> None:
    result = subprocess.run(["openssl", *args], check=False, cwd=cwd, capture_output=True,
                            text=True)
    if result.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed: {result.stderr.strip()[-500:]}")


def _certificate(directory: Path, name: str, subject: str, *extensions: str) -> None:
    """``<name>.key`` and ``<name>.crt`` (P-256), signed by ``ca.key``."""
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.crt", "-days", "3650",
             "-subj", subject, "-CA", "ca.crt", "-CAkey", "ca.key",
             *(arg for ext in extensions for arg in ("-addext", ext)), cwd=directory)


def make_certificates(directory: Path) -> None:
    """The CA, the serving and admin certificates and the service-account signing key."""
    directory.mkdir(parents=True, exist_ok=True)
    if (directory / "service-account.pub").exists():  # made last
        return
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "3650",
             "-subj", "/CN=csep-stack-ca", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=directory)
    _certificate(directory, "apiserver", "/CN=kube-apiserver",
                 "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc",
                 "extendedKeyUsage=serverAuth", "basicConstraints=critical,CA:FALSE")
    _certificate(directory, "admin", f"/O=system:masters/CN={ADMIN_USER}",
                 "extendedKeyUsage=clientAuth", "basicConstraints=critical,CA:FALSE")
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-out", "service-account.key", cwd=directory)
    _openssl("pkey", "-in", "service-account.key", "-pubout", "-out", "service-account.pub",
             cwd=directory)


class KubeApiServer:
    """etcd and kube-apiserver under ``directory``; ``url`` once started. Use as a
    context manager, or :meth:`start` and :meth:`stop`.

    :meth:`stop_apiserver` and :meth:`start_apiserver` stop and start the API server
    alone, on the same port and the same etcd (an API server outage: nothing is lost).
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.pki = directory / "pki"
        self.etcd_port, self.etcd_peer_port, self.port = free_ports(3)
        self.url = f"https://127.0.0.1:{self.port}"
        self._etcd: ServerProcess | None = None
        self._apiserver: ServerProcess | None = None

    @property
    def ca_file(self) -> Path:
        return self.pki / "ca.crt"

    def start(self, timeout: float = 240.0) -> KubeApiServer:
        make_certificates(self.pki)
        try:
            self._etcd = ServerProcess("etcd", [
                str(kube_binary("etcd")), f"--data-dir={self.directory / 'etcd'}",
                f"--listen-client-url=http://127.0.0.1:{self.etcd_port}",
                f"--listen-peer-url=http://127.0.0.1:{self.etcd_peer_port}"],
                self.directory / "etcd.log")
            self._etcd.wait_healthy(self._etcd_healthy, timeout)
            self.start_apiserver(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _etcd_healthy(self) -> bool:
        url = f"http://127.0.0.1:{self.etcd_port}/health"
        with urllib.request.urlopen(url, timeout=2) as answer:
            return answer.status == 200

    def start_apiserver(self, timeout: float = 240.0) -> None:
        pki = self.pki
        self._apiserver = ServerProcess("kube-apiserver", [
            str(kube_binary("kube-apiserver")),
            f"--etcd-servers=http://127.0.0.1:{self.etcd_port}",
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
            f"--secure-port={self.port}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            f"--service-account-key-file={pki / 'service-account.pub'}",
            f"--service-account-signing-key-file={pki / 'service-account.key'}",
            "--service-account-issuer=https://kubernetes.default.svc",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--authorization-mode=RBAC",
            # No Endpoints for the "kubernetes" Service: 127.0.0.1 is not a valid one.
            "--endpoint-reconciler-type=none",
            f"--cert-dir={self.directory / 'apiserver-certs'}",
            "--profiling=false", "--v=0"],
            self.directory / "kube-apiserver.log")
        self._apiserver.wait_healthy(self._ready, timeout)

    def _ready(self) -> bool:
        context = ssl.create_default_context(cafile=str(self.ca_file))
        with urllib.request.urlopen(f"{self.url}/readyz", timeout=5, context=context) as answer:
            return answer.status == 200

    def stop_apiserver(self) -> None:
        if self._apiserver is not None:
            self._apiserver.stop()
            self._apiserver = None

    def stop(self) -> None:
        self.stop_apiserver()
        if self._etcd is not None:
            self._etcd.stop()
            self._etcd = None

    def __enter__(self) -> KubeApiServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- clients --------------------------------------------------------------------------

    def api_client(self) -> Any:
        """The admin's ``kubernetes.client.ApiClient`` (client certificate, group
        ``system:masters``); another identity: :meth:`kubeconfig` with its token."""
        from kubernetes import client as k8s

        configuration = k8s.Configuration()
        configuration.host = self.url
        configuration.ssl_ca_cert = str(self.ca_file)
        configuration.cert_file = str(self.pki / "admin.crt")
        configuration.key_file = str(self.pki / "admin.key")
        return k8s.ApiClient(configuration)

    def kubeconfig(self, path: Path, token: str | None = None,
                   namespace: str = "default") -> Path:
        """Write a kubeconfig for the admin (or ``token``) to ``path``: what
        ``kubernetes.config.load_kube_config`` reads outside a cluster."""
        user: dict[str, str] = (
            {"token": token} if token is not None else
            {"client-certificate": str(self.pki / "admin.crt"),
             "client-key": str(self.pki / "admin.key")})
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "stack",
            "clusters": [{"name": "stack", "cluster": {
                "server": self.url, "certificate-authority": str(self.ca_file)}}],
            "users": [{"name": "user", "user": user}],
            "contexts": [{"name": "stack", "context": {
                "cluster": "stack", "user": "user", "namespace": namespace}}],
        }))
        path.chmod(0o600)
        return path
