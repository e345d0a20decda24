"""Doom map files (WADs): the map names in one, and the doors of a map, for the learned movement (worldsim/world).

A map's geometry is four lumps after its marker: VERTEXES (x, y), LINEDEFS (two vertices, a special, a front and
a back side), SIDEDEFS (the sector each side faces) and SECTORS (floor and ceiling heights). A manual door is a
sector whose ceiling starts at its floor, opened by USE on a line with a door special, from the line's front:
the door is the line's back sector. Keyed doors are left out (the recorded player carries no keys, so they never
open and the walkable area already ends there), and so are doors that switches or walk-over lines open from
elsewhere (their cells stay walkable). Only the classic (Doom) map format is read; a UDMF map has no doors here.
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
NO_SIDE = 0xFFFF

_LINEDEF = np.dtype([("v1", "<u2"), ("v2", "<u2"), ("flags", "<u2"), ("special", "<u2"), ("tag", "<u2"),
                     ("front", "<u2"), ("back", "<u2")])
_SIDEDEF = np.dtype([("x", "<i2"), ("y", "<i2"), ("upper", "S8"), ("lower", "S8"), ("middle", "S8"),
                     ("sector", "<u2")])
_SECTOR = np.dtype([("floor", "<i2"), ("ceiling", "<i2"), ("floor_texture", "S8"), ("ceiling_texture", "S8"),
                    ("light", "<i2"), ("special", "<u2"), ("tag", "<u2")])


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


def map_doors(path: Path, map_name: str) -> list[DoorSpec]:
    """The manual doors of a map that are shut when it starts (see the module's docstring for which)."""
    lumps = wad_lumps(path)
    names = [name for name, _, _ in lumps]
    if map_name.upper() not in names:
        raise WorldsimError(f"no map {map_name} in {path}")
    marker = names.index(map_name.upper())
    parts = {name: (start, size) for name, start, size in lumps[marker + 1:marker + 12]}
    if "TEXTMAP" in parts or not {"VERTEXES", "LINEDEFS", "SIDEDEFS", "SECTORS"} <= parts.keys():
        return []
    with open(path, "rb") as f:
        def read(name: str, dtype: np.dtype | str) -> np.ndarray:
            start, size = parts[name]
            f.seek(start)
            return np.frombuffer(f.read(size), dtype=dtype)

        vertices = read("VERTEXES", "<i2").reshape(-1, 2).astype(np.float64)
        lines, sides, sectors = read("LINEDEFS", _LINEDEF), read("SIDEDEFS", _SIDEDEF), read("SECTORS", _SECTOR)

    def sector_of(side: int) -> int:
        return int(sides[side]["sector"]) if side != NO_SIDE else -1

    front = np.array([sector_of(int(s)) for s in lines["front"]])
    back = np.array([sector_of(int(s)) for s in lines["back"]])
    segments = np.concatenate([vertices[lines["v1"]], vertices[lines["v2"]]], 1)  # (L, 4) x1, y1, x2, y2
    doors = []
    for sector in sorted({int(back[i]) for i, special in enumerate(lines["special"]) if special in MANUAL_DOORS}):
        if sector < 0 or sectors[sector]["ceiling"] > sectors[sector]["floor"]:
            continue  # one-sided, or open from the start
        triggers = [i for i in np.nonzero(back == sector)[0] if lines["special"][i] in MANUAL_DOORS]
        around = (front == sector) | (back == sector)
        neighbours = {int(s) for s in np.concatenate([front[around], back[around]]) if s not in (-1, sector)}
        if not neighbours:
            continue
        top = min(int(sectors[s]["ceiling"]) for s in neighbours) - DOOR_GAP - int(sectors[sector]["floor"])
        speed, stays_open = MANUAL_DOORS[int(lines["special"][triggers[0]])]
        doors.append(DoorSpec(segments[around], segments[triggers], top, speed, stays_open))
    return doors
