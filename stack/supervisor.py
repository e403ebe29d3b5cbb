"""Keep a server of the stack running: start it again when its process exits."""

from __future__ import annotations

import logging
import threading
from typing import Protocol

log = logging.getLogger(__name__)


class Service(Protocol):
    """A server the supervisor can manage.

    ``start()`` returns once the server is healthy and raises if it cannot get there;
    it may be called again after ``stop()``, and binds the same address each time.
    """

    name: str

    def start(self) -> object: ...

    def stop(self) -> None: ...

    def running(self) -> bool: ...


class Supervisor:
    """Starts ``service`` and restarts it whenever its process exits without :meth:`stop`.

    A watcher thread checks the process every ``interval`` seconds. A restart that fails
    (the server exits again while starting, or never becomes healthy) is retried after
    a backoff that doubles up to ``max_backoff`` seconds and resets after a success.
    :attr:`restarts` counts the successful restarts.
    """

    def __init__(self, service: Service, *, interval: float = 0.5,
                 max_backoff: float = 30.0) -> None:
        self.service = service
        self.interval = interval
        self.max_backoff = max_backoff
        self.restarts = 0
        self._stopping = threading.Event()
        self._restarted = threading.Condition()
        self._thread: threading.Thread | None = None

    def start(self) -> Supervisor:
        self.service.start()
        self._stopping.clear()
        self._thread = threading.Thread(target=self._watch, name=f"supervise-{self.service.name}",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop watching, then stop the service. A restart under way finishes first, so
        that no server it started is left behind."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.service.stop()

    def wait_restarts(self, count: int, timeout: float) -> bool:
        """Wait until :attr:`restarts` reaches ``count``; False if ``timeout`` passes first."""
        with self._restarted:
            return self._restarted.wait_for(lambda: self.restarts >= count, timeout)

    def __enter__(self) -> Supervisor:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _watch(self) -> None:
        backoff = 1.0
        while not self._stopping.wait(self.interval):
            if self.service.running():
                continue
            log.warning("%s exited; restarting it", self.service.name)
            try:
                self.service.stop()  # reap the exited process, release its log
                # The new process is this thread's child: the kernel's parent-death signal
                # (common.process) follows the thread, which lives until stop().
                self.service.start()
            except Exception as error:  # noqa: BLE001 - keep supervising whatever failed
                log.error("%s did not restart (%s); next try in %.0fs", self.service.name,
                          error, backoff)
                if self._stopping.wait(backoff):
                    return
                backoff = min(backoff * 2, self.max_backoff)
                continue
            backoff = 1.0
            with self._restarted:
                self.restarts += 1
                self._restarted.notify_all()
            log.warning("%s restarted (%d restart(s) so far)", self.service.name,
                        self.restarts)
