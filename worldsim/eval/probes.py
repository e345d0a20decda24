"""Behaviour probes: short scripted programs replayed in the engine and in the model from the same first frame.

PSNR by horizon says how far a world is from the engine; the probes say whether it behaves like a place:

    stand_still     nothing pressed for a minute: the engine's frame does not change. Passes when the model's
                    mean frame-to-frame change is <= 0.5 grey levels and its last frame is >= 25 dB from its first.
    walk_into_wall  turn a quarter, then walk forward into the wall: once the engine is blocked (its position
                    moves < 0.5 map units per frame), the model's frame must change <= 1 grey level per frame.
    strafe          strafe right, then left: the mean horizontal image shift per frame must be within 30% of
                    the engine's.
    turn_in_place   turn right for 180 frames (two full turns in the camera scheme): after a full turn the
                    engine shows its start again and after a half turn it does not. Passes when the model's frame
                    after a full turn is closer to its start than the frame after half a turn, by >= 5 dB.
    walk_loop       walk forward, turn round, walk back, turn round again: the player returns to where it
                    started (loop closure, issue 12). Passes when the model's frame on return is closer to its
                    first frame than its frame at the far end of the walk, by >= 5 dB.

Probes press keys as a player would (W, A, D, the right arrow), so they play any scheme that binds them; a scheme
that binds none of a segment's keys skips that probe. The turn is judged at the frames where the engine has turned
180, 360 and 720 degrees (from its poses), whatever the scheme's turn rate. Frames are compared at the model's
resolution, as every other eval metric.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from worldsim.conditioning.scheme import Scheme
from worldsim.eval.metrics import luma, psnr
from worldsim.input.state import ControllerState

FPS_MINUTE = 1050  # one minute at Doom's 17.5 recorded frames per second
BLOCKED_UNITS = 0.5  # map units per frame under which the engine's player counts as stopped by a wall
PROBE_SHEET = "probes.png"  # engine row over model row per probe
MAX_SHIFT = 12  # pixels searched for the horizontal image shift between frames

# pass thresholds (the targets)
STILL_MAX_CHANGE = 0.5  # grey levels per frame
STILL_MIN_PSNR = 25.0  # dB, last frame vs first
WALL_MAX_CHANGE = 1.0  # grey levels per frame once blocked
STRAFE_TOLERANCE = 0.3  # relative to the engine's shift
TURN_MIN_GAIN = 5.0  # dB, full turn over half turn


@dataclass(frozen=True)
class Probe:
    name: str
    segments: tuple[tuple[int, tuple[str, ...]], ...]  # (frames, keyboard keys held), as a player would press them

    @property
    def frames(self) -> int:
        return sum(n for n, _ in self.segments)


PROBES: dict[str, Probe] = {
    "stand_still": Probe("stand_still", ((FPS_MINUTE, ()),)),
    "walk_into_wall": Probe("walk_into_wall", ((22, ("right",)), (60, ("w",)))),
    "strafe": Probe("strafe", ((24, ("d",)), (24, ("a",)))),
    "turn_in_place": Probe("turn_in_place", ((180, ("right",)),)),  # two full turns at the camera scheme's rate
    # 45 frames of the right arrow turn 180 degrees at the camera scheme's 4 degrees per frame
    "walk_loop": Probe("walk_loop", ((20, ("w",)), (45, ("right",)), (20, ("w",)), (45, ("right",)), (10, ()))),
}


def probe_actions(probe: Probe, scheme: Scheme) -> np.ndarray | None:
    """(frames + 1, A) actions of the scheme for the probe's keys, row 0 the no-op before the first frame; None
    when the scheme binds none of the keys of a segment (the probe cannot be played with it)."""
    no_op = scheme.action(ControllerState())
    rows = [no_op]
    for frames, keys in probe.segments:
        action = scheme.action(ControllerState(keys=frozenset(keys)))
        if keys and np.array_equal(action, no_op):
            return None
        rows += [action] * frames
    return np.stack(rows).astype(np.float32)


def record_engine(probe_actions_: np.ndarray, scheme: Scheme, doom: str | None = None, seed: int = 0
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Play the actions in ViZDoom from the map's start: frames (F + 1, H, W, 3) and poses (F + 1, 3)."""
    from worldsim.data.env import make_env

    env = make_env("doom", doom, scheme)
    try:
        frame, pose = env.reset(seed)
        frames, poses = [frame], [pose]
        for action in probe_actions_[1:]:
            frame, pose, _ = env.step(action)
            frames.append(frame)
            poses.append(pose)
    finally:
        env.close()
    return np.stack(frames), np.stack(poses)


