"""Kiosk soak: the real game loop, headless, for many frames of random play with faults injected.

    python benchmarks/soak.py [--frames 100000] [--checkpoint DIR] [--json OUT]

What runs is the kiosk player (`GameLoop` with the kiosk profile's settings, live input through the event
queue) on one torch thread, with a short idle timeout and session limit so every kiosk path is taken many
times:
  - random input: key presses and releases, mouse motion and clicks, stick and button events, idle spells
    long enough for attract mode, then a "player" arriving;
  - gamepads unplugged and plugged back (synthetic SDL device events, fake pads: no hardware needed);
  - NaN injected into the latent or the KV cache (`WorldSession.inject_fault`), each of which must be
    recovered without a NaN frame being shown;
  - RSS sampled at the start, after the warm-up, in the middle and at the end: after warm-up it must stay
    flat (growth < 5%).

Without --checkpoint a tiny random-weight checkpoint is made in a temporary directory (the soak tests the
runtime, not the world). `run_soak()` is what `tests/runtime/test_soak.py` runs for a few thousand frames.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

import pygame  # noqa: E402
import torch  # noqa: E402

from worldsim.checkpoint import load_checkpoint  # noqa: E402
from worldsim.input.devices import Gamepads, LiveInput, Pad  # noqa: E402
from worldsim.input.events import CONTROLLER_AXES, CONTROLLER_AXIS_MAX, CONTROLLER_BUTTONS, KEY_CODES  # noqa: E402
from worldsim.input.replay import ActionLogHeader  # noqa: E402
from worldsim.runtime.kiosk import PLAYER_LOG_NAME  # noqa: E402
from worldsim.runtime.logs import close_log, open_log  # noqa: E402
from worldsim.runtime.loop import GameLoop  # noqa: E402
from worldsim.runtime.profile import load_profile  # noqa: E402
from worldsim.runtime.session import WorldSession  # noqa: E402
from worldsim.testing import random_checkpoint  # noqa: E402

WARMUP_FRACTION = 0.1  # RSS growth is measured from here: buffers, caches and allocator pools are filled
MAX_RSS_GROWTH = 0.05
IDLE_TIMEOUT_S = 0.3  # seconds without input before attract mode (the kiosk profile's is a minute)
SESSION_FRAMES = 250  # frames before a fresh start (short, so it happens between the idle spells too)
PAD_INSTANCE = 100
UNRECOVERED_AFTER = 20  # loop iterations after an injected NaN by which the world must be finite again
PLAYER_KEYS = ("w", "a", "s", "d", "left", "right", "space", "q", "e", "x", "backspace", "left shift")
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_bytes() -> int:
    """Resident set size now (Linux /proc; elsewhere the peak from getrusage, a weaker check)."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * PAGE_BYTES
    except OSError:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class FakePads:
    """Stands in for SDL's controller API: device index i opens a pad with instance id PAD_INSTANCE + i."""

    def __init__(self):
        self.opened = 0
        self.closed = 0

    def open(self, index: int) -> Pad:
        self.opened += 1
        return Pad(PAD_INSTANCE + index, f"Soak Pad {index}", "controller", self._close)

    def _close(self) -> None:
        self.closed += 1

    def gamepads(self) -> Gamepads:
        return Gamepads(open_controller=self.open, open_joystick=self.open, is_controller=lambda i: True)


