"""The kiosk supervisor with tiny fake players (crash, hang, refuse, quit), then `worldsim kiosk` end to end."""

import logging
import sys
import textwrap
import threading
import time

import pytest

from worldsim.cli import main
from worldsim.runtime.heartbeat import Heartbeat, HeartbeatMonitor
from worldsim.runtime.kiosk import HEARTBEAT_NAME, PLAYER_LOG_NAME, SUPERVISOR_LOG_NAME
from worldsim.runtime.kiosk_cli import player_arguments
from worldsim.runtime.logs import LogStream, close_log, open_log
from worldsim.runtime.supervisor import Backoff, Supervisor, SupervisorConfig

FAST = SupervisorConfig(heartbeat_timeout_s=0.6, startup_timeout_s=3.0, healthy_run_s=60.0, backoff_initial_s=0.05,
                        backoff_max_s=0.2, kill_grace_s=0.5, poll_s=0.05)

# A fake player: each run appends to a counter file and does what the script for that run says:
#   quit: beat, exit 0   crash: beat, exit 3   hang: beat once, then stop beating (ignoring SIGTERM)
#   silent: never beat   refuse: exit 2 at once, with a message
PLAYER = textwrap.dedent("""
    import os, signal, sys, time
    heartbeat, counter, *script = sys.argv[1:]
    run = len(open(counter).read()) if os.path.exists(counter) else 0
    open(counter, "a").write("x")
    action = script[min(run, len(script) - 1)]
    print(f"fake player run {run}: {action}", flush=True)
    def beat():
        open(heartbeat, "w").write("beat")
    if action == "refuse":
        print("worldsim play: error: no such checkpoint directory", file=sys.stderr)
        sys.exit(2)
    if action == "silent":
        time.sleep(60)
    beat()
    if action == "quit":
        sys.exit(0)
    if action == "crash":
        time.sleep(0.1)
        raise RuntimeError("boom")
    if action == "hang":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # stuck for real: only SIGKILL ends it
        time.sleep(60)
""")


@pytest.fixture
def supervise(tmp_path):
    """supervise("crash", "quit", config=...) -> (exit status, supervisor, log text)."""
    script = tmp_path / "player.py"
    script.write_text(PLAYER)
    log = open_log("worldsim.test_supervisor", tmp_path / SUPERVISOR_LOG_NAME, 100_000, 2)

    def run(*actions: str, config: SupervisorConfig = FAST, stop_after_s: float | None = None):
        heartbeat = tmp_path / HEARTBEAT_NAME
        command = [sys.executable, str(script), str(heartbeat), str(tmp_path / "runs"), *actions]
        supervisor = Supervisor(command, heartbeat, config, log)
        if stop_after_s is not None:
            threading.Timer(stop_after_s, supervisor.stop).start()
        code = supervisor.run()
        for handler in log.handlers:
            handler.flush()
        return code, supervisor, (tmp_path / SUPERVISOR_LOG_NAME).read_text()

    yield run
    close_log(log)


