"""Doors: places of the walkable map that are walls until the player opens them: USE on the door or a switch,
or walking over a line.

The walkable area (walkable.py) holds every place a recorded player has been, doorways included, so without doors a
player of the world walks through closed ones where the recording engine would stop them. A door here is what the
map file says it is (worldsim/data/doom_map.py reads Doom's): the lines that open it (USE facing the door itself,
USE facing a switch, or the player's centre crossing a walk-over line), how high it opens, how fast it moves and
whether it closes again. Its cells on the walkable grid are those where the player's box would overlap the door
sector, walls while the door is lower than the player.

A door's state is three integers, advanced per engine tic like Doom's door thinker: its height above its floor,
its direction (1 up, 0 waiting or at rest, -1 down) and the tics it still waits open. The states live in the
player's state (worldsim/world/movement.py: `PlayerState.doors`), so snapshots, replays and every driver carry them.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np
import torch

from worldsim.world.walkable import WalkableMap

PLAYER_HEIGHT = 56  # Doom: a door passes the player once it is open this high
PLAYER_RADIUS = 16  # Doom: half the side of the player's square box
USE_RANGE = 64  # Doom: USE reaches lines this far ahead of the player's centre
WAIT_TICS = 150  # Doom's VDOORWAIT: a door that closes again waits this long open
DoorState = tuple[int, int, int]  # (height, direction, wait tics left)
CLOSED: DoorState = (0, 0, 0)
MANUAL, SWITCH, WALK = 0, 1, 2  # how a trigger line opens its door


@dataclass(frozen=True)
class DoorSpec:
    """One door as the map file gives it (map units; x right, y up)."""

    outline: np.ndarray  # (K, 4) the door sector's boundary lines x1, y1, x2, y2
    triggers: np.ndarray  # (M, 4) its own faces that USE opens it by (and closes it by, when it closes again)
    top: int  # map units above its floor it opens to
    speed: int  # map units per tic
    stays_open: bool  # Doom's "D1" doors; the others ("DR") close after WAIT_TICS
    switches: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))  # lines elsewhere USE opens it by
    walk_lines: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))  # lines crossing which opens it


class Doors:
    """The doors of one walkable map: which cells each blocks (`walkable.doors`), and how they open and close."""

    def __init__(self, lines: np.ndarray, line_door: np.ndarray, top: np.ndarray, speed: np.ndarray,
                 stays_open: np.ndarray, tics_per_frame: int, line_kind: np.ndarray | None = None):
        self.lines = np.ascontiguousarray(lines, dtype=np.float64).reshape(-1, 4)  # every trigger line
        self.line_door = np.asarray(line_door, dtype=np.int64).reshape(-1)  # the door each opens
        # how each opens its door: MANUAL (USE on the door), SWITCH (USE elsewhere), WALK (crossing it)
        self.line_kind = (np.zeros(len(self.lines), dtype=np.int64) if line_kind is None
                          else np.asarray(line_kind, dtype=np.int64).reshape(-1))
        self.top = np.asarray(top, dtype=np.int64).reshape(-1)
        self.speed = np.asarray(speed, dtype=np.int64).reshape(-1)
        self.stays_open = np.asarray(stays_open, dtype=bool).reshape(-1)
        self.tics_per_frame = int(tics_per_frame)

    def __len__(self) -> int:
        return len(self.top)

    @classmethod
    def build(cls, specs: list[DoorSpec], walkable: WalkableMap, tics_per_frame: int) -> tuple[WalkableMap, Doors]:
        """The walkable map with each door's cells marked (a cell of two doors goes to the first), and the doors."""
        grid = np.full(walkable.grid.shape, -1, dtype=np.int16)
        for i, spec in enumerate(specs):
            grid[(grid < 0) & _door_cells(spec.outline, walkable)] = i
        lines = [(np.asarray(group, dtype=np.float64).reshape(-1, 4), i, kind) for i, spec in enumerate(specs)
                 for kind, group in ((MANUAL, spec.triggers), (SWITCH, spec.switches), (WALK, spec.walk_lines))]
        doors = cls(np.concatenate([g for g, _, _ in lines]) if lines else np.zeros((0, 4)),
                    np.concatenate([np.full(len(g), i) for g, i, _ in lines]) if lines else [],
                    [s.top for s in specs], [s.speed for s in specs], [s.stays_open for s in specs], tics_per_frame,
                    np.concatenate([np.full(len(g), k) for g, _, k in lines]) if lines else [])
        return dataclasses.replace(walkable, doors=grid), doors

    def start(self) -> tuple[DoorState, ...]:
        """Every door shut, as a map starts."""
        return (CLOSED,) * len(self)

    def closed(self, states: tuple[DoorState, ...]) -> np.ndarray:
        """(D,) whether each door is a wall for the player in the coming frame: lower than the player is tall. A
        rising door that gets there before the frame's last tic lets the player through in that tic (the engine
        moves the player every tic, the movement once a frame)."""
        rise = self.speed * (self.tics_per_frame - 1)
        return np.array([height + (rise[i] if direction == 1 else 0) < PLAYER_HEIGHT
                         for i, (height, direction, _) in enumerate(states)], dtype=bool)

    def used(self, x: float, y: float, heading: float) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """What a USE press from (x, y) facing `heading` reaches, the nearest line within reach: (doors whose own
        face it is, doors a switch there opens); both empty when it reaches no trigger line."""
        pressable = self.line_kind != WALK
        if not pressable.any():
            return (), ()
        a = math.radians(heading)
        reach = np.array([math.cos(a), math.sin(a)]) * USE_RANGE
        hits = np.where(pressable, _crossing(np.array([x, y]), reach, self.lines), np.inf)
        if not np.isfinite(hits).any():
            return (), ()
        nearest = np.nonzero(hits == hits.min())[0]  # a switch of several doors is one line per door
        return (tuple(int(self.line_door[i]) for i in nearest if self.line_kind[i] == MANUAL),
                tuple(int(self.line_door[i]) for i in nearest if self.line_kind[i] == SWITCH))

    def crossed(self, start: np.ndarray, end: np.ndarray) -> tuple[int, ...]:
        """The doors whose walk-over lines the player's centre crosses moving from `start` to `end` (2,)."""
        walk = self.line_kind == WALK
        if not walk.any() or not (end != start).any():
            return ()
        hits = _crossing(np.asarray(start, dtype=np.float64), np.asarray(end, dtype=np.float64) - start,
                         self.lines[walk])
        return tuple(int(d) for d in self.line_door[walk][np.isfinite(hits)])

    def advance(self, states: tuple[DoorState, ...], pressed: tuple[int, ...] = (), started: tuple[int, ...] = (),
                inside: int = -1) -> tuple[DoorState, ...]:
        """One recorded frame: the doors USE `pressed` on their own face react as Doom's EV_VerticalDoor, those a
        switch or a walk-over line `started` open if they are shut and still (Doom's EV_DoDoor leaves a moving door
        alone), then every door moves for the frame's tics. `inside`: the door whose cells the player stands in
        (-1: none); a closing door does not close on them."""
        out = list(states)
        for door in pressed:
            height, direction, wait = out[door]
            if direction == -1 or (height, direction) == (0, 0):
                out[door] = (height, 1, 0)  # shut or closing: open (again)
            elif not self.stays_open[door]:
                out[door] = (height, -1, 0)  # opening or open: a closing door closes now
        for door in started:
            if out[door] == CLOSED:
                out[door] = (0, 1, 0)
        for door, state in enumerate(out):
            if state != CLOSED:
                out[door] = self._tics(door, state, inside == door)
        return tuple(out)

    def _tics(self, door: int, state: DoorState, blocked: bool) -> DoorState:
        height, direction, wait = state
        top, speed = int(self.top[door]), int(self.speed[door])
        for _ in range(self.tics_per_frame):
            if direction == 1:
                height = min(height + speed, top)
                if height == top:
                    direction, wait = (0, -1) if self.stays_open[door] else (0, WAIT_TICS)
            elif direction == 0 and wait > 0:
                wait -= 1
                direction = -1 if wait == 0 else 0
            elif direction == -1:
                if blocked and height - speed < PLAYER_HEIGHT:  # it would come down on the player: back up
                    direction = 1
                    continue
                height = max(height - speed, 0)
                if height == 0:
                    return CLOSED
        return height, direction, wait

    def to_tensors(self) -> dict[str, torch.Tensor]:
        return {"triggers": torch.from_numpy(self.lines.copy()),
                "trigger_door": torch.from_numpy(self.line_door.copy()),
                "trigger_kind": torch.from_numpy(self.line_kind.copy()),
                "top": torch.from_numpy(self.top.copy()), "speed": torch.from_numpy(self.speed.copy()),
                "stays_open": torch.from_numpy(self.stays_open.astype(np.uint8)),
                "tics_per_frame": torch.tensor(self.tics_per_frame)}

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor]) -> Doors:
        kind = tensors["trigger_kind"].numpy() if "trigger_kind" in tensors else None  # before remote doors: all MANUAL
        return cls(tensors["triggers"].numpy(), tensors["trigger_door"].numpy(), tensors["top"].numpy(),
                   tensors["speed"].numpy(), tensors["stays_open"].numpy().astype(bool),
                   int(tensors["tics_per_frame"]), kind)


