"""A test double of the CDM Task Service admin API (docs/contracts.md, section 2).

A real HTTP server speaking the contract exactly, errors included: it serves job
documents registered by tests (or loaded from fixture files) and records every meta
update so tests can assert on them. The real CTS needs MongoDB, an auth service and a
compute site, which is why this is the one component of the stack that is not real.

Beyond the contract, for tests and the local stack only:

- ``add_job(doc)`` / ``POST /_double/jobs`` registers a job document;
- ``meta_updates`` lists the ``PUT .../meta`` bodies received, in order;
- ``outage(status)`` makes every contract request fail with that HTTP status;
- ``hang(True)`` makes every contract request wait, unanswered, until ``hang(False)``.

Every request's body is read before it is answered, whatever the answer, so a client's
keep-alive connection is never left with an unread body that would be taken for the
start of its next request.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import re
import secrets
import signal
import sys
import threading
import urllib.parse
from collections.abc import Iterable
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import attrs

SERVICE_NAME = "CDM Task Service"
NO_SUCH_JOB = 40040

_JOB_PATH = re.compile(r"^/admin/jobs/(?P<job_id>[^/]+)$")
_META_PATH = re.compile(r"^/admin/jobs/(?P<job_id>[^/]+)/meta$")


@attrs.frozen
class MetaUpdate:
    """One ``PUT /admin/jobs/{job_id}/meta`` request as received."""

    job_id: str
    set_fields: dict
    unset_keys: list


class CTSDouble:
    """The double's state and its HTTP server on 127.0.0.1 (``url`` once started)."""

    def __init__(self, token: str | None = None, port: int = 0, host: str = "127.0.0.1") -> None:
        self.token = token or secrets.token_urlsafe(16)
        self._host = host
        self._port = port
        self._jobs: dict[str, dict] = {}
        self._lock = threading.Lock()
        self._outage: int | None = None
        self._answering = threading.Event()
        self._answering.set()
        self.meta_updates: list[MetaUpdate] = []
        self.requests: list[tuple[str, str]] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    def add_job(self, doc: dict) -> None:
        """Register (or replace) a job document; ``doc["id"]`` is its job id."""
        with self._lock:
            self._jobs[doc["id"]] = copy.deepcopy(doc)

    def load_jobs(self, paths: Iterable[Path]) -> None:
        for path in paths:
            self.add_job(json.loads(Path(path).read_text()))

    def job(self, job_id: str) -> dict:
        with self._lock:
            return copy.deepcopy(self._jobs[job_id])

    def outage(self, status: int | None) -> None:
        """Fail every contract request with ``status`` (e.g. 503); ``None`` ends the outage."""
        self._outage = status

    def hang(self, hanging: bool) -> None:
        """While ``hanging``, contract requests are accepted and never answered (until
        the hang ends; the client has usually given up by then)."""
        if hanging:
            self._answering.clear()
        else:
            self._answering.set()

    def updates_for(self, job_id: str) -> list[MetaUpdate]:
        with self._lock:
            return [u for u in self.meta_updates if u.job_id == job_id]

    def start(self) -> CTSDouble:
        self._server = _Server((self._host, self._port), _handler_for(self))
        self._server.daemon_threads = True
        self._port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="cts-double",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; ``start()`` again serves the same jobs on the same port."""
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    # -- request handling, called from the server threads --------------------------------

    def _get_job(self, job_id: str) -> tuple[int, dict]:
        with self._lock:
            doc = self._jobs.get(job_id)
        if doc is None:
            return _error(404, NO_SUCH_JOB, f"No such job: {job_id}")
        return 200, copy.deepcopy(doc)

    def _put_meta(self, job_id: str, body: object) -> tuple[int, dict]:
        if (not isinstance(body, dict) or set(body) - {"set_fields", "unset_keys"}
                or not isinstance(body.get("set_fields", {}), dict)
                or not isinstance(body.get("unset_keys", []), list)):
            return _error(400, 30010, "Request validation failed: expected "
                          "{'set_fields': {str: any}, 'unset_keys': [str]}")
        set_fields = body.get("set_fields", {})
        unset_keys = body.get("unset_keys", [])
        with self._lock:
            doc = self._jobs.get(job_id)
            if doc is None:
                return _error(404, NO_SUCH_JOB, f"No such job: {job_id}")
            meta = doc.setdefault("admin_meta", {})
            meta.update(set_fields)
            for key in unset_keys:
                meta.pop(key, None)
            self.meta_updates.append(MetaUpdate(job_id, dict(set_fields), list(unset_keys)))
            return 200, copy.deepcopy(doc)


class _Server(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        # A client that goes away mid-request (a dispatcher killed on purpose) is not
        # the double's error; anything else still prints its traceback.
        if not isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            super().handle_error(request, client_address)


def _error(httpcode: int, appcode: int, message: str) -> tuple[int, dict]:
    return httpcode, {"error": {"httpcode": httpcode, "httpstatus": _REASONS.get(httpcode, ""),
                                "appcode": appcode, "message": message,
                                "time": datetime.now(timezone.utc).isoformat()}}


_REASONS = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
            405: "Method Not Allowed", 500: "Internal Server Error", 503: "Service Unavailable"}


def _handler_for(double: CTSDouble) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass  # the double records requests itself; stderr noise helps nobody

        def _send(self, status: int, body: dict) -> None:
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def _read_body(self) -> bytes:
            try:
                length = max(0, int(self.headers.get("Content-Length") or 0))
            except ValueError:
                length = 0
                self.close_connection = True  # cannot tell where the next request starts
            return self.rfile.read(length) if length else b""

        def _body(self) -> object:
            return json.loads(self._raw) if self._raw else None

        def _authorized(self) -> bool:
            header = self.headers.get("Authorization")
            if not header:
                self._send(*_error(401, 10010, "Authorization header required"))
                return False
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not secrets.compare_digest(token, double.token):
                self._send(*_error(401, 10020, "Invalid token"))
                return False
            return True

        def _dispatch(self, method: str) -> None:
            self._raw = self._read_body()  # first, whatever the answer will be
            path = self.path.split("?", 1)[0].rstrip("/") or "/"
            double.requests.append((method, path))
            if path.startswith("/_double/"):
                return self._control(method, path)
            while not double._answering.wait(0.5):
                pass
            if double._outage is not None:
                return self._send(*_error(double._outage, 0, "Service outage (test double)"))
            if method == "GET" and path == "/":
                return self._send(200, {
                    "service_name": SERVICE_NAME, "version": "0.0.0-double",
                    "server_time": datetime.now(timezone.utc).isoformat()})
            if not self._authorized():
                return None
            if method == "GET" and (match := _JOB_PATH.match(path)):
                return self._send(*double._get_job(urllib.parse.unquote(match["job_id"])))
            if method == "PUT" and (match := _META_PATH.match(path)):
                try:
                    body = self._body()
                except (ValueError, UnicodeDecodeError):
                    return self._send(*_error(400, 30010, "Request body is not valid JSON"))
                return self._send(*double._put_meta(urllib.parse.unquote(match["job_id"]), body))
            return self._send(*_error(404, 1000, f"Not Found: {method} {path}"))

        def _control(self, method: str, path: str) -> None:
            if method == "POST" and path == "/_double/jobs":
                double.add_job(self._body())
                return self._send(201, {})
            if method == "GET" and path == "/_double/meta":
                return self._send(200, {"updates": [attrs.asdict(u) for u in double.meta_updates]})
            return self._send(*_error(404, 1000, f"Not Found: {method} {path}"))

        def do_GET(self) -> None:  # noqa: N802
            self._dispatch("GET")

        def do_PUT(self) -> None:  # noqa: N802
            self._dispatch("PUT")

        def do_POST(self) -> None:  # noqa: N802
            self._dispatch("POST")

    return Handler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stack.cts_double", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (0.0.0.0 in a container)")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--token", help="admin token clients must send "
                                        "(default: $CSEP_CTS_TOKEN, else random)")
    parser.add_argument("jobs", nargs="*", type=Path, help="job document JSON files")
    args = parser.parse_args(argv)
    double = CTSDouble(token=args.token or os.environ.get("CSEP_CTS_TOKEN"), port=args.port,
                       host=args.host)
    double.load_jobs(args.jobs)
    double.start()
    print(json.dumps({"url": double.url, "token": double.token}), flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    double.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
