"""The player's movement: its next pose from its pose, motion and action, walls included.

Two free motions. When the recording engine's player physics is known (Doom's, `TicPhysics`; data/doom.py
calibrates its constants against the engine), the move is integrated per engine tic as the engine does it: the
command thrusts along the heading, the player moves by its momentum (each tic's move stopped or slid by the walls,
so the momentum loses what a wall took), and friction keeps a share of the momentum. Measured on 120 held-out minutes
of the recording policy it is within 0.1 map units of the engine after a second where the learned linear motion
below is 17 units off (median), and 12 against 23 after 10 s: the player's pose is what the world's memory and warp
are read at, so this is the pose the late frames follow.

Otherwise the motion is learned. Between collisions the recorded player moves linearly: its move in a frame is a
fixed share of the previous frame's move (momentum) plus the commands of this frame and the previous one, each
along the heading it was given at (the tic physics summed over a frame, with the momentum read from the last move).
Least squares on the recorded poses learns the five
coefficients (momentum; forward and strafe of the previous command; forward and strafe of this one), with the
blocked frames (a wall ate the move) left out by a robust refit. The turn is a learned gain on the yaw command.
Walls come from the walkable area (worldsim/world/walkable.py): the free move is clipped to it, sliding along its
edge, so the movement never leaves the explored map; with the map's walls (walls.py) that edge is exact. Doors
(worldsim/world/doors.py) are walls of it until USE opens them; their states travel in the player's state.

Everything here is float64 numpy: a fraction of a millisecond per frame, the same result on every machine, so a
replay of the same actions gives the same poses bit for bit.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import torch

from worldsim.world.doors import Doors, DoorSpec, DoorState
from worldsim.world.walkable import WalkableMap
from worldsim.world.walls import Walls

MOVE_CONTROLS = ("forward", "strafe", "yaw")
MOTION_TERMS = 5
OUTLIER_FACTOR = 3.0  # residuals this many times the median mark a blocked frame in the robust refit
MIN_OUTLIER = 0.5  # map units: smaller residuals never do (the median of near-exact frames would say 0)
# map units per frame: a player with nothing pressed whose drift falls below this stops dead, as Doom zeroes the
# momentum under STOPSPEED (1/16 unit per tic: 1/8 per frame at 2 tics) when no move is commanded. Without it the
# learned momentum decays forever and the player never quite stands still.
STOP_SPEED = 0.125
# the open-loop refinement of the coefficients: rollouts of a second (17 frames) from every 3rd recorded frame, at
# most 8,000 of them, Huber loss with a 5-unit knee, 300 Adam steps
REFINE_HORIZON, REFINE_STRIDE, REFINE_WINDOWS, REFINE_HUBER, REFINE_STEPS, REFINE_LR = 17, 3, 8000, 5.0, 300, 0.02


@dataclass(frozen=True)
class TicPhysics:
    """A recording engine's player physics per tic (Doom's P_MovePlayer and P_XYMovement). Each of the
    `tics_per_frame` tics of a recorded frame the heading turns by the frame's turn over the tics (in steps of
    `turn_step` degrees: Doom turns in 1/65536 of a circle), the command adds `thrust` map units per tic to the
    momentum per unit of its forward / strafe move (the engine takes whole move units: `move_units` of them at a
    command of 1), the player moves by the momentum, and friction keeps `friction` of it; a player with nothing
    pressed whose momentum falls under `stop_speed` on both axes stops dead."""

    tics_per_frame: int
    friction: float
    thrust: float  # momentum (map units per tic) added per tic per engine move unit
    move_units: tuple[float, float]  # engine move units of a forward = 1 / strafe = 1 command
    stop_speed: float
    turn_step: float  # degrees (0: turns are not quantised)

    def to_tensors(self) -> dict[str, torch.Tensor]:
        return {"tics_per_frame": torch.tensor(self.tics_per_frame), **{
            k: torch.tensor(v, dtype=torch.float64) for k, v in (
                ("friction", self.friction), ("thrust", self.thrust), ("move_units", self.move_units),
                ("stop_speed", self.stop_speed), ("turn_step", self.turn_step))}}

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor]) -> TicPhysics:
        return cls(int(tensors["tics_per_frame"]), float(tensors["friction"]), float(tensors["thrust"]),
                   tuple(float(u) for u in tensors["move_units"]), float(tensors["stop_speed"]),
                   float(tensors["turn_step"]))

    def thrusts(self, forward: float, strafe: float) -> tuple[float, float]:
        """Momentum added per tic along the heading and to its right: the command in whole engine move units."""
        return (round(forward * self.move_units[0]) * self.thrust, round(strafe * self.move_units[1]) * self.thrust)

    def turn_per_tic(self, turn: float) -> float:
        """The heading change of each tic of a frame that turns by `turn` degrees."""
        per_tic = turn / self.tics_per_frame
        # the engine rounds each tic's turn up to a whole step, counter-clockwise (measured on ViZDoom: round or
        # no steps leave a degree of heading error after 10 s, this none)
        return math.ceil(per_tic / self.turn_step) * self.turn_step if self.turn_step else per_tic

    def momentum_after(self, move: np.ndarray, forward: float, strafe: float, heading: float) -> np.ndarray:
        """The momentum at the end of a recorded frame that moved the player by `move` (2,) under that command,
        ending at `heading`, had no wall got in the way. The frame's move is what its tics carried: S m0 + T a for
        the momentum m0 it started with and the thrust a of each tic (the frame's headings differ by a fraction of
        a degree), which gives m0, and the end momentum is f^n m0 + U a (two tics: f^2 / (1 + f) move + f / (1 + f)
        a)."""
        ahead, right = heading_axes(heading)
        along, side = self.thrusts(forward, strafe)
        thrust = along * ahead + side * right
        f, n = self.friction, self.tics_per_frame
        carried = f ** np.arange(n)  # what friction leaves of a momentum after k tics
        s = carried.sum()
        t = sum(carried[: n - k].sum() for k in range(n))  # tic k's thrust moves the player in tics k .. n - 1
        u = sum(f ** (n - k) for k in range(n))  # and is left f^(n - k) of at the frame's end
        m0 = (np.asarray(move, dtype=np.float64) - t * thrust) / s
        return f ** n * m0 + u * thrust


@dataclass(frozen=True)
class PlayerState:
    """Where the player is: map units (x, y), heading in degrees (0 = +x, counter-clockwise), its motion (vx, vy)
    (Doom has momentum: with `TicPhysics` the momentum per tic at the end of the frame, with the learned motion the
    last frame's displacement), and the forward and strafe command of that frame; with the state of
    each door of the map (doors.py) when the movement has doors (None: not tracked, every door passes), and
    whether USE was held in that frame (Doom uses a line when USE goes down, not while it is held)."""

    x: float
    y: float
    heading: float
    vx: float = 0.0
    vy: float = 0.0
    forward: float = 0.0
    strafe: float = 0.0
    doors: tuple[DoorState, ...] | None = None
    use: bool = False

    @classmethod
    def from_pose(cls, pose: np.ndarray) -> PlayerState:
        """A recorded pose (x, y, heading) at rest."""
        return cls(float(pose[0]), float(pose[1]), float(pose[2]) % 360.0)

    @classmethod
    def along(cls, poses: np.ndarray, actions: np.ndarray, t: int, controls: tuple[str, ...] = ("forward", "strafe"),
              doors: tuple[DoorState, ...] | None = None) -> PlayerState:
        """The recorded player at frame t of a track (poses (F, 3), actions (F, A) with actions[t] producing
        poses[t], named by `controls`): its pose, its last move as the velocity, and the command of that move;
        `doors`: the door states there (`MovementModel.doors_along`), None for untracked."""
        velocity = poses[t, :2] - poses[t - 1, :2] if t > 0 else np.zeros(2)
        forward, strafe = (float(actions[t, controls.index(c)]) for c in ("forward", "strafe"))
        use = "use" in controls and float(actions[t, controls.index("use")]) > 0.5
        return cls(float(poses[t, 0]), float(poses[t, 1]), float(poses[t, 2]) % 360.0, float(velocity[0]),
                   float(velocity[1]), forward, strafe, doors, use)

    @property
    def pose(self) -> np.ndarray:
        return np.array([self.x, self.y, self.heading], dtype=np.float64)


def heading_axes(heading: float) -> tuple[np.ndarray, np.ndarray]:
    """Unit forward and right vectors in map coordinates for a heading in degrees."""
    a = math.radians(heading)
    return np.array([math.cos(a), math.sin(a)]), np.array([math.sin(a), -math.cos(a)])


class MovementModel:
    """`step(state, action) -> state`: free motion (the engine's per-tic physics, or learned and linear) clipped to
    the walkable area."""

    def __init__(self, motion: np.ndarray | None, turn_gain: float, walkable: WalkableMap,
                 controls: tuple[str, ...] = ("forward", "strafe", "yaw", "use"), doors: Doors | None = None,
                 physics: TicPhysics | None = None):
        if (motion is None) == (physics is None):
            raise ValueError("a movement has either the learned linear motion or the engine's tic physics")
        missing = [c for c in MOVE_CONTROLS if c not in controls]
        if missing:
            raise ValueError(f"learned movement needs the controls {list(MOVE_CONTROLS)}; the scheme's controls "
                             f"{list(controls)} lack {missing} (use a camera scheme)")
        # (momentum, previous forward, previous strafe, forward, strafe); C order, so a loaded model sums in the
        # same order (bit-exact replays across save and load)
        self.motion = None if motion is None else np.ascontiguousarray(
            np.asarray(motion, dtype=np.float64).reshape(MOTION_TERMS))
        self.physics = physics
        self.turn_gain = float(turn_gain)  # degrees of heading per unit of yaw (negative: yaw + turns right)
        self.walkable = walkable
        self.controls = tuple(controls)
        self.index = [self.controls.index(c) for c in MOVE_CONTROLS]
        self.doors = doors if doors is not None and len(doors) else None  # the map's doors (walkable.doors cells)
        self.use = self.controls.index("use") if "use" in self.controls else None  # no USE: doors stay shut

    def free_move(self, state: PlayerState, action: np.ndarray) -> tuple[float, np.ndarray]:
        """The new heading and the displacement (2,) the player would make with no wall in the way."""
        if self.physics is not None:
            heading, position, _ = self._tics(state, action, None, collide=False)
            return heading, position - np.array([state.x, state.y])
        forward, strafe, yaw = (float(action[i]) for i in self.index)
        heading = (state.heading + self.turn_gain * yaw) % 360.0
        before_ahead, before_right = heading_axes(state.heading)
        ahead, right = heading_axes(heading)
        terms = (np.array([state.vx, state.vy]), state.forward * before_ahead, state.strafe * before_right,
                 forward * ahead, strafe * right)
        return heading, sum(c * term for c, term in zip(self.motion, terms))

    def step(self, state: PlayerState, action: np.ndarray) -> PlayerState:
        position = np.array([state.x, state.y])
        doors = state.doors if self.doors is not None else None
        shut = None if doors is None else self.doors.closed(doors)
        if self.physics is not None:
            heading, moved, velocity = self._tics(state, action, shut, collide=True)
        else:
            heading, delta = self.free_move(state, action)
            if action[self.index[0]] == 0 and action[self.index[1]] == 0 and abs(delta).max() < STOP_SPEED:
                delta = np.zeros(2)
            moved = self.walkable.move(position, delta, shut)
            velocity = moved - position
        use = self._pressed_use(action)
        if doors is not None:  # Doom's order: the player moves (crossing lines), then uses, then the doors move
            doors = self._doors_after(doors, position, moved, heading, use and not state.use)
        return PlayerState(float(moved[0]), float(moved[1]), heading, float(velocity[0]), float(velocity[1]),
                           float(action[self.index[0]]), float(action[self.index[1]]), doors, use)

    def _tics(self, state: PlayerState, action: np.ndarray, shut: np.ndarray | None,
              collide: bool) -> tuple[float, np.ndarray, np.ndarray]:
        """The heading, position (2,) and momentum (2,) after one frame of `TicPhysics`, each tic's move stopped
        or slid by the walls as Doom does it when `collide` (`WalkableMap.slide`: the momentum keeps only what is
        left of the move along the wall)."""
        physics = self.physics
        forward, strafe, yaw = (float(action[i]) for i in self.index)
        along, side = physics.thrusts(forward, strafe)
        turn = physics.turn_per_tic(self.turn_gain * yaw)
        commanded = along != 0 or side != 0
        heading, position, momentum = state.heading, np.array([state.x, state.y]), np.array([state.vx, state.vy])
        for _ in range(physics.tics_per_frame):
            heading = (heading + turn) % 360.0
            ahead, right = heading_axes(heading)
            momentum = momentum + along * ahead + side * right
            if collide:
                position, momentum = self.walkable.slide(position, momentum, shut)
            else:
                position = position + momentum
            if not commanded and np.abs(momentum).max() < physics.stop_speed:
                momentum = np.zeros(2)
            else:
                momentum = momentum * physics.friction
        return heading, position, momentum

    def along(self, poses: np.ndarray, actions: np.ndarray, t: int,
              doors: tuple[DoorState, ...] | None = None) -> PlayerState:
        """The recorded player at frame t of a track (`PlayerState.along`) with the motion this movement carries:
        with `TicPhysics`, the momentum that frame's move and command leave (exact when no wall got in the way)."""
        state = PlayerState.along(poses, actions, t, self.controls, doors)
        if self.physics is None:
            return state
        momentum = self.physics.momentum_after(np.array([state.vx, state.vy]), state.forward, state.strafe,
                                               state.heading)
        return dataclasses.replace(state, vx=float(momentum[0]), vy=float(momentum[1]))

    def start(self, pose: np.ndarray) -> PlayerState:
        """A player at rest at a recorded pose, moved onto the walkable area if it lies off it; doors shut."""
        x, y = self.walkable.nearest_inside(np.asarray(pose[:2], dtype=np.float64))
        return PlayerState(float(x), float(y), float(pose[2]) % 360.0,
                           doors=None if self.doors is None else self.doors.start())

    def doors_along(self, poses: np.ndarray, actions: np.ndarray) -> list[tuple[DoorState, ...] | None]:
        """The door states after each frame of a recorded track (poses (F, 3), actions (F, A), actions[t] producing
        poses[t], from the map's start): the doors the recorded player opened, as these doors open."""
        if self.doors is None:
            return [None] * len(poses)
        states, doors, held = [], self.doors.start(), False
        for t, (pose, action) in enumerate(zip(poses, actions)):
            use = self._pressed_use(action)
            before = poses[max(t - 1, 0), :2]
            doors, held = self._doors_after(doors, before, pose[:2], float(pose[2]), use and not held), use
            states.append(doors)
        return states

    def _pressed_use(self, action: np.ndarray) -> bool:
        return self.use is not None and float(action[self.use]) > 0.5

    def _doors_after(self, doors: tuple[DoorState, ...], start: np.ndarray, xy: np.ndarray, heading: float,
                     used: bool) -> tuple[DoorState, ...]:
        """The doors after a frame that moves the player from `start` to `xy` facing `heading`, USE going down in it
        if `used`."""
        pressed, switched = self.doors.used(float(xy[0]), float(xy[1]), heading) if used else ((), ())
        started = switched + self.doors.crossed(np.asarray(start, dtype=np.float64), np.asarray(xy, dtype=np.float64))
        return self.doors.advance(doors, pressed, started, self.walkable.door_at(xy))

    def rollout(self, state: PlayerState, actions: np.ndarray) -> np.ndarray:
        """Poses (T, 3) after each of `actions` (T, A), open loop."""
        out = np.empty((len(actions), 3))
        for t, action in enumerate(actions):
            state = self.step(state, action)
            out[t] = state.pose
        return out

    # ---- fitting and storage ----------------------------------------------------------------------------------

    @classmethod
    def fit(cls, episodes: list[tuple[np.ndarray, np.ndarray]], controls: tuple[str, ...], cell: float = 8.0,
            max_hole: int = 64, doors: list[DoorSpec] | None = None, tics_per_frame: int = 2,
            walls: Walls | None = None, reach: float = 0.0, physics: TicPhysics | None = None) -> MovementModel:
        """Learn from recorded episodes [(poses (T, 3), actions (T, A))], where actions[t] produced poses[t]; with
        the map's `doors` (the recording engine's, `tics_per_frame` engine tics per recorded frame) and `walls`
        (the walkable area then reaches `reach` units past the recorded positions, up to them); with the engine's
        `physics` only the turn is learned, not the free motion."""
        index = [controls.index(c) for c in MOVE_CONTROLS if c in controls]
        if len(index) != len(MOVE_CONTROLS):
            raise ValueError(f"learned movement needs the controls {list(MOVE_CONTROLS)}, got {list(controls)}")
        episodes = [(np.asarray(p, np.float64), np.asarray(a, np.float64)) for p, a in episodes]
        tracks = [(p, a) for p, a in episodes if len(p) >= 3]
        if not tracks:
            raise ValueError("no recorded episode has 3 or more poses to learn movement from")
        turns = np.concatenate([(np.diff(p[:, 2]) + 180.0) % 360.0 - 180.0 for p, _ in tracks])
        yaws = np.concatenate([a[1:, index[2]] for _, a in tracks])
        turning = np.abs(yaws) > 1e-3
        turn_gain = float((turns[turning] @ yaws[turning]) / max(yaws[turning] @ yaws[turning], 1e-12))
        motion = None if physics is not None else _fit_motion(tracks, turn_gain, episodes, index)
        positions = np.concatenate([np.asarray(p, np.float64)[:, :2] for p, _ in episodes])
        walkable, built = WalkableMap.fit(positions, cell, max_hole, walls=walls, reach=reach), None
        if doors:
            walkable, built = Doors.build(doors, walkable, tics_per_frame)
        return cls(motion, turn_gain, walkable, controls, built, physics)

    def to_tensors(self) -> dict[str, torch.Tensor]:
        doors = {} if self.doors is None else {f"doors.{k}": v for k, v in self.doors.to_tensors().items()}
        motion = ({"motion": torch.from_numpy(self.motion.copy())} if self.physics is None else
                  {f"physics.{k}": v for k, v in self.physics.to_tensors().items()})
        return {**motion, "turn_gain": torch.tensor(self.turn_gain, dtype=torch.float64),
                **{f"walkable.{k}": v for k, v in self.walkable.to_tensors().items()}, **doors}

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor], controls: tuple[str, ...]) -> MovementModel:
        def group(prefix: str) -> dict[str, torch.Tensor]:
            return {k.split(".", 1)[1]: v for k, v in tensors.items() if k.startswith(prefix + ".")}

        doors = Doors.from_tensors(group("doors")) if "doors.top" in tensors else None
        physics = TicPhysics.from_tensors(group("physics")) if "physics.friction" in tensors else None
        motion = tensors["motion"].numpy() if physics is None else None
        return cls(motion, float(tensors["turn_gain"]), WalkableMap.from_tensors(group("walkable")), controls, doors,
                   physics)


