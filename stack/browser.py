"""Headless Chromium (Debian's ``chromium``) looking at a page, for tests.

:func:`look` loads a URL twice, once for its DOM after scripts ran and once for a
screenshot, each in a fresh profile under the given directory, and collects what the
page wrote to its console (Chromium logs console messages and uncaught exceptions as
``CONSOLE`` lines on stderr with ``--enable-logging=stderr``).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import attrs

_CONSOLE = re.compile(r":CONSOLE(?:\(\d+\)|:\d+)\] (.*)$")


@attrs.frozen
class Look:
    """What the browser saw: the serialized DOM, the console lines, the screenshot."""

    dom: str
    console: tuple[str, ...]
    screenshot: Path


def _chromium() -> str:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        raise RuntimeError("no chromium command: run scripts/install-system-packages.sh")
    return binary


def _run(url: str, profile: Path, *extra: str, timeout: float) -> subprocess.CompletedProcess:
    # --no-sandbox: the sandbox needs user namespaces, which containers and root lack.
    argv = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--disable-extensions", "--disable-background-networking",
            f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", *extra, url]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"chromium exited {done.returncode} on {url}: {done.stderr[-2000:]}")
    return done


def console_lines(stderr: str) -> list[str]:
    """The console messages in Chromium's log output."""
    return [match[1] for line in stderr.splitlines() if (match := _CONSOLE.search(line))]


def look(url: str, directory: Path, *, name: str = "page", width: int = 1280,
         height: int = 1400, timeout: float = 90.0) -> Look:
    """Load ``url`` in headless Chromium; the screenshot is ``<directory>/<name>.png``."""
    directory.mkdir(parents=True, exist_ok=True)
    dom = _run(url, directory / f"{name}-profile-dom", "--dump-dom", timeout=timeout)
    screenshot = directory / f"{name}.png"
    shot = _run(url, directory / f"{name}-profile-shot", f"--screenshot={screenshot}",
                f"--window-size={width},{height}", "--hide-scrollbars", timeout=timeout)
    if not screenshot.exists():
        raise RuntimeError(f"chromium wrote no screenshot of {url}: {shot.stderr[-2000:]}")
    return Look(dom.stdout, tuple(console_lines(dom.stderr + shot.stderr)), screenshot)
