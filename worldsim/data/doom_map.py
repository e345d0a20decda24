"""Doom map files (WADs): the map names in one, and the doors and walls of a map, for the learned movement
(worldsim/world).

A map's geometry is five lumps after its marker: VERTEXES (x, y), LINEDEFS (two vertices, flags, a special, a front
and a back side), SIDEDEFS (the sector each side faces), SECTORS (floor and ceiling heights) and THINGS.

A door is a sector whose ceiling starts at its floor. A manual door opens by USE on a line with a door special,
from the line's front: the door is the line's back sector. A remote door is every sector tagged by a switch (USE)
or walk-over line (the player's centre crossing it) with a door-opening special. Keyed doors are left out (the
recorded player carries no keys, so they never open: they stay walls), and so are doors that shoot-to-open lines or
other specials open (their cells stay walkable). Doom's once-only lines (S1, W1) are read as repeatable: a door
they open the second time was open already, or closes again anyway.

The walls are what stops Doom's player for good: one-sided lines, lines flagged as blocking, two-sided lines whose
opening is lower than the player or whose floors differ by more than a step, and the square boxes of solid
decorations (pillars, lamps, trees, barrels) placed at the recorded skill. Lines of sectors that move (doors, lifts:
any sector a line special acts on) are left out: doors have their own model, and the walkable area decides the rest.
Only the classic (Doom) map format is read; a UDMF map has no doors or walls here.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from worldsim.errors import WorldsimError
from worldsim.world.doors import DoorSpec

# line special -> (speed in map units per tic, stays open): Doom's manual doors that need no key
MANUAL_DOORS = {1: (2, False), 117: (8, False), 31: (2, True), 118: (8, True)}
DOOR_GAP = 4  # Doom opens a door to 4 units below the lowest ceiling around it
# line special -> (speed, stays open): Doom's remote door specials that open a shut door with no key, by a switch
# (USE) or a walk-over line; doors that start open and close are not read
SWITCH_DOORS = {29: (2, False), 63: (2, False), 111: (8, False), 114: (8, False),
                103: (2, True), 61: (2, True), 112: (8, True), 115: (8, True)}
WALK_DOORS = {4: (2, False), 90: (2, False), 105: (8, False), 108: (8, False),
              2: (2, True), 86: (2, True), 106: (8, True), 109: (8, True)}
REMOTE_DOORS = {**SWITCH_DOORS, **WALK_DOORS}
# Doom's manual door specials that need a key (blue, yellow, red; opening once or closing again)
KEYED_DOORS = {26, 27, 28, 32, 33, 34}
NO_SIDE = 0xFFFF
BLOCKS_PLAYER = 0x0001  # linedef flag
PLAYER_HEIGHT, STEP_HEIGHT = 56, 24  # Doom: openings lower than the player and steps higher than this block
# thing flags: the skills it appears at (1-2, 3, 4-5), and "multiplayer only"
SKILL_FLAGS, MULTIPLAYER_ONLY = {1: 0x1, 2: 0x1, 3: 0x2, 4: 0x4, 5: 0x4}, 0x10
# Doom's solid decorations that stand on the floor -> their radius (half the side of their square box); hanging
# ones are left out (ZDoom, which ViZDoom runs, lets the player pass under them)
SOLID_THINGS = {2035: 10, 2028: 16, 30: 16, 31: 16, 32: 16, 33: 16, 35: 16, 36: 16, 37: 16, 41: 16, 42: 16, 43: 16,
                44: 16, 45: 16, 46: 16, 47: 16, 48: 16, 54: 32, 55: 16, 56: 16, 57: 16, 70: 16, 85: 16, 86: 16,
                25: 16, 26: 16, 27: 16, 28: 16, 29: 16}

_LINEDEF = np.dtype([("v1", "<u2"), ("v2", "<u2"), ("flags", "<u2"), ("special", "<u2"), ("tag", "<u2"),
                     ("front", "<u2"), ("back", "<u2")])
_SIDEDEF = np.dtype([("x", "<i2"), ("y", "<i2"), ("upper", "S8"), ("lower", "S8"), ("middle", "S8"),
                     ("sector", "<u2")])
_SECTOR = np.dtype([("floor", "<i2"), ("ceiling", "<i2"), ("floor_texture", "S8"), ("ceiling_texture", "S8"),
                    ("light", "<i2"), ("special", "<u2"), ("tag", "<u2")])
_THING = np.dtype([("x", "<i2"), ("y", "<i2"), ("angle", "<u2"), ("type", "<u2"), ("flags", "<u2")])


def wad_lumps(path: Path) -> list[tuple[str, int, int]]:
    """The WAD's directory: (name, offset, size) of each lump, in order."""
    try:
        with open(path, "rb") as f:
            ident, count, offset = struct.unpack("<4sii", f.read(12))
            if ident not in (b"IWAD", b"PWAD") or count < 0 or offset < 12:
                raise WorldsimError(f"{path} is not a WAD file")
            f.seek(offset)
            directory = f.read(16 * count)
    except (OSError, struct.error) as err:
        raise WorldsimError(f"cannot read WAD {path}: {err}") from None
    lumps = []
    for i in range(0, len(directory) - 15, 16):
        start, size, name = struct.unpack("<ii8s", directory[i:i + 16])
        lumps.append((name.rstrip(b"\0").decode("ascii", "replace"), start, size))
    return lumps