def _fit_motion(tracks: list[tuple[np.ndarray, np.ndarray]], turn_gain: float,
                episodes: list[tuple[np.ndarray, np.ndarray]], index: list[int]) -> np.ndarray:
    """The five coefficients of the learned linear motion: robust one-step least squares on `tracks` (episodes of 3
    or more frames), then refined open loop."""
    features, targets = [], []
    for poses, actions in tracks:
        moves = np.diff(poses[:, :2], axis=0)  # moves[t - 1] = poses[t] - poses[t - 1], made by actions[t]
        heading = np.radians(poses[:, 2])
        ahead = np.stack([np.cos(heading), np.sin(heading)], 1)
        right = np.stack([np.sin(heading), -np.cos(heading)], 1)
        forward, strafe = actions[:, index[0], None], actions[:, index[1], None]
        # the move into frame t (t >= 2) from the move into t - 1 and the commands of t - 1 and t, each along its own
        # heading: (N, 2 axes, 5 terms)
        features.append(np.stack([moves[:-1], forward[1:-1] * ahead[1:-1], strafe[1:-1] * right[1:-1],
                                  forward[2:] * ahead[2:], strafe[2:] * right[2:]], -1))
        targets.append(moves[1:])
    X = np.concatenate(features).reshape(-1, MOTION_TERMS)  # both axes share the coefficients (no preferred
    Y = np.concatenate(targets).reshape(-1)  # direction in the map)
    moving = (np.abs(X).sum(1) > 0) | (Y != 0)  # a player at rest with nothing pressed says nothing
    X, Y = X[moving], Y[moving]
    keep = np.ones(len(X), dtype=bool)
    for _ in range(3):  # blocked frames do not follow the free motion: fit, drop outliers, refit
        motion = np.linalg.lstsq(X[keep], Y[keep], rcond=None)[0]
        residual = np.abs(Y - X @ motion)
        keep = residual <= max(OUTLIER_FACTOR * float(np.median(residual[keep])), MIN_OUTLIER)
    return _refine_open_loop(motion, turn_gain, episodes, index)


