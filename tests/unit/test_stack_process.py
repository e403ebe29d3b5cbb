"""Servers started by the stack die with their owner, even when it is SIGKILLed."""

import os
import signal
import subprocess
import sys
import time

OWNER = """
import sys, time
from pathlib import Path
from stack.process import ServerProcess
server = ServerProcess("sleeper", ["sleep", "300"], Path(sys.argv[1]))
print(server.proc.pid, flush=True)
time.sleep(300)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie waiting for its reaper is dead for our purpose.
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split()[2] != "Z"


def test_server_dies_when_owner_is_killed(tmp_path):
    owner = subprocess.Popen([sys.executable, "-c", OWNER, str(tmp_path / "log")],
                             stdout=subprocess.PIPE, text=True)
    server_pid = int(owner.stdout.readline())
    assert _alive(server_pid)
    owner.send_signal(signal.SIGKILL)
    owner.wait()
    deadline = time.monotonic() + 10
    while _alive(server_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(server_pid)