def _crossing(start: np.ndarray, reach: np.ndarray, lines: np.ndarray) -> np.ndarray:
    """(M,) the fraction along `start + s * reach` (0 <= s <= 1) where it crosses each line, inf where it does not."""
    p, q = lines[:, :2], lines[:, 2:] - lines[:, :2]
    denom = reach[0] * q[:, 1] - reach[1] * q[:, 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        d = p - start
        s = (d[:, 0] * q[:, 1] - d[:, 1] * q[:, 0]) / denom
        u = (d[:, 0] * reach[1] - d[:, 1] * reach[0]) / denom
    hit = (denom != 0) & (s >= 0) & (s <= 1) & (u >= 0) & (u <= 1)
    return np.where(hit, s, np.inf)


def _door_cells(outline: np.ndarray, walkable: WalkableMap) -> np.ndarray:
    """(rows, cols) the cells where a player's centre cannot be while the door is shut: inside the door sector, or
    so close to its outline that the player's box overlaps it from anywhere in the cell (a player pressed against
    the shut door is never inside a door cell)."""
    outline = np.asarray(outline, dtype=np.float64).reshape(-1, 4)
    rows, cols = walkable.grid.shape
    cx = walkable.origin[0] + (np.arange(cols) + 0.5) * walkable.cell
    cy = walkable.origin[1] + (np.arange(rows) + 0.5) * walkable.cell
    centres = np.stack(np.meshgrid(cx, cy), -1)  # (rows, cols, 2): x, y
    reach = PLAYER_RADIUS - walkable.cell / 2  # from the cell's centre: the whole cell is within the box's reach
    inside = np.zeros((rows, cols), dtype=bool)
    near = np.zeros((rows, cols), dtype=bool)
    for x1, y1, x2, y2 in outline:
        # even-odd rule: a ray toward +x from each centre crosses the outline an odd number of times inside
        spans = (centres[..., 1] >= min(y1, y2)) & (centres[..., 1] < max(y1, y2))
        with np.errstate(divide="ignore", invalid="ignore"):
            at = x1 + (centres[..., 1] - y1) * (x2 - x1) / (y2 - y1)
        inside ^= spans & (centres[..., 0] < at)
        # the player's box overlaps the line: a point per map unit along it, checked against the cells around it
        c0, c1 = np.searchsorted(cx, [min(x1, x2) - reach, max(x1, x2) + reach])
        r0, r1 = np.searchsorted(cy, [min(y1, y2) - reach, max(y1, y2) + reach])
        for px, py in np.linspace([x1, y1], [x2, y2], max(2, int(math.hypot(x2 - x1, y2 - y1)) + 1)):
            near[r0:r1, c0:c1] |= ((np.abs(cx[c0:c1] - px) < reach)[None, :]
                                   & (np.abs(cy[r0:r1] - py) < reach)[:, None])
    return inside | near