class RandomPlayer:
    """Posts a random visitor's events: bursts of play, idle spells, a pad that comes and goes."""

    def __init__(self, rng: random.Random, unplug_every: int):
        self.rng = rng
        self.unplug_every = unplug_every
        self.key_codes = {name: code for code, name in KEY_CODES.items()}
        self.held: set[str] = set()
        self.pad_connected = False
        self.idle_until_s = 0.0
        self.disconnects = 0
        self.reconnects = 0

    def post(self, frame: int, now_s: float) -> None:
        rng = self.rng
        if frame % self.unplug_every == 0:
            self._toggle_pad()
        if now_s < self.idle_until_s:
            return
        if rng.random() < 0.002:  # walk away: release everything, long enough for attract mode
            self._release_all()
            self.idle_until_s = now_s + IDLE_TIMEOUT_S * rng.uniform(1.2, 2.5)
            return
        roll = rng.random()
        if roll < 0.08:
            name = rng.choice(PLAYER_KEYS)
            down = name not in self.held
            self.held.symmetric_difference_update({name})
            kind = pygame.KEYDOWN if down else pygame.KEYUP
            pygame.event.post(pygame.event.Event(kind, key=self.key_codes[name]))
        elif roll < 0.14:
            rel = (rng.randint(-40, 40), rng.randint(-40, 40))
            pygame.event.post(pygame.event.Event(pygame.MOUSEMOTION, rel=rel, pos=(0, 0), buttons=(0, 0, 0)))
        elif roll < 0.15:
            button = rng.choice((1, 3))
            for kind in (pygame.MOUSEBUTTONDOWN, pygame.MOUSEBUTTONUP):
                pygame.event.post(pygame.event.Event(kind, button=button, pos=(0, 0)))
        elif roll < 0.25 and self.pad_connected:
            axis = rng.choice(list(CONTROLLER_AXES))
            value = round(rng.uniform(-1, 1) * CONTROLLER_AXIS_MAX)
            pygame.event.post(pygame.event.Event(pygame.CONTROLLERAXISMOTION, instance_id=PAD_INSTANCE,
                                                 axis=axis, value=value))
        elif roll < 0.27 and self.pad_connected:
            button = rng.choice(list(CONTROLLER_BUTTONS))
            kind = rng.choice((pygame.CONTROLLERBUTTONDOWN, pygame.CONTROLLERBUTTONUP))
            pygame.event.post(pygame.event.Event(kind, instance_id=PAD_INSTANCE, button=button))
        elif roll < 0.272:  # the window loses focus now and then (held keys are released by the source)
            pygame.event.post(pygame.event.Event(pygame.WINDOWFOCUSLOST))
            pygame.event.post(pygame.event.Event(pygame.WINDOWFOCUSGAINED))
            self.held.clear()

    def _toggle_pad(self) -> None:
        if self.pad_connected:
            pygame.event.post(pygame.event.Event(pygame.CONTROLLERDEVICEREMOVED, instance_id=PAD_INSTANCE))
            self.disconnects += 1
        else:
            pygame.event.post(pygame.event.Event(pygame.CONTROLLERDEVICEADDED, device_index=0))
            self.reconnects += 1
        self.pad_connected = not self.pad_connected

    def _release_all(self) -> None:
        for name in sorted(self.held):
            pygame.event.post(pygame.event.Event(pygame.KEYUP, key=self.key_codes[name]))
        self.held.clear()
        if self.pad_connected:  # sticks back to the centre, buttons up
            for axis in CONTROLLER_AXES:
                pygame.event.post(pygame.event.Event(pygame.CONTROLLERAXISMOTION, instance_id=PAD_INSTANCE,
                                                     axis=axis, value=0))
            for button in CONTROLLER_BUTTONS:
                pygame.event.post(pygame.event.Event(pygame.CONTROLLERBUTTONUP, instance_id=PAD_INSTANCE,
                                                     button=button))