def wad_maps(path: Path) -> list[str]:
    """Map names in a WAD: the marker lumps directly followed by THINGS (Doom format) or TEXTMAP (UDMF)."""
    names = [name for name, _, _ in wad_lumps(path)]
    return [names[i - 1] for i in range(1, len(names)) if names[i] in ("THINGS", "TEXTMAP")]


class MapGeometry:
    """One classic-format map's lumps, with each line's front and back sector (-1: no side) and its segment."""

    def __init__(self, path: Path, map_name: str):
        lumps = wad_lumps(path)
        names = [name for name, _, _ in lumps]
        if map_name.upper() not in names:
            raise WorldsimError(f"no map {map_name} in {path}")
        marker = names.index(map_name.upper())
        parts = {name: (start, size) for name, start, size in lumps[marker + 1:marker + 12]}
        if "TEXTMAP" in parts or not {"VERTEXES", "LINEDEFS", "SIDEDEFS", "SECTORS"} <= parts.keys():
            parts = {}  # not the classic format: an empty map (no doors, no walls)
        with open(path, "rb") as f:
            def read(name: str, dtype: np.dtype) -> np.ndarray:
                if name not in parts:
                    return np.zeros(0, dtype=dtype)
                start, size = parts[name]
                f.seek(start)
                return np.frombuffer(f.read(size - size % dtype.itemsize), dtype=dtype)

            vertices = read("VERTEXES", np.dtype("<i2")).reshape(-1, 2).astype(np.float64)
            self.lines, self.sectors = read("LINEDEFS", _LINEDEF), read("SECTORS", _SECTOR)
            self.things, sides = read("THINGS", _THING), read("SIDEDEFS", _SIDEDEF)
        self.front, self.back = (np.array([int(sides[s]["sector"]) if s != NO_SIDE else -1 for s in self.lines[side]],
                                          dtype=np.int64) for side in ("front", "back"))
        self.segments = np.concatenate([vertices[self.lines["v1"]], vertices[self.lines["v2"]]], 1)  # x1, y1, x2, y2

    def door_sectors(self, specials: set[int] | dict[int, object]) -> set[int]:
        """The back sectors of lines with one of these door specials."""
        return {int(self.back[i]) for i, special in enumerate(self.lines["special"])
                if special in specials and self.back[i] >= 0}

    def moving_sectors(self) -> set[int]:
        """Sectors whose floor or ceiling a line special can move: manual doors, and every sector tagged by a line
        with a special (remote doors, lifts, floors)."""
        tags = {int(t) for t, special in zip(self.lines["tag"], self.lines["special"]) if special and t}
        tagged = {i for i, tag in enumerate(self.sectors["tag"]) if int(tag) in tags}
        return tagged | self.door_sectors(MANUAL_DOORS)


