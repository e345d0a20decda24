"""Doom map files: the map names of a WAD and the manual doors of a map, from a WAD written here and from the
shipped world's (when ViZDoom is installed)."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from worldsim.data.doom_map import map_doors, map_walls, wad_maps
from worldsim.errors import WorldsimError


def write_wad(path: Path, lumps: list[tuple[str, bytes]]) -> Path:
    offset, directory, data = 12, b"", b""
    for name, payload in lumps:
        directory += struct.pack("<ii8s", offset + len(data), len(payload), name.encode())
        data += payload
    path.write_bytes(struct.pack("<4sii", b"PWAD", len(lumps), offset + len(data)) + data + directory)
    return path


def door_map(special: int = 1, door_ceiling: int = 0, door_floor: int = 0,
             things: tuple[tuple[int, int, int, int], ...] = (), wall_special: int = 0, tag: int = 0
             ) -> list[tuple[str, bytes]]:
    """Two rooms (sectors 0 and 2, ceilings 128 and 100) joined by a door (sector 1, x 100-116, y 0-64, tagged `tag`)
    whose two faces carry `special`; plus a wall line of the west room carrying `wall_special` toward `tag`, and
    `things` (x, y, type, flags)."""
    vertices = [(100, 0), (100, 64), (116, 64), (116, 0), (0, 0), (0, 64)]
    # v1, v2, flags, special, tag, front side, back side
    lines = [(0, 1, 4, special, 0, 0, 1),  # west face: front is the west room, back the door
             (2, 3, 4, special, 0, 2, 3),  # east face
             (1, 2, 1, 0, 0, 4, 0xFFFF),  # the door's tracks: one-sided
             (3, 0, 1, 0, 0, 5, 0xFFFF),
             (4, 5, 1, wall_special, tag, 6, 0xFFFF)]  # a wall of the west room
    sides = [0, 1, 2, 1, 1, 1, 0]  # the sector each side faces
    sectors = [(0, 128), (door_floor, door_ceiling), (0, 100)]
    placed = b"".join(struct.pack("<5H", x, y, 0, kind, flags) for x, y, kind, flags in things)
    return [("MAP01", b""), ("THINGS", placed),
            ("LINEDEFS", b"".join(struct.pack("<7H", *line) for line in lines)),
            ("SIDEDEFS", b"".join(struct.pack("<hh8s8s8sH", 0, 0, b"-", b"-", b"-", s) for s in sides)),
            ("VERTEXES", b"".join(struct.pack("<hh", *v) for v in vertices)),
            ("SECTORS", b"".join(struct.pack("<hh8s8shHH", f, c, b"F", b"C", 160, 0, t)
                                 for (f, c), t in zip(sectors, (0, tag, 0))))]


def test_finds_the_map_and_its_door(tmp_path):
    wad = write_wad(tmp_path / "door.wad", door_map())
    assert wad_maps(wad) == ["MAP01"]
    [door] = map_doors(wad, "map01")
    assert door.top == 100 - 4 and door.speed == 2 and not door.stays_open  # lowest ceiling around, less 4
    assert sorted(map(tuple, door.triggers.tolist())) == [(100, 0, 100, 64), (116, 64, 116, 0)]
    assert len(door.outline) == 4  # the two faces and the two tracks


@pytest.mark.parametrize("special, stays_open, speed", [(31, True, 2), (117, False, 8), (118, True, 8)])
def test_door_kinds(tmp_path, special, stays_open, speed):
    [door] = map_doors(write_wad(tmp_path / "door.wad", door_map(special)), "MAP01")
    assert (door.stays_open, door.speed) == (stays_open, speed)


@pytest.mark.parametrize("special, stays_open, switch", [(103, True, True), (63, False, True), (90, False, False),
                                                         (2, True, False)])
def test_remote_doors_open_by_a_switch_or_a_walk_over_line(tmp_path, special, stays_open, switch):
    [door] = map_doors(write_wad(tmp_path / "door.wad", door_map(special=0, wall_special=special, tag=7)), "MAP01")
    assert door.stays_open == stays_open and door.speed == 2 and len(door.triggers) == 0
    lines = door.switches if switch else door.walk_lines
    assert lines.tolist() == [[0, 0, 0, 64]] and len(door.walk_lines if switch else door.switches) == 0


@pytest.mark.parametrize("lumps", [door_map(special=26), door_map(door_ceiling=72)], ids=["keyed", "open at start"])
def test_keyed_doors_and_doors_open_at_the_start_are_left_out(tmp_path, lumps):
    assert map_doors(write_wad(tmp_path / "door.wad", lumps), "MAP01") == []


def test_a_map_that_is_not_there_or_not_a_wad_is_a_clear_error(tmp_path):
    wad = write_wad(tmp_path / "door.wad", door_map())
    with pytest.raises(WorldsimError, match="no map MAP02"):
        map_doors(wad, "MAP02")
    (tmp_path / "junk.wad").write_bytes(b"not a wad at all")
    with pytest.raises(WorldsimError, match="not a WAD"):
        wad_maps(tmp_path / "junk.wad")


def test_the_shipped_worlds_map_has_four_manual_doors_and_two_remote_ones():
    vizdoom = pytest.importorskip("vizdoom", reason="ViZDoom not installed (pip install 'worldsim[train]')")
    doors = map_doors(Path(vizdoom.__file__).parent / "freedoom2.wad", "MAP01")
    manual = [d for d in doors if len(d.triggers)]
    assert len(manual) == 4
    assert sorted((d.speed, d.stays_open) for d in manual) == [(2, True), (8, False), (8, False), (8, False)]
    remote = [d for d in doors if not len(d.triggers)]
    assert sorted((len(d.switches), len(d.walk_lines)) for d in remote) == [(1, 0), (1, 2)]
    east = next(d for d in doors if np.isclose(d.triggers[:, 0], 704).any())  # the door to the east of the map
    assert sorted(east.triggers[:, 0].tolist()) == [704, 720]


def test_walls_are_the_blocking_lines_and_not_a_door(tmp_path):
    walls = map_walls(write_wad(tmp_path / "door.wad", door_map()), "MAP01")
    # the door's two tracks and the west room's wall; the door's faces belong to a door that opens
    assert sorted(map(tuple, walls.tolist())) == [(0, 0, 0, 64), (100, 64, 116, 64), (116, 0, 100, 0)]


@pytest.mark.parametrize("door_floor, door_ceiling, walled", [(0, 100, False), (30, 100, True), (0, 50, True)],
                         ids=["open passage", "step too high", "opening too low"])
def test_a_passage_is_a_wall_when_the_player_cannot_step_up_or_fit(tmp_path, door_floor, door_ceiling, walled):
    lumps = door_map(special=0, door_ceiling=door_ceiling, door_floor=door_floor)
    walls = map_walls(write_wad(tmp_path / "map.wad", lumps), "MAP01")
    faces = {(100, 0, 100, 64), (116, 64, 116, 0)}
    assert (faces <= set(map(tuple, walls.tolist()))) == walled


def test_solid_decorations_at_the_skill_are_boxes_of_walls(tmp_path):
    things = ((50, 32, 2035, 0x7), (20, 20, 2035, 0x4), (30, 40, 2035, 0x7 | 0x10), (60, 10, 2014, 0x7))
    # a barrel at every skill; one only at skills 4-5; one only in multiplayer; a health bonus (not solid)
    wad = write_wad(tmp_path / "map.wad", door_map(things=things))
    walls = map_walls(wad, "MAP01", skill=3)
    boxes = walls[3:]
    assert len(boxes) == 4
    assert boxes[:, [0, 2]].min() == 40 and boxes[:, [0, 2]].max() == 60  # the barrel's radius is 10
    assert len(map_walls(wad, "MAP01", skill=5)) == 3 + 8
    with pytest.raises(WorldsimError, match="skill must be 1-5"):
        map_walls(wad, "MAP01", skill=0)


def test_the_shipped_worlds_map_walls_leave_its_player_start_free():
    vizdoom = pytest.importorskip("vizdoom", reason="ViZDoom not installed (pip install 'worldsim[train]')")
    from worldsim.data.doom_map import MapGeometry
    from worldsim.world.walls import Walls

    wad = Path(vizdoom.__file__).parent / "freedoom2.wad"
    walls = Walls(map_walls(wad, "MAP01"))
    assert len(walls) > 500
    things = MapGeometry(wad, "MAP01").things
    start = things[things["type"] == 1][0]  # player 1's start
    assert walls.clear(np.array([[start["x"], start["y"]]], dtype=np.float64))[0]
    east = np.array([[start["x"] + d, start["y"]] for d in range(0, 2048, 4)], dtype=np.float64)
    assert not walls.clear(east).all()  # the start room is closed: walking east meets a wall
