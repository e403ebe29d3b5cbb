"""Child processes that do not outlive the process that started them."""

from __future__ import annotations

import ctypes
import signal

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Have the kernel SIGKILL the calling process when its parent dies (Linux).

    Meant as (part of) a ``preexec_fn``: it runs in the child between fork and exec. Call
    it after any change of user or group, which clears the setting.
    """
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
