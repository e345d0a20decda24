"""The kiosk supervisor: runs the player in a child process and restarts it when it crashes or hangs.

    start child --exit 0---------------------> done (the quit combination, or --frames reached)
                --exit 2 before its first beat-> done, error (it refused its configuration: restarting won't help)
                --any other exit---------------> wait the back-off, start again
                --heartbeat older than timeout-> kill it (SIGTERM, then SIGKILL), wait the back-off, start again

The back-off doubles after each failure (1 s, 2 s, 4 s ... up to `backoff_max_s`) so a player that dies at
start-up does not spin the CPU, and returns to `backoff_initial_s` after a run that lasted `healthy_run_s`.
Every start, exit, hang and restart is logged; the child's own stdout and stderr (a traceback, SDL's complaints)
go to the same rotating log, line by line.

No pygame and no torch here: the supervisor is a small, long-lived process.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from worldsim.config import rng
from worldsim.runtime.heartbeat import HeartbeatMonitor
from worldsim.runtime.logs import clip

USAGE_ERROR = 2  # `worldsim play` exit code for a problem the user must fix (a bad file, a bad option)
OUTPUT_LINES_KEPT = 20  # the child's last lines, quoted when it refuses to start


@dataclass(frozen=True)
class SupervisorConfig:
    """The `supervisor:` section of a runtime profile (used by `worldsim kiosk`)."""

    heartbeat_timeout_s: float = field(default=15.0, metadata=rng(0.1, 3600.0))  # no beat this long: hung
    # Before the first beat the player is loading the checkpoint (and maybe compiling): allow much longer.
    startup_timeout_s: float = field(default=180.0, metadata=rng(0.1, 36_000.0))
    healthy_run_s: float = field(default=120.0, metadata=rng(0.0, 86_400.0))  # a run this long resets the back-off
    backoff_initial_s: float = field(default=1.0, metadata=rng(0.0, 3600.0))
    backoff_max_s: float = field(default=120.0, metadata=rng(0.0, 86_400.0))
    kill_grace_s: float = field(default=5.0, metadata=rng(0.0, 600.0))  # SIGTERM, then this long until SIGKILL
    max_restarts: int = field(default=0, metadata=rng(0, 1_000_000))  # 0: restart forever
    poll_s: float = field(default=0.5, metadata=rng(0.01, 60.0))  # how often the child is checked


class Backoff:
    """Exponential back-off: initial, 2x, 4x, ... capped; `reset()` after a healthy run."""

    def __init__(self, initial_s: float, max_s: float):
        self.initial_s, self.max_s = initial_s, max_s
        self._next_s = initial_s

    def next_delay(self) -> float:
        delay = self._next_s
        self._next_s = min(self.max_s, max(self._next_s * 2, 0.0))
        return min(delay, self.max_s)

    def reset(self) -> None:
        self._next_s = self.initial_s


@dataclass(frozen=True)
class ChildExit:
    code: int | None  # the exit status (negative: killed by that signal)
    ran_s: float
    beat: bool  # whether it ever wrote a heartbeat (it got as far as playing)
    hung: bool = False  # killed by the supervisor for a stale heartbeat
    stopped: bool = False  # killed because the supervisor itself was asked to stop

    def describe(self) -> str:
        if self.hung:
            return (f"hung (no heartbeat for too long after {self.ran_s:.1f} s)" if self.beat
                    else f"hung at start-up (no heartbeat within {self.ran_s:.1f} s)")
        if self.code is not None and self.code < 0:
            try:
                name = signal.Signals(-self.code).name
            except ValueError:
                name = f"signal {-self.code}"
            return f"killed by {name} after {self.ran_s:.1f} s"
        return f"exited with status {self.code} after {self.ran_s:.1f} s"


class Supervisor:
    """Runs `command` until it quits cleanly, restarting it after crashes and hangs."""

    def __init__(self, command: list[str], heartbeat: str | Path, config: SupervisorConfig, log: logging.Logger,
                 env: dict[str, str] | None = None, clock=time.monotonic):
        self.command = command
        self.config = config
        self.log = log
        self.env = env
        self.clock = clock
        self.monitor = HeartbeatMonitor(heartbeat, clock)
        self.backoff = Backoff(config.backoff_initial_s, config.backoff_max_s)
        self.restarts = 0
        self.exits: list[ChildExit] = []  # every child's end, for tests and the final report
        self.last_output: deque[str] = deque(maxlen=OUTPUT_LINES_KEPT)
        self._stop = threading.Event()
        self._child: subprocess.Popen | None = None

    def stop(self) -> None:
        """Ask `run` to end (from a signal handler or another thread): the child is terminated, no restart."""
        self._stop.set()

    def run(self) -> int:
        """0 after a clean quit (or `stop()`), 2 when the player refused its configuration, 1 when it gave up."""
        try:
            while True:
                end = self._run_child()
                self.exits.append(end)
                if end.stopped:
                    self.log.info("supervisor stopped; player %s", end.describe())
                    return 0
                if end.code == 0:
                    self.log.info("player quit cleanly after %.1f s; supervisor done", end.ran_s)
                    return 0
                if end.code == USAGE_ERROR and not end.beat:
                    self.log.error("player refused to start (status %d); not restarting: fix the configuration",
                                   end.code)
                    return USAGE_ERROR
                if self.config.max_restarts and self.restarts >= self.config.max_restarts:
                    self.log.error("player %s; giving up after %d restarts", end.describe(), self.restarts)
                    return 1
                if end.ran_s >= self.config.healthy_run_s:
                    self.backoff.reset()
                delay = self.backoff.next_delay()
                self.restarts += 1
                self.log.warning("player %s; restart %d in %.3g s", end.describe(), self.restarts, delay)
                if self._stop.wait(delay):
                    self.log.info("supervisor stopped while waiting to restart")
                    return 0
        finally:
            if self._child is not None and self._child.poll() is None:
                self._kill(self._child)

    # ---- one child ----------------------------------------------------------------------------------------

    def _run_child(self) -> ChildExit:
        self.monitor.clear()
        started = self.clock()
        child = self._child = subprocess.Popen(
            self.command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            errors="replace", env=self.env, preexec_fn=_die_with_parent,
            start_new_session=True)  # its own process group: a kill reaches anything it started (ffmpeg)
        self.log.info("player started (pid %d): %s", child.pid, " ".join(self.command))
        reader = threading.Thread(target=self._forward_output, args=(child,), daemon=True)
        reader.start()
        end = self._watch(child, started)
        reader.join(timeout=5.0)
        self._child = None
        return end

    def _watch(self, child: subprocess.Popen, started: float) -> ChildExit:
        config = self.config
        beat = False
        while True:
            code = child.poll()
            ran_s = self.clock() - started
            if code is not None:  # (a beat written just before exiting still counts)
                return ChildExit(code, ran_s, beat=self.monitor.seconds_since_beat() is not None)
            if self._stop.is_set():
                return ChildExit(self._kill(child), ran_s, beat, stopped=True)
            age = self.monitor.seconds_since_beat()
            beat = age is not None
            if (age is None and ran_s > config.startup_timeout_s) or (age is not None
                                                                      and age > config.heartbeat_timeout_s):
                code = self._kill(child)
                return ChildExit(code, self.clock() - started, beat, hung=True)
            self._stop.wait(config.poll_s)

    def _kill(self, child: subprocess.Popen) -> int | None:
        """SIGTERM to the player, SIGKILL to its process group after the grace period; returns its exit status.
        SIGTERM goes to the player alone: it finishes its recording through ffmpeg, which must not be stopped
        under it. Whatever the player leaves running in its group goes with the SIGKILL."""
        code = None
        for send, sig, wait_s in ((os.kill, signal.SIGTERM, self.config.kill_grace_s),
                                  (os.killpg, signal.SIGKILL, 10.0)):
            try:
                send(child.pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                code = child.wait(timeout=wait_s)
                break
            except subprocess.TimeoutExpired:
                self.log.warning("player (pid %d) ignored %s", child.pid, sig.name)
        try:
            os.killpg(child.pid, signal.SIGKILL)  # leftovers of a player that quit (or died) without them
        except (ProcessLookupError, PermissionError):
            pass
        return code if code is not None else child.poll()

    def _forward_output(self, child: subprocess.Popen) -> None:
        for line in child.stdout:
            line = clip(line.rstrip("\n"))
            if line.strip():
                self.last_output.append(line)
                self.log.info("player: %s", line)
        child.stdout.close()


PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child before it starts: Linux kills it when the supervisor dies, even by SIGKILL or an OOM kill,
    where no `finally` runs. Otherwise an orphaned player keeps the screen and the restarted supervisor's player
    fights it for the display. SIGKILL, because a hung player ignores anything gentler. (Tied to the thread that
    started the child: `run` is called from the supervisor's main thread.) Elsewhere this is a no-op."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: no prctl
        pass