def test_backoff_doubles_up_to_a_cap_and_resets():
    backoff = Backoff(1.0, 5.0)
    assert [backoff.next_delay() for _ in range(5)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    backoff.reset()
    assert backoff.next_delay() == 1.0


def test_a_crashed_player_is_restarted_and_a_clean_quit_ends_the_supervisor(supervise):
    code, supervisor, log = supervise("crash", "crash", "quit")
    assert code == 0 and supervisor.restarts == 2
    assert [end.code for end in supervisor.exits] == [1, 1, 0]
    assert "restart 1 in 0.05 s" in log and "restart 2 in 0.1 s" in log  # the back-off doubles
    assert "player: RuntimeError: boom" in log  # the child's traceback is in the log
    assert "player quit cleanly" in log


def test_a_hung_player_is_killed_and_restarted(supervise):
    started = time.monotonic()
    code, supervisor, log = supervise("hang", "quit")
    assert code == 0 and supervisor.restarts == 1
    hung = supervisor.exits[0]
    assert hung.hung and hung.beat and hung.code == -9  # it ignored SIGTERM: SIGKILL ended it
    assert "hung (no heartbeat for too long" in log and "ignored SIGTERM" in log
    assert time.monotonic() - started < 10


def test_a_player_that_never_beats_is_killed_after_the_startup_timeout(supervise):
    config = SupervisorConfig(**{**FAST.__dict__, "startup_timeout_s": 0.5})
    code, supervisor, log = supervise("silent", "quit", config=config)
    assert code == 0 and supervisor.exits[0].hung and not supervisor.exits[0].beat
    assert "hung at start-up" in log


def test_a_refused_configuration_is_not_restarted(supervise):
    code, supervisor, log = supervise("refuse")
    assert code == 2 and supervisor.restarts == 0
    assert supervisor.last_output[-1] == "worldsim play: error: no such checkpoint directory"
    assert "not restarting" in log


def test_gives_up_after_max_restarts(supervise):
    config = SupervisorConfig(**{**FAST.__dict__, "max_restarts": 2})
    code, supervisor, log = supervise("crash", config=config)
    assert code == 1 and len(supervisor.exits) == 3 and "giving up after 2 restarts" in log


def test_stop_ends_the_player_and_the_supervisor(supervise):
    code, supervisor, log = supervise("hang", stop_after_s=0.5, config=SupervisorConfig(
        **{**FAST.__dict__, "heartbeat_timeout_s": 30.0}))
    assert code == 0 and supervisor.exits[0].stopped and "supervisor stopped" in log


def test_heartbeat_writes_at_most_every_interval(tmp_path):
    clock = [100.0]
    heartbeat = Heartbeat(tmp_path / "beat", interval_s=1.0)
    monitor = HeartbeatMonitor(tmp_path / "beat", clock=lambda: clock[0])
    assert monitor.seconds_since_beat() is None
    for now in (0.0, 0.5, 0.9, 1.0, 1.5):
        heartbeat.beat(now)
    assert heartbeat.beats == 2
    assert monitor.seconds_since_beat() == 0.0
    clock[0] = 105.0
    assert monitor.seconds_since_beat() == 5.0  # the file did not change: the monitor's own clock counts


def test_logs_rotate_and_stay_bounded(tmp_path):
    log = open_log("worldsim.test_rotation", tmp_path / "x.log", max_bytes=10_000, backups=2)
    stream = LogStream(log, logging.WARNING)
    for i in range(2000):
        stream.write(f"line {i} " + "y" * 100 + "\n")
    stream.write("z" * 100_000 + "\n")  # a runaway line is cut
    close_log(log)
    files = sorted(tmp_path.glob("x.log*"))
    assert [f.name for f in files] == ["x.log", "x.log.1", "x.log.2"]
    assert all(f.stat().st_size <= 10_000 for f in files)


def test_player_arguments_are_forwarded(tmp_path):
    import argparse

    from worldsim.runtime.kiosk_cli import add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--checkpoint", "ckpt", "--fps", "12", "--headless", "--log-dir", "logs"])
    assert player_arguments(args) == ["--checkpoint", "ckpt", "--headless", "--fps", "12.0"]


def test_worldsim_kiosk_end_to_end(tiny_checkpoint, tmp_path, capsys):
    logs = tmp_path / "logs"
    rc = main(["kiosk", "--headless", "--checkpoint", str(tiny_checkpoint), "--frames", "10", "--threads", "1",
               "--log-dir", str(logs)])
    assert rc == 0
    assert "logs in" in capsys.readouterr().err
    supervisor_log = (logs / SUPERVISOR_LOG_NAME).read_text()
    assert "play --kiosk" in supervisor_log and "player quit cleanly" in supervisor_log
    assert "worldsim play: 10 frames" in (logs / PLAYER_LOG_NAME).read_text()
    assert (logs / HEARTBEAT_NAME).exists()  # the game loop beat


def test_worldsim_kiosk_reports_a_player_that_cannot_start(tmp_path, capsys):
    rc = main(["kiosk", "--headless", "--checkpoint", str(tmp_path / "nope"), "--frames", "10",
               "--log-dir", str(tmp_path / "logs")])
    err = capsys.readouterr().err
    assert rc == 2 and "the player refused to start" in err and "no such checkpoint directory" in err


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux's")
def test_the_player_dies_with_a_killed_supervisor(tmp_path):
    """SIGKILL leaves the supervisor no chance to clean up: the kernel must take the player down with it."""
    import os
    import signal
    import subprocess

    pid_file = tmp_path / "player.pid"
    player = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(60)"
    supervisor = textwrap.dedent(f"""
        import logging, sys
        from worldsim.runtime.supervisor import Supervisor, SupervisorConfig
        config = SupervisorConfig(heartbeat_timeout_s=60, startup_timeout_s=60)
        Supervisor([sys.executable, "-c", {player!r}], {str(tmp_path / "beat")!r}, config,
                   logging.getLogger("test")).run()
    """)
    process = subprocess.Popen([sys.executable, "-c", supervisor])
    try:
        deadline = time.monotonic() + 20
        while not pid_file.exists() or not pid_file.read_text():
            assert time.monotonic() < deadline, "the player never started"
            time.sleep(0.05)
        player_pid = int(pid_file.read_text())
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        deadline = time.monotonic() + 10
        while True:
            try:
                os.kill(player_pid, 0)
            except ProcessLookupError:
                break  # gone
            assert time.monotonic() < deadline, "the player outlived its supervisor"
            time.sleep(0.05)
    finally:
        process.kill()


def test_stop_ends_a_real_player_cleanly_with_its_recording(tiny_checkpoint, tmp_path):
    """SIGTERM (not the SIGKILL after the grace period) ends the kiosk player, which finishes its recording."""
    heartbeat, video = tmp_path / HEARTBEAT_NAME, tmp_path / "rec.mp4"
    command = [sys.executable, "-m", "worldsim", "play", "--kiosk", "--headless", "--checkpoint",
               str(tiny_checkpoint), "--frames", "1000000", "--fps", "20", "--threads", "1", "--record", str(video),
               "--log-dir", str(tmp_path / "logs"), "--heartbeat", str(heartbeat)]
    config = SupervisorConfig(**{**FAST.__dict__, "heartbeat_timeout_s": 60.0, "startup_timeout_s": 120.0,
                                 "kill_grace_s": 20.0})
    log = open_log("worldsim.test_supervisor_real", tmp_path / SUPERVISOR_LOG_NAME, 100_000, 2)
    supervisor = Supervisor(command, heartbeat, config, log)

    def stop_once_playing():
        deadline = time.monotonic() + 120
        while not heartbeat.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        supervisor.stop()

    threading.Thread(target=stop_once_playing, daemon=True).start()
    try:
        assert supervisor.run() == 0
    finally:
        close_log(log)
    (end,) = supervisor.exits
    assert end.stopped and end.code == 0, end.describe()
    assert "ignored SIGTERM" not in (tmp_path / SUPERVISOR_LOG_NAME).read_text()
    assert video.exists() and (tmp_path / "rec.actions.jsonl").exists()
    assert not list(tmp_path.glob(".*partial*"))
