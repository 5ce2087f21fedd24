"""Whether a process still runs: leftovers of a killed run (staging dirs, temp files, orphan
collections, lock files) are removed or taken over only when their owner is gone."""

from __future__ import annotations

import os


def pid_alive(pid: int) -> bool:
    """True if process `pid` exists (also when it belongs to another user)."""
    if pid <= 0:
        return False  # 0 and negatives address process groups, never one owner
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's live process
    except OverflowError:
        return False  # no such pid on this machine
    return True
