"""ViZDoom engines that do not outlive the process that started them.

ViZDoom's C++ side forks the engine and talks to it through three shared-memory files,
/dev/shm/ViZDoom{SM,MQCtr,MQDoom}<instance id> (about 10 MB at 160x120), which `DoomGame.close()` removes.
A recorder killed with SIGKILL closes nothing: the engine (blocked on its message queue, reparented to init),
its shared memory and its scratch folder stayed until reboot. PR_SET_PDEATHSIG, which ties the kiosk player to
its supervisor, cannot help: it must be set in the child between fork and exec, inside vizdoom's code.

So each DoomEnv, before it starts its engine, writes a registry file (TMPDIR/worldsim-UID/vizdoom/*.json: its
pid and start time, its scratch folder, later the engine's instance id) and starts a watchdog: a tiny process
in its own session (a Ctrl-C or a kill of the recorder's process group spares it) that reads a pipe from the
recorder. A clean close writes CLOSED; end of file without it means the recorder died, and the watchdog kills the
engine and removes its shared memory and scratch folder. The engine is found by its scratch folder, which is
on its command line (`-config SCRATCH/_vizdoom.ini`), so a recorder killed in the middle of `init` is covered too.
The next DoomEnv sweeps the registry for recorders that died together with their watchdog. Only engines a
worldsim process started are ever touched. Linux only (/proc, /dev/shm); elsewhere this does nothing.

    python -m worldsim.data.doom_guard REGISTRY_FILE        the watchdog (started by `EngineGuard`)
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from worldsim.leftovers import pid_alive

ENABLED = sys.platform.startswith("linux")
SHM_DIR = Path("/dev/shm")
SEGMENTS = ("ViZDoomSM", "ViZDoomMQCtr", "ViZDoomMQDoom")  # + instance id: an engine's shared memory
INSTANCE_FLAG = "+viz_instance_id"  # on the engine's command line
CLOSED = b"closed"
ENGINE_EXIT_S = 5.0  # a SIGKILLed engine is gone within milliseconds; after this, give up on it


def registry_dir() -> Path:
    return Path(tempfile.gettempdir()) / f"worldsim-{os.getuid()}" / "vizdoom"


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot: a pid and its start time name one process forever."""
    try:  # /proc/PID/stat: "pid (name) state ..."; the name may hold spaces and parentheses
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def engines(scratch: str) -> dict[int, str]:
    """pid -> instance id of the running engines whose config lives in `scratch` (at most one)."""
    found, folder = {}, os.path.join(scratch, "")
    for entry in Path("/proc").iterdir():
        try:
            args = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:  # gone, or not ours to read
            continue
        if entry.name.isdigit() and INSTANCE_FLAG in args[:-1] and any(a.startswith(folder) for a in args):
            found[int(entry.name)] = args[args.index(INSTANCE_FLAG) + 1]
    return found


def clean_up(entry: dict[str, Any]) -> None:
    """Kill a dead recorder's engine; remove its shared memory and scratch folder."""
    scratch, instances = entry["scratch"], set(entry["instances"])
    for pid, instance in engines(scratch).items():
        instances.add(instance)  # (killed during init: the registry had no instance id yet)
        try:
            os.kill(pid, signal.SIGKILL)  # it catches SIGTERM and waits for its controller, which is gone
        except OSError:
            continue
        deadline = time.monotonic() + ENGINE_EXIT_S
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.01)
    for instance in instances:
        for segment in SEGMENTS:
            (SHM_DIR / f"{segment}{instance}").unlink(missing_ok=True)
    shutil.rmtree(scratch, ignore_errors=True)


def sweep() -> None:
    """Clean up after recorders that died together with their watchdog (a cgroup kill, two SIGKILLs)."""
    if not ENABLED:
        return
    for path in registry_dir().glob("*.json"):
        try:
            entry = json.loads(path.read_text())
            owner = int(entry["owner"])
            alive = pid_alive(owner) and start_time(owner) == entry["owner_start"]
            if not alive:
                clean_up(entry)
        except (OSError, ValueError, KeyError, TypeError):  # unreadable: written by a killed recorder
            alive = False
        if not alive:
            path.unlink(missing_ok=True)


class EngineGuard:
    """Made before `DoomGame.init()`; `started()` after it, `close(clean)` after `DoomGame.close()`."""

    def __init__(self, scratch: str):
        self.watchdog: subprocess.Popen | None = None
        if not ENABLED:
            return
        folder = registry_dir()
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.registry = folder / f"{Path(scratch).name}.json"
        self.entry = {"owner": os.getpid(), "owner_start": start_time(os.getpid()), "scratch": scratch,
                      "instances": []}
        self._save()
        package_root = str(Path(__file__).resolve().parents[2])  # the watchdog imports worldsim from here
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_root,
                                                                         os.environ.get("PYTHONPATH")]))}
        self.watchdog = subprocess.Popen(
            [sys.executable, "-m", "worldsim.data.doom_guard", str(self.registry)], stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True)

    def _save(self) -> None:
        tmp = self.registry.with_suffix(".tmp")  # (renamed: a sweep never reads half a file)
        tmp.write_text(json.dumps(self.entry))
        os.replace(tmp, self.registry)

    def started(self) -> None:
        """The engine is up: note its instance id, so its shared memory is found even once it is gone."""
        if self.watchdog is not None:
            self.entry["instances"] = sorted(engines(self.entry["scratch"]).values())
            self._save()

    def close(self, clean: bool) -> None:
        """`clean`: the engine was closed, the watchdog just leaves; otherwise it cleans up first."""
        if self.watchdog is None:
            return
        try:
            if clean:
                self.watchdog.stdin.write(CLOSED)
            self.watchdog.stdin.close()
        except OSError:  # the watchdog is gone already
            pass
        try:
            self.watchdog.wait(timeout=ENGINE_EXIT_S + 5.0)
        except subprocess.TimeoutExpired:
            self.watchdog.kill()
        self.registry.unlink(missing_ok=True)


def watch(registry: Path) -> None:
    """The watchdog: wait for end of file on stdin, which comes when the recorder closes it or dies."""
    if sys.stdin.buffer.read().endswith(CLOSED):
        return
    try:
        clean_up(json.loads(registry.read_text()))
    except (OSError, ValueError, KeyError, TypeError):  # no entry: the sweep had it already
        return
    registry.unlink(missing_ok=True)


if __name__ == "__main__":
    watch(Path(sys.argv[1]))