def frame_change(frames: np.ndarray) -> np.ndarray:
    """(F + 1, H, W, 3) -> (F,) mean absolute luma change from the previous frame, in grey levels."""
    y = luma(frames)
    return np.abs(np.diff(y, axis=0)).mean((1, 2))


def horizontal_shift(frames: np.ndarray, max_shift: int = MAX_SHIFT) -> np.ndarray:
    """(F + 1, H, W, 3) -> (F,) horizontal displacement in pixels of each frame from the previous one (the
    integer shift with the lowest mean squared luma difference over the overlap, refined by a parabola)."""
    y = luma(frames)
    shifts = np.arange(-max_shift, max_shift + 1)
    out = np.empty(len(y) - 1, np.float32)
    for i in range(len(y) - 1):
        a, b = y[i], y[i + 1]
        err = np.array([((b[:, max(s, 0): b.shape[1] + min(s, 0)] - a[:, max(-s, 0): a.shape[1] + min(-s, 0)]) ** 2
                         ).mean() for s in shifts])
        k = int(np.argmin(err))
        offset = 0.0
        if 0 < k < len(err) - 1:  # sub-pixel: the vertex of the parabola through the minimum and its neighbours
            denom = err[k - 1] - 2 * err[k] + err[k + 1]
            offset = 0.5 * (err[k - 1] - err[k + 1]) / denom if denom > 0 else 0.0
        out[i] = shifts[k] + offset
    return out


def _heading_steps(poses: np.ndarray) -> np.ndarray:
    """(F + 1, 3) poses -> (F + 1,) the heading change into each frame in degrees (0 for frame 0), unwrapped."""
    step = np.diff(poses[:, 2])
    return np.concatenate([[0.0], (step + 180) % 360 - 180])