def _refine_open_loop(motion: np.ndarray, turn_gain: float, episodes: list[tuple[np.ndarray, np.ndarray]],
                      index: list[int]) -> np.ndarray:
    """The coefficients that keep REFINE_HORIZON-frame open-loop rollouts (from recorded states, walls left out)
    closest to the recorded positions, starting from the one-step least squares.

    One-step least squares is what a rollout does not need: its small errors in the velocity persist through the
    momentum, and over a second they grow to tens of map units (held-out median after 1 s: 28 units; refined: 16).
    Windows where a wall or a door stopped the player are left out (the walkable map handles walls), and the Huber
    loss keeps what is left of them from pulling the coefficients. Deterministic: fixed windows (every
    REFINE_STRIDE-th start, at most REFINE_WINDOWS of them) and a fixed number of Adam steps."""
    h = REFINE_HORIZON
    windows = [(p[s - 1: s + h + 1], a[s: s + h + 1]) for p, a in
               ((np.asarray(p, np.float64), np.asarray(a, np.float64)) for p, a in episodes)
               for s in range(1, len(p) - h - 1, REFINE_STRIDE)]
    if not windows:
        return motion
    windows = windows[:: max(1, len(windows) // REFINE_WINDOWS)]
    poses = torch.from_numpy(np.stack([w[0] for w in windows]))  # (N, h + 2, 3): frames s - 1 .. s + h
    actions = torch.from_numpy(np.stack([w[1][:, index] for w in windows]))  # (N, h + 1, 3): actions s .. s + h
    free = _unblocked(torch.from_numpy(motion), poses, actions)  # walls are the walkable map's job, not the motion's
    if not free.any():
        return motion
    poses, actions = poses[free], actions[free]
    weights = torch.tensor(motion, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.Adam([weights], lr=REFINE_LR)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 - step / REFINE_STEPS)  # settle at the end

    for _ in range(REFINE_STEPS):
        position, velocity, heading = poses[:, 1, :2], poses[:, 1, :2] - poses[:, 0, :2], poses[:, 1, 2]
        forward, strafe = actions[:, 0, 0:1], actions[:, 0, 1:2]
        loss = poses.new_zeros(())
        for k in range(1, h + 1):
            turned = heading + turn_gain * actions[:, k, 2]
            velocity = _moves(weights, velocity, forward, strafe, heading, actions[:, k], turned)
            position, heading = position + velocity, turned
            forward, strafe = actions[:, k, 0:1], actions[:, k, 1:2]
            error = (position - poses[:, k + 1, :2]).norm(dim=-1)
            loss = loss + torch.nn.functional.huber_loss(error, torch.zeros_like(error), delta=REFINE_HUBER)
        optimizer.zero_grad()
        (loss / h).backward()
        optimizer.step()
        schedule.step()
    return weights.detach().numpy().copy()


def _axes(heading: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    a = torch.deg2rad(heading)
    return torch.stack([a.cos(), a.sin()], -1), torch.stack([a.sin(), -a.cos()], -1)


def _moves(motion: torch.Tensor, velocity: torch.Tensor, forward: torch.Tensor, strafe: torch.Tensor,
           heading: torch.Tensor, action: torch.Tensor, turned: torch.Tensor) -> torch.Tensor:
    """`MovementModel.free_move` for batches: the free moves (..., 2) from the last moves (..., 2), the last commands
    (..., 1) given at `heading` (...), and this frame's actions (..., 3: forward, strafe, yaw) at `turned` (...)."""
    before_ahead, before_right = _axes(heading)
    ahead, right = _axes(turned)
    return (motion[0] * velocity + motion[1] * forward * before_ahead + motion[2] * strafe * before_right
            + motion[3] * action[..., 0:1] * ahead + motion[4] * action[..., 1:2] * right)


def _unblocked(motion: torch.Tensor, poses: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """(N,) whether every frame of each window follows the one-step free motion (no wall, no door in the way)."""
    velocity = poses[:, 1:-1, :2] - poses[:, :-2, :2]  # the move into frames s .. s + h - 1
    predicted = _moves(motion, velocity, actions[:, :-1, 0:1], actions[:, :-1, 1:2], poses[:, 1:-1, 2],
                       actions[:, 1:], poses[:, 2:, 2])
    residual = (poses[:, 2:, :2] - poses[:, 1:-1, :2] - predicted).norm(dim=-1)  # (N, h)
    limit = max(OUTLIER_FACTOR * float(residual[residual > 0].median()) if (residual > 0).any() else 0.0,
                MIN_OUTLIER)
    return (residual <= limit).all(dim=1)