def map_doors(path: Path, map_name: str) -> list[DoorSpec]:
    """The doors of a map that are shut when it starts (see the module's docstring for which)."""
    geometry = MapGeometry(path, map_name)
    lines, sectors, front, back = geometry.lines, geometry.sectors, geometry.front, geometry.back
    specials, tags = lines["special"], lines["tag"]
    kinds: dict[int, tuple[int, bool]] = {}  # door sector -> (speed, stays open), from the first line that opens it
    for i in range(len(lines)):
        special = int(specials[i])
        if special in MANUAL_DOORS and back[i] >= 0:
            kinds.setdefault(int(back[i]), MANUAL_DOORS[special])
        elif special in REMOTE_DOORS and tags[i]:
            for sector in np.nonzero(sectors["tag"] == tags[i])[0]:
                kinds.setdefault(int(sector), REMOTE_DOORS[special])

    def triggers(table: dict[int, tuple[int, bool]], on: np.ndarray) -> np.ndarray:
        return geometry.segments[on & np.isin(specials, list(table))]

    doors = []
    for sector, (speed, stays_open) in sorted(kinds.items()):
        if sectors[sector]["ceiling"] > sectors[sector]["floor"]:
            continue  # open from the start
        around = (front == sector) | (back == sector)
        neighbours = {int(s) for s in np.concatenate([front[around], back[around]]) if s not in (-1, sector)}
        if not neighbours:
            continue
        top = min(int(sectors[s]["ceiling"]) for s in neighbours) - DOOR_GAP - int(sectors[sector]["floor"])
        tagged = (tags == sectors[sector]["tag"]) & (sectors[sector]["tag"] > 0)
        doors.append(DoorSpec(geometry.segments[around], triggers(MANUAL_DOORS, back == sector), top, speed,
                              stays_open, triggers(SWITCH_DOORS, tagged), triggers(WALK_DOORS, tagged)))
    return doors


def map_walls(path: Path, map_name: str, skill: int = 3) -> np.ndarray:
    """(N, 4) segments x1, y1, x2, y2 (map units) that always stop the player of a map at a skill (1-5), as the
    module's docstring says: blocking lines, then the four sides of each solid decoration's box."""
    if skill not in SKILL_FLAGS:
        raise WorldsimError(f"skill must be 1-5, got {skill}")
    geometry = MapGeometry(path, map_name)
    lines, sectors, front, back = geometry.lines, geometry.sectors, geometry.front, geometry.back
    moving = geometry.moving_sectors() - geometry.door_sectors(KEYED_DOORS)  # keyed doors never open: walls
    walls = []
    for i, line in enumerate(lines):
        a, b = int(front[i]), int(back[i])
        if a < 0 or b < 0 or line["flags"] & BLOCKS_PLAYER:
            walls.append(i)
        elif a not in moving and b not in moving:
            opening = min(sectors[a]["ceiling"], sectors[b]["ceiling"]) - max(sectors[a]["floor"], sectors[b]["floor"])
            if opening < PLAYER_HEIGHT or abs(int(sectors[a]["floor"]) - int(sectors[b]["floor"])) > STEP_HEIGHT:
                walls.append(i)
    placed = [t for t in geometry.things if t["flags"] & SKILL_FLAGS[skill] and not t["flags"] & MULTIPLAYER_ONLY]
    boxes = [(float(t["x"]), float(t["y"]), float(SOLID_THINGS[int(t["type"])])) for t in placed
             if int(t["type"]) in SOLID_THINGS]
    sides = [(x + sx * r, y + sy * r, x + ex * r, y + ey * r) for x, y, r in boxes
             for sx, sy, ex, ey in ((-1, -1, 1, -1), (1, -1, 1, 1), (1, 1, -1, 1), (-1, 1, -1, -1))]
    return np.concatenate([geometry.segments[walls], np.array(sides, dtype=np.float64).reshape(-1, 4)])