def judge(name: str, engine: np.ndarray, poses: np.ndarray, model: np.ndarray) -> dict:
    """One probe's figures for the engine and the model (both (F + 1, h, w, 3) at the model's resolution, frame 0
    the shared first frame), with `passed` for the model."""
    if name == "stand_still":
        result = {side: {"mean_change": float(frame_change(f).mean()), "last_vs_first_psnr": psnr(f[-1:], f[:1])[0]}
                  for side, f in (("engine", engine), ("model", model))}
        m = result["model"]
        passed = m["mean_change"] <= STILL_MAX_CHANGE and m["last_vs_first_psnr"] >= STILL_MIN_PSNR
    elif name == "walk_into_wall":
        speed = np.linalg.norm(np.diff(poses[:, :2], axis=0), axis=1)  # (F,) engine's motion per frame
        forward = np.arange(len(speed)) >= PROBES[name].segments[0][0]
        blocked = forward & (speed < BLOCKED_UNITS)
        result = {"blocked_frames": int(blocked.sum())}
        for side, f in (("engine", engine), ("model", model)):
            change = frame_change(f)
            result[side] = {"change_when_blocked": float(change[blocked].mean()) if blocked.any() else float("nan")}
        passed = bool(blocked.any()) and result["model"]["change_when_blocked"] <= WALL_MAX_CHANGE
    elif name == "strafe":
        result = {side: {"mean_abs_shift": float(np.abs(horizontal_shift(f)).mean())}
                  for side, f in (("engine", engine), ("model", model))}
        ratio = result["model"]["mean_abs_shift"] / max(result["engine"]["mean_abs_shift"], 1e-6)
        result["shift_ratio"] = ratio
        passed = abs(ratio - 1) <= STRAFE_TOLERANCE
    elif name == "turn_in_place":
        turned = np.abs(np.cumsum(_heading_steps(poses)))  # (F + 1,) degrees turned by frame k
        seats = {deg: int(np.argmax(turned >= deg - 1)) for deg in (180, 360, 720) if turned[-1] >= deg - 1}
        result = {"frames_at_degrees": seats}
        for side, f in (("engine", engine), ("model", model)):
            at = {str(deg): psnr(f[k: k + 1], f[:1])[0] for deg, k in seats.items()}
            result[side] = {"psnr_to_start_after_degrees": at,
                            "full_over_half_db": at["360"] - at["180"] if "360" in at else float("nan")}
        passed = "360" in result["model"]["psnr_to_start_after_degrees"] and \
            result["model"]["full_over_half_db"] >= TURN_MIN_GAIN
    elif name == "walk_loop":
        far = PROBES[name].segments[0][0]  # the last frame of the first walk
        result = {"return_distance": float(np.linalg.norm(poses[-1, :2] - poses[0, :2])),
                  "far_distance": float(np.linalg.norm(poses[far, :2] - poses[0, :2]))}
        for side, f in (("engine", engine), ("model", model)):
            back, away = psnr(f[-1:], f[:1])[0], psnr(f[far: far + 1], f[:1])[0]
            result[side] = {"return_psnr": back, "far_psnr": away, "return_over_far_db": back - away}
        passed = result["model"]["return_over_far_db"] >= TURN_MIN_GAIN
    else:
        raise KeyError(f"unknown probe {name!r}; known: {', '.join(PROBES)}")
    return {**result, "passed": bool(passed)}


def run_probes(session, doom: str | None = None, names: tuple[str, ...] | None = None,
               engine_cache: dict | None = None) -> dict:
    """Every probe (or `names`) on a `WorldSession`: engine and model from the engine's first frame, judged.
    `engine_cache` (name -> (frames, poses) at model resolution) spares the engine when judging several worlds.
    Returns name -> figures (probes whose controls the scheme lacks are left out), and under `_frames` the
    (engine, model) frames of each probe for `write_probe_sheet`."""
    from worldsim.data.dataset import resize_frames

    height, width = session.image_size
    results: dict = {"_frames": {}}
    for name in names or tuple(PROBES):
        actions = probe_actions(PROBES[name], session.scheme)
        if actions is None:
            continue
        if engine_cache is not None and name in engine_cache:
            engine, poses = engine_cache[name]
        else:
            frames, poses = record_engine(actions, session.scheme, doom)
            engine = resize_frames(frames, (width, height))
            if engine_cache is not None:
                engine_cache[name] = (engine, poses)
        session.reset(engine[0], poses[0])
        model = np.stack([engine[0]] + [session.step(session.encode(a)) for a in actions[1:]])
        results[name] = judge(name, engine, poses, model)
        results["_frames"][name] = (engine, model)
    return results


def write_probe_sheet(out, frames: dict[str, tuple[np.ndarray, np.ndarray]], columns: int = 8):
    """A contact sheet: per probe, the engine's row above the model's, at `columns` evenly spaced frames."""
    from pathlib import Path

    import imageio.v2 as imageio

    rows = []
    for engine, model in frames.values():
        at = np.linspace(0, len(engine) - 1, columns).round().astype(int)
        rows += [np.concatenate(list(engine[at]), 1), np.concatenate(list(model[at]), 1)]
    path = Path(out) / PROBE_SHEET
    path.parent.mkdir(parents=True, exist_ok=True)
    imageio.imwrite(path, np.concatenate(rows, 0))
    return path
