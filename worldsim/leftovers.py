"""What a killed process leaves behind, and how the next start of the same command clears it.

Files are written under temporary names that carry the writer's PID (storage's `.NAME.PID.THREAD.tmp`, the
recorder's `.NAME.partial-PID.EXT`) and renamed into place once complete. A kill (SIGKILL, the OOM killer, a
power cut) leaves the temporary file behind. Only files of a dead writer are removed, so another process working
in the same folder is never disturbed.
"""

from __future__ import annotations

import os
import re
from pathlib import Path


def pid_alive(pid: int) -> bool:
    """Whether `pid` is a running process; a zombie (dead, not yet reaped by its parent) counts as gone."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    try:  # /proc/PID/stat: "pid (name) state ..."; the name may hold spaces and parentheses
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):  # no /proc (not Linux), or it exited meanwhile: keep its files this time
        return True
    return state != "Z"


def remove_stale_files(folder: Path, pattern: re.Pattern[str]) -> list[Path]:
    """Delete the files in `folder` whose name matches `pattern` (with a `pid` group) and whose writer is dead."""
    removed = []
    try:
        paths = list(folder.iterdir())
    except OSError:  # no folder: nothing left behind
        return removed
    for path in paths:
        match = pattern.match(path.name)
        if match is None or pid_alive(int(match["pid"])) or not path.is_file():
            continue
        try:
            path.unlink()
        except OSError:  # gone meanwhile, or not ours to remove: leave it
            continue
        removed.append(path)
    return removed