def run_soak(checkpoint_dir: Path, frames: int, log_dir: Path, seed: int = 0, fault_every: int = 500,
             unplug_every: int = 700, progress: bool = False) -> dict:
    """Play `frames` frames of random kiosk play with faults; returns the figures (see the module docstring).
    The loop logs (every fault, transition and notice) go to a rotating log in `log_dir`, as a kiosk's do."""
    rng = random.Random(seed)
    rss_start = rss_bytes()
    logger = open_log("worldsim", log_dir / PLAYER_LOG_NAME, 200_000, 2)
    session = WorldSession(load_checkpoint(checkpoint_dir), seed=seed)
    profile = load_profile("kiosk")
    kiosk = dataclasses.replace(profile.kiosk, idle_timeout_s=IDLE_TIMEOUT_S, max_session_frames=SESSION_FRAMES)
    profile = dataclasses.replace(profile, fullscreen=False, window_scale=2, hud=False)
    header = ActionLogHeader(scheme=session.scheme.name, encoding=session.scheme.encoding_dict(), seed=seed,
                             steps=session.steps, checkpoint="soak")
    pads = FakePads()
    loop = GameLoop(session, LiveInput(gamepads=pads.gamepads()), profile, header, fps=None, kiosk=kiosk)
    player = RandomPlayer(rng, unplug_every)
    injected = {"latent": 0, "cache": 0}
    recovered = 0  # injected faults after which the world's whole state was finite again
    pending_since: int | None = None  # loop iterations since the last injection, while not yet recovered
    nonfinite_shown = 0
    warm_at, mid_at = max(1, int(frames * WARMUP_FRACTION)), frames // 2
    rss = {"start": rss_start}
    started_s = time.perf_counter()
    try:
        while loop.frames < frames and loop.running:
            played = loop.frames
            player.post(played, time.perf_counter())
            if played and played % fault_every == 0 and sum(injected.values()) < played // fault_every:
                where = rng.choice(("latent", "cache"))
                session.inject_fault(where)
                injected[where] += 1
                pending_since = 0
            loop.frame()
            if pending_since is not None:
                if session.state_is_finite():
                    recovered += 1
                    pending_since = None
                else:
                    pending_since += 1
                    if pending_since > UNRECOVERED_AFTER:
                        raise RuntimeError(f"soak: the world is still not finite {UNRECOVERED_AFTER} frames after "
                                           f"fault {sum(injected.values())}")
            if loop.frames != played:  # a frame was shown: it must have come from finite numbers
                nonfinite_shown += not session.output_is_finite()
                if loop.frames == warm_at:
                    rss["warm"] = rss_bytes()
                elif loop.frames == mid_at:
                    rss["mid"] = rss_bytes()
                if progress and loop.frames % 10_000 == 0:
                    print(f"soak: {loop.frames} frames, rss {rss_bytes() / 2**20:.1f} MiB", file=sys.stderr)
        elapsed_s = time.perf_counter() - started_s
        rss["end"] = rss_bytes()
        stats = loop.stats()
    finally:
        loop.close()
        close_log(logger)
    faults = stats["faults"]
    growth = (rss["end"] - rss["warm"]) / rss["warm"]
    return {
        "frames": loop.frames,
        "seconds": round(elapsed_s, 1),
        "fps": round(loop.frames / elapsed_s, 1),
        "faults_injected": sum(injected.values()),
        "faults_injected_by_target": injected,
        "faults_recovered": recovered,
        "faults_seen_by_guard": faults["faults"],
        "guard_recovered_by": {"restore": faults["restored"], "reset": faults["reset"]},
        "nonfinite_frames_shown": nonfinite_shown,
        "gamepad_disconnects": player.disconnects,
        "gamepad_reconnects": player.reconnects,
        "pads_opened": pads.opened,
        "pads_closed": pads.closed,
        "kiosk": stats["kiosk"],
        "log_bytes": sum(f.stat().st_size for f in log_dir.glob(PLAYER_LOG_NAME + "*")),
        "rss_mib": {k: round(v / 2**20, 1) for k, v in rss.items()},
        "rss_growth_after_warmup": round(growth, 4),
        "rss_flat": growth < MAX_RSS_GROWTH,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=100_000)
    parser.add_argument("--checkpoint", type=Path, default=None, help="default: a tiny random checkpoint")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fault-every", type=int, default=500, help="frames between injected NaNs")
    parser.add_argument("--unplug-every", type=int, default=700, help="frames between pad unplug/replug events")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = args.checkpoint or random_checkpoint(Path(tmp) / "tiny", scheme="camera")
        result = run_soak(checkpoint, args.frames, Path(tmp) / "logs", args.seed, args.fault_every,
                          args.unplug_every, progress=True)
    result["command"] = " ".join(["python", *sys.argv])
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    ok = (result["faults_recovered"] == result["faults_injected"] and result["nonfinite_frames_shown"] == 0
          and result["rss_flat"] and result["frames"] == args.frames)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
